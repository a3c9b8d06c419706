//! The update log in PostgreSQL (`update_log`, `log_horizon`): append inside
//! the consumer's transaction, replay after a cursor, prune by age.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::update::LogEntry;

/// Advisory lock key held while appending, so that seq order is commit order:
/// a live client told about seq n after its commit never later sees a smaller
/// seq commit (which the seam would then skip).
const APPEND_LOCK: i64 = 0x0077_736c_6f67; // "wslog"

/// The channel on which an append announces itself; PostgreSQL delivers the
/// notification when (and only if) the appending transaction commits.
pub const APPENDED_CHANNEL: &str = "update_log_appended";

/// Appends an update in the caller's transaction and returns its seq; `None`
/// when this event is already logged. Every replica listening on
/// [`APPENDED_CHANNEL`] hears of it once the transaction commits (one
/// notification per transaction: identical ones are folded).
pub async fn append(
    conn: &mut PgConnection,
    event_id: Uuid,
    user_id: &str,
    envelope: &Value,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query!("select pg_advisory_xact_lock($1)", APPEND_LOCK)
        .execute(&mut *conn)
        .await?;
    let seq = sqlx::query_scalar!(
        "insert into update_log (event_id, user_id, envelope) values ($1, $2, $3) \
         on conflict (event_id) do nothing returning seq",
        event_id,
        user_id,
        envelope,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if seq.is_some() {
        sqlx::query!("select pg_notify($1, '')", APPENDED_CHANNEL)
            .execute(conn)
            .await?;
    }
    Ok(seq)
}

/// Up to `limit` updates after `after`, oldest first; only `user`'s unless
/// `user` is None.
pub async fn replay(
    db: impl sqlx::PgExecutor<'_>,
    user: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<LogEntry>, sqlx::Error> {
    let rows = sqlx::query!(
        "select seq, user_id, envelope from update_log \
         where seq > $1 and ($2::text is null or user_id = $2) order by seq limit $3",
        after,
        user,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| LogEntry::new(r.seq, r.user_id, &r.envelope))
        .collect())
}

/// A page of the log read in one snapshot with the horizon and the end it
/// was read against: every update after `pruned_through` and up to `end`
/// that the page's filter admits is in it or after it, whatever pruning
/// commits meanwhile.
#[derive(Debug)]
pub struct Page {
    /// The highest seq pruned when the page was read.
    pub pruned_through: i64,
    /// The highest seq logged or pruned when the page was read.
    pub end: i64,
    /// Up to the asked number of updates after the cursor, oldest first.
    pub entries: Vec<LogEntry>,
}

/// Up to `limit` updates after `after` (only `user`'s unless None), with the
/// horizon and end of the log, all in one repeatable-read snapshot.
pub async fn replay_page(
    db: &PgPool,
    user: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Page, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let end = last_seq(&mut *tx).await?;
    let pruned_through = pruned_through(&mut *tx).await?;
    let entries = replay(&mut *tx, user, after, limit).await?;
    tx.commit().await?;
    Ok(Page {
        pruned_through,
        end,
        entries,
    })
}

/// The highest seq ever pruned (0 when nothing was).
pub async fn pruned_through(db: impl sqlx::PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!("select pruned_through from log_horizon")
        .fetch_one(db)
        .await
}

/// The end of the log: the highest seq logged or pruned.
pub async fn last_seq(db: impl sqlx::PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select greatest((select max(seq) from update_log), (select pruned_through from log_horizon), 0) as "seq!""#,
    )
    .fetch_one(db)
    .await
}

/// Most updates one pruning statement deletes: short transactions, few locks.
const PRUNE_BATCH: i64 = 2000;

/// Deletes updates received before `cutoff`, oldest first, at most
/// [`PRUNE_BATCH`] per statement; each statement moves the horizon up to the
/// highest seq it deleted in the same transaction, and skips (never waits
/// for) updates another replica's pruner holds. Returns how many updates
/// went. (The inbox is pruned by the shared consumer, on its own longer
/// retention, so a redelivery of a pruned update is still recognised and not
/// logged again.)
pub async fn prune(db: &PgPool, cutoff: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    todo_core::database::delete_in_batches(PRUNE_BATCH, || async {
        let deleted = sqlx::query_scalar!(
            r#"with gone as (
                   delete from update_log where seq in (
                       select seq from update_log where received_at < $1
                       order by received_at limit $2 for update skip locked)
                   returning seq),
               horizon as (
                   update log_horizon set pruned_through = greatest(pruned_through, (select max(seq) from gone)),
                          updated_at = now()
                   where exists (select 1 from gone))
               select count(*) as "deleted!" from gone"#,
            cutoff,
            PRUNE_BATCH,
        )
        .fetch_one(db)
        .await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    })
    .await
}
