//! The event contract of the Todo platform, in one place: what every topic
//! carries, used by every producer and consumer.
//!
//! - [`envelope`]: topics, event types, the versioned envelope and its
//!   CloudEvent wrapping.
//! - [`task`]: the task snapshot (payload of the task events and body of the
//!   Todo API), its status and recurrence frequency.
//! - [`reminder`]: the `reminder-fired` and `notification-delivered` payloads
//!   and the ids derived from a reminder occurrence.
//! - [`time`]: the one timestamp style of every payload.
//! - [`dead_letter`]: what a consumer announces on `<topic>-dlq` when it
//!   keeps an event as a dead letter.
//! - [`asyncapi`]: the AsyncAPI 3.0 document of all of it, generated from
//!   these types (committed as `openapi/asyncapi.json`).
//!
//! The insta snapshots in `snapshots/` pin every payload's bytes.

pub mod asyncapi;
pub mod dead_letter;
pub mod envelope;
pub mod reminder;
pub mod task;
pub mod time;

pub use envelope::{
    CloudEvent, EventEnvelope, EventType, PUBSUB_NAME, Payload, SCHEMA_VERSION, Topic,
};
pub use reminder::{Channel, NotificationDelivered, NotificationType, Reminder};
pub use task::{Frequency, TaskSnapshot, TaskStatus};
pub use time::Timestamp;
