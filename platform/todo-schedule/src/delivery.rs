//! The notification delivery workflow: one reminder → one in-app
//! notification, sent or, after its retries, marked failed (and retryable by
//! starting a new attempt).
//!
//! The orchestrator is deterministic; the notification service registers the
//! two activities: [`DELIVER_IN_APP`] (push `notification-delivered` to the
//! user's live clients, then mark the notification `sent`) and
//! [`MARK_FAILED`]. Both are idempotent on the notification id.

use std::time::Duration;

use dapr::workflow::{
    ActivityOptions, Result as WorkflowResult, RetryPolicy, WorkflowContext, WorkflowContextExt,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::reminder::Reminder;

/// The workflow's registered name.
pub const DELIVERY_WORKFLOW: &str = "notification_delivery_v1";
/// Delivers one notification in-app.
pub const DELIVER_IN_APP: &str = "deliver_in_app_v1";
/// Records that delivery failed for good.
pub const MARK_FAILED: &str = "mark_notification_failed_v1";

/// The only channel so far.
pub const IN_APP: &str = "in_app";

/// What one delivery attempt is started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryInput {
    pub notification_id: Uuid,
    /// 1 for the first attempt; a manual retry starts the next one.
    pub attempt: i32,
    pub reminder: Reminder,
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

/// Delivery is retried 6 times over about 30 s (1, 2, 4, 8, 8, 8 s) before
/// the notification is marked failed.
pub fn deliver_retry_policy() -> RetryPolicy {
    RetryPolicy::new(7, Duration::from_secs(1))
        .with_backoff_coefficient(2.0)
        .with_max_retry_interval(Duration::from_secs(8))
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
                .with_retry_policy(deliver_retry_policy()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_attempt_has_its_own_instance() {
        let id = Uuid::from_u128(1);
        assert_ne!(instance_id(id, 1), instance_id(id, 2));
        assert_eq!(
            instance_id(id, 1),
            "delivery-00000000-0000-0000-0000-000000000001-1"
        );
    }
}
