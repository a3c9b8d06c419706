//! Delivering reminders: the `reminders` handler that stores one pending
//! notification per reminder and starts its delivery workflow, and the
//! workflow's activities (push `notification-delivered` on `task-updates` for
//! the user's live clients, then mark it sent; or mark it failed).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dapr::workflow::{ActivityContext, Registry, RegistryExt, WorkflowError};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use todo_core::consumer::{EventHandler, HandleError};
use todo_core::envelope::{EventEnvelope, EventType, Topic};
use todo_core::sidecar::Sidecar;
use todo_core::workflow::{Started, Starter, WorkflowError as StartError};
use todo_workflows::delivery::{self, DeliveryInput, FailedInput, IN_APP};
use todo_workflows::reminder::{self, Reminder};
use uuid::Uuid;

use crate::db;

/// What the activities need.
pub struct Deps {
    pub pool: PgPool,
    pub sidecar: Sidecar,
}

/// Starts attempt `attempt` of a notification's delivery.
pub async fn start_delivery(
    starter: &Starter,
    notification_id: Uuid,
    attempt: i32,
    reminder: Reminder,
) -> Result<Started, StartError> {
    let instance_id = delivery::instance_id(notification_id, attempt);
    let input = DeliveryInput {
        notification_id,
        attempt,
        reminder,
    };
    starter
        .start(delivery::DELIVERY_WORKFLOW, &instance_id, &input)
        .await
}

/// Turns each `reminder-fired` event into one notification.
pub struct ReminderHandler {
    pub workflows: Starter,
}

impl EventHandler for ReminderHandler {
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
        let reminder: Reminder = serde_json::from_value(event.payload.clone())
            .map_err(|e| HandleError::Permanent(format!("payload: {e}")))?;
        let id = reminder::notification_id(event.event_id, IN_APP);
        if db::insert_pending(conn, id, IN_APP, &reminder).await? {
            start_delivery(&self.workflows, id, 1, reminder)
                .await
                .map_err(|e| HandleError::Transient(e.to_string()))?;
            tracing::info!(notification_id = %id, "notification created; delivering");
        }
        Ok(())
    }
}

/// The `notification-delivered` event of a notification, delivered at `now`.
pub fn delivered_event(notification_id: Uuid, r: &Reminder, now: DateTime<Utc>) -> EventEnvelope {
    let mut event = EventEnvelope::new(
        EventType::NotificationDelivered,
        now,
        r.task_id,
        r.user_id.clone(),
        json!({
            "notification_id": notification_id,
            "notification_type": "reminder",
            "channel": IN_APP,
            "title": r.title,
            "due_date": r.due_date,
            "remind_at": r.remind_at,
        }),
    );
    event.event_id = reminder::delivered_event_id(notification_id);
    event
}

async fn deliver_in_app(deps: &Deps, input: &DeliveryInput) -> Result<bool, String> {
    if db::is_sent(&deps.pool, input.notification_id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(true);
    }
    let event = delivered_event(input.notification_id, &input.reminder, Utc::now());
    deps.sidecar
        .publish(Topic::TaskUpdates, &event, crate::APP_ID)
        .await
        .map_err(|e| e.to_string())?;
    db::mark_sent(&deps.pool, input.notification_id, IN_APP, &input.reminder)
        .await
        .map_err(|e| e.to_string())?;
    metrics::counter!("notifications_total", "outcome" => "sent").increment(1);
    tracing::info!(task_id = %input.reminder.task_id, notification_id = %input.notification_id, "notification sent");
    Ok(true)
}

fn parse<T: serde::de::DeserializeOwned>(input: Option<String>) -> Result<T, WorkflowError> {
    Ok(serde_json::from_str(input.as_deref().unwrap_or("null"))?)
}

/// Registers the delivery workflow and its activities.
pub fn register(registry: &mut Registry, deps: Arc<Deps>) {
    registry.add_workflow(
        delivery::DELIVERY_WORKFLOW,
        delivery::notification_delivery_v1,
    );
    let d = deps.clone();
    registry.add_activity(
        delivery::DELIVER_IN_APP,
        move |_ctx: ActivityContext, input: Option<String>| {
            let deps = d.clone();
            async move {
                let input: DeliveryInput = parse(input)?;
                let sent = deliver_in_app(&deps, &input).await.map_err(|e| {
                    tracing::warn!(task_id = %input.reminder.task_id, notification_id = %input.notification_id, error = %e, "delivery attempt failed");
                    WorkflowError::Other(e)
                })?;
                Ok(Some(sent.to_string()))
            }
        },
    );
    registry.add_activity(
        delivery::MARK_FAILED,
        move |_ctx: ActivityContext, input: Option<String>| {
            let deps = deps.clone();
            async move {
                let input: FailedInput = parse(input)?;
                db::mark_failed(&deps.pool, input.notification_id, &input.error)
                    .await
                    .map_err(|e| WorkflowError::Other(e.to_string()))?;
                metrics::counter!("notifications_total", "outcome" => "failed").increment(1);
                tracing::warn!(notification_id = %input.notification_id, attempt = input.attempt, error = %input.error, "notification failed");
                Ok(Some("true".to_owned()))
            }
        },
    );
}
