//! `POST /job/<name>`: the sidecar calls it when a reminder job is due.
//!
//! The job's data is the [`Reminder`]. If it is still the task's scheduled
//! reminder, `reminder-fired` is published to `reminders` (event id derived
//! from the task and the time, so a repeated trigger publishes the same
//! event) and the reminder is marked fired. Answers: 200 when published,
//! already published, stale (cancelled or replaced) or unusable (logged);
//! 503 when the database or the broker cannot be reached, so that the job's
//! failure policy tries again. Never 404: Dapr takes a 404 as success and
//! drops the trigger.

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
    let bytes = body.into_bytes().await.unwrap_or_default();
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
            tracing::warn!(task_id = %reminder.task_id, error = %e, "reminder not published yet; the job retries");
            metrics::counter!("reminder_triggers_total", "outcome" => "retry").increment(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "dependency_unavailable", "message": e})),
            )
                .into_response()
        }
    }
}

fn answer(status: StatusCode, outcome: &str) -> Response {
    (status, Json(json!({ "status": outcome }))).into_response()
}
