//! What the console shows, as plain data read from the services' answers:
//! stream frames (the typed event envelope plus `seq`), audit records,
//! notifications, recurring series, reminders and health reports. Parsing is
//! done here, off the drawing path; nothing here does I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use todo_contract::{EventEnvelope, EventType};
use uuid::Uuid;

/// One update of the operator stream: what the console shows of the typed
/// envelope, its cursor, and the message as received (shown pretty on
/// Enter). The payload is not kept parsed: a full buffer stays small.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub seq: i64,
    pub event_id: Uuid,
    pub event_type: EventType,
    pub timestamp: DateTime<Utc>,
    pub task_id: Uuid,
    pub user_id: String,
    /// The task's title (every event type's payload carries one).
    pub title: Option<String>,
    /// The message text exactly as the WebSocket service sent it.
    pub raw: Box<str>,
}

impl LiveEvent {
    fn new(seq: i64, envelope: EventEnvelope, raw: &str) -> Self {
        LiveEvent {
            seq,
            event_id: envelope.event_id,
            event_type: envelope.event_type,
            timestamp: envelope.timestamp.get(),
            task_id: envelope.task_id,
            title: envelope
                .payload
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_owned),
            user_id: envelope.user_id,
            raw: raw.into(),
        }
    }

    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }
}

/// A message of the operator stream, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Update(Box<LiveEvent>),
    /// The replay (if any) is over; `seq` is a cursor to resume from.
    Ready {
        seq: i64,
    },
    /// The cursor was older than the retained log: updates after `since` up
    /// to `pruned_through` are gone for good.
    ResyncRequired {
        since: i64,
        pruned_through: i64,
    },
    /// A message the console cannot read (a newer contract?): shown, not dropped.
    Unreadable {
        reason: String,
        raw: String,
    },
}

impl Frame {
    /// Reads one text message of the operator stream.
    pub fn parse(text: &str) -> Frame {
        let unreadable = |reason: String| Frame::Unreadable {
            reason,
            raw: text.to_owned(),
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return unreadable(format!("not JSON: {e}")),
        };
        match value.get("type").and_then(Value::as_str) {
            Some("ready") => {
                return match value.get("seq").and_then(Value::as_i64) {
                    Some(seq) => Frame::Ready { seq },
                    None => unreadable("a ready message without seq".to_owned()),
                };
            }
            Some("resync-required") => {
                let since = value.get("since").and_then(Value::as_i64);
                let through = value.get("pruned_through").and_then(Value::as_i64);
                return match (since, through) {
                    (Some(since), Some(pruned_through)) => Frame::ResyncRequired {
                        since,
                        pruned_through,
                    },
                    _ => unreadable("a resync-required message without its cursors".to_owned()),
                };
            }
            _ => {}
        }
        let Some(seq) = value.get("seq").and_then(Value::as_i64) else {
            return unreadable("an update without seq".to_owned());
        };
        match serde_json::from_value::<EventEnvelope>(value) {
            Ok(envelope) => Frame::Update(Box::new(LiveEvent::new(seq, envelope, text))),
            Err(e) => unreadable(format!("not an event envelope: {e}")),
        }
    }
}

/// One record of a task's audit trail (`GET /api/v1/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub task_id: Uuid,
    pub user_id: String,
    pub timestamp: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub payload: Value,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditPage {
    pub records: Vec<AuditRecord>,
}

/// A field whose value differs between two consecutive snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The top-level fields of `after` that differ from `before` (in field
/// order), leaving out `updated_at` and `version`, which change every time.
pub fn changed_fields(before: &Value, after: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut fields: Vec<&String> = a.keys().chain(b.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| !matches!(f.as_str(), "updated_at" | "version"))
        .filter(|f| a.get(*f) != b.get(*f))
        .map(|f| FieldChange {
            field: f.clone(),
            before: b.get(f).cloned(),
            after: a.get(f).cloned(),
        })
        .collect()
}

/// A notification (`GET /api/v1/notifications`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: Uuid,
    pub task_id: Uuid,
    pub user_id: String,
    pub title: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub remind_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NotificationPage {
    pub notifications: Vec<Notification>,
}

/// A recurring series (`GET /api/v1/schedules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: Uuid,
    pub user_id: String,
    pub title: String,
    pub frequency: String,
    pub timezone: String,
    pub next_due_date: Option<DateTime<Utc>>,
    pub current_task_id: Option<Uuid>,
    pub instances: i64,
    pub is_active: bool,
    pub ended_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SchedulePage {
    pub schedules: Vec<Schedule>,
}

/// A reminder job (`GET /api/v1/reminders`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reminder {
    pub task_id: Uuid,
    pub user_id: String,
    pub title: String,
    pub status: String,
    pub remind_at: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReminderPage {
    pub reminders: Vec<Reminder>,
}

/// An event a consuming service could never apply, kept instead of dropped
/// (`GET /api/v1/dead-letters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// What the redrive route takes (unique within its service only).
    pub id: i64,
    pub topic: String,
    /// The event's `event_id`, or `cloudevent:<id>` without a readable envelope.
    pub event_key: String,
    pub task_id: Option<Uuid>,
    /// The app whose consumer gave up on it.
    pub consumer: String,
    /// Why it failed the last time it was tried.
    pub reason: String,
    /// Deliveries and redrives that failed.
    pub attempts: i64,
    /// The CloudEvent as delivered.
    pub event: Value,
    pub first_failed_at: DateTime<Utc>,
    pub failed_at: DateTime<Utc>,
    #[serde(default)]
    pub redriven_at: Option<DateTime<Utc>>,
}

/// A page of one service's dead letters, newest failure first.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetter>,
    /// How many are open in all (more than the page when it is cut).
    pub total: i64,
}

/// How a redrive of one dead letter ended: the API's 200 outcomes, its 409
/// `still_failing` and its 404, which are answers, not failures to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redriven {
    Applied,
    /// The consumer had applied it meanwhile (a redelivery got through).
    AlreadyApplied,
    /// An earlier redrive applied it.
    AlreadyRedriven,
    /// It failed again (one more attempt counted), with the reason.
    StillFailing(String),
    NotFound,
}

/// What `POST /api/v1/dead-letters/redrive` did with every open dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RedriveAll {
    pub applied: u64,
    pub already_applied: u64,
    /// Failed again; still open.
    pub still_failing: u64,
}

/// A call to the sidecar a service gave up on (`GET /api/v1/intents/failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedIntent {
    /// A job name, a workflow instance id, an event id: what a retry takes.
    pub key: String,
    pub kind: String,
    pub task_id: Option<Uuid>,
    pub payload: Value,
    pub attempts: i64,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
}

/// A page of one service's failed intents, newest first.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FailedIntentPage {
    pub intents: Vec<FailedIntent>,
    pub total: i64,
}

/// How a retry of a failed intent ended (202, or 404 for a key that names
/// no failed intent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentRetried {
    Accepted,
    NotFound,
}

/// A service's readiness (`GET /health/ready`, 200 or 503 alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// A service's consumer counters, read from its `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerCounters {
    /// `events_consumed_total`, every topic and outcome.
    pub consumed: u64,
    /// `events_duplicate_total`: redeliveries the inbox recognised.
    pub duplicates: u64,
    /// `events_dead_lettered_total`: events kept as dead letters (malformed,
    /// of an unknown schema version, or refused by the handler).
    pub dead_letters: u64,
}

/// Sums of every series of each metric in a Prometheus text exposition.
pub fn metric_sums(text: &str) -> BTreeMap<&str, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        *sums.entry(&line[..name_end]).or_insert(0.0) += value;
    }
    sums
}

impl ConsumerCounters {
    /// The counters in a `/metrics` answer (zero where a series is absent).
    pub fn from_metrics(text: &str) -> Self {
        let sums = metric_sums(text);
        // Counters are whole numbers; the exposition writes them as floats.
        let get = |name: &str| sums.get(name).map_or(0, |v| v.max(0.0).round() as u64);
        ConsumerCounters {
            consumed: get("events_consumed_total"),
            duplicates: get("events_duplicate_total"),
            dead_letters: get("events_dead_lettered_total"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update_text(seq: i64) -> String {
        json!({
            "event_id": "0190f000-0000-7000-8000-000000000001",
            "event_type": "task-created",
            "schema_version": "1.0",
            "timestamp": "2026-03-02T10:00:00.456Z",
            "task_id": "0190f000-0000-7000-8000-0000000000aa",
            "user_id": "alice",
            "payload": { "title": "Buy milk" },
            "seq": seq,
        })
        .to_string()
    }

    #[test]
    fn an_update_is_read_with_its_typed_envelope_and_seq() {
        let Frame::Update(event) = Frame::parse(&update_text(7)) else {
            panic!("not an update");
        };
        assert_eq!(event.seq, 7);
        assert_eq!(event.event_type(), EventType::TaskCreated);
        assert_eq!(event.user_id, "alice");
        assert_eq!(event.title(), Some("Buy milk"));
    }

    #[test]
    fn control_messages_are_recognised() {
        assert_eq!(
            Frame::parse(r#"{"type":"ready","seq":12}"#),
            Frame::Ready { seq: 12 }
        );
        assert_eq!(
            Frame::parse(
                r#"{"type":"resync-required","since":3,"pruned_through":40,"message":"…"}"#
            ),
            Frame::ResyncRequired {
                since: 3,
                pruned_through: 40
            }
        );
    }

    #[test]
    fn what_cannot_be_read_is_kept_with_the_reason() {
        for text in [
            "nope",
            r#"{"seq":1,"event_type":"task-exploded"}"#,
            r#"{"event_type":"task-created"}"#,
        ] {
            let Frame::Unreadable { reason, raw } = Frame::parse(text) else {
                panic!("{text} was read");
            };
            assert!(!reason.is_empty());
            assert_eq!(raw, text);
        }
    }

    #[test]
    fn changed_fields_leave_out_the_bookkeeping() {
        let before = json!({"title": "a", "status": "pending", "version": 1, "updated_at": "x"});
        let after = json!({"title": "b", "status": "pending", "version": 2, "updated_at": "y", "due_date": null});
        let changes = changed_fields(&before, &after);
        assert_eq!(
            changes,
            vec![
                FieldChange {
                    field: "due_date".into(),
                    before: None,
                    after: Some(Value::Null)
                },
                FieldChange {
                    field: "title".into(),
                    before: Some(json!("a")),
                    after: Some(json!("b"))
                },
            ]
        );
        assert!(changed_fields(&after, &after).is_empty());
    }

    #[test]
    fn consumer_counters_sum_every_series() {
        let text = "# TYPE events_consumed_total counter\n\
            events_consumed_total{topic=\"task-events\",outcome=\"success\"} 40\n\
            events_consumed_total{topic=\"task-events\",outcome=\"retry\"} 2\n\
            events_duplicate_total{topic=\"task-events\"} 3\n\
            http_requests_total{route=\"/x\"} 9\n";
        assert_eq!(
            ConsumerCounters::from_metrics(text),
            ConsumerCounters {
                consumed: 42,
                duplicates: 3,
                dead_letters: 0
            }
        );
    }
}
