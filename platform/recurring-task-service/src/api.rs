//! The HTTP API: `/api/v1/schedules` (series of recurring tasks, with their
//! pending reminder jobs) and `/api/v1/reminders` (every task's reminder job).

use std::collections::HashMap;

use chrono::{DateTime, NaiveTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use sqlx::PgPool;
use todo_core::problem::ApiError;
use uuid::Uuid;

use crate::db::{self, ReminderFilter, ReminderRow, Series, SeriesFilter};

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
    pub due_date: Option<DateTime<Utc>>,
    /// When it fires.
    pub remind_at: DateTime<Utc>,
    /// `scheduled`, `fired` or `cancelled`.
    pub status: String,
    pub fired_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<ReminderRow> for ReminderView {
    fn from(r: ReminderRow) -> Self {
        ReminderView {
            job_name: todo_workflows::plan::reminder_job_name(&r.task_id.to_string()),
            task_id: r.task_id,
            user_id: r.user_id,
            title: r.title,
            due_date: r.due_date,
            remind_at: r.remind_at,
            status: r.status,
            fired_at: r.fired_at,
            updated_at: r.updated_at,
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
    pub next_due_date: DateTime<Utc>,
    /// The newest instance.
    pub current_task_id: Uuid,
    /// The completed instance the newest one follows (none for the first).
    pub parent_task_id: Option<Uuid>,
    /// How many instances the series has had.
    pub instances: i32,
    pub is_active: bool,
    /// Why it ended: `deleted`, or `not_recurring` (switched off).
    pub ended_reason: Option<String>,
    /// Reminder jobs of its instances that have not fired yet.
    pub pending_reminders: Vec<ReminderView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn schedule_view(s: Series, pending: Vec<ReminderView>) -> ScheduleView {
    ScheduleView {
        id: s.id,
        user_id: s.user_id,
        title: s.title,
        frequency: s.frequency,
        timezone: s.timezone,
        anchor_day: s.anchor_day,
        anchor_time: s.anchor_time,
        next_due_date: s.next_due_date,
        current_task_id: s.current_task_id,
        parent_task_id: s.parent_task_id,
        instances: s.instances,
        is_active: s.is_active,
        ended_reason: s.ended_reason,
        pending_reminders: pending,
        created_at: s.created_at,
        updated_at: s.updated_at,
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
    /// List series of recurring tasks, oldest first.
    #[oai(path = "/schedules", method = "get", tag = "ApiTags::Schedules")]
    async fn list_schedules(
        &self,
        pool: Data<&PgPool>,
        /// Only active (or only ended) series.
        is_active: Query<Option<bool>>,
        /// Only this user's series.
        user_id: Query<Option<String>>,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        offset: Query<Option<u32>>,
    ) -> Result<Json<SchedulePage>, ApiError> {
        let filter = SeriesFilter {
            is_active: is_active.0,
            user_id: user_id.0,
        };
        let (limit, offset) = page(limit.0, offset.0);
        let (series, total) = db::list_series(&pool, &filter, limit, offset).await?;
        let ids: Vec<Uuid> = series.iter().map(|s| s.id).collect();
        let mut pending: HashMap<Uuid, Vec<ReminderView>> = HashMap::new();
        for (series_id, r) in db::pending_reminders_of(&pool, &ids).await? {
            pending.entry(series_id).or_default().push(r.into());
        }
        let schedules = series
            .into_iter()
            .map(|s| {
                let p = pending.remove(&s.id).unwrap_or_default();
                schedule_view(s, p)
            })
            .collect();
        Ok(Json(SchedulePage { schedules, total }))
    }

    /// One series, with its pending reminder jobs.
    #[oai(path = "/schedules/:id", method = "get", tag = "ApiTags::Schedules")]
    async fn get_schedule(
        &self,
        pool: Data<&PgPool>,
        /// The series id (the id of its first task).
        id: Path<Uuid>,
    ) -> Result<Json<ScheduleView>, ApiError> {
        let Some(series) = db::get_series(&pool, id.0).await? else {
            return Err(ApiError::not_found(format!("schedule {} not found", id.0)));
        };
        let pending = db::pending_reminders_of(&pool, &[series.id])
            .await?
            .into_iter()
            .map(|(_, r)| r.into())
            .collect();
        Ok(Json(schedule_view(series, pending)))
    }

    /// List reminder jobs by due time.
    #[oai(path = "/reminders", method = "get", tag = "ApiTags::Reminders")]
    async fn list_reminders(
        &self,
        pool: Data<&PgPool>,
        /// Only reminders in this state.
        status: Query<Option<ReminderStatus>>,
        /// Only this user's reminders.
        user_id: Query<Option<String>>,
        /// Only this task's reminder.
        task_id: Query<Option<Uuid>>,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        offset: Query<Option<u32>>,
    ) -> Result<Json<ReminderPage>, ApiError> {
        let filter = ReminderFilter {
            status: status.0.map(|s| s.as_str().to_owned()),
            user_id: user_id.0,
            task_id: task_id.0,
        };
        let (limit, offset) = page(limit.0, offset.0);
        let (rows, total) = db::list_reminders(&pool, &filter, limit, offset).await?;
        Ok(Json(ReminderPage {
            reminders: rows.into_iter().map(Into::into).collect(),
            total,
        }))
    }
}
