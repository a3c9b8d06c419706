//! An audit record: one task event as it was published, never changed, and the
//! handler that stores one per event.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use todo_core::consumer::{EventHandler, HandleError};
use todo_core::envelope::{EventEnvelope, Topic};
use uuid::Uuid;

use crate::db;

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: String,
    pub task_id: Uuid,
    pub user_id: String,
    pub payload: serde_json::Value,
    pub timestamp: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// The record of `event` (its `recorded_at` is set by the database).
pub fn from_event(event: &EventEnvelope) -> AuditRecord {
    AuditRecord {
        id: Uuid::now_v7(),
        event_id: event.event_id,
        event_type: event.event_type.as_str().to_owned(),
        schema_version: event.schema_version.clone(),
        task_id: event.task_id,
        user_id: event.user_id.clone(),
        payload: event.payload.clone(),
        timestamp: event.timestamp,
        recorded_at: event.timestamp,
    }
}

/// Stores every `task-events` event as an audit record.
pub struct Recorder;

impl EventHandler for Recorder {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        _topic: Topic,
        event: &EventEnvelope,
    ) -> Result<(), HandleError> {
        db::insert(conn, &from_event(event)).await?;
        tracing::info!("event recorded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use todo_core::envelope::EventType;

    #[test]
    fn a_record_keeps_every_envelope_field() {
        let e = EventEnvelope::new(
            EventType::TaskCompleted,
            Utc::now(),
            Uuid::new_v4(),
            "alice",
            serde_json::json!({"v": 1}),
        );
        let r = from_event(&e);
        assert_eq!(r.event_id, e.event_id);
        assert_eq!(r.event_type, "task-completed");
        assert_eq!(r.schema_version, "1.0");
        assert_eq!(
            (r.task_id, r.user_id.as_str(), &r.payload),
            (e.task_id, "alice", &e.payload)
        );
        assert_eq!(r.timestamp, e.timestamp);
    }
}
