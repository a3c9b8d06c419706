//! Rows of `outbox`: events committed with the change they record, published
//! by the relay in id order.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// An event waiting to be published.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: i64,
    pub topic: String,
    pub task_id: Uuid,
    pub cloud_event: Vec<u8>,
}

/// Adds an event for one topic; returns the row id the caller waits on.
pub async fn enqueue(
    conn: &mut PgConnection,
    event_id: Uuid,
    topic: &str,
    task_id: Uuid,
    cloud_event: &[u8],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "insert into outbox (event_id, topic, task_id, cloud_event) values ($1, $2, $3, $4) returning id",
        event_id,
        topic,
        task_id,
        cloud_event,
    )
    .fetch_one(conn)
    .await
}

/// Takes the transaction-scoped lock that makes one relay (of any instance)
/// publish at a time, so events leave in commit order.
pub async fn lock_publisher(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("select pg_advisory_xact_lock(7305260918)")
        .execute(conn)
        .await?;
    Ok(())
}

/// The oldest unpublished event of each (topic, task), in id order, at most
/// `limit`: the events that may go out together without reordering a task's
/// events, however many a busy task has queued behind its oldest. PostgreSQL
/// walks `outbox_pending` in id order and probes `outbox_pending_task` once
/// per row until it has `limit` (or runs out), so a batch costs the pending
/// rows ahead of its last event, not the whole backlog.
pub async fn pending(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<PendingEvent>, sqlx::Error> {
    sqlx::query_as!(
        PendingEvent,
        "select o.id, o.topic, o.task_id, o.cloud_event from outbox o \
         where o.published_at is null and not exists ( \
             select 1 from outbox earlier \
             where earlier.topic = o.topic and earlier.task_id = o.task_id \
             and earlier.published_at is null and earlier.id < o.id) \
         order by o.id limit $1",
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The channel on which a relay announces a publish; PostgreSQL delivers it
/// to every replica when the stamping transaction commits.
pub const PUBLISHED_CHANNEL: &str = "outbox_published";

/// Stamps events as published, and announces it on [`PUBLISHED_CHANNEL`]
/// (delivered on commit), so requests waiting on another replica hear of it.
pub async fn mark_published(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update outbox set published_at = now() where id = any($1)",
        ids
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("select pg_notify($1, '')", PUBLISHED_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Which of `ids` are published (stamped and committed).
pub async fn published_among(db: &PgPool, ids: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "select id from outbox where id = any($1) and published_at is not null",
        ids
    )
    .fetch_all(db)
    .await
}

/// Whether any of `ids` still waits to be published (committed, not stamped).
/// A row that is absent was published and pruned since (the pruner deletes
/// only published rows) — but only once its transaction has committed: ask
/// about rows known to be committed, never about a transaction still open.
pub async fn any_pending(db: &PgPool, ids: &[i64]) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists(select 1 from outbox where id = any($1) and published_at is null) as "pending!""#,
        ids
    )
    .fetch_one(db)
    .await
}

/// How many events wait in all.
pub async fn backlog(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"select count(*) as "backlog!" from outbox where published_at is null"#)
        .fetch_one(db)
        .await
}

/// Deletes events published more than `keep` ago, `batch` rows per
/// statement (each its own short transaction) until none is left; rows another
/// instance is deleting are skipped. Never touches a pending event. Returns
/// how many went.
pub async fn prune(db: &PgPool, keep: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    todo_core::database::delete_in_batches(batch, || async {
        sqlx::query!(
            "delete from outbox where id in ( \
                 select id from outbox \
                 where published_at < now() - make_interval(secs => $1) \
                 order by published_at limit $2 for update skip locked)",
            keep.as_secs_f64(),
            batch,
        )
        .execute(db)
        .await
        .map(|done| done.rows_affected())
    })
    .await
}
