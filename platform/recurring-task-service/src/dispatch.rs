//! What this service does after a commit (its intents, see
//! [`todo_core::intent`]): the event handler and the job trigger only record
//! them in their transactions; the dispatcher started in [`crate::Application`]
//! carries them out through the sidecar, on whichever replica claims them.
//!
//! - [`JOB`] `reminder-<task_id>`: bring the task's Dapr job in line with its
//!   reminder row *as it is when the call is made* (scheduled: schedule it with
//!   overwrite; otherwise: delete it), so intents decided in any order end in
//!   the newest state, and a trigger of a job that should be gone finds a stale
//!   reminder and publishes nothing.
//! - [`WORKFLOW`] `recurrence-<task_id>`: start that `recurrence_v1` instance
//!   (one still running counts as started).
//! - [`PUBLISH`] `<event id>`: publish the `reminder-fired` event of a reminder
//!   that fired (same derived event id on every attempt).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use todo_contract::reminder::reminder_job_name;
use todo_contract::{Reminder, Timestamp, Topic};
use todo_core::intent::{self, ActError, Intent};
use todo_core::sidecar::Sidecar;
use todo_core::workflow::Starter;
use uuid::Uuid;

use crate::db;
use crate::jobs::Jobs;
use crate::workflow::{self, RecurrenceInput};

/// Bring a reminder job in line with the reminder row.
pub const JOB: &str = "job";
/// Start a recurrence workflow instance.
pub const WORKFLOW: &str = "workflow";
/// Publish a `reminder-fired` event.
pub const PUBLISH: &str = "publish";

/// The [`PUBLISH`] payload: the reminder and when it fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    pub reminder: Reminder,
    pub fired_at: Timestamp,
}

/// Records that task `task_id`'s job must follow its reminder row.
pub async fn sync_job(conn: &mut PgConnection, task_id: Uuid) -> Result<(), sqlx::Error> {
    intent::record(
        conn,
        &reminder_job_name(task_id),
        JOB,
        Some(task_id),
        &json!({ "task_id": task_id }),
    )
    .await
}

/// Records that workflow instance `instance_id` must be started with `input`.
pub async fn start_recurrence(
    conn: &mut PgConnection,
    instance_id: &str,
    input: &RecurrenceInput,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_value(input).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    intent::record(
        conn,
        instance_id,
        WORKFLOW,
        Some(input.next.parent_task_id),
        &payload,
    )
    .await
}

/// Records that `firing` must be published; its event id.
pub async fn publish_fired(conn: &mut PgConnection, firing: &Firing) -> Result<Uuid, sqlx::Error> {
    let event_id = firing.reminder.event_id();
    let payload = serde_json::to_value(firing).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    intent::record(
        conn,
        &event_id.to_string(),
        PUBLISH,
        Some(firing.reminder.task_id),
        &payload,
    )
    .await?;
    Ok(event_id)
}

/// Carries out this service's intents.
#[derive(Debug, Clone)]
pub struct Actions {
    pub pool: PgPool,
    pub jobs: Jobs,
    pub workflows: Starter,
    pub sidecar: Sidecar,
}

impl Actions {
    /// Does one intent (the dispatcher's span names its task). An unknown
    /// kind or unreadable payload, or a call the sidecar refuses, is
    /// [`ActError::Refused`]; everything else is worth retrying.
    pub async fn act(&self, intent: Intent) -> Result<(), ActError> {
        match intent.kind.as_str() {
            JOB => {
                let task_id: Uuid = parse(&intent.payload["task_id"])?;
                let row = db::reminder(&self.pool, task_id)
                    .await
                    .map_err(|e| ActError::Transient(e.to_string()))?;
                match row.filter(|r| r.status == "scheduled") {
                    Some(r) => {
                        self.jobs.schedule(&r.reminder()).await?;
                        tracing::info!(remind_at = %r.remind_at, "reminder job scheduled");
                    }
                    None => {
                        self.jobs.delete(&intent.key).await?;
                        tracing::info!("reminder job deleted");
                    }
                }
            }
            WORKFLOW => {
                let input: RecurrenceInput = parse(&intent.payload)?;
                let started = self
                    .workflows
                    .start(workflow::RECURRENCE_WORKFLOW, &intent.key, &input)
                    .await?;
                tracing::info!(workflow = %intent.key, due_date = %input.next.due_date, ?started, "recurrence workflow started");
            }
            PUBLISH => {
                let firing: Firing = parse(&intent.payload)?;
                let event = firing.reminder.fired(firing.fired_at);
                self.sidecar
                    .publish(Topic::Reminders, &event, crate::APP_ID)
                    .await?;
                tracing::info!(event_id = %event.event_id, remind_at = %firing.reminder.remind_at, "reminder-fired published");
            }
            other => return Err(ActError::Refused(format!("unknown intent kind {other}"))),
        }
        Ok(())
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ActError> {
    serde_json::from_value(v.clone()).map_err(ActError::unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firing_publishes_the_reminders_derived_event_whenever_it_is_retried() {
        let reminder = Reminder {
            task_id: Uuid::from_u128(1),
            user_id: "alice".to_owned(),
            title: "call".to_owned(),
            due_date: None,
            remind_at: Timestamp::parse("2026-03-01T08:00:00Z").unwrap(),
        };
        let firing = Firing {
            reminder: reminder.clone(),
            fired_at: Timestamp::parse("2026-03-01T08:00:00.020Z").unwrap(),
        };
        let stored = serde_json::to_value(&firing).unwrap();
        let again: Firing = serde_json::from_value(stored).unwrap();
        assert_eq!(again, firing);
        assert_eq!(
            again.reminder.fired(again.fired_at).event_id,
            reminder.event_id()
        );
    }
}
