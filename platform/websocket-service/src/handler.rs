//! The `task-updates` handler: logs each update in the consumer's transaction
//! and, only once that transaction has committed, hands it to the [`Hub`] for
//! the live streams (so a client never sees an update that could still roll
//! back, and replay and live agree on every seq).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgConnection;
use todo_contract::{EventEnvelope, Topic};
use todo_core::consumer::{EventHandler, HandleError};
use uuid::Uuid;

use crate::db;
use crate::hub::Hub;
use crate::update::LogEntry;

/// Logs updates and publishes them after commit.
pub struct Handler {
    hub: Arc<Hub>,
    /// Logged in a transaction that has not committed yet, by event id.
    pending: Mutex<HashMap<Uuid, Arc<LogEntry>>>,
}

impl Handler {
    pub fn new(hub: Arc<Hub>) -> Self {
        Handler {
            hub,
            pending: Mutex::new(HashMap::new()),
        }
    }
}

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
        let entry = Arc::new(LogEntry::new(seq, event.user_id.clone(), &envelope));
        if let Ok(mut pending) = self.pending.lock() {
            // A rolled-back batch leaves its entries here; the redelivery
            // replaces them.
            pending.insert(event.event_id, entry);
        }
        metrics::counter!("websocket_updates_logged_total").increment(1);
        tracing::info!(seq, "update logged");
        Ok(())
    }

    fn after_commit(&self, _topic: Topic, applied: &[&EventEnvelope]) {
        let entries: Vec<Arc<LogEntry>> = match self.pending.lock() {
            Ok(mut pending) => applied
                .iter()
                .filter_map(|e| pending.remove(&e.event_id))
                .collect(),
            Err(_) => return,
        };
        for entry in entries {
            let cut = self.hub.publish(&entry);
            if cut > 0 {
                metrics::counter!("websocket_slow_disconnects_total").increment(cut as u64);
                tracing::info!(
                    seq = entry.seq,
                    streams = cut,
                    "streams fell too far behind and were cut off"
                );
            }
        }
    }
}
