//! Consuming topics through the Dapr sidecar, written once for every subscriber.
//!
//! A service describes what it subscribes to ([`Subscription`]) and what an
//! event does ([`EventHandler`]); [`Consumer::endpoints`] gives it:
//! - `GET /dapr/subscribe`: the programmatic subscription list daprd reads at
//!   start-up (bulk delivery on, so a catching-up consumer commits a batch per
//!   transaction);
//! - `POST /events/<topic>`: the delivery route, single or bulk.
//!
//! Every callback must carry the app API token (`dapr-api-token` =
//! `APP_API_TOKEN`); without it the answer is 401 and nothing changes. The
//! callbacks are served only on the app's internal port, the one its sidecar
//! calls (see [`crate::server::serve`]); the public port answers them 404.
//! A known event is applied by the handler inside the transaction that
//! records its `event_id` in the service's `inbox` table (`on conflict do
//! nothing`), so a redelivered event changes nothing.
//!
//! **Nothing is dropped, nothing stalls.** An event that can never be
//! applied — malformed, of a schema version this consumer does not know, or
//! refused by the handler ([`HandleError::Permanent`]: its rules, a
//! constraint violation, a row it needs that does not exist) — becomes a
//! *dead letter* ([`dead_letters`]): kept in the same transaction with the
//! reason, the consumer and the failed attempts, and acknowledged, so the
//! partition moves on. Operators list and redrive them
//! ([`dead_letters::api`]); a redrive applies the event through the same
//! inbox, so at most once. Each is also announced on the topic's dead-letter
//! topic, `<topic>-dlq` ([`dead_letters::announce`]). A failure that may pass ([`HandleError::Transient`]:
//! the database down, a serialization failure) never dead-letters: the batch
//! answers `RETRY` and Dapr redelivers it with backoff.
//!
//! After the batch's transaction commits, [`EventHandler::after_commit`] gets
//! the events it applied, for effects that must follow the commit.
//!
//! The inbox stays bounded: while a consumer's endpoints exist, it deletes
//! inbox rows older than its [`InboxRetention`] (by default 14 days, twice
//! Kafka's default topic retention, so no event the broker can still deliver
//! is forgotten), every prune interval, in small batches; replicas pruning at
//! once skip each other's rows. Each run that deletes anything is logged and
//! counted in `inbox_pruned_total`. Redriven dead letters go after the same
//! retention.

use std::{sync::Arc, time::Duration};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response,
    endpoint::BoxEndpoint,
    get, handler,
    http::StatusCode,
    post,
    web::{Data, Json, Path},
};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Acquire, PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::{problem::Problem, settings::AppToken, sidecar::Sidecar};

pub mod dead_letters;
use todo_contract::{EventEnvelope, PUBSUB_NAME, SCHEMA_VERSION, Topic};

/// One topic this app consumes.
#[derive(Debug, Clone, Copy)]
pub struct Subscription {
    pub topic: Topic,
}

/// Why applying an event failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth retrying later (a dependency is down).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (the event contradicts the handler's rules).
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandleError {
    /// A failure of the consumer's own bookkeeping (inbox, savepoints,
    /// dead letters): never the event's fault, so always worth retrying.
    fn ours(e: sqlx::Error) -> Self {
        HandleError::Transient(format!("database: {e}"))
    }
}

/// A handler's database error, classified: one that the same statement on
/// the same data repeats (an integrity or data exception, SQLSTATE classes
/// 23 and 22; a row that is not there; a value that does not decode) is
/// [`HandleError::Permanent`], so its event is dead-lettered instead of
/// stalling its partition; anything else (connection, pool, serialization
/// failure, deadlock, a server shutting down) is [`HandleError::Transient`].
impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        if repeats(&e) {
            HandleError::Permanent(format!("database: {e}"))
        } else {
            HandleError::Transient(format!("database: {e}"))
        }
    }
}

/// Whether a database error comes back every time the same event is applied.
fn repeats(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("23") || code.starts_with("22")),
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    }
}

/// What an event does in a consuming service.
pub trait EventHandler: Send + Sync + 'static {
    /// Applies `event` using `conn`, which is inside the transaction that also
    /// records the event in the inbox: commit and dedupe happen together.
    fn handle<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        topic: Topic,
        event: &'a EventEnvelope,
    ) -> impl Future<Output = Result<(), HandleError>> + Send + 'a;

    /// Called once the transaction that applied a batch has committed, with the
    /// events of that batch that [`EventHandler::handle`] applied (not the
    /// duplicates or skipped ones), in delivery order. For effects that must
    /// never be seen before the commit (e.g. pushing to live clients). Must not
    /// block; the default does nothing.
    fn after_commit(&self, _topic: Topic, _applied: &[&EventEnvelope]) {}
}

/// The delivery status Dapr understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Retry,
}

/// How long a consumer's inbox remembers an applied event id, and how often
/// older ids are deleted (`<PREFIX>INBOX_RETENTION_HOURS`,
/// `<PREFIX>INBOX_PRUNE_INTERVAL_SECS`, read into
/// [`crate::bootstrap::Common`]). Keep it longer than the retention of every
/// topic consumed: an event redelivered after its id was forgotten would be
/// applied again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxRetention {
    pub keep: Duration,
    pub prune_every: Duration,
}

impl Default for InboxRetention {
    /// 14 days (Kafka's default topic retention is 7; the local stack keeps
    /// that default), pruned every 10 minutes.
    fn default() -> Self {
        InboxRetention {
            keep: Duration::from_secs(14 * 24 * 3600),
            prune_every: Duration::from_secs(600),
        }
    }
}

/// Most inbox rows deleted by one statement, so pruning never holds many
/// row locks or a long transaction.
const PRUNE_BATCH: i64 = 1000;

/// An event as it arrived, classified.
enum Incoming {
    Known(Box<EventEnvelope>),
    UnknownVersion { event_id: String, version: String },
    Malformed(String),
}

/// One delivered CloudEvent: as it arrived (kept by a dead letter) and
/// classified.
struct Delivery {
    raw: Value,
    incoming: Incoming,
    /// The key of the dead letter it is redriven from.
    key: Option<String>,
}

impl Delivery {
    fn new(raw: Value) -> Self {
        let incoming = classify(&raw);
        Delivery {
            raw,
            incoming,
            key: None,
        }
    }

    /// A dead letter's event, redriven: failing again counts on its row.
    fn redriven(raw: Value, key: String) -> Self {
        Delivery {
            key: Some(key),
            ..Delivery::new(raw)
        }
    }

    /// What identifies this event among redeliveries: its envelope's event
    /// id, or the CloudEvent id of one without a readable envelope.
    fn key(&self) -> String {
        if let Some(key) = &self.key {
            return key.clone();
        }
        match &self.incoming {
            Incoming::Known(e) => e.event_id.to_string(),
            Incoming::UnknownVersion { event_id, .. } if event_id != "?" => event_id.clone(),
            _ => match self.raw["id"].as_str() {
                Some(id) => format!("cloudevent:{id}"),
                None => format!("unidentified:{}", uuid::Uuid::new_v4()),
            },
        }
    }

    fn task_id(&self) -> Option<uuid::Uuid> {
        match &self.incoming {
            Incoming::Known(e) => Some(e.task_id),
            _ => None,
        }
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The handler applied it.
    Applied,
    /// The inbox had it already.
    Duplicate,
    /// Kept as a dead letter, for this reason.
    DeadLettered(String),
}

/// The part of a consumer that applies events: shared by deliveries and
/// operators' redrives.
struct Applier<H> {
    app_id: &'static str,
    handler: Arc<H>,
}

/// An app's subscriptions and the handler that applies their events.
pub struct Consumer<H> {
    pool: PgPool,
    applier: Arc<Applier<H>>,
    subscriptions: Vec<Subscription>,
    app_token: AppToken,
    inbox: InboxRetention,
    /// The sidecar that announces dead letters on the dead-letter topics.
    announcer: Option<Sidecar>,
    /// Wakes the announcer when a batch kept a dead letter.
    announce: Arc<Notify>,
    /// Stops the inbox pruner and the announcer when the consumer (its
    /// endpoints) is dropped.
    background: Option<DropGuard>,
}

impl<H: EventHandler> Consumer<H> {
    /// A consumer of `subscriptions` for `app_id`, recording its inbox in `pool`
    /// for as long as `inbox` says, accepting callbacks that carry `app_token`.
    pub fn new(
        app_id: &'static str,
        pool: PgPool,
        handler: H,
        subscriptions: Vec<Subscription>,
        app_token: AppToken,
        inbox: InboxRetention,
    ) -> Self {
        Consumer {
            pool,
            applier: Arc::new(Applier {
                app_id,
                handler: Arc::new(handler),
            }),
            subscriptions,
            app_token,
            inbox,
            announcer: None,
            announce: Arc::new(Notify::new()),
            background: None,
        }
    }

    /// Also announces each dead letter on its topic's dead-letter topic
    /// (`<topic>-dlq`) through `sidecar` ([`dead_letters::announce`]).
    pub fn announcing_dead_letters(mut self, sidecar: Sidecar) -> Self {
        self.announcer = Some(sidecar);
        self
    }

    /// The operators' handle on this consumer's dead letters (app data for
    /// [`dead_letters::api::DeadLettersApi`]).
    pub fn dead_letters(&self) -> dead_letters::DeadLetters {
        dead_letters::DeadLetters::new(self.pool.clone(), self.applier.clone())
    }

    /// `GET /dapr/subscribe` and `POST /events/<topic>`, as (path, endpoint)
    /// pairs for [`crate::server::AppParts::callbacks`]. Also starts the
    /// inbox pruner and the dead-letter announcer (tokio tasks), which stop
    /// when these endpoints are dropped.
    pub fn endpoints(mut self) -> Vec<(&'static str, BoxEndpoint<'static>)> {
        let stop = CancellationToken::new();
        tokio::spawn(prune_inbox_periodically(
            self.applier.app_id,
            self.pool.clone(),
            self.inbox,
            stop.clone(),
        ));
        if let Some(sidecar) = self.announcer.clone() {
            tokio::spawn(dead_letters::announce::announce_periodically(
                self.applier.app_id,
                self.pool.clone(),
                sidecar,
                self.announce.clone(),
                stop.clone(),
            ));
        }
        self.background = Some(stop.drop_guard());
        let token = self.app_token.clone();
        let consumer = Arc::new(self);
        let guard = move |ep: BoxEndpoint<'static>| -> BoxEndpoint<'static> {
            require_app_token(ep.data(consumer.clone()).boxed(), token.clone())
        };
        vec![
            (
                "/dapr/subscribe",
                guard(get(subscriptions::<H>::default()).boxed()),
            ),
            (
                "/events/:topic",
                guard(post(deliver::<H>::default()).boxed()),
            ),
        ]
    }

    fn subscription_list(&self) -> Value {
        Value::Array(
            self.subscriptions
                .iter()
                .map(|s| {
                    json!({
                        "pubsubname": PUBSUB_NAME,
                        "topic": s.topic.name(),
                        "routes": { "default": format!("/events/{}", s.topic.name()) },
                        "bulkSubscribe": { "enabled": true, "maxMessagesCount": 200, "maxAwaitDurationMs": 5 },
                    })
                })
                .collect(),
        )
    }

    /// Applies a batch in order, one transaction for all, a savepoint each;
    /// every event is applied, a duplicate or a dead letter (all `SUCCESS`),
    /// unless a transient failure makes the whole batch `RETRY`.
    async fn apply(&self, topic: Topic, batch: Vec<Delivery>) -> Vec<Status> {
        let mut applied: Vec<&EventEnvelope> = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let result: Result<(), HandleError> = async {
            let mut tx = self.pool.begin().await.map_err(HandleError::ours)?;
            for delivery in &batch {
                let outcome = self.applier.apply_one(&mut tx, topic, delivery).await?;
                if let (Outcome::Applied, Incoming::Known(e)) = (&outcome, &delivery.incoming) {
                    applied.push(e);
                }
                outcomes.push(outcome);
            }
            tx.commit().await.map_err(HandleError::ours)?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                if !applied.is_empty() {
                    self.applier.handler.after_commit(topic, &applied);
                }
                if outcomes
                    .iter()
                    .any(|o| matches!(o, Outcome::DeadLettered(_)))
                {
                    self.announce.notify_one();
                }
                for outcome in &outcomes {
                    let label = match outcome {
                        Outcome::Applied | Outcome::Duplicate => "success",
                        Outcome::DeadLettered(_) => "dead_letter",
                    };
                    metrics::counter!("events_consumed_total", "topic" => topic.name(), "outcome" => label)
                        .increment(1);
                }
                vec![Status::Success; batch.len()]
            }
            Err(e) => {
                tracing::warn!(app = self.applier.app_id, topic = %topic, error = %e, events = batch.len(), "batch not applied; asking Dapr to redeliver");
                metrics::counter!("events_consumed_total", "topic" => topic.name(), "outcome" => "retry")
                    .increment(batch.len() as u64);
                vec![Status::Retry; batch.len()]
            }
        }
    }
}

impl<H: EventHandler> Applier<H> {
    /// Applies one event inside `conn`'s transaction, or keeps it as a dead
    /// letter there; an error is transient (the batch is retried).
    async fn apply_one(
        &self,
        conn: &mut PgConnection,
        topic: Topic,
        delivery: &Delivery,
    ) -> Result<Outcome, HandleError> {
        let event = match &delivery.incoming {
            Incoming::Known(e) => e,
            Incoming::UnknownVersion { version, .. } => {
                let reason = format!(
                    "schema version {version} is unknown to this consumer (it reads {SCHEMA_VERSION})"
                );
                return self.dead_letter(conn, topic, delivery, reason).await;
            }
            Incoming::Malformed(why) => {
                let reason = format!("malformed event: {why}");
                return self.dead_letter(conn, topic, delivery, reason).await;
            }
        };
        let span = tracing::info_span!("event", task_id = %event.task_id, event_id = %event.event_id, event_type = %event.event_type);
        // Instrumented, not entered: a span entered across an await marks
        // whatever else that thread polls meanwhile (another event's lines
        // got this task_id, and this event's lines another's).
        async {
            let mut savepoint = conn.begin().await.map_err(HandleError::ours)?;
            let fresh = sqlx::query!(
                "insert into inbox (event_id, topic) values ($1, $2) on conflict do nothing",
                event.event_id,
                topic.name(),
            )
            .execute(&mut *savepoint)
            .await
            .map_err(HandleError::ours)?
            .rows_affected()
                == 1;
            if !fresh {
                savepoint.commit().await.map_err(HandleError::ours)?;
                tracing::debug!("duplicate delivery ignored");
                metrics::counter!("events_duplicate_total", "topic" => topic.name()).increment(1);
                return Ok(Outcome::Duplicate);
            }
            match self.handler.handle(&mut savepoint, topic, event).await {
                Ok(()) => {
                    savepoint.commit().await.map_err(HandleError::ours)?;
                    tracing::debug!("event applied");
                    Ok(Outcome::Applied)
                }
                Err(HandleError::Permanent(reason)) => {
                    // The inbox row goes with the savepoint: a redrive can
                    // still apply the event.
                    savepoint.rollback().await.map_err(HandleError::ours)?;
                    self.dead_letter(conn, topic, delivery, reason).await
                }
                Err(e) => Err(e),
            }
        }
        .instrument(span)
        .await
    }

    async fn dead_letter(
        &self,
        conn: &mut PgConnection,
        topic: Topic,
        delivery: &Delivery,
        reason: String,
    ) -> Result<Outcome, HandleError> {
        let letter = dead_letters::Letter {
            topic: topic.name(),
            event_key: delivery.key(),
            task_id: delivery.task_id(),
            consumer: self.app_id,
            reason: &reason,
            cloud_event: &delivery.raw,
        };
        let attempts = dead_letters::record(conn, &letter)
            .await
            .map_err(HandleError::ours)?;
        tracing::error!(app = self.app_id, topic = %topic, event_key = %letter.event_key,
            task_id = ?letter.task_id, attempts, reason = %reason,
            "event kept as a dead letter; the partition moves on");
        metrics::counter!("events_dead_lettered_total", "topic" => topic.name()).increment(1);
        Ok(Outcome::DeadLettered(reason))
    }
}

/// Deletes inbox rows older than `retention.keep`, at once and then every
/// `retention.prune_every`, until `stop` is cancelled. A failed run is logged
/// and tried again at the next interval.
async fn prune_inbox_periodically(
    app_id: &'static str,
    pool: PgPool,
    retention: InboxRetention,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(retention.prune_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let pruned = tokio::select! {
            pruned = prune_inbox(&pool, retention.keep) => pruned,
            _ = stop.cancelled() => return,
        };
        match dead_letters::prune(&pool, retention.keep, PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(app = app_id, rows = n, "pruned redriven dead letters"),
            Err(e) => tracing::warn!(app = app_id, error = %e, "pruning dead letters failed"),
        }
        match pruned {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    app = app_id,
                    rows = n,
                    retention_hours = retention.keep.as_secs() / 3600,
                    "pruned the inbox"
                );
                metrics::counter!("inbox_pruned_total").increment(n);
            }
            Err(e) => tracing::warn!(app = app_id, error = %e, "pruning the inbox failed"),
        }
    }
}

/// Deletes every inbox row received more than `keep` ago, [`PRUNE_BATCH`]
/// rows per statement (each its own short transaction); rows another pruner
/// holds are skipped, not waited for. Returns how many rows went.
async fn prune_inbox(pool: &PgPool, keep: Duration) -> Result<u64, sqlx::Error> {
    crate::database::delete_in_batches(PRUNE_BATCH, || async {
        sqlx::query!(
            "delete from inbox where (event_id, topic) in ( \
                 select event_id, topic from inbox \
                 where received_at < now() - make_interval(secs => $1) \
                 order by received_at limit $2 for update skip locked)",
            keep.as_secs_f64(),
            PRUNE_BATCH,
        )
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })
    .await
}

/// Classifies one CloudEvent (its `data` is the envelope).
fn classify(cloud_event: &Value) -> Incoming {
    let data = match &cloud_event["data"] {
        Value::Object(_) => cloud_event["data"].clone(),
        // A producer that sent the envelope as a JSON string.
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => v,
            Err(e) => return Incoming::Malformed(format!("data is not JSON: {e}")),
        },
        _ => return Incoming::Malformed("no data".to_owned()),
    };
    let Some(version) = data["schema_version"].as_str() else {
        return Incoming::Malformed("the envelope has no schema_version".to_owned());
    };
    if version != SCHEMA_VERSION {
        return Incoming::UnknownVersion {
            event_id: data["event_id"].as_str().unwrap_or("?").to_owned(),
            version: version.to_owned(),
        };
    }
    match serde_json::from_value::<EventEnvelope>(data) {
        Ok(e) => Incoming::Known(Box::new(e)),
        Err(e) => Incoming::Malformed(e.to_string()),
    }
}

#[handler]
fn subscriptions<H: EventHandler>(consumer: Data<&Arc<Consumer<H>>>) -> Json<Value> {
    Json(consumer.subscription_list())
}

#[handler]
async fn deliver<H: EventHandler>(
    consumer: Data<&Arc<Consumer<H>>>,
    Path(topic): Path<String>,
    body: Json<Value>,
) -> Response {
    let Some(topic) =
        Topic::from_name(&topic).filter(|t| consumer.subscriptions.iter().any(|s| s.topic == *t))
    else {
        // 404 makes Dapr drop the message: right for a topic we never subscribed to.
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": "not subscribed to this topic"})),
        )
            .into_response();
    };
    let body = body.0;
    if let Some(entries) = body.get("entries").and_then(Value::as_array) {
        let ids: Vec<Value> = entries.iter().map(|e| e["entryId"].clone()).collect();
        let batch = entries
            .iter()
            .map(|e| Delivery::new(e["event"].clone()))
            .collect();
        let statuses = consumer.apply(topic, batch).await;
        let statuses: Vec<Value> = ids
            .into_iter()
            .zip(statuses)
            .map(|(id, s)| json!({ "entryId": id, "status": s }))
            .collect();
        Json(json!({ "statuses": statuses })).into_response()
    } else {
        let status = consumer.apply(topic, vec![Delivery::new(body)]).await[0];
        Json(json!({ "status": status })).into_response()
    }
}

/// Wraps a sidecar callback (subscription delivery, job trigger) so that it
/// answers 401 unless the request carries the app API token (`dapr-api-token`
/// = `APP_API_TOKEN`); only a development machine's
/// [`AppToken::NotRequired`] accepts every caller.
pub fn require_app_token(ep: BoxEndpoint<'static>, token: AppToken) -> BoxEndpoint<'static> {
    ep.around(move |ep, req| check_token(ep, req, token.clone()))
        .boxed()
}

/// Refuses callbacks that do not carry the app API token.
async fn check_token<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    token: AppToken,
) -> poem::Result<Response> {
    if let AppToken::Required(expected) = &token {
        let given = req
            .headers()
            .get("dapr-api-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(given, expected.expose_secret().as_bytes()) {
            let problem = Problem {
                error: "unauthorized".to_owned(),
                message: "sidecar callbacks must carry the app API token (dapr-api-token)"
                    .to_owned(),
            };
            return Ok((StatusCode::UNAUTHORIZED, Json(problem)).into_response());
        }
    }
    Ok(ep.call(req).await?.into_response())
}

/// Whether two tokens are equal, compared in time that does not depend on
/// where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(version: &str) -> Value {
        json!({
            "specversion": "1.0", "id": "e1", "type": "task-created",
            "data": {
                "event_id": "0190f0b0-0000-7000-8000-000000000001", "event_type": "task-created",
                "schema_version": version, "timestamp": "2026-01-01T00:00:00.000Z",
                "task_id": "0190f0b0-0000-7000-8000-000000000002", "user_id": "alice", "payload": {}
            }
        })
    }

    #[test]
    fn known_versions_parse_into_envelopes() {
        assert!(matches!(classify(&envelope("1.0")), Incoming::Known(_)));
    }

    #[test]
    fn unknown_versions_are_recognised_with_their_event_id() {
        match classify(&envelope("99.0")) {
            Incoming::UnknownVersion { event_id, version } => {
                assert_eq!(event_id, "0190f0b0-0000-7000-8000-000000000001");
                assert_eq!(version, "99.0");
            }
            _ => panic!("expected unknown version"),
        }
    }

    #[test]
    fn envelopes_missing_fields_are_malformed() {
        let mut e = envelope("1.0");
        e["data"].as_object_mut().unwrap().remove("task_id");
        assert!(matches!(classify(&e), Incoming::Malformed(_)));
        assert!(matches!(
            classify(&json!({"data": 5})),
            Incoming::Malformed(_)
        ));
    }

    #[tokio::test]
    async fn a_callback_without_the_app_token_is_refused() {
        let applied = poem::endpoint::make_sync(|_| "applied")
            .map_to_response()
            .boxed();
        let token = AppToken::Required("s3cret".to_owned().into());
        let client = poem::test::TestClient::new(require_app_token(applied, token));
        for given in [None, Some("wrong"), Some("s3cret-")] {
            let mut req = client
                .post("/events/task-events")
                .body_json(&envelope("1.0"));
            if let Some(given) = given {
                req = req.header("dapr-api-token", given);
            }
            req.send().await.assert_status(StatusCode::UNAUTHORIZED);
        }
        client
            .post("/events/task-events")
            .header("dapr-api-token", "s3cret")
            .send()
            .await
            .assert_text("applied")
            .await;
    }

    #[test]
    fn only_errors_the_same_event_repeats_dead_letter() {
        assert!(matches!(
            HandleError::from(sqlx::Error::RowNotFound),
            HandleError::Permanent(_)
        ));
        for passing in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ] {
            assert!(matches!(
                HandleError::from(passing),
                HandleError::Transient(_)
            ));
        }
    }

    #[test]
    fn an_envelope_without_a_schema_version_is_malformed() {
        let mut e = envelope("1.0");
        e["data"].as_object_mut().unwrap().remove("schema_version");
        assert!(matches!(classify(&e), Incoming::Malformed(_)));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
