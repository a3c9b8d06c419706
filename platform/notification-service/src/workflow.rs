//! The notification delivery workflow: one reminder → one in-app
//! notification, sent or, after its retries, marked failed (and retryable by
//! starting a new attempt).
//!
//! The orchestrator is deterministic; [`register`] registers it with its two
//! activities: [`DELIVER_IN_APP`] (push `notification-delivered` to the
//! user's live clients, then mark the notification `sent`) and
//! [`MARK_FAILED`]. Both are idempotent on the notification id.

use std::sync::Arc;
use std::time::Duration;

use dapr::workflow::{
    ActivityContext, ActivityOptions, Registry, RegistryExt, Result as WorkflowResult, RetryPolicy,
    WorkflowContext, WorkflowContextExt, WorkflowError,
};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use todo_contract::{Channel, Reminder, Timestamp, Topic};
use todo_core::intent::{self, ActError, Intent};
use todo_core::sidecar::Sidecar;
use todo_core::workflow::Starter;
use uuid::Uuid;

use crate::db;

/// The workflow's registered name.
pub const DELIVERY_WORKFLOW: &str = "notification_delivery_v1";
/// Delivers one notification in-app.
pub const DELIVER_IN_APP: &str = "deliver_in_app_v1";
/// Records that delivery failed for good.
pub const MARK_FAILED: &str = "mark_notification_failed_v1";

/// What one delivery attempt is started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryInput {
    pub notification_id: Uuid,
    /// 1 for the first attempt; a manual retry starts the next one.
    pub attempt: i32,
    pub reminder: Reminder,
    /// How long delivery keeps trying before the notification is marked
    /// failed, set when the attempt starts (`NOTIFICATION_DELIVERY_PATIENCE_SECS`).
    /// Part of the input so that a replay of the instance retries exactly as
    /// it first did; instances started before it existed have none and keep
    /// their old policy ([`deliver_retry_policy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience_secs: Option<u64>,
}

/// The [`MARK_FAILED`] activity's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedInput {
    pub notification_id: Uuid,
    pub attempt: i32,
    pub error: String,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Sent,
    Failed { error: String },
}

/// The instance id of attempt `attempt` of a notification.
pub fn instance_id(notification_id: Uuid, attempt: i32) -> String {
    format!("delivery-{notification_id}-{attempt}")
}

/// The instance id of the `rescue`th new start of attempt `attempt` by the
/// watchdog ([`crate::service::watch`]); the attempt's own id for 0.
pub fn rescue_instance_id(notification_id: Uuid, attempt: i32, rescue: i32) -> String {
    let id = instance_id(notification_id, attempt);
    if rescue == 0 {
        id
    } else {
        format!("{id}-r{rescue}")
    }
}

/// Longest wait between two delivery tries once the backoff has grown.
const DELIVERY_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Delivery is retried with backoff (1 s doubling to a minute between
/// tries) for `patience` before the notification is marked failed, so it
/// outlasts an outage of Kafka or the database shorter than that (two hours
/// by default). Without a patience (an instance started by an older
/// release) it keeps its old policy: 6 retries over about 30 s.
pub fn deliver_retry_policy(patience: Option<u64>) -> RetryPolicy {
    match patience {
        None => RetryPolicy::new(7, Duration::from_secs(1))
            .with_backoff_coefficient(2.0)
            .with_max_retry_interval(Duration::from_secs(8)),
        Some(secs) => {
            // Enough tries to reach the timeout at the longest interval.
            let tries = secs / DELIVERY_MAX_INTERVAL.as_secs() + 8;
            RetryPolicy::new(
                u32::try_from(tries).unwrap_or(u32::MAX),
                Duration::from_secs(1),
            )
            .with_backoff_coefficient(2.0)
            .with_max_retry_interval(DELIVERY_MAX_INTERVAL)
            .with_retry_timeout(Duration::from_secs(secs.max(1)))
        }
    }
}

/// Recording the failure only needs the database; retried for up to a day.
pub fn mark_failed_retry_policy() -> RetryPolicy {
    RetryPolicy::new(3_000, Duration::from_millis(500))
        .with_backoff_coefficient(2.0)
        .with_max_retry_interval(Duration::from_secs(30))
        .with_retry_timeout(Duration::from_secs(24 * 3600))
}

/// The orchestrator of [`DELIVERY_WORKFLOW`].
pub async fn notification_delivery_v1(ctx: WorkflowContext) -> WorkflowResult<Option<String>> {
    let input: DeliveryInput = ctx.get_input_typed()?;
    let delivered: WorkflowResult<bool> = ctx
        .call_activity_with_options_typed(
            DELIVER_IN_APP,
            ActivityOptions::new()
                .try_with_input(&input)?
                .with_retry_policy(deliver_retry_policy(input.patience_secs)),
        )
        .await;
    let outcome = match delivered {
        Ok(_) => DeliveryOutcome::Sent,
        Err(e) => {
            let failed = FailedInput {
                notification_id: input.notification_id,
                attempt: input.attempt,
                error: e.to_string(),
            };
            let _: bool = ctx
                .call_activity_with_options_typed(
                    MARK_FAILED,
                    ActivityOptions::new()
                        .try_with_input(&failed)?
                        .with_retry_policy(mark_failed_retry_policy()),
                )
                .await?;
            DeliveryOutcome::Failed {
                error: failed.error,
            }
        }
    };
    Ok(Some(serde_json::to_string(&outcome)?))
}

/// What the activities need.
pub struct Deps {
    pub pool: PgPool,
    pub sidecar: Sidecar,
}

/// The intent kind that starts a delivery attempt.
pub const START_DELIVERY: &str = "start_delivery";

/// Records, in the caller's transaction, that attempt `attempt` of a
/// notification's delivery must start; the dispatcher starts it after the
/// commit ([`start_recorded`]), so no transaction waits on the workflow API.
pub async fn record_start(
    conn: &mut PgConnection,
    notification_id: Uuid,
    attempt: i32,
    reminder: Reminder,
) -> Result<(), sqlx::Error> {
    record_instance(
        conn,
        &instance_id(notification_id, attempt),
        notification_id,
        attempt,
        reminder,
    )
    .await
}

/// Records that instance `key` must start delivering attempt `attempt` of a
/// notification (its first start, or a new one by the watchdog).
pub async fn record_instance(
    conn: &mut PgConnection,
    key: &str,
    notification_id: Uuid,
    attempt: i32,
    reminder: Reminder,
) -> Result<(), sqlx::Error> {
    let task_id = reminder.task_id;
    let input = DeliveryInput {
        notification_id,
        attempt,
        reminder,
        patience_secs: None,
    };
    let payload = serde_json::to_value(&input).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    intent::record(conn, key, START_DELIVERY, Some(task_id), &payload).await
}

/// Carries out a recorded start (an instance still running counts as
/// started), delivering with `patience` (see [`deliver_retry_policy`]). An
/// unknown kind or unreadable payload, or a start the sidecar refuses, is
/// [`ActError::Refused`]; everything else is worth retrying.
pub async fn start_recorded(
    starter: &Starter,
    intent: Intent,
    patience: Duration,
) -> Result<(), ActError> {
    if intent.kind != START_DELIVERY {
        return Err(ActError::Refused(format!(
            "unknown intent kind {}",
            intent.kind
        )));
    }
    let mut input: DeliveryInput =
        serde_json::from_value(intent.payload).map_err(ActError::unreadable)?;
    input.patience_secs.get_or_insert(patience.as_secs());
    let started = starter
        .start(DELIVERY_WORKFLOW, &intent.key, &input)
        .await?;
    tracing::info!(task_id = %input.reminder.task_id, notification_id = %input.notification_id, attempt = input.attempt, ?started, "delivery started");
    Ok(())
}

/// Pushes `notification-delivered` and marks the notification sent; does
/// nothing when it already is (a retried or replayed activity).
async fn deliver_in_app(deps: &Deps, input: &DeliveryInput) -> Result<(), String> {
    if db::is_sent(&deps.pool, input.notification_id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let event = input
        .reminder
        .delivered(input.notification_id, Channel::InApp, Timestamp::now());
    deps.sidecar
        .publish(Topic::TaskUpdates, &event, crate::APP_ID)
        .await
        .map_err(|e| e.to_string())?;
    db::mark_sent(
        &deps.pool,
        input.notification_id,
        Channel::InApp,
        &input.reminder,
    )
    .await
    .map_err(|e| e.to_string())?;
    metrics::counter!("notifications_total", "outcome" => "sent").increment(1);
    tracing::info!(task_id = %input.reminder.task_id, notification_id = %input.notification_id, "notification sent");
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(input: Option<String>) -> Result<T, WorkflowError> {
    Ok(serde_json::from_str(input.as_deref().unwrap_or("null"))?)
}

/// Registers the delivery workflow and its activities.
pub fn register(registry: &mut Registry, deps: Arc<Deps>) {
    registry.add_workflow(DELIVERY_WORKFLOW, notification_delivery_v1);
    let d = deps.clone();
    registry.add_activity(
        DELIVER_IN_APP,
        move |_ctx: ActivityContext, input: Option<String>| {
            let deps = d.clone();
            async move {
                let input: DeliveryInput = parse(input)?;
                deliver_in_app(&deps, &input).await.map_err(|e| {
                    tracing::warn!(task_id = %input.reminder.task_id, notification_id = %input.notification_id, error = %e, "delivery attempt failed");
                    WorkflowError::Other(e)
                })?;
                // The orchestrator reads the output as "delivered".
                Ok(Some(true.to_string()))
            }
        },
    );
    registry.add_activity(
        MARK_FAILED,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(patience_secs: Option<u64>) -> DeliveryInput {
        DeliveryInput {
            notification_id: Uuid::from_u128(1),
            attempt: 1,
            reminder: Reminder {
                task_id: Uuid::from_u128(2),
                user_id: "alice".to_owned(),
                title: "call".to_owned(),
                due_date: None,
                remind_at: Timestamp::parse("2026-03-01T08:00:00Z").unwrap(),
            },
            patience_secs,
        }
    }

    #[test]
    fn an_input_recorded_before_patience_existed_reads_without_one() {
        let mut recorded = serde_json::to_value(input(Some(5))).unwrap();
        recorded.as_object_mut().unwrap().remove("patience_secs");
        let read: DeliveryInput = serde_json::from_value(recorded).unwrap();
        assert_eq!(read, input(None));
        assert!(
            serde_json::to_value(input(None))
                .unwrap()
                .get("patience_secs")
                .is_none(),
            "an input without patience is written as before"
        );
    }

    #[test]
    fn each_attempt_has_its_own_instance() {
        let id = Uuid::from_u128(1);
        assert_ne!(instance_id(id, 1), instance_id(id, 2));
        assert_eq!(
            instance_id(id, 1),
            "delivery-00000000-0000-0000-0000-000000000001-1"
        );
    }

    #[test]
    fn each_new_start_by_the_watchdog_has_its_own_instance() {
        let id = Uuid::from_u128(1);
        assert_eq!(rescue_instance_id(id, 2, 0), instance_id(id, 2));
        assert_eq!(
            rescue_instance_id(id, 2, 1),
            "delivery-00000000-0000-0000-0000-000000000001-2-r1"
        );
        // Still found by the watchdog's query of waiting starts (`delivery-<id>-%`).
        assert!(rescue_instance_id(id, 2, 3).starts_with(&format!("delivery-{id}-")));
    }
}
