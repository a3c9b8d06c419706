//! The `reminders` handler: each `reminder-fired` event becomes one pending
//! notification (its id derived from the event) and starts its delivery
//! workflow, in the consumer's transaction.

use sqlx::PgConnection;
use todo_contract::reminder::notification_id;
use todo_contract::{Channel, EventEnvelope, EventType, Reminder, Topic};
use todo_core::consumer::{EventHandler, HandleError};
use todo_core::workflow::Starter;

use crate::db;
use crate::workflow::start_delivery;

/// Turns each `reminder-fired` event into one notification.
pub struct Handler {
    pub workflows: Starter,
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
            start_delivery(&self.workflows, id, 1, reminder)
                .await
                .map_err(|e| HandleError::Transient(e.to_string()))?;
            tracing::info!(notification_id = %id, "notification created; delivering");
        }
        Ok(())
    }
}
