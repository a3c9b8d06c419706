//! The recurrence workflow's activity: create the next instance through the
//! Todo service (Dapr service invocation) and record it in the series.
//!
//! The series row stays locked from the "still active?" check until the new
//! instance is recorded, so a deletion that ends the series either happens
//! before (no instance is created) or waits for it: a completion racing a
//! deletion never resurrects the series.

use std::sync::Arc;

use dapr::workflow::{ActivityContext, Registry, RegistryExt, WorkflowError};
use serde_json::json;
use sqlx::PgPool;
use todo_core::sidecar::Sidecar;
use todo_workflows::recurrence::{self, RecurrenceInput, RecurrenceOutcome};
use tracing::Instrument;
use uuid::Uuid;

use crate::db;

/// What the activity needs.
pub struct Deps {
    pub pool: PgPool,
    pub sidecar: Sidecar,
    pub todo_app_id: String,
}

/// Registers the recurrence workflow and its activity.
pub fn register(registry: &mut Registry, deps: Arc<Deps>) {
    registry.add_workflow(recurrence::RECURRENCE_WORKFLOW, recurrence::recurrence_v1);
    registry.add_activity(
        recurrence::CREATE_NEXT_INSTANCE,
        move |_ctx: ActivityContext, input: Option<String>| {
            let deps = deps.clone();
            async move {
                let input: RecurrenceInput = serde_json::from_str(input.as_deref().unwrap_or("null"))?;
                let span = tracing::info_span!("create_next", task_id = %input.next.parent_task_id, series_id = %input.series_id);
                let outcome = create_next(&deps, &input).instrument(span).await.map_err(|e| {
                    tracing::warn!(task_id = %input.next.parent_task_id, error = %e, "creating the next instance failed; the workflow retries");
                    WorkflowError::Other(e)
                })?;
                Ok(Some(serde_json::to_string(&outcome)?))
            }
        },
    );
}

async fn create_next(deps: &Deps, input: &RecurrenceInput) -> Result<RecurrenceOutcome, String> {
    let next = &input.next;
    let parent: Uuid = next
        .parent_task_id
        .parse()
        .map_err(|e| format!("parent_task_id: {e}"))?;
    let mut tx = deps.pool.begin().await.map_err(|e| e.to_string())?;
    match db::lock_series(&mut tx, input.series_id)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(true) => {}
        Some(false) => {
            tracing::info!("series ended before the next instance was created; none is");
            return Ok(RecurrenceOutcome::SeriesEnded);
        }
        // The workflow is started inside the consumer's transaction, which
        // may not have committed the new series yet: try again shortly.
        None => return Err(format!("series {} is not stored yet", input.series_id)),
    }
    let url = format!(
        "{}/v1.0/invoke/{}/method/api/v1/tasks",
        deps.sidecar.http_base(),
        deps.todo_app_id
    );
    let body = json!({
        "title": next.title,
        "description": next.description,
        "due_date": next.due_date,
        "reminder_time": next.reminder_time,
        "is_recurring": true,
        "recurrence_schedule": next.recurrence_schedule,
        "timezone": next.timezone,
        "parent_task_id": next.parent_task_id,
    });
    let response = deps
        .sidecar
        .http()
        .post(&url)
        .header("X-User-Id", &input.user_id)
        .header(
            "Idempotency-Key",
            recurrence::idempotency_key(&next.parent_task_id),
        )
        .timeout(std::time::Duration::from_secs(30))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("invoking {}: {e}", deps.todo_app_id))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        tracing::error!(status = %status, body = %text, "the Todo service refused the next instance");
        return Ok(RecurrenceOutcome::Refused {
            status: status.as_u16(),
            reason: text,
        });
    }
    if !status.is_success() {
        return Err(format!("{} answered {status}: {text}", deps.todo_app_id));
    }
    let created: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("reading the created task: {e}"))?;
    let task_id: Uuid = created["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("the created task has no id: {text}"))?;
    db::record_next(&mut tx, input.series_id, task_id, parent, next.due_date)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    metrics::counter!("recurrence_instances_total", "outcome" => "created").increment(1);
    tracing::info!(next_task_id = %task_id, due_date = %next.due_date, "next instance created");
    Ok(RecurrenceOutcome::Created { task_id })
}
