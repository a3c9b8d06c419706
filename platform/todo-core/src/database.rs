//! The service's PostgreSQL pool, built from credentials read through the Dapr
//! secrets API (never from the environment): secret `<name>` in the configured store, key `url`;
//! and what every service's pruning shares: batched deletes
//! ([`delete_in_batches`]), a retention setting ([`Retention`]) and the loop
//! that prunes (or reconciles) on its own clock ([`run_periodically`]).

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::sidecar::Sidecar;

/// Reads the database URL from the secret store and opens a pool.
pub async fn connect(
    sidecar: &Sidecar,
    store: &str,
    secret: &str,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    let values = sidecar
        .secret(store, secret)
        .await
        .with_context(|| format!("reading secret `{secret}` from Dapr secret store `{store}`"))?;
    let url = values
        .get("url")
        .with_context(|| format!("secret `{secret}` has no key `url`"))?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url.expose_secret())
        .await
        .with_context(|| format!("connecting to the database named by secret `{secret}`"))
}

/// The readiness check of a pool: one round trip.
pub async fn ping(pool: PgPool) -> Result<(), String> {
    sqlx::query!("select 1 as one")
        .fetch_one(&pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Wake-ups from one `NOTIFY` channel, for a loop that reads what other
/// transactions (of any replica) committed: [`Wakeups::next`] returns at the
/// next notification, or after the fallback period, whichever comes first. A
/// listening connection that fails is opened again (and logged); meanwhile the
/// period alone wakes the loop, so a lost notification delays it by at most
/// that, never stalls it.
pub struct Wakeups {
    pool: PgPool,
    channel: &'static str,
    period: Duration,
    listener: Option<sqlx::postgres::PgListener>,
}

impl Wakeups {
    /// Starts listening at once: whatever commits after this returns is
    /// notified (unless listening failed, which is logged).
    pub async fn open(pool: PgPool, channel: &'static str, period: Duration) -> Wakeups {
        let mut w = Wakeups {
            pool,
            channel,
            period,
            listener: None,
        };
        w.listener = w.listen().await;
        w
    }

    async fn listen(&self) -> Option<sqlx::postgres::PgListener> {
        let attempt = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
            l.listen(self.channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match attempt.await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(channel = self.channel, error = %e, "cannot listen for notifications; polling meanwhile");
                None
            }
        }
    }

    /// Waits for the next notification or the period.
    pub async fn next(&mut self) {
        if self.listener.is_none() {
            self.listener = self.listen().await;
        }
        let period = self.period;
        let heard = async {
            match self.listener.as_mut() {
                // `Ok(None)`: the connection dropped; the next call opens it
                // again and the caller's read catches up.
                Some(l) => l.try_recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            heard = heard => if let Err(e) = heard {
                tracing::warn!(channel = self.channel, error = %e, "listening for notifications failed");
                self.listener = None;
            },
        }
    }
}

/// Runs `delete_batch` (one statement deleting at most `batch` rows; each its
/// own short transaction) until a run deletes fewer, and returns how many
/// rows went in all: pruning that never holds many locks for long.
pub async fn delete_in_batches<F, Fut>(batch: i64, mut delete_batch: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let deleted = delete_batch().await?;
        total += deleted;
        if deleted < u64::try_from(batch).unwrap_or(0) {
            return Ok(total);
        }
    }
}

/// How long finished rows of a service are kept, and how often they are
/// pruned (`<PREFIX>RETENTION_HOURS`, `<PREFIX>PRUNE_INTERVAL_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Rows finished longer ago than this go.
    pub keep: Duration,
    /// How often to prune (also once at start-up).
    pub every: Duration,
}

impl Retention {
    /// From whole hours (at least one) and seconds (at least one).
    pub fn new(keep_hours: u64, every_secs: u64) -> Self {
        Retention {
            keep: Duration::from_secs(keep_hours.max(1) * 3600),
            every: Duration::from_secs(every_secs.max(1)),
        }
    }
}

/// The default of `<PREFIX>RETENTION_HOURS`: 7 days.
pub fn default_retention_hours() -> u64 {
    7 * 24
}

/// The default of `<PREFIX>PRUNE_INTERVAL_SECS`: 10 minutes.
pub fn default_prune_interval_secs() -> u64 {
    600
}

/// Runs `run` (a pruning, a reconciliation) at once and then every `every`,
/// on its own clock whatever the load, until `stop` is cancelled; `run` logs
/// and counts what it did.
pub async fn run_periodically<F, Fut>(every: Duration, stop: CancellationToken, mut run: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = run() => {}
            () = stop.cancelled() => return,
        }
    }
}
