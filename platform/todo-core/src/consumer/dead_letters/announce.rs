//! Announcing dead letters on their topics' dead-letter topics
//! (`<topic>-dlq`, see [`todo_contract::dead_letter`]), after the
//! transaction that kept them, so no broker call is made inside it.
//!
//! A replica claims a batch of unannounced dead letters for [`CLAIM`]
//! (`publishing_until`), publishes them through its sidecar and marks them
//! announced if their attempt count is still the one published; a claim of
//! a replica that died runs out and another announces them. So each failed
//! attempt is announced at least once, and a repeat has the same CloudEvent
//! id. Publishing failures (the broker or the sidecar down) are logged and
//! tried again at the next run.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use sqlx::PgPool;
use todo_contract::{Timestamp, Topic, dead_letter::DeadLetterNotice};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::sidecar::{OutgoingEvent, Sidecar};

/// How long a replica holds the dead letters it is announcing.
const CLAIM: Duration = Duration::from_secs(30);
/// Most dead letters one run announces.
const BATCH: i64 = 100;
/// How often unannounced dead letters are looked for when nothing wakes the
/// announcer (a failed attempt of a redrive, an announcement that failed).
const EVERY: Duration = Duration::from_secs(2);

/// Announces dead letters at once, whenever `wake` is notified and every
/// [`EVERY`], until `stop` is cancelled.
pub(in crate::consumer) async fn announce_periodically(
    app_id: &'static str,
    pool: PgPool,
    sidecar: Sidecar,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = wake.notified() => {}
            () = stop.cancelled() => return,
        }
        let announced = tokio::select! {
            announced = announce(&pool, &sidecar) => announced,
            () = stop.cancelled() => return,
        };
        match announced {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                app = app_id,
                dead_letters = n,
                "dead letters announced on their dead-letter topics"
            ),
            Err(e) => {
                tracing::warn!(app = app_id, error = %e, "announcing dead letters failed; trying again")
            }
        }
    }
}

/// Why a run announced nothing.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Sidecar(#[from] crate::sidecar::SidecarError),
}

/// One run: claims up to [`BATCH`] unannounced dead letters, publishes them
/// to their dead-letter topics and marks those the broker took. Returns how
/// many were announced.
pub async fn announce(pool: &PgPool, sidecar: &Sidecar) -> Result<u64, AnnounceError> {
    let claimed = sqlx::query!(
        "update dead_letter set publishing_until = now() + make_interval(secs => $1) \
         where id in ( \
             select id from dead_letter where published_at is null \
             and (publishing_until is null or publishing_until < now()) \
             order by id limit $2 for update skip locked) \
         returning id, topic, event_key, task_id, consumer, reason, attempts, cloud_event, \
         first_failed_at, failed_at",
        CLAIM.as_secs_f64(),
        BATCH,
    )
    .fetch_all(pool)
    .await?;
    let mut by_topic: BTreeMap<&'static str, Vec<(i32, DeadLetterNotice)>> = BTreeMap::new();
    for row in claimed {
        let Some(topic) = Topic::from_name(&row.topic) else {
            // Only this platform's topics are ever consumed; nothing to
            // announce it on.
            continue;
        };
        let notice = DeadLetterNotice {
            dead_letter_id: row.id,
            topic,
            consumer: row.consumer,
            reason: row.reason,
            attempts: row.attempts,
            event_key: row.event_key,
            task_id: row.task_id,
            first_failed_at: Timestamp::new(row.first_failed_at),
            failed_at: Timestamp::new(row.failed_at),
            event: row.cloud_event,
        };
        by_topic
            .entry(topic.dead_letter_topic())
            .or_default()
            .push((row.attempts, notice));
    }
    let mut announced = 0;
    for (topic, notices) in by_topic {
        let events: Vec<OutgoingEvent> = notices
            .iter()
            .map(|(_, n)| OutgoingEvent {
                entry_id: n.dead_letter_id.to_string(),
                partition_key: n.partition_key(),
                cloud_event: n.to_cloud_event().to_string().into_bytes(),
            })
            .collect();
        let failed = sidecar.bulk_publish_to(topic, &events).await?;
        let (ids, attempts): (Vec<i64>, Vec<i32>) = notices
            .iter()
            .filter(|(_, n)| {
                !failed
                    .iter()
                    .any(|(id, _)| *id == n.dead_letter_id.to_string())
            })
            .map(|(attempts, n)| (n.dead_letter_id, *attempts))
            .unzip();
        for (id, error) in &failed {
            tracing::warn!(dead_letter = %id, topic, error = %error, "dead letter not announced; trying again");
        }
        sqlx::query!(
            "update dead_letter set published_at = now(), publishing_until = null \
             from unnest($1::bigint[], $2::int[]) as p(id, attempts) \
             where dead_letter.id = p.id and dead_letter.attempts = p.attempts",
            &ids,
            &attempts,
        )
        .execute(pool)
        .await?;
        metrics::counter!("dead_letters_announced_total", "topic" => topic)
            .increment(ids.len() as u64);
        announced += ids.len() as u64;
    }
    Ok(announced)
}
