//! The notification service's use cases behind the API: reading
//! notifications and retrying a failed one; and pruning sent ones ([`prune`]).

use std::time::Duration;

use sqlx::PgPool;
use todo_core::intent::Waker;
use uuid::Uuid;

use todo_core::workflow::{Starter, restart_late};

use crate::db::{self, Filter, Notification};
use crate::workflow::{self, record_start};

/// Why a retry did not start.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("notification {0} not found")]
    NotFound(Uuid),
    #[error("notification {id} is {status}; only failed notifications can be retried")]
    NotFailed { id: Uuid, status: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Notifications over one database and the delivery workflow.
#[derive(Debug, Clone)]
pub struct NotificationService {
    pool: PgPool,
    waker: Waker,
}

impl NotificationService {
    /// `waker` wakes the dispatcher that starts delivery attempts.
    pub fn new(pool: PgPool, waker: Waker) -> Self {
        NotificationService { pool, waker }
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

    /// Makes a failed notification pending again and records the start of
    /// its next delivery attempt in the same short transaction; the row as it
    /// now is. The attempt is started right after the commit (and retried
    /// until the workflow engine takes it), so a retry is accepted even while
    /// the engine is away and no lock waits on it.
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
        record_start(&mut tx, n.id, n.attempts, n.reminder()).await?;
        tx.commit().await?;
        self.waker.wake();
        tracing::info!(task_id = %n.task_id, attempt = n.attempts, "notification retry accepted");
        Ok(n)
    }
}

/// Most rows one pruning statement deletes: short transactions, few locks.
const PRUNE_BATCH: i64 = 2000;

/// Deletes notifications sent more than `keep` ago ([`db::prune_sent`]);
/// logs and counts what went (`notifications_pruned_total`). A failed run is
/// logged and tried again at the next interval.
pub async fn prune(pool: &PgPool, keep: Duration) {
    match db::prune_sent(pool, keep, PRUNE_BATCH).await {
        Ok(0) => {}
        Ok(n) => {
            metrics::counter!("notifications_pruned_total").increment(n);
            tracing::info!(
                rows = n,
                retention_hours = keep.as_secs() / 3600,
                "pruned sent notifications"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "pruning sent notifications failed; trying again later")
        }
    }
}

/// Most overdue notifications one watchdog round looks at.
const WATCH_BATCH: i64 = 100;

/// One round of the delivery watchdog: each notification pending for more
/// than `stale` since it last changed, whose delivery start is not still
/// waiting, has its instance asked how it is doing; one the engine lost,
/// finished without sending, or that stalled (terminated first) is started
/// again as a new instance (`delivery-<id>-<attempt>-r<n>`), on one replica
/// (`todo_core::workflow::restart_late`). Delivery is idempotent on the
/// notification id, so an old instance that comes back to life sends
/// nothing twice.
pub async fn watch(pool: &PgPool, starter: &Starter, waker: &Waker, stale: Duration) {
    let late = match db::overdue(pool, stale, WATCH_BATCH).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "looking for late deliveries failed; trying again later");
            return;
        }
    };
    let restarted = restart_late(
        starter,
        workflow::DELIVERY_WORKFLOW,
        stale,
        late,
        |o| {
            (
                workflow::rescue_instance_id(o.id, o.attempts, o.rescues),
                o.task_id,
            )
        },
        |o| restart(pool, o),
    )
    .await;
    if restarted {
        waker.wake();
    }
}

/// Records the next start of `o`'s delivery, unless another replica did or
/// it is no longer pending; its instance id.
async fn restart(pool: &PgPool, o: db::Overdue) -> Result<Option<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(rescue) = db::count_rescue(&mut tx, o.id, o.rescues).await? else {
        return Ok(None);
    };
    let instance = workflow::rescue_instance_id(o.id, o.attempts, rescue);
    workflow::record_instance(&mut tx, &instance, o.id, o.attempts, o.reminder()).await?;
    tx.commit().await?;
    Ok(Some(instance))
}
