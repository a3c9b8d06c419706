//! The event envelope (schema version "1.0") that every topic carries, and the
//! names of topics, event types and the pub/sub component.
//!
//! Producers build an [`EventEnvelope`] and wrap it in a [`CloudEvent`] whose `id`
//! is the envelope's `event_id`, so Dapr passes it through unchanged and every
//! consumer can deduplicate on one id.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// The Dapr pub/sub component every service publishes and subscribes through.
pub const PUBSUB_NAME: &str = "kafka-pubsub";
/// The schema version this code produces and understands.
pub const SCHEMA_VERSION: &str = "1.0";

/// The platform's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    /// Every task state change, for audit and recurrence.
    TaskEvents,
    /// Every task state change (and in-app notifications), for real-time clients.
    TaskUpdates,
    /// Reminders that fired, for the notification service.
    Reminders,
}

impl Topic {
    /// All topics, in a stable order.
    pub const ALL: [Topic; 3] = [Topic::TaskEvents, Topic::TaskUpdates, Topic::Reminders];

    /// The Kafka topic name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::TaskEvents => "task-events",
            Topic::TaskUpdates => "task-updates",
            Topic::Reminders => "reminders",
        }
    }

    /// Parses a Kafka topic name.
    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened. Serialized in kebab-case (`task-created`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    TaskCreated,
    TaskUpdated,
    TaskCompleted,
    TaskDeleted,
    ReminderFired,
    NotificationDelivered,
}

impl EventType {
    /// The wire name, e.g. `task-created`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TaskCreated => "task-created",
            EventType::TaskUpdated => "task-updated",
            EventType::TaskCompleted => "task-completed",
            EventType::TaskDeleted => "task-deleted",
            EventType::ReminderFired => "reminder-fired",
            EventType::NotificationDelivered => "notification-delivered",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The envelope of architecture §3 (FR-014).
///
/// `payload` is the full task snapshot after the change (before it, for
/// `task-deleted`). `timestamp` is serialized as RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub schema_version: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub timestamp: DateTime<Utc>,
    pub task_id: Uuid,
    pub user_id: String,
    pub payload: serde_json::Value,
}

impl EventEnvelope {
    /// A new envelope of the current schema version with a fresh `event_id`.
    /// The timestamp is truncated to milliseconds so it survives a round trip.
    pub fn new(
        event_type: EventType,
        timestamp: DateTime<Utc>,
        task_id: Uuid,
        user_id: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            event_type,
            schema_version: SCHEMA_VERSION.to_owned(),
            timestamp: truncate_to_millis(timestamp),
            task_id,
            user_id: user_id.into(),
            payload,
        }
    }

    /// Wraps the envelope in the CloudEvent that Dapr publishes as is.
    pub fn to_cloud_event(&self, source: &str) -> CloudEvent<&EventEnvelope> {
        CloudEvent {
            specversion: "1.0",
            id: self.event_id,
            source: source.to_owned(),
            r#type: self.event_type.as_str().to_owned(),
            subject: self.task_id.to_string(),
            time: self.timestamp,
            datacontenttype: "application/json",
            data: self,
        }
    }
}

/// A CloudEvents 1.0 structured-mode event with JSON data. Dapr passes an event
/// published with content type [`CloudEvent::CONTENT_TYPE`] through, adding only
/// its routing and tracing attributes.
#[derive(Debug, Clone, Serialize)]
pub struct CloudEvent<T> {
    pub specversion: &'static str,
    pub id: Uuid,
    pub source: String,
    pub r#type: String,
    pub subject: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: DateTime<Utc>,
    pub datacontenttype: &'static str,
    pub data: T,
}

impl CloudEvent<()> {
    /// The content type that makes Dapr keep a published CloudEvent as is.
    pub const CONTENT_TYPE: &'static str = "application/cloudevents+json";
}

/// Drops sub-millisecond precision (the wire format keeps milliseconds).
pub fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Serializes a UTC time as RFC 3339 with exactly three fractional digits and `Z`.
pub fn rfc3339_millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventEnvelope {
        let at = DateTime::parse_from_rfc3339("2026-03-01T08:30:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut e = EventEnvelope::new(
            EventType::TaskCreated,
            at,
            Uuid::nil(),
            "alice",
            serde_json::json!({"title": "x"}),
        );
        e.event_id = Uuid::nil();
        e
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["timestamp"], "2026-03-01T08:30:00.123Z");
    }

    #[test]
    fn event_types_use_kebab_case_names() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["event_type"], "task-created");
        assert_eq!(
            serde_json::to_value(EventType::NotificationDelivered).unwrap(),
            "notification-delivered"
        );
    }

    #[test]
    fn the_cloud_event_id_is_the_event_id() {
        let e = sample();
        let ce = serde_json::to_value(e.to_cloud_event("todo-service")).unwrap();
        assert_eq!(ce["id"], e.event_id.to_string());
        assert_eq!(ce["type"], "task-created");
        assert_eq!(ce["data"]["schema_version"], "1.0");
    }

    #[test]
    fn topics_round_trip_through_their_names() {
        for t in Topic::ALL {
            assert_eq!(Topic::from_name(t.name()), Some(t));
        }
        assert_eq!(Topic::from_name("nope"), None);
    }
}
