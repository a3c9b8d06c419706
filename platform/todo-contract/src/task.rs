//! The task as it travels: the payload of every `task-*` event and,
//! identically, the body of every Todo API answer about a task.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::time::Timestamp;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(
    feature = "openapi",
    oai(rename = "TaskStatus", rename_all = "snake_case")
)]
pub enum TaskStatus {
    Pending,
    InProgress,
    Complete,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 3] = [
        TaskStatus::Pending,
        TaskStatus::InProgress,
        TaskStatus::Complete,
    ];

    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Complete => "complete",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        TaskStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// How often a recurring task comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(
    feature = "openapi",
    oai(rename = "RecurrenceSchedule", rename_all = "snake_case")
)]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
}

impl Frequency {
    /// Every frequency.
    pub const ALL: [Frequency; 3] = [Frequency::Daily, Frequency::Weekly, Frequency::Monthly];

    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Frequency::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A task as users and consumers see it: the full snapshot after a change
/// (before it, for `task-deleted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename = "Task"))]
pub struct TaskSnapshot {
    pub id: Uuid,
    pub title: String,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub description: Option<String>,
    pub status: TaskStatus,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub due_date: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub reminder_time: Option<Timestamp>,
    pub is_recurring: bool,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub recurrence_schedule: Option<Frequency>,
    /// IANA time zone the due date and recurrence are reckoned in.
    pub timezone: String,
    /// The task this one was generated from, for recurring instances.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub parent_task_id: Option<Uuid>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Grows by one with every change.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for f in Frequency::ALL {
            assert_eq!(Frequency::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
    }

    #[test]
    fn absent_optional_fields_are_written_as_null() {
        let t = TaskSnapshot {
            id: Uuid::nil(),
            title: "x".into(),
            description: None,
            status: TaskStatus::Pending,
            due_date: None,
            reminder_time: None,
            is_recurring: false,
            recurrence_schedule: None,
            timezone: "UTC".into(),
            parent_task_id: None,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            version: 1,
        };
        let json = serde_json::to_value(&t).unwrap();
        assert!(json["description"].is_null() && json.get("description").is_some());
        assert_eq!(serde_json::from_value::<TaskSnapshot>(json).unwrap(), t);
    }
}
