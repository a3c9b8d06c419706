//! The HTTP API (`/api/v1/notifications`): list, read, and retry failed ones.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use sqlx::PgPool;
use todo_core::problem::ApiError;
use todo_core::workflow::Starter;
use uuid::Uuid;

use crate::db::{self, Filter, Notification};
use crate::delivery::start_delivery;

#[derive(Tags)]
enum ApiTags {
    /// In-app notifications of task reminders.
    Notifications,
}

/// Delivery states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum NotificationStatus {
    Pending,
    Sent,
    Failed,
}

impl NotificationStatus {
    fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sent => "sent",
            NotificationStatus::Failed => "failed",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Notification")]
pub struct NotificationView {
    pub id: Uuid,
    /// The `reminder-fired` event it delivers.
    pub reminder_event_id: Uuid,
    pub task_id: Uuid,
    /// Who it is for.
    pub user_id: String,
    /// `reminder`.
    pub notification_type: String,
    /// `in_app`.
    pub channel: String,
    pub title: String,
    pub due_date: Option<DateTime<Utc>>,
    /// When the reminder was due.
    pub remind_at: DateTime<Utc>,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Delivery attempts started.
    pub attempts: i32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        NotificationView {
            id: n.id,
            reminder_event_id: n.reminder_event_id,
            task_id: n.task_id,
            user_id: n.user_id,
            notification_type: n.notification_type,
            channel: n.channel,
            title: n.title,
            due_date: n.due_date,
            remind_at: n.remind_at,
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            created_at: n.created_at,
            sent_at: n.sent_at,
            updated_at: n.updated_at,
        }
    }
}

/// One page of notifications.
#[derive(Debug, Object)]
pub struct NotificationPage {
    pub notifications: Vec<NotificationView>,
    /// How many notifications match the filter in all.
    pub total: i64,
}

/// A retry was started.
#[derive(Debug, ApiResponse)]
pub enum RetryStarted {
    /// The notification is pending again; a new delivery attempt runs.
    #[oai(status = 202)]
    Accepted(Json<NotificationView>),
}

/// The notification API.
pub struct NotificationApi;

#[OpenApi(prefix_path = "/api/v1/notifications", tag = "ApiTags::Notifications")]
impl NotificationApi {
    /// List notifications, newest first.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        pool: Data<&PgPool>,
        /// Only notifications in this state.
        status: Query<Option<NotificationStatus>>,
        /// Only this task's notifications.
        task_id: Query<Option<Uuid>>,
        /// Only this user's notifications.
        user_id: Query<Option<String>>,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        offset: Query<Option<u32>>,
    ) -> Result<Json<NotificationPage>, ApiError> {
        let filter = Filter {
            status: status.0.map(|s| s.as_str().to_owned()),
            task_id: task_id.0,
            user_id: user_id.0,
        };
        let (rows, total) = db::list(
            &pool,
            &filter,
            i64::from(limit.0.unwrap_or(100)),
            i64::from(offset.0.unwrap_or(0)),
        )
        .await?;
        Ok(Json(NotificationPage {
            notifications: rows.into_iter().map(Into::into).collect(),
            total,
        }))
    }

    /// One notification.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        pool: Data<&PgPool>,
        id: Path<Uuid>,
    ) -> Result<Json<NotificationView>, ApiError> {
        match db::get(&pool, id.0).await? {
            Some(n) => Ok(Json(n.into())),
            None => Err(not_found(id.0)),
        }
    }

    /// Retry a failed notification: it becomes pending and a new delivery
    /// attempt starts. 409 unless it is `failed`.
    #[oai(path = "/:id/retry", method = "post")]
    async fn retry(
        &self,
        pool: Data<&PgPool>,
        starter: Data<&Starter>,
        id: Path<Uuid>,
    ) -> Result<RetryStarted, ApiError> {
        let mut tx = pool.begin().await?;
        let Some(current) = db::lock(&mut tx, id.0).await? else {
            return Err(not_found(id.0));
        };
        if current.status != "failed" {
            return Err(ApiError::conflict(
                "not_failed",
                format!(
                    "notification {} is {}; only failed notifications can be retried",
                    id.0, current.status
                ),
            ));
        }
        let n = db::begin_retry(&mut tx, id.0).await?;
        start_delivery(&starter, n.id, n.attempts, n.reminder())
            .await
            .map_err(|e| {
                tracing::warn!(task_id = %n.task_id, notification_id = %n.id, error = %e, "retry not started");
                ApiError::unavailable(format!("the workflow engine is unavailable: {e}"))
            })?;
        tx.commit().await?;
        tracing::info!(task_id = %n.task_id, notification_id = %n.id, attempt = n.attempts, "notification retry started");
        Ok(RetryStarted::Accepted(Json(n.into())))
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("notification {id} not found"))
}
