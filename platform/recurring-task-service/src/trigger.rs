//! `POST /job/<name>`: the sidecar calls it when a reminder job is due.
//!
//! The job's data is the [`Reminder`]. If it is still the task's scheduled
//! reminder, it is marked fired and its `reminder-fired` (event id derived
//! from the task and the time, so a repeat is the same event) is published
//! to `reminders` right after ([`RecurringService::fire`]). Answers: 200 when
//! fired, already fired, stale (cancelled or replaced) or unusable (JSON that
//! is not a reminder of this job; logged); 400 when the body cannot be read
//! (the connection broke mid-body) and 503 when the database cannot be
//! reached, so that the job's failure policy tries again. Never 404: Dapr
//! takes a 404 as success and drops the trigger.

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json, Path},
};
use serde_json::json;
use todo_contract::Reminder;

use crate::service::RecurringService;

#[handler]
pub async fn trigger(
    service: Data<&RecurringService>,
    Path(name): Path<String>,
    body: poem::Body,
) -> Response {
    let bytes = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(job = %name, error = %e, "job trigger body could not be read; the job retries");
            metrics::counter!("reminder_triggers_total", "outcome" => "retry").increment(1);
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "body_unreadable", "message": format!("the trigger's body could not be read: {e}")})),
            )
                .into_response();
        }
    };
    let reminder: Reminder = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(job = %name, error = %e, "job trigger without a usable reminder; ignored");
            metrics::counter!("reminder_triggers_total", "outcome" => "ignored").increment(1);
            return answer(StatusCode::OK, "ignored");
        }
    };
    if reminder.job_name() != name {
        tracing::warn!(task_id = %reminder.task_id, job = %name, "job name does not match its reminder; ignored");
        return answer(StatusCode::OK, "ignored");
    }
    match service.fire(&reminder).await {
        Ok(outcome) => {
            metrics::counter!("reminder_triggers_total", "outcome" => outcome.as_str())
                .increment(1);
            answer(StatusCode::OK, outcome.as_str())
        }
        Err(e) => {
            tracing::warn!(task_id = %reminder.task_id, error = %e, "reminder not fired yet; the job retries");
            metrics::counter!("reminder_triggers_total", "outcome" => "retry").increment(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "dependency_unavailable", "message": e.to_string()})),
            )
                .into_response()
        }
    }
}

fn answer(status: StatusCode, outcome: &str) -> Response {
    (status, Json(json!({ "status": outcome }))).into_response()
}
