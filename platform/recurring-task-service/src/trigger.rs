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

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json, Path},
};
use serde_json::json;
use sqlx::PgPool;
use todo_core::envelope::{EventEnvelope, EventType, Topic};
use todo_core::sidecar::Sidecar;
use todo_workflows::reminder::Reminder;

use crate::db::{self, TriggerState};

/// What a trigger needs.
pub struct TriggerDeps {
    pub pool: PgPool,
    pub sidecar: Sidecar,
}

/// The `reminder-fired` event of `r`, fired at `now`.
pub fn reminder_fired(r: &Reminder, now: DateTime<Utc>) -> EventEnvelope {
    let mut event = EventEnvelope::new(
        EventType::ReminderFired,
        now,
        r.task_id,
        r.user_id.clone(),
        serde_json::to_value(r).unwrap_or_default(),
    );
    event.event_id = r.event_id();
    event
}

#[handler]
pub async fn trigger(
    deps: Data<&Arc<TriggerDeps>>,
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
    match fire(&deps, &reminder).await {
        Ok(outcome) => {
            metrics::counter!("reminder_triggers_total", "outcome" => outcome).increment(1);
            answer(StatusCode::OK, outcome)
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

async fn fire(deps: &TriggerDeps, r: &Reminder) -> Result<&'static str, String> {
    match db::trigger_state(&deps.pool, r)
        .await
        .map_err(|e| e.to_string())?
    {
        TriggerState::Stale => {
            tracing::info!(task_id = %r.task_id, "reminder was cancelled or replaced; not published");
            Ok("stale")
        }
        TriggerState::AlreadyFired => Ok("already_fired"),
        TriggerState::Due => {
            let event = reminder_fired(r, Utc::now());
            deps.sidecar
                .publish(Topic::Reminders, &event, crate::APP_ID)
                .await
                .map_err(|e| e.to_string())?;
            db::mark_fired(&deps.pool, r)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(task_id = %r.task_id, event_id = %event.event_id, remind_at = %r.remind_at, "reminder fired");
            Ok("fired")
        }
    }
}

fn answer(status: StatusCode, outcome: &str) -> Response {
    (status, Json(json!({ "status": outcome }))).into_response()
}
