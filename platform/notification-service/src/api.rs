//! The HTTP API (`/api/v1/notifications`): list, read, and retry failed ones.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use todo_contract::Timestamp;
use todo_core::{auth::Caller, problem::ApiError};
use uuid::Uuid;

use crate::db::{Filter, Notification};
use crate::service::{NotificationService, RetryError};

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
    #[oai(nullable)]
    pub due_date: Option<Timestamp>,
    /// When the reminder was due.
    pub remind_at: Timestamp,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Delivery attempts started.
    pub attempts: i32,
    /// Why the last attempt failed.
    #[oai(nullable)]
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    #[oai(nullable)]
    pub sent_at: Option<Timestamp>,
    pub updated_at: Timestamp,
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
            due_date: n.due_date.map(Timestamp::new),
            remind_at: n.remind_at.into(),
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            created_at: n.created_at.into(),
            sent_at: n.sent_at.map(Timestamp::new),
            updated_at: n.updated_at.into(),
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
    /// List notifications, newest first: a user's own (their in-app inbox),
    /// or for an operator everyone's.
    #[oai(path = "/", method = "get")]
    // One argument per documented query parameter.
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        notifications: Data<&NotificationService>,
        caller: Caller,
        /// Only notifications in this state.
        status: Query<Option<NotificationStatus>>,
        /// Only this task's notifications.
        task_id: Query<Option<Uuid>>,
        /// Only this user's notifications (a user may name only themselves).
        #[oai(validator(min_length = 1, max_length = 128, pattern = "^[!-~]+$"))]
        user_id: Query<Option<String>>,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u32>>,
    ) -> Result<Json<NotificationPage>, ApiError> {
        let filter = Filter {
            status: status.0.map(|s| s.as_str().to_owned()),
            task_id: task_id.0,
            user_id: caller.identity().scope().user_filter(user_id.0)?,
        };
        let (rows, total) = notifications
            .list(
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

    /// One notification (a user's own only; another's is a 404).
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        notifications: Data<&NotificationService>,
        caller: Caller,
        id: Path<Uuid>,
    ) -> Result<Json<NotificationView>, ApiError> {
        let found = notifications.get(id.0).await?;
        match found.filter(|n| caller.identity().may_read(&n.user_id)) {
            Some(n) => Ok(Json(n.into())),
            None => Err(not_found(id.0)),
        }
    }

    /// Retry a failed notification: it becomes pending and a new delivery
    /// attempt starts. 409 unless it is `failed`. Operators only.
    #[oai(path = "/:id/retry", method = "post")]
    async fn retry(
        &self,
        notifications: Data<&NotificationService>,
        caller: Caller,
        id: Path<Uuid>,
    ) -> Result<RetryStarted, ApiError> {
        caller.identity().require_operator()?;
        let n = notifications.retry(id.0).await?;
        Ok(RetryStarted::Accepted(Json(n.into())))
    }
}

impl From<RetryError> for ApiError {
    fn from(e: RetryError) -> Self {
        match e {
            RetryError::NotFound(id) => not_found(id),
            RetryError::NotFailed { .. } => ApiError::conflict("not_failed", e.to_string()),
            RetryError::Database(db) => ApiError::from(db),
        }
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("notification {id} not found"))
}
