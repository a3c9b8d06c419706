//! The `reminders` handler: each `reminder-fired` event becomes one pending
//! notification (its id derived from the event), and records the start of
//! its delivery workflow as an intent in the consumer's transaction; the
//! dispatcher starts it after the commit ([`crate::workflow::record_start`]).

use sqlx::PgConnection;
use todo_contract::reminder::notification_id;
use todo_contract::{Channel, EventEnvelope, EventType, Reminder, Topic};
use todo_core::consumer::{EventHandler, HandleError};
use todo_core::intent::Waker;

use crate::db;
use crate::workflow::record_start;

/// Turns each `reminder-fired` event into one notification.
pub struct Handler {
    /// Wakes this replica's dispatcher once a batch has committed.
    pub waker: Waker,
}

impl EventHandler for Handler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        _topic: Topic,
        event: &EventEnvelope,
    ) -> Result<(), HandleError> {
        if event.event_type != EventType::ReminderFired {
            tracing::debug!("not a reminder; ignored");
            return Ok(());
        }
        let reminder: Reminder = event
            .payload_as()
            .map_err(|e| HandleError::Permanent(e.to_string()))?;
        let id = notification_id(event.event_id, Channel::InApp);
        if db::insert_pending(conn, id, Channel::InApp, &reminder).await? {
            record_start(conn, id, 1, reminder).await?;
            tracing::info!(notification_id = %id, "notification created; delivery to start");
        }
        Ok(())
    }
    fn after_commit(&self, _topic: Topic, _applied: &[&EventEnvelope]) {
        self.waker.wake();
    }
}
