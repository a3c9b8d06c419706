//! The `task-updates` handler: logs each update in the consumer's
//! transaction. Nothing is pushed from here: every replica's
//! [`crate::service::follow_log`] reads the shared log after each commit
//! (woken by the notification the append sends), so a stream on any replica
//! gets every update, whichever replica consumed it, in `seq` order.

use sqlx::PgConnection;
use todo_contract::{EventEnvelope, Topic};
use todo_core::consumer::{EventHandler, HandleError};

use crate::db;

/// Logs updates.
#[derive(Debug, Default)]
pub struct Handler;

impl EventHandler for Handler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        _topic: Topic,
        event: &EventEnvelope,
    ) -> Result<(), HandleError> {
        let envelope = serde_json::to_value(event)
            .map_err(|e| HandleError::Permanent(format!("envelope does not serialize: {e}")))?;
        let Some(seq) = db::append(conn, event.event_id, &event.user_id, &envelope).await? else {
            return Ok(());
        };
        metrics::counter!("websocket_updates_logged_total").increment(1);
        tracing::info!(seq, "update logged");
        Ok(())
    }
}
