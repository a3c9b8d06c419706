//! The HTTP API: `/api/v1/schedules` (series of recurring tasks, with their
//! pending reminder jobs) and `/api/v1/reminders` (every task's reminder job).

use chrono::NaiveTime;
use poem::web::Data;
use poem_openapi::{
    Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use todo_contract::{Timestamp, reminder::reminder_job_name};
use todo_core::{auth::Caller, problem::ApiError};
use uuid::Uuid;

use crate::db::{ReminderFilter, ReminderRow, Series, SeriesFilter};
use crate::service::RecurringService;

#[derive(Tags)]
enum ApiTags {
    /// Series of recurring tasks (RecurrenceSchedules).
    Schedules,
    /// Reminder jobs of tasks (Dapr Jobs API).
    Reminders,
}

/// A reminder job.
#[derive(Debug, Clone, Object)]
pub struct ReminderView {
    pub task_id: Uuid,
    /// The Dapr job's name, `reminder-<task_id>`.
    pub job_name: String,
    pub user_id: String,
    pub title: String,
    #[oai(nullable)]
    pub due_date: Option<Timestamp>,
    /// When it fires.
    pub remind_at: Timestamp,
    /// `scheduled`, `fired` or `cancelled`.
    pub status: String,
    #[oai(nullable)]
    pub fired_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl From<ReminderRow> for ReminderView {
    fn from(r: ReminderRow) -> Self {
        ReminderView {
            job_name: reminder_job_name(r.task_id),
            task_id: r.task_id,
            user_id: r.user_id,
            title: r.title,
            due_date: r.due_date.map(Timestamp::new),
            remind_at: r.remind_at.into(),
            status: r.status,
            fired_at: r.fired_at.map(Timestamp::new),
            updated_at: r.updated_at.into(),
        }
    }
}

/// The series of a recurring task.
#[derive(Debug, Clone, Object)]
#[oai(rename = "RecurrenceSchedule")]
pub struct ScheduleView {
    /// The series id: the id of its first task.
    pub id: Uuid,
    pub user_id: String,
    /// Title of the newest instance.
    pub title: String,
    /// `daily`, `weekly` or `monthly`.
    pub frequency: String,
    /// IANA time zone the schedule is reckoned in.
    pub timezone: String,
    /// Local day of month a monthly series keeps (the first due date's).
    pub anchor_day: i16,
    /// Local time of day every instance is due at.
    pub anchor_time: NaiveTime,
    /// Due date of the newest instance.
    pub next_due_date: Timestamp,
    /// The newest instance.
    pub current_task_id: Uuid,
    /// The completed instance the newest one follows (none for the first).
    #[oai(nullable)]
    pub parent_task_id: Option<Uuid>,
    /// How many instances the series has had.
    pub instances: i32,
    pub is_active: bool,
    /// Why it ended: `deleted`, or `not_recurring` (switched off).
    #[oai(nullable)]
    pub ended_reason: Option<String>,
    /// Reminder jobs of its instances that have not fired yet.
    pub pending_reminders: Vec<ReminderView>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn schedule_view((s, pending): (Series, Vec<ReminderRow>)) -> ScheduleView {
    ScheduleView {
        id: s.id,
        user_id: s.user_id,
        title: s.title,
        frequency: s.frequency,
        timezone: s.timezone,
        anchor_day: s.anchor_day,
        anchor_time: s.anchor_time,
        next_due_date: s.next_due_date.into(),
        current_task_id: s.current_task_id,
        parent_task_id: s.parent_task_id,
        instances: s.instances,
        is_active: s.is_active,
        ended_reason: s.ended_reason,
        pending_reminders: pending.into_iter().map(Into::into).collect(),
        created_at: s.created_at.into(),
        updated_at: s.updated_at.into(),
    }
}

/// One page of schedules.
#[derive(Debug, Object)]
pub struct SchedulePage {
    pub schedules: Vec<ScheduleView>,
    /// How many schedules match the filter in all.
    pub total: i64,
}

/// Reminder states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ReminderStatus {
    Scheduled,
    Fired,
    Cancelled,
}

impl ReminderStatus {
    fn as_str(self) -> &'static str {
        match self {
            ReminderStatus::Scheduled => "scheduled",
            ReminderStatus::Fired => "fired",
            ReminderStatus::Cancelled => "cancelled",
        }
    }
}

/// One page of reminders.
#[derive(Debug, Object)]
pub struct ReminderPage {
    pub reminders: Vec<ReminderView>,
    /// How many reminders match the filter in all.
    pub total: i64,
}

/// The recurring-task API.
pub struct RecurringApi;

fn page(limit: Option<u32>, offset: Option<u32>) -> (i64, i64) {
    (
        i64::from(limit.unwrap_or(100)),
        i64::from(offset.unwrap_or(0)),
    )
}

#[OpenApi(prefix_path = "/api/v1")]
impl RecurringApi {
    /// List series of recurring tasks, oldest first: a user's own, or for an
    /// operator everyone's.
    #[oai(path = "/schedules", method = "get", tag = "ApiTags::Schedules")]
    async fn list_schedules(
        &self,
        service: Data<&RecurringService>,
        caller: Caller,
        /// Only active (or only ended) series.
        is_active: Query<Option<bool>>,
        /// Only this user's series (a user may name only themselves).
        #[oai(validator(min_length = 1, max_length = 128, pattern = "^[!-~]+$"))]
        user_id: Query<Option<String>>,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u32>>,
    ) -> Result<Json<SchedulePage>, ApiError> {
        let filter = SeriesFilter {
            is_active: is_active.0,
            user_id: caller.identity().scope().user_filter(user_id.0)?,
        };
        let (limit, offset) = page(limit.0, offset.0);
        let (page, total) = service.list_schedules(&filter, limit, offset).await?;
        let schedules = page.into_iter().map(schedule_view).collect();
        Ok(Json(SchedulePage { schedules, total }))
    }

    /// One series, with its pending reminder jobs (a user's own only;
    /// another's is a 404).
    #[oai(path = "/schedules/:id", method = "get", tag = "ApiTags::Schedules")]
    async fn get_schedule(
        &self,
        service: Data<&RecurringService>,
        caller: Caller,
        /// The series id (the id of its first task).
        id: Path<Uuid>,
    ) -> Result<Json<ScheduleView>, ApiError> {
        let found = service.get_schedule(id.0).await?;
        match found.filter(|(s, _)| caller.identity().may_read(&s.user_id)) {
            Some(found) => Ok(Json(schedule_view(found))),
            None => Err(ApiError::not_found(format!("schedule {} not found", id.0))),
        }
    }

    /// List reminder jobs by due time: a user's own, or for an operator
    /// everyone's.
    #[oai(path = "/reminders", method = "get", tag = "ApiTags::Reminders")]
    // One argument per documented query parameter.
    #[allow(clippy::too_many_arguments)]
    async fn list_reminders(
        &self,
        service: Data<&RecurringService>,
        caller: Caller,
        /// Only reminders in this state.
        status: Query<Option<ReminderStatus>>,
        /// Only this user's reminders (a user may name only themselves).
        #[oai(validator(min_length = 1, max_length = 128, pattern = "^[!-~]+$"))]
        user_id: Query<Option<String>>,
        /// Only this task's reminder.
        task_id: Query<Option<Uuid>>,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u32>>,
    ) -> Result<Json<ReminderPage>, ApiError> {
        let filter = ReminderFilter {
            status: status.0.map(|s| s.as_str().to_owned()),
            user_id: caller.identity().scope().user_filter(user_id.0)?,
            task_id: task_id.0,
        };
        let (limit, offset) = page(limit.0, offset.0);
        let (rows, total) = service.list_reminders(&filter, limit, offset).await?;
        Ok(Json(ReminderPage {
            reminders: rows.into_iter().map(Into::into).collect(),
            total,
        }))
    }
}
