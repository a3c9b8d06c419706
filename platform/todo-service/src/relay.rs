//! The outbox relay: the only publisher of the todo service's events.
//!
//! It publishes unpublished outbox rows in id order through the Dapr sidecar
//! (one bulk call per topic per batch), stamps them published, and wakes the
//! requests waiting for them. A batch holds the oldest pending event of each
//! (topic, task) and no other of that task, so a partial failure can never
//! reorder one task's events, and a task with many queued events costs the
//! others nothing: their events go out in the next batch. While publishing
//! fails (sidecar or Kafka down) it retries with exponential backoff and reports
//! the failure through [`Relay::unavailable`], which makes new writes answer 503
//! at once instead of piling up unconfirmed changes.
//!
//! [`prune_periodically`] runs beside it, on its own clock, so published events
//! and expired idempotency keys are deleted under constant load too, not only
//! when the relay has nothing to publish.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::PgPool;
use todo_contract::Topic;
use todo_core::database::Wakeups;
use todo_core::sidecar::{OutgoingEvent, Sidecar};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Pruning,
    db::{
        idempotency,
        outbox::{self, PendingEvent},
    },
};

/// Most events taken per batch.
const BATCH: i64 = 256;
/// How often an idle relay looks for rows committed by another instance.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// A publish call unconfirmed this long makes new writes fail fast.
const SLOW_CALL: Duration = Duration::from_secs(2);
/// How often waiters are checked against the database without a
/// notification (one missed while the listening connection was down).
const OTHERS_POLL: Duration = Duration::from_secs(1);
/// Most rows one pruning statement deletes: short transactions, few locks.
const PRUNE_BATCH: i64 = 5000;

#[derive(Default)]
struct State {
    /// Per outbox id, every request waiting for it (by waiter number): an
    /// idempotent retry waits beside the original, never instead of it.
    waiters: HashMap<i64, Vec<(u64, oneshot::Sender<()>)>>,
    next_waiter: u64,
    failing: Option<String>,
}

struct Inner {
    pool: PgPool,
    sidecar: Sidecar,
    wake: Notify,
    state: Mutex<State>,
}

/// Handle on the relay; cheap to clone.
#[derive(Clone)]
pub struct Relay(Arc<Inner>);

/// Events a request waits for. Dropping it forgets this request's wait (and
/// only its own).
pub struct Pending {
    relay: Relay,
    waiter: u64,
    ids: Vec<i64>,
    receivers: Vec<oneshot::Receiver<()>>,
}

impl Relay {
    /// A relay publishing through `sidecar`. Call [`Relay::run`] to start it.
    pub fn new(pool: PgPool, sidecar: Sidecar) -> Self {
        Relay(Arc::new(Inner {
            pool,
            sidecar,
            wake: Notify::new(),
            state: Mutex::new(State::default()),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why publishing currently fails, if it does.
    pub fn unavailable(&self) -> Option<String> {
        self.state().failing.clone()
    }

    /// Registers interest in outbox rows before their transaction commits, so
    /// a fast relay cannot publish them unnoticed.
    pub fn watch(&self, ids: Vec<i64>) -> Pending {
        let mut state = self.state();
        let waiter = state.next_waiter;
        state.next_waiter += 1;
        let receivers = ids
            .iter()
            .map(|id| {
                let (tx, rx) = oneshot::channel();
                state.waiters.entry(*id).or_default().push((waiter, tx));
                rx
            })
            .collect();
        drop(state);
        Pending {
            relay: self.clone(),
            waiter,
            ids,
            receivers,
        }
    }

    /// Tells the relay there is work (after a commit).
    pub fn wake(&self) {
        self.0.wake.notify_one();
    }

    /// Resolves waiters whose events another replica's relay published:
    /// woken by that relay's notification, and every [`OTHERS_POLL`] in case
    /// one was missed (the listening connection dropped, say). Until `stop`.
    async fn follow_others(self, stop: CancellationToken) {
        let mut wakeups =
            Wakeups::open(self.0.pool.clone(), outbox::PUBLISHED_CHANNEL, OTHERS_POLL).await;
        loop {
            let waited: Vec<i64> = self.state().waiters.keys().copied().collect();
            if !waited.is_empty() {
                match outbox::published_among(&self.0.pool, &waited).await {
                    Ok(done) => self.resolve(&done),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot check for events published elsewhere")
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                () = wakeups.next() => {}
            }
        }
    }

    /// Publishes until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let others = tokio::spawn(self.clone().follow_others(stop.clone()));
        self.clone().publish_until(stop).await;
        self.flush().await;
        others.abort();
    }

    /// The last publishing after the stop (the server has drained): what the
    /// last requests saved goes out now rather than at the next start. Each
    /// call is bounded by the sidecar timeout and none is abandoned; the
    /// first failure leaves the rest in the outbox for another replica or
    /// the next start.
    async fn flush(&self) {
        let mut published = 0;
        loop {
            match self.publish_batch_watched().await {
                Ok(0) => break,
                Ok(n) => published += n,
                Err(reason) => {
                    tracing::warn!(
                        error = %reason,
                        published,
                        "the last flush before stopping failed; the rest stays in the outbox"
                    );
                    return;
                }
            }
        }
        tracing::info!(published, "relay stopped after its last flush");
    }

    async fn publish_until(self, stop: CancellationToken) {
        let mut backoff = new_backoff();
        loop {
            match self.publish_batch_watched().await {
                Ok(0) => {
                    self.set_failing(None);
                    backoff = new_backoff();
                    tokio::select! {
                        _ = self.0.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = stop.cancelled() => return,
                    }
                }
                Ok(_) => {
                    self.set_failing(None);
                    backoff = new_backoff();
                }
                Err(reason) => {
                    tracing::warn!(error = %reason, "publishing events failed; retrying with backoff");
                    metrics::counter!("outbox_publish_failures_total").increment(1);
                    self.set_failing(Some(reason));
                    let delay = backoff.next().unwrap_or(Duration::from_secs(2));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// [`Self::publish_batch`], reporting the bus as failing while a call has
    /// gone unconfirmed for [`SLOW_CALL`] — without abandoning the call, whose
    /// message may still reach the broker (giving up and publishing again
    /// would put it on the topic twice).
    async fn publish_batch_watched(&self) -> Result<usize, String> {
        let batch = self.publish_batch();
        tokio::pin!(batch);
        tokio::select! {
            result = &mut batch => result,
            _ = tokio::time::sleep(SLOW_CALL) => {
                self.set_failing(Some(format!(
                    "the event bus has not confirmed a publish for {} s",
                    SLOW_CALL.as_secs()
                )));
                batch.await
            }
        }
    }

    fn set_failing(&self, reason: Option<String>) {
        let mut state = self.state();
        if state.failing.is_some() && reason.is_none() {
            tracing::info!("publishing recovered");
        }
        state.failing = reason;
    }

    /// Publishes one batch; returns how many events it published. On failure
    /// the events that did reach the broker are still stamped.
    async fn publish_batch(&self) -> Result<usize, String> {
        let mut tx = self
            .0
            .pool
            .begin()
            .await
            .map_err(|e| format!("database: {e}"))?;
        outbox::lock_publisher(&mut tx)
            .await
            .map_err(|e| format!("database: {e}"))?;
        let rows = outbox::pending(&mut tx, BATCH)
            .await
            .map_err(|e| format!("database: {e}"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let batch = first_of_each_task_and_topic(rows);
        metrics::gauge!("outbox_batch_size").set(batch.len() as f64);

        let mut by_topic: Vec<(Topic, Vec<&PendingEvent>)> = Vec::new();
        for row in &batch {
            let Some(topic) = Topic::from_name(&row.topic) else {
                return Err(format!(
                    "outbox row {} names unknown topic {}",
                    row.id, row.topic
                ));
            };
            match by_topic.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, rows)) => rows.push(row),
                None => by_topic.push((topic, vec![row])),
            }
        }
        let calls = by_topic
            .iter()
            .map(|(topic, rows)| self.publish_topic(*topic, rows));
        let outcomes = futures::future::join_all(calls).await;

        let mut published = Vec::with_capacity(batch.len());
        let mut failure = None;
        for outcome in outcomes {
            match outcome {
                Ok(ids) => published.extend(ids),
                Err(e) => failure = Some(e),
            }
        }
        let partial = published.len() < batch.len();
        if !published.is_empty() {
            outbox::mark_published(&mut tx, &published)
                .await
                .map_err(|e| format!("database: {e}"))?;
        }
        tx.commit().await.map_err(|e| format!("database: {e}"))?;
        metrics::counter!("events_published_total").increment(published.len() as u64);
        self.resolve(&published);
        match failure {
            Some(e) => Err(e),
            None if partial => Err("the broker rejected part of a batch".to_owned()),
            None => Ok(published.len()),
        }
    }

    async fn publish_topic(
        &self,
        topic: Topic,
        rows: &[&PendingEvent],
    ) -> Result<Vec<i64>, String> {
        let events: Vec<OutgoingEvent> = rows
            .iter()
            .map(|r| OutgoingEvent {
                entry_id: r.id.to_string(),
                partition_key: r.task_id.to_string(),
                cloud_event: r.cloud_event.clone(),
            })
            .collect();
        let failed = self
            .0
            .sidecar
            .bulk_publish(topic, &events)
            .await
            .map_err(|e| e.to_string())?;
        if let Some((_, reason)) = failed.first() {
            tracing::warn!(topic = %topic, failed = failed.len(), reason = %reason, "broker rejected events");
        }
        let failed: HashSet<String> = failed.into_iter().map(|(id, _)| id).collect();
        Ok(rows
            .iter()
            .map(|r| r.id)
            .filter(|id| !failed.contains(&id.to_string()))
            .collect())
    }

    fn resolve(&self, ids: &[i64]) {
        let mut state = self.state();
        for id in ids {
            for (_, tx) in state.waiters.remove(id).unwrap_or_default() {
                let _ = tx.send(());
            }
        }
    }
}

/// Deletes published events older than `pruning.keep_published` and
/// idempotency keys older than `pruning.keep_keys`, at once and then every
/// `pruning.every`, until `stop` is cancelled — independently of how busy the
/// relay is. Deletes go in batches of [`PRUNE_BATCH`] rows; pending events are
/// never touched. Each run that deletes anything is logged and counted in
/// `outbox_pruned_total` / `idempotency_keys_pruned_total`; a failed run is
/// logged and tried again at the next interval. Safe with several instances.
pub async fn prune_periodically(pool: PgPool, pruning: Pruning, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(pruning.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        tokio::select! {
            () = prune_once(&pool, pruning) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn prune_once(pool: &PgPool, pruning: Pruning) {
    match outbox::prune(pool, pruning.keep_published, PRUNE_BATCH).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(rows = n, "pruned published events from the outbox");
            metrics::counter!("outbox_pruned_total").increment(n);
        }
        Err(e) => tracing::warn!(error = %e, "pruning the outbox failed"),
    }
    match idempotency::prune(pool, pruning.keep_keys, PRUNE_BATCH).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(rows = n, "pruned expired idempotency keys");
            metrics::counter!("idempotency_keys_pruned_total").increment(n);
        }
        Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed"),
    }
}

fn new_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The first row of each (topic, task) in `rows` (in id order), skipping
/// that task's later ones: they wait for a later batch, after it. The query
/// already takes only these; this keeps the rule where the batch is made.
fn first_of_each_task_and_topic(rows: Vec<PendingEvent>) -> Vec<PendingEvent> {
    let mut seen = HashSet::new();
    rows.into_iter()
        .filter(|r| seen.insert((r.topic.clone(), r.task_id)))
        .collect()
}

impl Pending {
    /// Waits until every watched event is on Kafka, or `within` passes.
    /// Only a relay's word counts (this replica's, or another's relayed by
    /// [`Relay::follow_others`]): a wait whose notice can no longer come (its
    /// sender is gone) is not a publish.
    pub async fn published(mut self, within: Duration) -> bool {
        let receivers = std::mem::take(&mut self.receivers);
        let all = async {
            for rx in receivers {
                if rx.await.is_err() {
                    // Never told: only the deadline ends this wait.
                    return std::future::pending().await;
                }
            }
        };
        tokio::time::timeout(within, all).await.is_ok()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut state = self.relay.state();
        for id in &self.ids {
            if let Some(list) = state.waiters.get_mut(id) {
                list.retain(|(waiter, _)| *waiter != self.waiter);
                if list.is_empty() {
                    state.waiters.remove(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    /// A relay whose database and sidecar are never reached: `run` is not
    /// started, so only its waiters are exercised (the database check of
    /// `published` fails and is ignored).
    fn idle_relay() -> Relay {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(50))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let settings: todo_core::settings::DaprSettings =
            serde_json::from_value(serde_json::json!({ "dapr_grpc_port": 1, "dapr_http_port": 1 }))
                .unwrap();
        let sidecar = Sidecar::new(&settings, Duration::from_millis(50)).unwrap();
        Relay::new(pool, sidecar)
    }

    const WAIT: Duration = Duration::from_millis(600);

    #[tokio::test]
    async fn a_retry_waiting_for_the_same_events_does_not_confirm_the_original() {
        let relay = idle_relay();
        let original = relay.watch(vec![1, 2]);
        let retry = relay.watch(vec![1, 2]);
        // Nothing was published: neither request may be told otherwise.
        assert!(
            !original.published(WAIT).await,
            "original confirmed unpublished events"
        );
        relay.resolve(&[1, 2]);
        assert!(retry.published(WAIT).await, "retry not told of the publish");
    }

    #[tokio::test]
    async fn one_request_giving_up_leaves_the_others_waiting() {
        let relay = idle_relay();
        let original = relay.watch(vec![7]);
        let retry = relay.watch(vec![7]);
        drop(retry);
        let waiting = tokio::spawn(original.published(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiting.is_finished(),
            "confirmed before anything was published"
        );
        relay.resolve(&[7]);
        assert!(waiting.await.unwrap(), "the remaining waiter was forgotten");
    }

    fn row(id: i64, topic: &str, task: Uuid) -> PendingEvent {
        PendingEvent {
            id,
            topic: topic.to_owned(),
            task_id: task,
            cloud_event: Vec::new(),
        }
    }

    #[test]
    fn a_batch_skips_later_events_of_a_task_and_topic_it_holds_and_goes_on() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let rows = vec![
            row(1, "task-events", a),
            row(2, "task-updates", a),
            row(3, "task-events", b),
            row(4, "task-events", a),
            row(5, "task-events", b),
            row(6, "task-events", a),
            row(7, "task-events", c),
            row(8, "task-updates", b),
        ];
        let ids: Vec<i64> = first_of_each_task_and_topic(rows)
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 7, 8]);
    }
}
