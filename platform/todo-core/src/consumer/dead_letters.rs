//! Dead letters: the events a consumer can never apply, kept in its
//! service's `dead_letter` table with the reason, the consumer and the
//! deliveries that failed (see the [`super`] module for when an event becomes
//! one). Operators list them and redrive one or all ([`api`]) once the cause
//! is fixed: a redrive applies the stored event through the same inbox and
//! handler as a delivery, in one transaction with the row's update, so an
//! event is applied at most once however often it is redriven.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use todo_contract::Topic;
use uuid::Uuid;

use super::{Applier, Delivery, EventHandler, HandleError, Incoming, Outcome};

pub mod announce;
pub mod api;

/// A dead letter as the consumer records it.
pub(super) struct Letter<'a> {
    pub topic: &'static str,
    pub event_key: String,
    pub task_id: Option<Uuid>,
    pub consumer: &'static str,
    pub reason: &'a str,
    pub cloud_event: &'a Value,
}

/// Records a dead letter in the caller's transaction; a later failure of the
/// same event (a redelivery, a redrive that failed again) counts one more
/// attempt on the same row. Returns the attempts so far.
pub(super) async fn record(
    conn: &mut PgConnection,
    letter: &Letter<'_>,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar!(
        "insert into dead_letter (topic, event_key, task_id, consumer, reason, cloud_event) \
         values ($1, $2, $3, $4, $5, $6) \
         on conflict (topic, event_key) do update set attempts = dead_letter.attempts + 1, \
         reason = excluded.reason, consumer = excluded.consumer, failed_at = now(), \
         redriven_at = null, published_at = null, publishing_until = null \
         returning attempts",
        letter.topic,
        letter.event_key,
        letter.task_id,
        letter.consumer,
        letter.reason,
        letter.cloud_event,
    )
    .fetch_one(conn)
    .await
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    pub event_key: String,
    pub task_id: Option<Uuid>,
    pub consumer: String,
    pub reason: String,
    pub attempts: i32,
    pub cloud_event: Value,
    pub first_failed_at: chrono::DateTime<chrono::Utc>,
    pub failed_at: chrono::DateTime<chrono::Utc>,
    pub redriven_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Which dead letters a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Not redriven yet.
    Open,
    /// Applied by a redrive.
    Redriven,
    All,
}

/// Dead letters newest failure first, `limit` from `offset`, of one topic or
/// all; and how many match.
pub async fn list(
    db: &PgPool,
    which: Which,
    topic: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<DeadLetter>, i64), sqlx::Error> {
    let (open, redriven) = match which {
        Which::Open => (true, false),
        Which::Redriven => (false, true),
        Which::All => (true, true),
    };
    let items = sqlx::query_as!(
        DeadLetter,
        "select id, topic, event_key, task_id, consumer, reason, attempts, cloud_event, \
         first_failed_at, failed_at, redriven_at from dead_letter \
         where ((redriven_at is null and $1) or (redriven_at is not null and $2)) \
         and ($3::text is null or topic = $3) \
         order by failed_at desc, id desc limit $4 offset $5",
        open,
        redriven,
        topic,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"select count(*) as "n!" from dead_letter
           where ((redriven_at is null and $1) or (redriven_at is not null and $2))
           and ($3::text is null or topic = $3)"#,
        open,
        redriven,
        topic,
    )
    .fetch_one(db)
    .await?;
    Ok((items, total))
}

/// Deletes dead letters redriven more than `keep` ago, `batch` rows per
/// statement; open ones stay until an operator deals with them.
pub(super) async fn prune(db: &PgPool, keep: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    crate::database::delete_in_batches(batch, || async {
        sqlx::query!(
            "delete from dead_letter where id in ( \
                 select id from dead_letter \
                 where redriven_at < now() - make_interval(secs => $1) \
                 order by redriven_at limit $2 for update skip locked)",
            keep.as_secs_f64(),
            batch,
        )
        .execute(db)
        .await
        .map(|done| done.rows_affected())
    })
    .await
}

/// How a redrive ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redriven {
    /// The handler applied the event now.
    Applied,
    /// The inbox had it already (a redelivery got through meanwhile).
    AlreadyApplied,
    /// An earlier redrive applied it; nothing was done.
    AlreadyRedriven,
}

/// Why a redrive did not apply its event.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("no dead letter {0}")]
    NotFound(i64),
    /// The event failed again; the row counts one more attempt.
    #[error("still failing: {0}")]
    StillFailing(String),
    /// Something it needs is down; nothing changed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for RedriveError {
    fn from(e: sqlx::Error) -> Self {
        RedriveError::Unavailable(format!("database: {e}"))
    }
}

type Redriving<'a> = Pin<Box<dyn Future<Output = Result<Redriven, RedriveError>> + Send + 'a>>;

/// A consumer's redrive, whatever its handler type.
trait Redrive: Send + Sync {
    fn redrive<'a>(&'a self, db: &'a PgPool, id: i64) -> Redriving<'a>;
}

impl<H: EventHandler> Redrive for Applier<H> {
    fn redrive<'a>(&'a self, db: &'a PgPool, id: i64) -> Redriving<'a> {
        Box::pin(redrive(self, db, id))
    }
}

/// Applies dead letter `id` through the consumer's inbox and handler, in
/// one transaction with marking it redriven (or counting a failed attempt).
async fn redrive<H: EventHandler>(
    applier: &Applier<H>,
    db: &PgPool,
    id: i64,
) -> Result<Redriven, RedriveError> {
    let mut tx = db.begin().await?;
    let row = sqlx::query!(
        "select topic, event_key, cloud_event, redriven_at from dead_letter where id = $1 for update",
        id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(RedriveError::NotFound(id))?;
    if row.redriven_at.is_some() {
        return Ok(Redriven::AlreadyRedriven);
    }
    let topic = Topic::from_name(&row.topic).ok_or_else(|| {
        RedriveError::StillFailing(format!("{} is not a topic of this platform", row.topic))
    })?;
    let delivery = Delivery::redriven(row.cloud_event, row.event_key);
    let outcome = applier
        .apply_one(&mut tx, topic, &delivery)
        .await
        .map_err(|e| match e {
            HandleError::Transient(m) | HandleError::Permanent(m) => RedriveError::Unavailable(m),
        })?;
    let redriven = match outcome {
        Outcome::Applied => Redriven::Applied,
        Outcome::Duplicate => Redriven::AlreadyApplied,
        Outcome::DeadLettered(reason) => {
            tx.commit().await?;
            return Err(RedriveError::StillFailing(reason));
        }
    };
    sqlx::query!(
        "update dead_letter set redriven_at = now() where id = $1",
        id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if let (Redriven::Applied, Incoming::Known(event)) = (redriven, &delivery.incoming) {
        applier.handler.after_commit(topic, &[event]);
    }
    metrics::counter!("dead_letters_redriven_total", "topic" => topic.name()).increment(1);
    tracing::info!(app = applier.app_id, dead_letter = id, task_id = ?delivery.task_id(), ?redriven, "dead letter redriven");
    Ok(redriven)
}

/// A consumer's dead letters, for operators (app data of [`api::DeadLettersApi`]).
#[derive(Clone)]
pub struct DeadLetters {
    pool: PgPool,
    redrive: Arc<dyn Redrive>,
}

/// What redriving every open dead letter did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedriveAll {
    pub applied: u64,
    pub already_applied: u64,
    pub still_failing: u64,
}

/// Most dead letters one "redrive all" takes (oldest first); call again for
/// more.
pub const REDRIVE_ALL_BATCH: i64 = 1000;

impl DeadLetters {
    pub(super) fn new<H: EventHandler>(pool: PgPool, applier: Arc<Applier<H>>) -> Self {
        DeadLetters {
            pool,
            redrive: applier,
        }
    }

    /// See [`list`].
    pub async fn list(
        &self,
        which: Which,
        topic: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DeadLetter>, i64), sqlx::Error> {
        list(&self.pool, which, topic, limit, offset).await
    }

    /// Redrives one dead letter.
    pub async fn redrive(&self, id: i64) -> Result<Redriven, RedriveError> {
        self.redrive.redrive(&self.pool, id).await
    }

    /// Redrives the open dead letters (of `topic`, or all), oldest failure
    /// first, at most [`REDRIVE_ALL_BATCH`]; stops at the first unavailable
    /// dependency.
    pub async fn redrive_all(&self, topic: Option<&str>) -> Result<RedriveAll, RedriveError> {
        let ids = sqlx::query_scalar!(
            "select id from dead_letter where redriven_at is null \
             and ($1::text is null or topic = $1) order by id limit $2",
            topic,
            REDRIVE_ALL_BATCH,
        )
        .fetch_all(&self.pool)
        .await?;
        let mut done = RedriveAll::default();
        for id in ids {
            match self.redrive(id).await {
                Ok(Redriven::Applied) => done.applied += 1,
                Ok(Redriven::AlreadyApplied) => done.already_applied += 1,
                // Redriven or deleted by someone else meanwhile.
                Ok(Redriven::AlreadyRedriven) | Err(RedriveError::NotFound(_)) => {}
                Err(RedriveError::StillFailing(_)) => done.still_failing += 1,
                Err(e @ RedriveError::Unavailable(_)) => return Err(e),
            }
        }
        Ok(done)
    }
}
