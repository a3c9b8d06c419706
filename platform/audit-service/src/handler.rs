//! The `task-events` handler: stores every event once as an immutable audit
//! record, in the consumer's transaction (the inbox dedupes redeliveries; the
//! record's unique `event_id` is a second guard).

use sqlx::PgConnection;
use todo_contract::{EventEnvelope, Topic};
use todo_core::consumer::{EventHandler, HandleError};

use crate::db;

/// Records each event as published: its payload is kept exactly as received.
pub struct Handler;

impl EventHandler for Handler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        _topic: Topic,
        event: &EventEnvelope,
    ) -> Result<(), HandleError> {
        db::insert(conn, event).await?;
        tracing::info!("event recorded");
        Ok(())
    }
}
