//! The recurrence workflow: creating the next instance of a recurring task,
//! durably, exactly once per completed instance.
//!
//! The orchestrator is deterministic (no clock, no I/O): it hands the one
//! side effect, creating the task, to the [`CREATE_NEXT_INSTANCE`] activity
//! registered here with the orchestrator ([`register`]). Exactly once comes
//! from two derived names: the instance id ([`instance_id`]) so that a
//! redelivered completion finds the running instance, and the Todo
//! Idempotency-Key ([`idempotency_key`]) so that a re-run after completion, or
//! an activity retried after the task was created, gets the same task back.
//!
//! The activity never holds a lock across the call to the Todo service.
//! Under a short lock on the series row it checks that the series is active
//! (and not already past this instance) and records that it is being created
//! (`next_instance`: 'creating'); it releases the lock, calls the Todo
//! service; then, under the lock again, it records the instance as the
//! series' newest if the series is still active, or else *withdraws* it
//! (deletes it through the Todo service; 'withdrawing' → 'withdrawn'). A
//! deletion that ends the series therefore either commits before the outcome
//! is recorded (no instance survives) or after it (it ends a series whose
//! newest instance exists, as any deletion does): the two never both win,
//! and the deletion never waits for the Todo service. A retried, replayed or
//! duplicated activity (on any replica) reads the recorded state and
//! finishes what it says.
//!
//! The Todo service's answer decides whether to go on trying ([`classify`]):
//! only a refusal of the request itself (a 4xx of the service's own, such as
//! 400 or 422) ends the step; a 401 or 403 (a rotated token, a caller missing
//! from `TODO_TRUSTED_CALLERS`), a 404 from its sidecar (no such app), 408,
//! 429, 5xx and transport errors are retried with the activity's backoff, and
//! a refused authentication is logged at error level and counted
//! (`recurrence_todo_auth_failures_total`) so operators see it.

use std::sync::Arc;
use std::time::Duration;

use dapr::workflow::{
    ActivityContext, ActivityOptions, Registry, RegistryExt, Result as WorkflowResult, RetryPolicy,
    WorkflowContext, WorkflowContextExt, WorkflowError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use todo_core::{auth::scheme::ON_BEHALF_OF, sidecar::Sidecar};
use todo_schedule::plan::NextInstance;
use tracing::Instrument;
use uuid::Uuid;

use crate::db::{self, NextState};

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
    /// The series ended while the instance was being created: it was
    /// created and deleted again, so none survives.
    Withdrawn { task_id: Uuid },
    /// The Todo service refused the request itself for good (a 4xx of its
    /// own, not an authentication or availability failure); logged, not retried.
    Refused { status: u16, reason: String },
    /// The series already has an instance due at or after this one: the
    /// completion was of an older instance (reopened and completed again after
    /// the record of its next instance was pruned). None is created.
    Superseded,
    /// An earlier run of this step decided that none is made (the series
    /// ended or had moved past it, or the Todo service refused it).
    Skipped,
}

/// The instance id for the completion of `completed_task_id`.
pub fn instance_id(completed_task_id: Uuid) -> String {
    format!("recurrence-{completed_task_id}")
}

/// The instance id of the `rescue`th new start of that workflow by the
/// watchdog ([`crate::service::watch`]); the first one's for 0.
pub fn rescue_instance_id(completed_task_id: Uuid, rescue: i32) -> String {
    let id = instance_id(completed_task_id);
    if rescue == 0 {
        id
    } else {
        format!("{id}-r{rescue}")
    }
}

/// The Idempotency-Key of the create call for the instance after `completed_task_id`.
pub fn idempotency_key(completed_task_id: Uuid) -> String {
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

/// What the activity needs.
pub struct Deps {
    pub pool: PgPool,
    pub sidecar: Sidecar,
    pub todo_app_id: String,
}

/// Registers the recurrence workflow and its activity.
pub fn register(registry: &mut Registry, deps: Arc<Deps>) {
    registry.add_workflow(RECURRENCE_WORKFLOW, recurrence_v1);
    registry.add_activity(
        CREATE_NEXT_INSTANCE,
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

/// Why creating the next instance did not finish (the activity retries).
#[derive(Debug, thiserror::Error)]
enum CreateError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("series {0} is not stored yet")]
    SeriesNotStored(Uuid),
    /// The Todo service (or its sidecar) is away or failing.
    #[error("{0}")]
    Todo(String),
    /// The Todo service does not accept this service's credentials (401/403).
    #[error("refused authentication: {0}")]
    Unauthorized(String),
}

/// What the Todo service answered to the create call.
#[derive(Debug)]
enum Answer {
    Created(Uuid),
    /// Created by an earlier attempt and deleted since (409 `deleted_since`).
    Gone,
    Refused {
        status: u16,
        reason: String,
    },
}

async fn create_next(deps: &Deps, input: &RecurrenceInput) -> Result<RecurrenceOutcome, String> {
    create_next_instance(deps, input).await.map_err(|e| {
        if let CreateError::Unauthorized(_) = e {
            metrics::counter!("recurrence_todo_auth_failures_total").increment(1);
            tracing::error!(error = %e, todo_app_id = %deps.todo_app_id,
                "the Todo service refused the recurring service's credentials; retrying \
                 (check TODO_TRUSTED_CALLERS and the app API token)");
        }
        e.to_string()
    })
}

async fn create_next_instance(
    deps: &Deps,
    input: &RecurrenceInput,
) -> Result<RecurrenceOutcome, CreateError> {
    let next = &input.next;
    let parent = next.parent_task_id;
    // 1. Under a short lock: may it be created? Record that it is being.
    let mut tx = deps.pool.begin().await?;
    let series = db::lock_series(&mut tx, input.series_id).await?;
    let active = series.map(|s| s.is_active);
    match (db::next_instance(&mut tx, parent).await?, active) {
        (Some(NextState::Created(task_id)), _) => {
            tracing::info!(next_task_id = %task_id, "next instance already created");
            return Ok(RecurrenceOutcome::Created { task_id });
        }
        (Some(NextState::Withdrawn(task_id)), _) => {
            return Ok(task_id.map_or(RecurrenceOutcome::SeriesEnded, |task_id| {
                RecurrenceOutcome::Withdrawn { task_id }
            }));
        }
        (Some(NextState::Withdrawing(task_id)), _) => {
            tx.commit().await?;
            withdraw(deps, input, task_id).await?;
            return Ok(RecurrenceOutcome::Withdrawn { task_id });
        }
        (Some(NextState::Skipped), _) => return Ok(RecurrenceOutcome::Skipped),
        // An earlier attempt may have created it: finish what it started.
        (Some(NextState::Creating), _) => {}
        (None | Some(NextState::Requested), None) => {
            return Err(CreateError::SeriesNotStored(input.series_id));
        }
        (None | Some(NextState::Requested), Some(false)) => {
            db::move_next(&mut tx, parent, &["requested"], "skipped", None).await?;
            tx.commit().await?;
            tracing::info!("series ended before the next instance was created; none is");
            return Ok(RecurrenceOutcome::SeriesEnded);
        }
        (None | Some(NextState::Requested), Some(true)) => {
            if series.is_some_and(|s| superseded(next, &s)) {
                db::move_next(&mut tx, parent, &["requested"], "skipped", None).await?;
                tx.commit().await?;
                tracing::info!("the series already has a later instance; none is created");
                return Ok(RecurrenceOutcome::Superseded);
            }
            db::begin_next(&mut tx, parent, input.series_id).await?
        }
    }
    tx.commit().await?;

    // 2. No lock held: create it (the Idempotency-Key makes a repeat the same task).
    let task_id = match invoke_create(deps, input).await? {
        Answer::Created(task_id) => task_id,
        Answer::Gone => {
            let mut conn = deps.pool.acquire().await?;
            db::move_next(
                &mut conn,
                parent,
                &["creating", "withdrawing"],
                "withdrawn",
                None,
            )
            .await?;
            tracing::info!("the next instance was created and deleted since");
            return Ok(RecurrenceOutcome::SeriesEnded);
        }
        Answer::Refused { status, reason } => {
            let mut conn = deps.pool.acquire().await?;
            db::move_next(&mut conn, parent, &["creating"], "skipped", None).await?;
            metrics::counter!("recurrence_instances_total", "outcome" => "refused").increment(1);
            return Ok(RecurrenceOutcome::Refused { status, reason });
        }
    };

    // 3. Under a short lock again: keep it, or withdraw it if the series ended meanwhile.
    let mut tx = deps.pool.begin().await?;
    let active = db::lock_series(&mut tx, input.series_id)
        .await?
        .is_some_and(|s| s.is_active);
    if active && db::move_next(&mut tx, parent, &["creating"], "created", Some(task_id)).await? {
        db::record_next(
            &mut tx,
            input.series_id,
            task_id,
            parent,
            next.due_date.get(),
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("recurrence_instances_total", "outcome" => "created").increment(1);
        tracing::info!(next_task_id = %task_id, due_date = %next.due_date, "next instance created");
        return Ok(RecurrenceOutcome::Created { task_id });
    }
    match db::next_instance(&mut tx, parent).await? {
        // A duplicate of this activity recorded it first.
        Some(NextState::Created(task_id)) => return Ok(RecurrenceOutcome::Created { task_id }),
        Some(NextState::Withdrawn(_)) => return Ok(RecurrenceOutcome::Withdrawn { task_id }),
        _ => {}
    }
    db::move_next(
        &mut tx,
        parent,
        &["creating", "withdrawing"],
        "withdrawing",
        Some(task_id),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(next_task_id = %task_id, "series ended while the next instance was created; withdrawing it");
    withdraw(deps, input, task_id).await?;
    Ok(RecurrenceOutcome::Withdrawn { task_id })
}

/// Whether `series` already has an instance due at or after `next`: the
/// completion was of an older instance, reopened and completed again, whose
/// next instance exists (its record may have been pruned since).
fn superseded(next: &NextInstance, series: &db::SeriesLock) -> bool {
    next.due_date.get() <= series.next_due_date
}

/// The Todo service's sidecar URL of `path`.
fn todo_url(deps: &Deps, path: &str) -> String {
    format!(
        "{}/v1.0/invoke/{}/method{path}",
        deps.sidecar.http_base(),
        deps.todo_app_id
    )
}

/// Creates the next instance through the Todo service.
async fn invoke_create(deps: &Deps, input: &RecurrenceInput) -> Result<Answer, CreateError> {
    let next = &input.next;
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
        .post(todo_url(deps, "/api/v1/tasks"))
        .header(ON_BEHALF_OF, &input.user_id)
        .header("Idempotency-Key", idempotency_key(next.parent_task_id))
        .json(&body)
        .send()
        .await
        .map_err(|e| CreateError::Todo(format!("invoking {}: {e}", deps.todo_app_id)))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let answer = classify(status, &text);
    if let Ok(Answer::Refused { .. }) = &answer {
        tracing::error!(status = %status, body = %text, "the Todo service refused the next instance");
    }
    answer.map_err(|e| match e {
        CreateError::Todo(e) => CreateError::Todo(format!("{}: {e}", deps.todo_app_id)),
        e => e,
    })
}

/// What an answer of the Todo service (through its sidecar) to the create
/// call means. Only a refusal of the request itself is final
/// ([`Answer::Refused`]: 400, 409 other than `deleted_since`, 413, 415, 422,
/// and a 404 with the service's own error body); authentication failures
/// (401, 403: [`CreateError::Unauthorized`]) and availability failures (408,
/// 429, 5xx, a 404 that is not the service's, such as its sidecar finding no
/// such app) are errors, which the activity's retry policy retries.
fn classify(status: reqwest::StatusCode, text: &str) -> Result<Answer, CreateError> {
    use reqwest::StatusCode as S;
    if status.is_success() {
        let created: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| CreateError::Todo(format!("reading the created task: {e}")))?;
        return created["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(Answer::Created)
            .ok_or_else(|| CreateError::Todo(format!("the created task has no id: {text}")));
    }
    match status {
        S::CONFLICT if text.contains("deleted_since") => Ok(Answer::Gone),
        S::UNAUTHORIZED | S::FORBIDDEN => Err(CreateError::Unauthorized(format!(
            "answered {status}: {text}"
        ))),
        S::NOT_FOUND if !is_own_error(text) => Err(CreateError::Todo(format!(
            "its sidecar answered {status}: {text}"
        ))),
        S::REQUEST_TIMEOUT | S::TOO_MANY_REQUESTS => {
            Err(CreateError::Todo(format!("answered {status}: {text}")))
        }
        s if s.is_client_error() => Ok(Answer::Refused {
            status: status.as_u16(),
            reason: text.to_owned(),
        }),
        _ => Err(CreateError::Todo(format!("answered {status}: {text}"))),
    }
}

/// Whether an error body is the Todo service's own (`{"error": "<code>", …}`,
/// `todo_core::problem`) rather than its sidecar's (`{"errorCode": …}`) or
/// nobody's (empty).
fn is_own_error(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["error"].is_string())
}

/// Deletes an instance created after its series ended, then records it withdrawn.
async fn withdraw(deps: &Deps, input: &RecurrenceInput, task_id: Uuid) -> Result<(), CreateError> {
    let response = deps
        .sidecar
        .http()
        .delete(todo_url(deps, &format!("/api/v1/tasks/{task_id}")))
        .header(ON_BEHALF_OF, &input.user_id)
        .send()
        .await
        .map_err(|e| CreateError::Todo(format!("invoking {}: {e}", deps.todo_app_id)))?;
    let status = response.status();
    if !(status.is_success() || status == reqwest::StatusCode::NOT_FOUND) {
        let text = response.text().await.unwrap_or_default();
        let why = format!(
            "{} answered {status} to the withdrawal: {text}",
            deps.todo_app_id
        );
        return Err(match status {
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                CreateError::Unauthorized(why)
            }
            _ => CreateError::Todo(why),
        });
    }
    let mut conn = deps.pool.acquire().await?;
    db::move_next(
        &mut conn,
        input.next.parent_task_id,
        &["withdrawing"],
        "withdrawn",
        Some(task_id),
    )
    .await?;
    metrics::counter!("recurrence_instances_total", "outcome" => "withdrawn").increment(1);
    tracing::info!(next_task_id = %task_id, "next instance withdrawn: its series ended meanwhile");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_completed_task_only() {
        let id = Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap();
        assert_eq!(
            instance_id(id),
            "recurrence-6f9619ff-8b86-4011-b42d-00c04fc964ff"
        );
        assert_eq!(
            idempotency_key(id),
            "recurrence-6f9619ff-8b86-4011-b42d-00c04fc964ff"
        );
        assert_ne!(
            instance_id(id),
            instance_id(Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964fe").unwrap())
        );
    }

    fn problem(code: &str) -> String {
        json!({"error": code, "message": "…"}).to_string()
    }

    #[test]
    fn authentication_and_availability_failures_are_retried_and_never_end_the_series() {
        use reqwest::StatusCode as S;
        let dapr_error =
            json!({"errorCode": "ERR_DIRECT_INVOKE", "message": "failed to resolve address"})
                .to_string();
        for (status, body) in [
            (S::UNAUTHORIZED, problem("unauthorized")),
            (S::FORBIDDEN, problem("forbidden")),
            (S::REQUEST_TIMEOUT, String::new()),
            (S::TOO_MANY_REQUESTS, String::new()),
            (S::INTERNAL_SERVER_ERROR, dapr_error.clone()),
            (S::BAD_GATEWAY, String::new()),
            (S::SERVICE_UNAVAILABLE, problem("dependency_unavailable")),
            // Not the Todo service's answer: its sidecar found no such app or route.
            (S::NOT_FOUND, dapr_error.clone()),
            (S::NOT_FOUND, String::new()),
        ] {
            let answer = classify(status, &body);
            assert!(answer.is_err(), "{status} {body}: retried, not {answer:?}");
        }
        for status in [S::UNAUTHORIZED, S::FORBIDDEN] {
            assert!(matches!(
                classify(status, &problem("unauthorized")),
                Err(CreateError::Unauthorized(_))
            ));
        }
    }

    #[test]
    fn a_refusal_of_the_request_itself_ends_it() {
        use reqwest::StatusCode as S;
        for (status, code) in [
            (S::BAD_REQUEST, "invalid_json"),
            (S::UNPROCESSABLE_ENTITY, "validation_failed"),
            (S::CONFLICT, "idempotency_key_reused"),
            (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            (S::NOT_FOUND, "not_found"),
        ] {
            let answer = classify(status, &problem(code));
            assert!(
                matches!(answer, Ok(Answer::Refused { status: s, .. }) if s == status.as_u16()),
                "{status} {code}: refused, not {answer:?}"
            );
        }
        assert!(matches!(
            classify(S::CONFLICT, &problem("deleted_since")),
            Ok(Answer::Gone)
        ));
        let id = Uuid::from_u128(9);
        assert!(matches!(
            classify(S::CREATED, &json!({"id": id}).to_string()),
            Ok(Answer::Created(created)) if created == id
        ));
    }

    #[test]
    fn only_a_completion_the_series_has_moved_past_is_superseded() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let next = |due: &str| NextInstance {
            title: "stand-up".into(),
            description: None,
            due_date: todo_contract::Timestamp::new(at(due)),
            reminder_time: None,
            recurrence_schedule: todo_contract::Frequency::Daily,
            timezone: "UTC".into(),
            parent_task_id: Uuid::from_u128(1),
        };
        let series = db::SeriesLock {
            is_active: true,
            next_due_date: at("2026-03-10T09:00:00Z"),
        };
        // The newest instance (due 10 Mar) completed: its next is due later.
        assert!(!superseded(&next("2026-03-11T09:00:00Z"), &series));
        // An older one (due 8 Mar) completed again: its next (9 Mar) exists.
        assert!(superseded(&next("2026-03-09T09:00:00Z"), &series));
        assert!(superseded(&next("2026-03-10T09:00:00Z"), &series));
    }

    #[test]
    fn a_withdrawn_instance_is_named_in_the_output() {
        let id = Uuid::from_u128(7);
        let json = serde_json::to_value(RecurrenceOutcome::Withdrawn { task_id: id }).unwrap();
        assert_eq!(json["outcome"], "withdrawn");
        assert_eq!(json["task_id"], id.to_string());
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
