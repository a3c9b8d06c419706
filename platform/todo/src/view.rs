//! The public representation of a task: the body of every API answer about a
//! task and, identically, the `payload` of every event about it.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object, types::ToJSON};
use uuid::Uuid;

use crate::domain::{Recurrence, Task, TaskStatus};

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "TaskStatus", rename_all = "snake_case")]
pub enum StatusView {
    Pending,
    InProgress,
    Complete,
}

/// How often a recurring task comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "RecurrenceSchedule", rename_all = "snake_case")]
pub enum RecurrenceView {
    Daily,
    Weekly,
    Monthly,
}

/// A task as users and consumers see it.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename = "Task")]
pub struct TaskView {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: StatusView,
    pub due_date: Option<DateTime<Utc>>,
    pub reminder_time: Option<DateTime<Utc>>,
    pub is_recurring: bool,
    pub recurrence_schedule: Option<RecurrenceView>,
    /// IANA time zone the due date and recurrence are reckoned in.
    pub timezone: String,
    /// The task this one was generated from, for recurring instances.
    pub parent_task_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Grows by one with every change.
    pub version: i64,
}

impl From<TaskStatus> for StatusView {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Pending => StatusView::Pending,
            TaskStatus::InProgress => StatusView::InProgress,
            TaskStatus::Complete => StatusView::Complete,
        }
    }
}

impl From<StatusView> for TaskStatus {
    fn from(s: StatusView) -> Self {
        match s {
            StatusView::Pending => TaskStatus::Pending,
            StatusView::InProgress => TaskStatus::InProgress,
            StatusView::Complete => TaskStatus::Complete,
        }
    }
}

impl From<Recurrence> for RecurrenceView {
    fn from(r: Recurrence) -> Self {
        match r {
            Recurrence::Daily => RecurrenceView::Daily,
            Recurrence::Weekly => RecurrenceView::Weekly,
            Recurrence::Monthly => RecurrenceView::Monthly,
        }
    }
}

impl From<RecurrenceView> for Recurrence {
    fn from(r: RecurrenceView) -> Self {
        match r {
            RecurrenceView::Daily => Recurrence::Daily,
            RecurrenceView::Weekly => Recurrence::Weekly,
            RecurrenceView::Monthly => Recurrence::Monthly,
        }
    }
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        let f = &t.fields;
        TaskView {
            id: t.id,
            title: f.title.clone(),
            description: f.description.clone(),
            status: f.status.into(),
            due_date: f.due_date,
            reminder_time: f.reminder_time,
            is_recurring: f.is_recurring,
            recurrence_schedule: f.recurrence_schedule.map(Into::into),
            timezone: f.timezone.clone(),
            parent_task_id: f.parent_task_id,
            created_at: t.created_at,
            updated_at: t.updated_at,
            version: t.version,
        }
    }
}

impl TaskView {
    /// The JSON form, exactly as the API writes it.
    pub fn to_value(&self) -> serde_json::Value {
        self.to_json().unwrap_or(serde_json::Value::Null)
    }

    /// Reads back a stored JSON form.
    pub fn from_value(value: serde_json::Value) -> Option<TaskView> {
        use poem_openapi::types::ParseFromJSON;
        TaskView::parse_from_json(Some(value)).ok()
    }
}
