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
//! claimed again when the lease ends.
//!
//! An action says why it failed ([`ActError`]): something it depends on was
//! away ([`ActError::Transient`]: retried for as long as it takes), or the
//! request itself was refused ([`ActError::Refused`]: a 4xx other than an
//! authentication or availability answer, an unreadable payload). A refused
//! intent is tried [`DispatcherSettings::refusals`] times (a part still
//! starting may refuse what it accepts a moment later), then *failed*: kept
//! with its reason and never claimed again, listed by [`failed`] for
//! operators and run again by [`retry`] or by a new decision of its key. A
//! poison intent therefore neither spins forever nor vanishes unseen.
//!
//! Every action must therefore be
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

pub mod api;

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

/// Why an action was not carried out this time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    /// Something it depends on is away or slow (sidecar, broker, database,
    /// credentials): retried with backoff for as long as it takes.
    #[error("{0}")]
    Transient(String),
    /// The request itself was refused, so trying again cannot help once the
    /// parts are up: failed after [`DispatcherSettings::refusals`] tries.
    #[error("refused: {0}")]
    Refused(String),
}

impl ActError {
    /// A payload the action cannot read: refused.
    pub fn unreadable(e: impl std::fmt::Display) -> Self {
        ActError::Refused(format!("unreadable payload: {e}"))
    }
}

/// Whether an HTTP answer refuses the request itself: a 4xx other than
/// 401/403 (credentials, which a rotation fixes), 408, 425 and 429 (load).
pub fn refuses(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 425 | 429)
}

/// Whether a gRPC status refuses the request itself (the HTTP 4xx codes of
/// the gRPC mapping other than credentials and load).
pub fn refuses_grpc(code: tonic::Code) -> bool {
    use tonic::Code as C;
    matches!(
        code,
        C::InvalidArgument | C::AlreadyExists | C::OutOfRange | C::Unimplemented
    )
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
         generation = intent.generation + 1, attempts = 0, refusals = 0, failed_at = null, \
         not_before = now(), last_error = null, updated_at = now()",
        key,
        kind,
        payload,
        task_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How many intents are waiting, failed ones included (metrics, tests).
pub async fn pending(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"select count(*) as "n!" from intent"#)
        .fetch_one(db)
        .await
}

/// An intent given up on after its request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedIntent {
    pub key: String,
    pub kind: String,
    pub task_id: Option<Uuid>,
    pub payload: Value,
    /// Attempts started since it was last decided or retried.
    pub attempts: i32,
    /// Why the last attempt was refused.
    pub reason: String,
    pub failed_at: chrono::DateTime<chrono::Utc>,
}

/// Failed intents, newest first, `limit` from `offset`, and how many there are.
pub async fn failed(
    db: &PgPool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<FailedIntent>, i64), sqlx::Error> {
    let items = sqlx::query_as!(
        FailedIntent,
        r#"select key, kind, task_id, payload, attempts, coalesce(last_error, '') as "reason!",
           failed_at as "failed_at!" from intent where failed_at is not null
           order by failed_at desc, key limit $1 offset $2"#,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    let total =
        sqlx::query_scalar!(r#"select count(*) as "n!" from intent where failed_at is not null"#)
            .fetch_one(db)
            .await?;
    Ok((items, total))
}

/// Runs a failed intent again at once, with its refusals forgotten; whether
/// `key` named a failed intent (one that is not failed is left as it is).
pub async fn retry(db: &PgPool, key: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "update intent set failed_at = null, refusals = 0, attempts = 0, not_before = now(), \
         updated_at = now() where key = $1 and failed_at is not null",
        key,
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Claims up to `limit` due intents for `lease`, each under a fresh token.
async fn claim(db: &PgPool, limit: i64, lease: Duration) -> Result<Vec<Intent>, sqlx::Error> {
    sqlx::query_as!(
        Intent,
        r#"update intent set claimed_until = now() + $2::int8 * interval '1 millisecond',
           claim = gen_random_uuid(), attempts = attempts + 1, updated_at = now()
           where key in (select key from intent where failed_at is null and not_before <= now()
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

/// Not done: the row is freed, if this claim still holds it, and tried again
/// after `delay` (at once if it was decided anew meanwhile). A refusal of
/// the decision this claim holds is counted; the `give_up_after`th fails the
/// row instead. Whether it failed.
async fn postpone(
    db: &PgPool,
    intent: &Intent,
    delay: Duration,
    error: &ActError,
    give_up_after: i32,
) -> Result<bool, sqlx::Error> {
    let refused = matches!(error, ActError::Refused(_));
    let failed = sqlx::query_scalar!(
        r#"update intent set claimed_until = null, claim = null, last_error = $4, updated_at = now(),
           refusals = case when generation = $3 and $6 then refusals + 1 else refusals end,
           failed_at = case when generation = $3 and $6 and refusals + 1 >= $7 then now() end,
           not_before = case when generation = $3 then now() + $5::int8 * interval '1 millisecond' else now() end
           where key = $1 and claim = $2
           returning failed_at is not null as "failed!""#,
        intent.key,
        intent.claim,
        intent.generation,
        error.to_string(),
        millis(delay),
        refused,
        give_up_after,
    )
    .fetch_optional(db)
    .await?;
    Ok(failed.unwrap_or(false))
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
    /// Refusals of one decision after which it is failed (see [`ActError`]).
    pub refusals: i32,
}

impl DispatcherSettings {
    /// Settings for actions bounded by `call_timeout`.
    pub fn for_calls(call_timeout: Duration) -> Self {
        DispatcherSettings {
            lease: call_timeout * 3 + Duration::from_secs(5),
            concurrency: 64,
            poll: Duration::from_millis(500),
            refusals: 8,
        }
    }
}

/// Carries out the intents of one database until cancelled: claims due rows,
/// runs `act` on each in its own task (at most `settings.concurrency` at
/// once) with no transaction open, then deletes the row or postpones it.
/// `act`'s error is logged here, with the key, and the intent retried, or
/// failed after `settings.refusals` refusals (see [`ActError`]). The
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
    F: Future<Output = Result<(), ActError>> + Send + 'static,
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
            let (db, act, lease, refusals) =
                (db.clone(), act.clone(), settings.lease, settings.refusals);
            let span = tracing::info_span!("intent", task_id = tracing::field::Empty, key = %intent.key, kind = %intent.kind);
            if let Some(task_id) = intent.task_id {
                span.record("task_id", tracing::field::display(task_id));
            }
            tokio::spawn(
                async move {
                    carry_out(&db, intent, act.as_ref(), lease, refusals).await;
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
async fn carry_out<A, F>(db: &PgPool, intent: Intent, act: &A, lease: Duration, refusals: i32)
where
    A: Fn(Intent) -> F,
    F: Future<Output = Result<(), ActError>>,
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
            match postpone(db, &intent, delay, &error, refusals).await {
                Ok(true) => {
                    tracing::error!(key = %intent.key, kind = %intent.kind, attempts = intent.attempts, error = %error,
                        "intent refused too often; failed, kept for operators");
                    metrics::counter!("intents_total", "kind" => kind, "outcome" => "failed")
                        .increment(1);
                    Ok(())
                }
                stored => {
                    tracing::warn!(key = %intent.key, kind = %intent.kind, attempts = intent.attempts, error = %error,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "intent not carried out yet; retrying");
                    metrics::counter!("intents_total", "kind" => kind, "outcome" => "retry")
                        .increment(1);
                    stored.map(|_| ())
                }
            }
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
    fn only_refusals_of_the_request_itself_count_as_refused() {
        for status in [400, 404, 405, 409, 413, 415, 422] {
            assert!(refuses(status), "{status}");
        }
        for status in [200, 204, 401, 403, 408, 425, 429, 500, 502, 503, 504] {
            assert!(!refuses(status), "{status}");
        }
        assert!(refuses_grpc(tonic::Code::InvalidArgument));
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Unauthenticated,
            tonic::Code::PermissionDenied,
            tonic::Code::Internal,
            tonic::Code::ResourceExhausted,
        ] {
            assert!(!refuses_grpc(code), "{code:?}");
        }
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
