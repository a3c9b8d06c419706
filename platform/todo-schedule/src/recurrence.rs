//! The recurrence workflow: creating the next instance of a recurring task,
//! durably, exactly once per completed instance.
//!
//! The orchestrator is deterministic (no clock, no I/O): it hands the one
//! side effect, creating the task, to the [`CREATE_NEXT_INSTANCE`] activity
//! that the recurring-task service registers. Exactly once comes from two
//! derived names: the instance id ([`instance_id`]) so that a redelivered
//! completion finds the running instance, and the Todo Idempotency-Key
//! ([`idempotency_key`]) so that a re-run after completion, or an activity
//! retried after the task was created, gets the same task back.

use std::time::Duration;

use dapr::workflow::{
    ActivityOptions, Result as WorkflowResult, RetryPolicy, WorkflowContext, WorkflowContextExt,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plan::NextInstance;

/// The workflow's registered name; a change to its steps gets a new version.
pub const RECURRENCE_WORKFLOW: &str = "recurrence_v1";
/// The activity that creates the next instance through the Todo service.
pub const CREATE_NEXT_INSTANCE: &str = "create_next_instance_v1";

/// What the workflow is started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurrenceInput {
    /// The series (its schedule row) the completed task belongs to.
    pub series_id: Uuid,
    /// Owner of the series; the next instance is created as this user.
    pub user_id: String,
    /// The instance to create (its `parent_task_id` is the completed task).
    pub next: NextInstance,
}

/// How the workflow ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecurrenceOutcome {
    /// The next instance exists (created now, or earlier by this same step).
    Created { task_id: Uuid },
    /// The series ended (deleted) before the instance was created: none is.
    SeriesEnded,
    /// The Todo service refused the instance for good (4xx); logged, not retried.
    Refused { status: u16, reason: String },
}

/// The instance id for the completion of `completed_task_id`.
pub fn instance_id(completed_task_id: &str) -> String {
    format!("recurrence-{completed_task_id}")
}

/// The Idempotency-Key of the create call for the instance after `completed_task_id`.
pub fn idempotency_key(completed_task_id: &str) -> String {
    format!("recurrence-{completed_task_id}")
}

/// Creating the next instance is retried until it succeeds: after 8 quick
/// attempts the interval settles at 30 s, for up to a day (the Todo service or
/// its sidecar being down must delay the next instance, not lose it).
pub fn create_next_retry_policy() -> RetryPolicy {
    RetryPolicy::new(3_000, Duration::from_millis(250))
        .with_backoff_coefficient(2.0)
        .with_max_retry_interval(Duration::from_secs(30))
        .with_retry_timeout(Duration::from_secs(24 * 3600))
}

/// The orchestrator of [`RECURRENCE_WORKFLOW`].
pub async fn recurrence_v1(ctx: WorkflowContext) -> WorkflowResult<Option<String>> {
    let input: RecurrenceInput = ctx.get_input_typed()?;
    let outcome: RecurrenceOutcome = ctx
        .call_activity_with_options_typed(
            CREATE_NEXT_INSTANCE,
            ActivityOptions::new()
                .try_with_input(&input)?
                .with_retry_policy(create_next_retry_policy()),
        )
        .await?;
    Ok(Some(serde_json::to_string(&outcome)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_completed_task_only() {
        let id = "6f9619ff-8b86-4011-b42d-00c04fc964ff";
        assert_eq!(instance_id(id), instance_id(id));
        assert_eq!(
            idempotency_key(id),
            "recurrence-6f9619ff-8b86-4011-b42d-00c04fc964ff"
        );
    }

    #[test]
    fn outcomes_are_tagged_json() {
        let created = RecurrenceOutcome::Created {
            task_id: Uuid::nil(),
        };
        let json = serde_json::to_value(&created).unwrap();
        assert_eq!(json["outcome"], "created");
        assert_eq!(
            serde_json::from_value::<RecurrenceOutcome>(json).unwrap(),
            created
        );
    }
}
