//! Remote calls decided in a transaction and made after it commits: an
//! *intent* is a row of the service's `intent` table, written in the
//! transaction that decided it ([`record`]); a dispatcher ([`dispatch`], one
//! per replica, any number of them) carries it out afterwards through the
//! sidecar and deletes it. No remote call is ever made while a row lock or a
//! consumer batch is held.
//!
//! Rows are keyed by what they bring about (a job name, a workflow instance
//! id, an event id), so deciding the same thing again merges into one row and
//! bumps its `generation`. A dispatcher claims due rows in a short
//! transaction (`for update skip locked`) for a lease (`claimed_until`) under
//! a claim token of its own (`claim`, a fresh random uuid per claim), makes
//! the call with no transaction open while a renewal task beside it extends
//! the lease, then deletes the row only if it still holds that claim and the
//! generation is the one it claimed (a row decided anew meanwhile runs
//! again). Every write after the claim names the token, so a dispatcher whose
//! lease ran out (paused, cut off from the database) can neither delete nor
//! postpone a row another dispatcher claimed since, nor a row inserted anew
//! under the same key after a delete (whose generation starts again at 1);
//! and when its renewal finds the claim gone, its call is dropped and nothing
//! of it is recorded. A failed call is retried with exponential backoff
//! (attempts counted in the row); a dispatcher that dies leaves its rows to be
//! claimed again when the lease ends. Every action must therefore be
//! idempotent: a workflow start with a derived instance id, a job scheduled
//! by name with overwrite, a publish with a derived event id.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// One intent as a dispatcher claimed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    /// What it brings about, e.g. `reminder-<task id>` or `recurrence-<task id>`.
    pub key: String,
    /// Which action carries it out (the service's own names).
    pub kind: String,
    /// The task it is about, if any (every log line about it carries it).
    pub task_id: Option<Uuid>,
    pub payload: Value,
    pub generation: i64,
    /// Attempts started, this one included.
    pub attempts: i32,
    /// The token of this claim: only its holder may renew, finish or
    /// postpone the row.
    pub claim: Uuid,
}

/// Records (or renews) the intent `key` of `kind` in the caller's
/// transaction; it is carried out after that transaction commits (wake the
/// dispatcher then, see [`Waker`]).
pub async fn record(
    conn: &mut PgConnection,
    key: &str,
    kind: &str,
    task_id: Option<Uuid>,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    // A row decided anew keeps its lease: a dispatcher that is carrying out
    // the older decision finishes first, then sees the new generation and
    // frees the row for the next round (so two calls for one key never race).
    sqlx::query!(
        "insert into intent (key, kind, payload, task_id) values ($1, $2, $3, $4) \
         on conflict (key) do update set kind = excluded.kind, payload = excluded.payload, \
         generation = intent.generation + 1, attempts = 0, not_before = now(), last_error = null, \
         updated_at = now()",
        key,
        kind,
        payload,
        task_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How many intents are waiting (metrics, tests).
pub async fn pending(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"select count(*) as "n!" from intent"#)
        .fetch_one(db)
        .await
}

/// Claims up to `limit` due intents for `lease`, each under a fresh token.
async fn claim(db: &PgPool, limit: i64, lease: Duration) -> Result<Vec<Intent>, sqlx::Error> {
    sqlx::query_as!(
        Intent,
        r#"update intent set claimed_until = now() + $2::int8 * interval '1 millisecond',
           claim = gen_random_uuid(), attempts = attempts + 1, updated_at = now()
           where key in (select key from intent where not_before <= now()
                         and (claimed_until is null or claimed_until < now())
                         order by not_before limit $1 for update skip locked)
           returning key, kind, task_id, payload, generation, attempts, claim as "claim!""#,
        limit,
        millis(lease),
    )
    .fetch_all(db)
    .await
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Extends the lease of a claim still held; whether it is (false: another
/// dispatcher claimed the row since, or it is gone).
async fn renew(db: &PgPool, intent: &Intent, lease: Duration) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "update intent set claimed_until = now() + $3::int8 * interval '1 millisecond' \
         where key = $1 and claim = $2",
        intent.key,
        intent.claim,
        millis(lease),
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Done: the row goes if this claim still holds it, unless it was decided
/// anew meanwhile (then it is freed to run again at once).
async fn finish(db: &PgPool, intent: &Intent) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let deleted = sqlx::query!(
        "delete from intent where key = $1 and claim = $2 and generation = $3",
        intent.key,
        intent.claim,
        intent.generation,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if deleted == 0 {
        sqlx::query!(
            "update intent set claimed_until = null, claim = null where key = $1 and claim = $2",
            intent.key,
            intent.claim,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Failed: the row is freed, if this claim still holds it, and tried again
/// after `delay` (at once if it was decided anew meanwhile).
async fn postpone(
    db: &PgPool,
    intent: &Intent,
    delay: Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update intent set claimed_until = null, claim = null, last_error = $4, updated_at = now(), \
         not_before = case when generation = $3 then now() + $5::int8 * interval '1 millisecond' else now() end \
         where key = $1 and claim = $2",
        intent.key,
        intent.claim,
        intent.generation,
        error,
        millis(delay),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The delay before attempt `attempts + 1` after `attempts` failed ones:
/// 200 ms doubling to at most 30 s, with jitter.
pub fn retry_delay(attempts: i32) -> Duration {
    let n = usize::try_from(attempts.max(1) - 1).unwrap_or(0);
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(n)
        .unwrap_or(Duration::from_secs(30))
}

/// Wakes the dispatcher of this process right after a commit that recorded
/// intents; clone freely.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// How a dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// How long a claim keeps other dispatchers off a row without being
    /// renewed; the holder renews it every third of it while its call runs,
    /// so it only needs to outlast a renewal that is late (a slow database).
    pub lease: Duration,
    /// Actions under way at once; a slow one never holds up the others.
    pub concurrency: usize,
    /// How often to look for due rows without being woken (retries, rows of
    /// other replicas whose lease ended).
    pub poll: Duration,
}

impl DispatcherSettings {
    /// Settings for actions bounded by `call_timeout`.
    pub fn for_calls(call_timeout: Duration) -> Self {
        DispatcherSettings {
            lease: call_timeout * 3 + Duration::from_secs(5),
            concurrency: 64,
            poll: Duration::from_millis(500),
        }
    }
}

/// Carries out the intents of one database until cancelled: claims due rows,
/// runs `act` on each in its own task (at most `settings.concurrency` at
/// once) with no transaction open, then deletes the row or postpones it.
/// `act`'s error is logged here, with the key, and the intent retried. The
/// lease of each claimed row is renewed while its `act` runs; if the row was
/// claimed by another dispatcher meanwhile, `act` is dropped and its outcome
/// not recorded.
pub async fn dispatch<A, F>(
    db: PgPool,
    waker: Waker,
    settings: DispatcherSettings,
    act: A,
    shutdown: CancellationToken,
) where
    A: Fn(Intent) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let act = Arc::new(act);
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    loop {
        let free = permits.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            claim(&db, free as i64, settings.lease)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "claiming intents failed; trying again");
                    Vec::new()
                })
        };
        let more = free > 0 && claimed.len() == free;
        for intent in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (db, act, lease) = (db.clone(), act.clone(), settings.lease);
            let span = tracing::info_span!("intent", task_id = tracing::field::Empty, key = %intent.key, kind = %intent.kind);
            if let Some(task_id) = intent.task_id {
                span.record("task_id", tracing::field::display(task_id));
            }
            tokio::spawn(
                async move {
                    carry_out(&db, intent, act.as_ref(), lease).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        if more {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = waker.0.notified() => {}
            () = tokio::time::sleep(settings.poll) => {}
        }
    }
}

/// Runs `act` on a claimed intent while keeping its lease, then records the
/// outcome; records nothing if the claim was lost meanwhile.
async fn carry_out<A, F>(db: &PgPool, intent: Intent, act: &A, lease: Duration)
where
    A: Fn(Intent) -> F,
    F: Future<Output = Result<(), String>>,
{
    let kind = intent.kind.clone();
    let outcome = tokio::select! {
        outcome = act(intent.clone()) => outcome,
        () = lease_lost(db, &intent, lease) => {
            // Another dispatcher claimed it: its call replaces this one, which
            // is dropped unfinished, and only its outcome is recorded.
            tracing::warn!(key = %intent.key, kind = %intent.kind, "lease on an intent lost while carrying it out; left to its new holder");
            metrics::counter!("intents_total", "kind" => kind, "outcome" => "lease_lost").increment(1);
            return;
        }
    };
    let stored = match outcome {
        Ok(()) => {
            metrics::counter!("intents_total", "kind" => kind, "outcome" => "done").increment(1);
            finish(db, &intent).await
        }
        Err(error) => {
            let delay = retry_delay(intent.attempts);
            tracing::warn!(key = %intent.key, kind = %intent.kind, attempts = intent.attempts, error = %error,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "intent not carried out yet; retrying");
            metrics::counter!("intents_total", "kind" => kind, "outcome" => "retry").increment(1);
            postpone(db, &intent, delay, &error).await
        }
    };
    if let Err(e) = stored {
        // The lease ends and another round does it again (idempotent).
        tracing::warn!(key = %intent.key, error = %e, "recording an intent's outcome failed");
    }
}

/// How often a holder renews its lease: a third of it (at least every 10 ms).
pub fn renewal_period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// Renews the lease of `intent` every [`renewal_period`]; returns once the
/// claim is found gone. A renewal that fails (the database away) is tried
/// again at the next period: the claim stays this dispatcher's until another
/// one takes it, which the next successful renewal tells.
async fn lease_lost(db: &PgPool, intent: &Intent, lease: Duration) {
    let mut ticker = tokio::time::interval(renewal_period(lease));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match renew(db, intent, lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(key = %intent.key, error = %e, "renewing an intent's lease failed; trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_at_most_thirty_seconds() {
        assert!(retry_delay(1) <= Duration::from_millis(400));
        assert!(retry_delay(1) >= Duration::from_millis(200));
        assert!(retry_delay(5) >= Duration::from_millis(3200));
        assert!(retry_delay(40) <= Duration::from_secs(60));
        assert!(retry_delay(40) >= Duration::from_secs(30));
    }

    #[test]
    fn a_lease_is_renewed_three_times_per_length() {
        assert_eq!(
            renewal_period(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(renewal_period(Duration::ZERO), Duration::from_millis(10));
    }
}
