//! The event envelope (schema version "1.0") that every topic carries, and the
//! names of topics, event types and the pub/sub component.
//!
//! Producers build an [`EventEnvelope`] around a typed payload and wrap it in a
//! [`CloudEvent`] whose `id` is the envelope's `event_id`, so Dapr passes it
//! through unchanged and every consumer can deduplicate on one id. Consumers
//! receive the envelope with its payload as JSON (so a record of it keeps
//! exactly what was published) and read it as its type with
//! [`EventEnvelope::payload_as`] or [`EventEnvelope::typed`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::reminder::{NotificationDelivered, Reminder};
use crate::task::TaskSnapshot;
use crate::time::Timestamp;

/// The Dapr pub/sub component every service publishes and subscribes through.
pub const PUBSUB_NAME: &str = "kafka-pubsub";
/// The schema version this code produces and understands.
pub const SCHEMA_VERSION: &str = "1.0";

/// The platform's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "kebab-case"))]
pub enum EventType {
    TaskCreated,
    TaskUpdated,
    TaskCompleted,
    TaskDeleted,
    ReminderFired,
    NotificationDelivered,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 6] = [
        EventType::TaskCreated,
        EventType::TaskUpdated,
        EventType::TaskCompleted,
        EventType::TaskDeleted,
        EventType::ReminderFired,
        EventType::NotificationDelivered,
    ];

    /// The event types of task changes (on `task-events` and `task-updates`).
    pub const TASK: [EventType; 4] = [
        EventType::TaskCreated,
        EventType::TaskUpdated,
        EventType::TaskCompleted,
        EventType::TaskDeleted,
    ];

    /// Whether it records a task change (its payload is a [`TaskSnapshot`]).
    pub fn is_task_change(self) -> bool {
        EventType::TASK.contains(&self)
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

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

/// The envelope every topic carries.
///
/// `payload` is typed by `event_type`: a [`TaskSnapshot`] for the task events
/// (the snapshot after the change; before it, for `task-deleted`), a
/// [`Reminder`] for `reminder-fired`, a [`NotificationDelivered`] for
/// `notification-delivered`. As received, `P` is the payload's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope<P = serde_json::Value> {
    pub event_id: Uuid,
    pub event_type: EventType,
    /// Always [`SCHEMA_VERSION`] for what this code produces.
    pub schema_version: String,
    pub timestamp: Timestamp,
    pub task_id: Uuid,
    /// Owner of the task.
    pub user_id: String,
    pub payload: P,
}

/// A payload, typed by its event type.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Task(TaskSnapshot),
    ReminderFired(Reminder),
    NotificationDelivered(NotificationDelivered),
}

/// A payload that does not have the shape its event type requires.
#[derive(Debug, thiserror::Error)]
#[error("the payload of a {event_type} event is not a {expected}: {source}")]
pub struct PayloadError {
    pub event_type: EventType,
    pub expected: &'static str,
    #[source]
    pub source: serde_json::Error,
}

impl<P: Serialize> EventEnvelope<P> {
    /// A new envelope of the current schema version with a fresh `event_id`.
    pub fn new(
        event_type: EventType,
        timestamp: impl Into<Timestamp>,
        task_id: Uuid,
        user_id: impl Into<String>,
        payload: P,
    ) -> Self {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            event_type,
            schema_version: SCHEMA_VERSION.to_owned(),
            timestamp: timestamp.into(),
            task_id,
            user_id: user_id.into(),
            payload,
        }
    }

    /// The same envelope with this `event_id` (for derived ids).
    pub fn with_event_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    /// Wraps the envelope in the CloudEvent that Dapr publishes as is.
    pub fn to_cloud_event(&self, source: &str) -> CloudEvent<&EventEnvelope<P>> {
        CloudEvent {
            specversion: "1.0",
            id: self.event_id,
            source: source.to_owned(),
            r#type: self.event_type,
            subject: self.task_id,
            time: self.timestamp,
            datacontenttype: "application/json",
            data: self,
        }
    }
}

impl EventEnvelope<serde_json::Value> {
    /// The payload read as `T`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        serde_json::from_value(self.payload.clone()).map_err(|source| PayloadError {
            event_type: self.event_type,
            expected: std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("payload"),
            source,
        })
    }

    /// The payload read as the type its event type requires.
    pub fn typed(&self) -> Result<Payload, PayloadError> {
        Ok(match self.event_type {
            EventType::ReminderFired => Payload::ReminderFired(self.payload_as()?),
            EventType::NotificationDelivered => Payload::NotificationDelivered(self.payload_as()?),
            _ => Payload::Task(self.payload_as()?),
        })
    }
}

/// A CloudEvents 1.0 structured-mode event with JSON data. Dapr passes an event
/// published with content type [`CloudEvent::CONTENT_TYPE`] through, adding only
/// its routing and tracing attributes.
#[derive(Debug, Clone, Serialize)]
pub struct CloudEvent<T> {
    pub specversion: &'static str,
    /// The envelope's `event_id`.
    pub id: Uuid,
    /// The producing app id.
    pub source: String,
    /// The envelope's `event_type`.
    pub r#type: EventType,
    /// The task id.
    pub subject: Uuid,
    /// The envelope's `timestamp`.
    pub time: Timestamp,
    pub datacontenttype: &'static str,
    pub data: T,
}

impl CloudEvent<()> {
    /// The content type that makes Dapr keep a published CloudEvent as is.
    pub const CONTENT_TYPE: &'static str = "application/cloudevents+json";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventEnvelope {
        let at = Timestamp::parse("2026-03-01T08:30:00.123456Z").unwrap();
        EventEnvelope::new(
            EventType::TaskCreated,
            at,
            Uuid::nil(),
            "alice",
            serde_json::json!({"title": "x"}),
        )
        .with_event_id(Uuid::nil())
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
    fn a_payload_reads_as_the_type_its_event_type_names() {
        let e = sample();
        let err = e.typed().unwrap_err();
        assert!(err.to_string().contains("TaskSnapshot"), "{err}");
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert!(EventType::TaskDeleted.is_task_change());
        assert!(!EventType::ReminderFired.is_task_change());
    }

    #[test]
    fn topics_round_trip_through_their_names() {
        for t in Topic::ALL {
            assert_eq!(Topic::from_name(t.name()), Some(t));
        }
        assert_eq!(Topic::from_name("nope"), None);
    }
}
