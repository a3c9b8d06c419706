//! What a consumer announces on a topic's dead-letter topic when it keeps an
//! event of that topic as a dead letter: a [`DeadLetterNotice`] wrapped in a
//! CloudEvent of type `dead-letter` ([`DeadLetterNotice::to_cloud_event`]).
//!
//! The consumer's `dead_letter` table stays the record operators act on
//! (`/api/v1/dead-letters` lists and redrives it); the topic lets anything
//! else (alerting, `kcat`, another team's tooling) see every dead letter as
//! it happens. It is published at least once: a notice is identified by its
//! CloudEvent `id` (consumer, dead letter id and attempt), the same on every
//! repeat.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::envelope::Topic;
use crate::time::Timestamp;

/// The CloudEvent `type` of a notice.
pub const DEAD_LETTER_TYPE: &str = "dead-letter";

/// An event a consumer could not apply and kept as a dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetterNotice {
    /// Its id among the consumer's dead letters (what
    /// `POST /api/v1/dead-letters/{id}/redrive` on that consumer takes).
    pub dead_letter_id: i64,
    /// The topic the event came from.
    pub topic: Topic,
    /// The consuming app that could not apply it.
    pub consumer: String,
    /// Why it could not be applied.
    pub reason: String,
    /// How many deliveries or redrives of it failed so far.
    pub attempts: i32,
    /// The event's `event_id`, or `cloudevent:<id>` for one without a
    /// readable envelope.
    pub event_key: String,
    /// The task it is about, when the envelope could be read.
    pub task_id: Option<Uuid>,
    pub first_failed_at: Timestamp,
    pub failed_at: Timestamp,
    /// The CloudEvent as it was delivered.
    pub event: Value,
}

impl DeadLetterNotice {
    /// The notice as a CloudEvents 1.0 structured-mode event: `id`
    /// `dead-letter:<consumer>:<dead letter id>:<attempts>`, `source` the
    /// consumer, `subject` the task id or event key.
    pub fn to_cloud_event(&self) -> Value {
        json!({
            "specversion": "1.0",
            "id": format!("dead-letter:{}:{}:{}", self.consumer, self.dead_letter_id, self.attempts),
            "source": self.consumer,
            "type": DEAD_LETTER_TYPE,
            "subject": self.task_id.map_or_else(|| self.event_key.clone(), |t| t.to_string()),
            "time": self.failed_at,
            "datacontenttype": "application/json",
            "data": self,
        })
    }

    /// The Kafka record key: the task id, so a task's notices stay in order;
    /// the event key for an event without a readable envelope.
    pub fn partition_key(&self) -> String {
        self.task_id
            .map_or_else(|| self.event_key.clone(), |t| t.to_string())
    }
}

impl Topic {
    /// The topic a consumer of this one announces its dead letters on:
    /// `<topic>-dlq`.
    pub fn dead_letter_topic(self) -> &'static str {
        match self {
            Topic::TaskEvents => "task-events-dlq",
            Topic::TaskUpdates => "task-updates-dlq",
            Topic::Reminders => "reminders-dlq",
        }
    }
}
