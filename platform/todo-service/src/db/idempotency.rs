//! Rows of `idempotency_key`: the first answer to a keyed request.

use std::time::Duration;

use sqlx::PgConnection;

/// A recorded answer.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub operation: String,
    pub request_hash: String,
    pub status_code: Option<i32>,
    pub response: Option<serde_json::Value>,
    pub outbox_ids: Vec<i64>,
}

/// Claims `(user, key)` for this request. `Ok(None)`: claimed, go ahead.
/// `Ok(Some(r))`: an earlier request with this key already committed `r`.
/// A concurrent request with the same key waits here until the first commits.
pub async fn claim(
    conn: &mut PgConnection,
    user_id: &str,
    key: &str,
    operation: &str,
    request_hash: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    let inserted = sqlx::query!(
        "insert into idempotency_key (user_id, key, operation, request_hash) values ($1, $2, $3, $4) \
         on conflict (user_id, key) do nothing",
        user_id,
        key,
        operation,
        request_hash,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    sqlx::query_as!(
        Recorded,
        "select operation, request_hash, status_code, response, outbox_ids from idempotency_key \
         where user_id = $1 and key = $2",
        user_id,
        key,
    )
    .fetch_optional(conn)
    .await
}

/// Records the answer for a claimed key, in the same transaction as the change.
pub async fn record(
    conn: &mut PgConnection,
    user_id: &str,
    key: &str,
    status_code: u16,
    response: &serde_json::Value,
    outbox_ids: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update idempotency_key set status_code = $3, response = $4, outbox_ids = $5 \
         where user_id = $1 and key = $2",
        user_id,
        key,
        i32::from(status_code),
        response,
        outbox_ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets keys created more than `keep` ago, `batch` rows per statement
/// (each its own short transaction) until none is left; rows another instance
/// is deleting, or a request is still answering, are skipped. Returns how many
/// went.
pub async fn prune(db: &sqlx::PgPool, keep: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    todo_core::database::delete_in_batches(batch, || async {
        sqlx::query!(
            "delete from idempotency_key where (user_id, key) in ( \
                 select user_id, key from idempotency_key \
                 where created_at < now() - make_interval(secs => $1) \
                 order by created_at limit $2 for update skip locked)",
            keep.as_secs_f64(),
            batch,
        )
        .execute(db)
        .await
        .map(|done| done.rows_affected())
    })
    .await
}
