//! The notification service's use cases behind the API: reading
//! notifications and retrying a failed one.

use sqlx::PgPool;
use todo_core::workflow::Starter;
use uuid::Uuid;

use crate::db::{self, Filter, Notification};
use crate::workflow::start_delivery;

/// Why a retry did not start.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("notification {0} not found")]
    NotFound(Uuid),
    #[error("notification {id} is {status}; only failed notifications can be retried")]
    NotFailed { id: Uuid, status: String },
    #[error("the workflow engine is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Notifications over one database and the delivery workflow.
#[derive(Debug, Clone)]
pub struct NotificationService {
    pool: PgPool,
    workflows: Starter,
}

impl NotificationService {
    pub fn new(pool: PgPool, workflows: Starter) -> Self {
        NotificationService { pool, workflows }
    }

    /// A page of notifications, newest first, and how many match in all.
    pub async fn list(
        &self,
        filter: &Filter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Notification>, i64), sqlx::Error> {
        db::list(&self.pool, filter, limit, offset).await
    }

    /// One notification.
    pub async fn get(&self, id: Uuid) -> Result<Option<Notification>, sqlx::Error> {
        db::get(&self.pool, id).await
    }

    /// Makes a failed notification pending again and starts its next
    /// delivery attempt; the row as it now is. The attempt is started inside
    /// the transaction that records it, so a retry is either recorded and
    /// running or neither.
    #[tracing::instrument(skip_all, fields(notification_id = %id))]
    pub async fn retry(&self, id: Uuid) -> Result<Notification, RetryError> {
        let mut tx = self.pool.begin().await?;
        let current = db::lock(&mut tx, id)
            .await?
            .ok_or(RetryError::NotFound(id))?;
        if current.status != "failed" {
            return Err(RetryError::NotFailed {
                id,
                status: current.status,
            });
        }
        let n = db::begin_retry(&mut tx, id).await?;
        start_delivery(&self.workflows, n.id, n.attempts, n.reminder())
            .await
            .map_err(|e| {
                tracing::warn!(task_id = %n.task_id, error = %e, "retry not started");
                RetryError::Unavailable(e.to_string())
            })?;
        tx.commit().await?;
        tracing::info!(task_id = %n.task_id, attempt = n.attempts, "notification retry started");
        Ok(n)
    }
}
