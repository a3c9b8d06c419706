//! User story 4 (recurring tasks) and guarantee 6, against the real stack: the
//! recurring-task service consumes `task-events`, runs the `recurrence_v1`
//! Dapr Workflow (placement, scheduler, PostgreSQL actor state) and creates the
//! next instance through the Todo service with Dapr service invocation.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use todo_local_stack::Stack;

use crate::support::{
    Answer, TodoClient, admin_db, eventually, get_json, metric, produce, service_metric,
    terminate_workflow, text, with_service_env,
};
use crate::{Ctx, exclusive, shared};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        shared!(
            ctx,
            daily_weekly_and_monthly_completions_create_the_next_instance_from_the_due_date
        ),
        shared!(
            ctx,
            monthly_keeps_its_anchor_across_month_ends_and_daily_keeps_wall_clock_time_across_dst
        ),
        shared!(
            ctx,
            deleting_a_recurring_task_ends_its_series_and_a_late_completion_creates_nothing
        ),
        shared!(
            ctx,
            the_same_completion_delivered_twice_creates_one_next_instance
        ),
        shared!(
            ctx,
            switching_recurrence_off_pauses_the_series_and_switching_it_on_resumes_it
        ),
        shared!(
            ctx,
            schedules_and_reminders_answer_bad_input_with_json_errors
        ),
        shared!(
            ctx,
            another_users_task_is_refused_as_a_parent_so_their_series_survives
        ),
        shared!(
            ctx,
            an_instance_whose_parent_was_deleted_stays_editable
        ),
        exclusive!(
            ctx,
            a_recurring_service_killed_mid_workflow_finishes_it_after_restart_with_one_instance
        ),
        exclusive!(
            ctx,
            a_deletion_while_the_next_instance_waits_on_a_slow_todo_service_ends_the_series_at_once_and_no_instance_survives
        ),
        exclusive!(
            ctx,
            a_series_outlives_the_todo_service_refusing_the_recurring_service_until_trust_returns
        ),
        exclusive!(
            ctx,
            a_finished_workflows_state_is_purged_after_the_retention
        ),
        exclusive!(
            ctx,
            a_completion_whose_workflow_instance_ended_without_its_step_gets_one_next_instance
        ),
    ]
}

fn recurring_url(stack: &Stack) -> String {
    stack.app_url("recurring-task-service")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339 literal")
        .to_utc()
}

fn time_of(v: &Value, pointer: &str) -> Result<DateTime<Utc>> {
    let s = text(v, pointer);
    Ok(DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("{pointer} = {s:?} is not RFC 3339"))?
        .to_utc())
}

/// Creates a recurring task due at `due` in `timezone`.
async fn recurring_task(
    client: &TodoClient,
    title: &str,
    frequency: &str,
    due: &str,
    timezone: &str,
) -> Result<Value> {
    client
        .create(json!({
            "title": title, "recurrence_schedule": frequency,
            "due_date": due, "timezone": timezone,
        }))
        .await?
        .expect(201)
}

/// The user's tasks whose `parent_task_id` is `parent`.
async fn children(client: &TodoClient, parent: &str) -> Result<Vec<Value>> {
    let page = client
        .send("GET", "/api/v1/tasks?limit=200", None, &[])
        .await?
        .expect(200)?;
    Ok(page["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["parent_task_id"] == parent)
        .collect())
}

/// Waits (up to `within`) for the instance after `parent`; it and the time it took.
async fn next_instance(
    client: &TodoClient,
    parent: &str,
    within: Duration,
) -> Result<(Value, Duration)> {
    let started = Instant::now();
    let next = eventually(within, &format!("the instance after {parent}"), || async {
        Ok(children(client, parent).await?.into_iter().next())
    })
    .await?;
    Ok((next, started.elapsed()))
}

/// Completes `task` and waits for its next instance (at most 5 s); prints the time.
async fn complete_and_follow(client: &TodoClient, task: &Value) -> Result<Value> {
    let id = text(task, "/id");
    let started = Instant::now();
    client.complete(id, None).await?.expect(200)?;
    let (next, _) = next_instance(client, id, Duration::from_secs(5)).await?;
    eprintln!(
        "    completion of {} ({}) -> next instance visible after {} ms",
        text(task, "/title"),
        text(task, "/recurrence_schedule"),
        started.elapsed().as_millis()
    );
    Ok(next)
}

/// A schedule (series) by id.
async fn schedule(stack: &Stack, series_id: &str) -> Result<Value> {
    get_json(
        &format!("{}/api/v1/schedules/{series_id}", recurring_url(stack)),
        &stack.operator_token(),
    )
    .await?
    .expect(200)
}

async fn daily_weekly_and_monthly_completions_create_the_next_instance_from_the_due_date(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    // Due dates in the past: the next one follows the due date, not "now".
    let cases = [
        ("daily", "2026-03-10T09:00:00Z", "2026-03-11T09:00:00Z"),
        ("weekly", "2026-03-10T09:00:00Z", "2026-03-17T09:00:00Z"),
        ("monthly", "2026-01-31T09:00:00Z", "2026-02-28T09:00:00Z"),
    ];
    for (frequency, due, expected) in cases {
        let task = recurring_task(
            &client,
            &format!("{frequency} chore"),
            frequency,
            due,
            "UTC",
        )
        .await?;
        let next = complete_and_follow(&client, &task).await?;
        ensure!(
            time_of(&next, "/due_date")? == at(expected),
            "{frequency}: next due {} (expected {expected})",
            next["due_date"]
        );
        ensure!(
            next["status"] == "pending" && next["is_recurring"] == true,
            "{frequency}: {next}"
        );
        ensure!(
            next["recurrence_schedule"] == frequency && next["title"] == task["title"],
            "{frequency}: {next}"
        );
        let s = eventually(Duration::from_secs(5), "the schedule follows", || async {
            let s = schedule(stack, text(&task, "/id")).await?;
            Ok((s["current_task_id"] == next["id"]).then_some(s))
        })
        .await?;
        ensure!(s["is_active"] == true && s["instances"] == 2, "{s}");
        ensure!(
            s["parent_task_id"] == task["id"] && s["frequency"] == frequency,
            "{s}"
        );
        ensure!(time_of(&s, "/next_due_date")? == at(expected), "{s}");
    }
    Ok(())
}

async fn monthly_keeps_its_anchor_across_month_ends_and_daily_keeps_wall_clock_time_across_dst(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    // 31 Jan 09:00 Berlin (CET) -> 28 Feb 09:00 CET -> 31 Mar 09:00 CEST.
    let mut task = recurring_task(
        &client,
        "rent",
        "monthly",
        "2027-01-31T09:00:00+01:00",
        "Europe/Berlin",
    )
    .await?;
    for expected in [
        "2027-02-28T08:00:00Z",
        "2027-03-31T07:00:00Z",
        "2027-04-30T07:00:00Z",
    ] {
        task = complete_and_follow(&client, &task).await?;
        ensure!(
            time_of(&task, "/due_date")? == at(expected),
            "monthly: {} (expected {expected})",
            task["due_date"]
        );
    }
    // Daily at 09:00 across the spring-forward night in New York (14 Mar 2027)
    // and the fall-back night in Berlin (25 Oct 2026).
    let cases = [
        (
            "America/New_York",
            "2027-03-13T09:00:00-05:00",
            "2027-03-14T13:00:00Z",
        ),
        (
            "Europe/Berlin",
            "2026-10-24T09:00:00+02:00",
            "2026-10-25T08:00:00Z",
        ),
        (
            "Europe/Berlin",
            "2027-03-27T09:00:00+01:00",
            "2027-03-28T07:00:00Z",
        ),
    ];
    for (tz, due, expected) in cases {
        let task = recurring_task(&client, "stand-up", "daily", due, tz).await?;
        let next = complete_and_follow(&client, &task).await?;
        ensure!(
            time_of(&next, "/due_date")? == at(expected),
            "{tz} daily from {due}: {} (expected {expected})",
            next["due_date"]
        );
        ensure!(next["timezone"] == tz, "{next}");
    }
    Ok(())
}

/// Builds a `task-completed` CloudEvent for `task` as a producer other than
/// the Todo service would (a late or replayed completion), with a fresh id.
fn completion_event(task: &Value, user: &str) -> (String, Value) {
    let mut payload = task.clone();
    payload["status"] = json!("complete");
    task_event("task-completed", &payload, user)
}

/// A CloudEvent of `event_type` about `payload` (the task snapshot), with a
/// fresh event id, as a producer other than the Todo service would send it.
fn task_event(event_type: &str, payload: &Value, user: &str) -> (String, Value) {
    let event_id = uuid::Uuid::new_v4().to_string();
    let event = json!({
        "specversion": "1.0", "id": event_id, "source": "system-tests", "type": event_type,
        "datacontenttype": "application/json",
        "data": { "event_id": event_id, "event_type": event_type, "schema_version": "1.0",
                  "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                  "task_id": payload["id"], "user_id": user, "payload": payload }
    });
    (event_id, event)
}

/// Freezes (`STOP`) or thaws (`CONT`) a service's process: a service that is
/// slow rather than gone (its connections stay open, nothing is answered).
/// Waits until the recurring service has consumed event `event_id`.
async fn consumed(stack: &Stack, event_id: &str) -> Result<()> {
    let db = admin_db(stack).await?;
    let id: uuid::Uuid = event_id.parse()?;
    eventually(
        Duration::from_secs(10),
        &format!("recurring consumed {event_id}"),
        || async {
            let n: i64 =
                sqlx::query_scalar("select count(*) from recurring.inbox where event_id = $1")
                    .bind(id)
                    .fetch_one(&db)
                    .await?;
            Ok((n == 1).then_some(()))
        },
    )
    .await
}

/// Dapr's view of a workflow instance of the recurring service.
async fn workflow(stack: &Stack, instance_id: &str) -> Result<Value> {
    get_json(
        &format!(
            "{}/v1.0/workflows/dapr/{instance_id}",
            stack.dapr_http_url("recurring-task-service")
        ),
        &stack.operator_token(),
    )
    .await?
    .expect(200)
}

/// Waits until nothing the recurring service was asked to do about the
/// completion of `task_id` is still pending: no workflow start left in its
/// outbox, and the instance `recurrence-<task_id>` absent from Dapr or
/// finished. Returns the workflow's state if it ran.
async fn settled(stack: &Stack, task_id: &str) -> Result<Option<Value>> {
    let db = admin_db(stack).await?;
    let instance = format!("recurrence-{task_id}");
    eventually(
        Duration::from_secs(10),
        "no workflow start left in the recurring service's outbox",
        || async {
            let n: i64 = sqlx::query_scalar("select count(*) from recurring.intent where key = $1")
                .bind(&instance)
                .fetch_one(&db)
                .await?;
            Ok((n == 0).then_some(()))
        },
    )
    .await?;
    let url = format!(
        "{}/v1.0/workflows/dapr/{instance}",
        stack.dapr_http_url("recurring-task-service")
    );
    eventually(
        Duration::from_secs(30),
        &format!("{instance} absent or finished"),
        || async {
            let w = get_json(&url, &stack.operator_token()).await?;
            if w.status != 200 {
                return Ok(Some(None));
            }
            let status = text(&w.body, "/runtimeStatus");
            Ok(matches!(status, "COMPLETED" | "FAILED" | "TERMINATED").then_some(Some(w.body)))
        },
    )
    .await
}

/// How many tasks (of any user, deleted ones excluded) follow `parent`.
async fn stored_children(stack: &Stack, parent: &str) -> Result<i64> {
    let db = admin_db(stack).await?;
    Ok(
        sqlx::query_scalar("select count(*) from todo.task where parent_task_id = $1")
            .bind(parent.parse::<uuid::Uuid>()?)
            .fetch_one(&db)
            .await?,
    )
}

async fn deleting_a_recurring_task_ends_its_series_and_a_late_completion_creates_nothing(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let first = recurring_task(
        &client,
        "water plants",
        "daily",
        "2026-06-01T08:00:00Z",
        "UTC",
    )
    .await?;
    let second = complete_and_follow(&client, &first).await?;
    let reminder_at = (Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let second = client
        .patch(
            text(&second, "/id"),
            json!({ "reminder_time": reminder_at }),
        )
        .await?
        .expect(200)?;
    let series = text(&first, "/id");
    eventually(
        Duration::from_secs(5),
        "the reminder is scheduled",
        || async {
            let s = schedule(stack, series).await?;
            Ok((s["pending_reminders"].as_array().map(Vec::len) == Some(1)).then_some(()))
        },
    )
    .await?;

    client.delete(text(&second, "/id")).await?.expect(204)?;
    let ended = eventually(Duration::from_secs(5), "the series ends", || async {
        let s = schedule(stack, series).await?;
        Ok((s["is_active"] == false).then_some(s))
    })
    .await?;
    ensure!(ended["ended_reason"] == "deleted", "{ended}");
    ensure!(
        ended["pending_reminders"] == json!([]),
        "the pending reminder is cancelled: {ended}"
    );
    let reminders = get_json(
        &format!(
            "{}/api/v1/reminders?task_id={}",
            recurring_url(stack),
            text(&second, "/id")
        ),
        &stack.operator_token(),
    )
    .await?
    .expect(200)?;
    ensure!(
        reminders["reminders"][0]["status"] == "cancelled",
        "{reminders}"
    );

    // A completion of the deleted instance that arrives after its deletion
    // (out of order, replayed) must not resurrect the series.
    let (event_id, event) = completion_event(&second, &client.user);
    produce(
        stack,
        "task-events",
        text(&second, "/id"),
        &event.to_string(),
    )
    .await?;
    consumed(stack, &event_id).await?;
    // Whatever the completion set in motion has finished before we count: the
    // recurrence workflow of the deleted instance either never started or has
    // completed (it could otherwise still create an instance after the count).
    settled(stack, text(&second, "/id")).await?;
    ensure!(
        stored_children(stack, text(&second, "/id")).await? == 0,
        "no instance after the deleted one"
    );
    let after = schedule(stack, series).await?;
    ensure!(
        after["is_active"] == false && after["instances"] == 2,
        "{after}"
    );
    Ok(())
}

async fn the_same_completion_delivered_twice_creates_one_next_instance(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let task = recurring_task(&client, "backup", "weekly", "2026-05-04T18:00:00Z", "UTC").await?;
    let id = text(&task, "/id");
    let next = complete_and_follow(&client, &task).await?;
    let instance = format!("recurrence-{id}");
    let first_run = eventually(
        Duration::from_secs(10),
        "the first run completes",
        || async {
            let w = workflow(stack, &instance).await?;
            Ok((w["runtimeStatus"] == "COMPLETED").then_some(w))
        },
    )
    .await?;

    // The very record the Todo service published, delivered again (same event
    // id), and the same completion under a new event id (a replaying producer).
    let record = crate::support::task_records(stack, "task-events", id)
        .await?
        .into_iter()
        .find(|r| r.envelope()["event_type"] == "task-completed")
        .context("the task-completed record")?;
    produce(stack, "task-events", id, &record.cloud_event.to_string()).await?;
    let (event_id, event) = completion_event(&task, &client.user);
    produce(stack, "task-events", id, &event.to_string()).await?;
    consumed(stack, &event_id).await?;
    // The new event id starts the same workflow instance again (it had
    // completed): wait for that run to finish too, then count.
    let second_run = eventually(
        Duration::from_secs(10),
        "the second run completes",
        || async {
            let w = workflow(stack, &instance).await?;
            Ok(
                (w["runtimeStatus"] == "COMPLETED" && w["createdAt"] != first_run["createdAt"])
                    .then_some(w),
            )
        },
    )
    .await?;
    // The re-run's create call was answered from the Idempotency-Key record:
    // its output names the instance the first run created.
    let output = text(&second_run, "/properties/dapr.workflow.output");
    ensure!(
        output.contains(text(&next, "/id")),
        "second run output: {output}"
    );
    ensure!(
        stored_children(stack, id).await? == 1,
        "exactly one next instance"
    );
    ensure!(
        children(&client, id).await?[0]["id"] == next["id"],
        "it is the first one"
    );
    Ok(())
}

async fn schedules_and_reminders_answer_bad_input_with_json_errors(stack: &Stack) -> Result<()> {
    let base = recurring_url(stack);
    let cases = [
        ("/api/v1/schedules/not-a-uuid", 400),
        (&format!("/api/v1/schedules/{}", uuid::Uuid::new_v4()), 404),
        ("/api/v1/schedules?limit=0", 400),
        ("/api/v1/schedules?is_active=maybe", 400),
        ("/api/v1/reminders?status=bogus", 400),
        ("/api/v1/reminders?task_id=nope", 400),
        ("/api/v1/nothing-here", 404),
    ];
    for (path, status) in cases {
        let a = get_json(&format!("{base}{path}"), &stack.operator_token()).await?;
        ensure!(a.status == status, "{path}: {} {}", a.status, a.body);
        ensure!(
            a.body["error"].is_string() && a.body["message"].is_string(),
            "{path}: {}",
            a.body
        );
    }
    let page = get_json(
        &format!("{base}/api/v1/schedules?is_active=true&limit=1"),
        &stack.operator_token(),
    )
    .await?
    .expect(200)?;
    ensure!(
        page["schedules"].is_array() && page["total"].is_i64(),
        "{page}"
    );
    // A job trigger without the app API token is refused on the port the
    // sidecar calls; the public port has no job triggers at all.
    let internal = stack.internal_url("recurring-task-service");
    for (url, refused) in [(&internal, 401), (&base, 404)] {
        let r = reqwest::Client::new()
            .post(format!("{url}/job/reminder-{}", uuid::Uuid::new_v4()))
            .json(&json!({}))
            .send()
            .await?;
        ensure!(
            r.status() == refused,
            "trigger without token at {url}: {}",
            r.status()
        );
    }
    Ok(())
}

async fn a_recurring_service_killed_mid_workflow_finishes_it_after_restart_with_one_instance(
    stack: &mut Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let task = recurring_task(
        &client,
        "pay invoices",
        "monthly",
        "2026-08-31T10:00:00Z",
        "UTC",
    )
    .await?;
    let id = text(&task, "/id").to_owned();
    // With the Todo service down the workflow starts but cannot create the
    // instance; its activity keeps failing and being retried.
    stack.stop_service("todo-service").await?;
    let result = async {
        let (_, event) = completion_event(&task, &client.user);
        produce(stack, "task-events", &id, &event.to_string()).await?;
        let instance = format!("recurrence-{id}");
        eventually(Duration::from_secs(15), "the workflow runs", || async {
            let w = workflow(stack, &instance).await?;
            Ok((w["runtimeStatus"] == "RUNNING").then_some(()))
        })
        .await?;
        stack.kill_service("recurring-task-service").await?;
        stack.start_service("todo-service").await?;
        stack.start_service("recurring-task-service").await?;
        let (next, waited) = next_instance(&client, &id, Duration::from_secs(90)).await?;
        eprintln!(
            "    next instance after the restart: {} ms",
            waited.as_millis()
        );
        ensure!(
            time_of(&next, "/due_date")? == at("2026-09-30T10:00:00Z"),
            "{next}"
        );
        eventually(
            Duration::from_secs(15),
            "the workflow completes",
            || async {
                let w = workflow(stack, &instance).await?;
                Ok((w["runtimeStatus"] == "COMPLETED").then_some(()))
            },
        )
        .await?;
        ensure!(
            stored_children(stack, &id).await? == 1,
            "exactly one next instance"
        );
        Ok(())
    }
    .await;
    // Leave the stack whole for the next test, whatever happened.
    stack.start_service("todo-service").await?;
    stack.start_service("recurring-task-service").await?;
    result
}

/// Waits until series `id` is active (or not) with `ended_reason`.
async fn series_becomes(stack: &Stack, id: &str, active: bool, reason: Value) -> Result<()> {
    eventually(
        Duration::from_secs(5),
        &format!("series {id} active={active} ({reason})"),
        || async {
            let s = schedule(stack, id).await?;
            Ok((s["is_active"] == active && s["ended_reason"] == reason).then_some(()))
        },
    )
    .await
}

async fn switching_recurrence_off_pauses_the_series_and_switching_it_on_resumes_it(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let task = recurring_task(&client, "gym", "weekly", "2026-07-06T17:00:00Z", "UTC").await?;
    let id = text(&task, "/id");
    series_becomes(stack, id, true, Value::Null).await?;
    client
        .patch(id, json!({ "is_recurring": false }))
        .await?
        .expect(200)?;
    series_becomes(stack, id, false, json!("not_recurring")).await?;
    let task = client
        .patch(id, json!({ "recurrence_schedule": "weekly" }))
        .await?
        .expect(200)?;
    series_becomes(stack, id, true, Value::Null).await?;
    let next = complete_and_follow(&client, &task).await?;
    ensure!(
        time_of(&next, "/due_date")? == at("2026-07-13T17:00:00Z"),
        "{next}"
    );
    Ok(())
}

async fn a_deletion_while_the_next_instance_waits_on_a_slow_todo_service_ends_the_series_at_once_and_no_instance_survives(
    stack: &mut Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let task = recurring_task(
        &client,
        "feed the cat",
        "daily",
        "2026-09-01T07:00:00Z",
        "UTC",
    )
    .await?;
    let id = text(&task, "/id").to_owned();
    series_becomes(stack, &id, true, Value::Null).await?;
    let instance = format!("recurrence-{id}");
    // The Todo service stops answering (frozen, its sockets open): creating
    // the next instance hangs on it.
    stack.pause_service("todo-service")?;
    let during = async {
        let mut done = task.clone();
        done["status"] = json!("complete");
        let (_, completed) = task_event("task-completed", &done, &client.user);
        produce(stack, "task-events", &id, &completed.to_string()).await?;
        eventually(Duration::from_secs(15), "the workflow runs", || async {
            let w = workflow(stack, &instance).await?;
            Ok((w["runtimeStatus"] == "RUNNING").then_some(()))
        })
        .await?;
        // The completed task is deleted while its next instance is on its way.
        let (_, deleted) = task_event("task-deleted", &done, &client.user);
        produce(stack, "task-events", &id, &deleted.to_string()).await?;
        let started = Instant::now();
        series_becomes(stack, &id, false, json!("deleted")).await?;
        eprintln!(
            "    deletion applied {} ms after it was produced, the Todo service still frozen",
            started.elapsed().as_millis()
        );
        anyhow::Ok(())
    }
    .await;
    stack.resume_service("todo-service")?;
    during?;
    // Once the Todo service answers again the workflow finishes, and the
    // deletion still wins: no instance follows the deleted task.
    eventually(
        Duration::from_secs(60),
        "the workflow completes",
        || async {
            let w = workflow(stack, &instance).await?;
            Ok((w["runtimeStatus"] == "COMPLETED").then_some(()))
        },
    )
    .await?;
    ensure!(
        stored_children(stack, &id).await? == 0,
        "no instance of the deleted series survives"
    );
    ensure!(
        children(&client, &id).await?.is_empty(),
        "none listed either"
    );
    let s = schedule(stack, &id).await?;
    ensure!(
        s["is_active"] == false && s["ended_reason"] == "deleted" && s["instances"] == 1,
        "{s}"
    );
    Ok(())
}

/// Internal calls the Todo service refused (401 or 403 to the create route),
/// summed over its replicas.
async fn refused_creates(stack: &Stack) -> Result<f64> {
    let mut total = 0.0;
    for base in stack.app_urls("todo-service") {
        for status in ["401", "403"] {
            let sample = format!(
                "http_requests_total{{method=\"POST\",route=\"/api/v1/tasks\",status=\"{status}\"}}"
            );
            total += metric(&base, &sample).await?;
        }
    }
    Ok(total)
}

/// A Todo service that does not trust the recurring service (a typo in
/// `TODO_TRUSTED_CALLERS`, a rotated token) refuses its calls with 401/403:
/// the series waits, the failure is logged at error level and counted, and
/// the next instance is created once trust is back.
async fn a_series_outlives_the_todo_service_refusing_the_recurring_service_until_trust_returns(
    stack: &mut Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let task = recurring_task(
        &client,
        "water plants",
        "daily",
        "2026-06-01T08:00:00Z",
        "UTC",
    )
    .await?;
    let id = text(&task, "/id").to_owned();
    series_becomes(stack, &id, true, Value::Null).await?;
    let auth_failures_before = service_metric(
        stack,
        "recurring-task-service",
        "recurrence_todo_auth_failures_total",
    )
    .await?;
    stack.set_service_env("todo-service", &[("TODO_TRUSTED_CALLERS", "someone-else")])?;
    stack.stop_service("todo-service").await?;
    let refused = async {
        stack.start_service("todo-service").await?;
        client.complete(&id, None).await?.expect(200)?;
        eventually(
            Duration::from_secs(30),
            "the Todo service refuses the recurring service's create call",
            || async { Ok((refused_creates(stack).await? > 0.0).then_some(())) },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    // Trust returns (the stack stays whole for the next test, whatever happened).
    stack.set_service_env("todo-service", &[])?;
    stack.stop_service("todo-service").await?;
    stack.start_service("todo-service").await?;
    refused?;
    let (next, waited) = next_instance(&client, &id, Duration::from_secs(90)).await?;
    eprintln!(
        "    next instance {} ms after trust returned",
        waited.as_millis()
    );
    ensure!(
        time_of(&next, "/due_date")? == at("2026-06-02T08:00:00Z"),
        "{next}"
    );
    let s = schedule(stack, &id).await?;
    ensure!(
        s["is_active"] == true && s["current_task_id"] == next["id"],
        "{s}"
    );
    let auth_failures = service_metric(
        stack,
        "recurring-task-service",
        "recurrence_todo_auth_failures_total",
    )
    .await?;
    ensure!(
        auth_failures > auth_failures_before,
        "each refusal is counted: {auth_failures_before} -> {auth_failures}"
    );
    let logged = crate::support::service_log_lines(stack, "recurring-task-service")?
        .into_iter()
        .any(|(_, l)| {
            l.contains("\"level\":\"ERROR\"") && l.contains(&id) && l.contains("refused")
        });
    ensure!(
        logged,
        "the refusal is logged at error level with the task id"
    );
    Ok(())
}

async fn a_completion_whose_workflow_instance_ended_without_its_step_gets_one_next_instance(
    stack: &mut Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let task = recurring_task(&client, "abandoned", "daily", "2026-06-01T08:00:00Z", "UTC").await?;
    let id = text(&task, "/id").to_owned();
    series_becomes(stack, &id, true, Value::Null).await?;
    // While the Todo service refuses the recurring service, the step keeps
    // retrying; the engine then gives the instance up behind the service's back.
    with_service_env(
        stack,
        "todo-service",
        &[("TODO_TRUSTED_CALLERS", "someone-else")],
        async |stack| {
            client.complete(&id, None).await?.expect(200)?;
            terminate_workflow(stack, "recurring-task-service", &format!("recurrence-{id}")).await
        },
    )
    .await?;
    // The watchdog looks every second for steps 3 s without progress (every
    // 30 s for 5 minutes by default).
    with_service_env(
        stack,
        "recurring-task-service",
        &[
            ("RECURRING_WORKFLOW_WATCH_SECS", "1"),
            ("RECURRING_WORKFLOW_STALE_SECS", "3"),
        ],
        async |stack| {
            let (next, waited) = next_instance(&client, &id, Duration::from_secs(60)).await?;
            eprintln!(
                "    next instance {} ms after the watchdog started",
                waited.as_millis()
            );
            ensure!(
                time_of(&next, "/due_date")? == at("2026-06-02T08:00:00Z"),
                "{next}"
            );
            // Nothing more comes of the old instance or the new one.
            settled(stack, &id).await?;
            ensure!(stored_children(stack, &id).await? == 1, "one next instance");
            let s = schedule(stack, &id).await?;
            ensure!(s["current_task_id"] == next["id"], "{s}");
            Ok(())
        },
    )
    .await
}

/// `deploy/local/config.yaml` with every workflow state retention set to
/// `retention`, written into the stack's state folder.
fn config_with_workflow_retention(stack: &Stack, retention: &str) -> Result<std::path::PathBuf> {
    let local = todo_local_stack::workspace_root().join("deploy/local/config.yaml");
    let text = std::fs::read_to_string(&local)?;
    let mut in_policy = false;
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("stateRetentionPolicy:") {
                in_policy = true;
            } else if in_policy && trimmed.contains(": ") && !trimmed.starts_with('#') {
                let indent = &line[..line.len() - trimmed.len()];
                if indent.len() <= 4 {
                    in_policy = false;
                } else if let Some((key, _)) = trimmed.split_once(": ") {
                    changed += 1;
                    return format!("{indent}{key}: {retention}");
                }
            }
            line.to_owned()
        })
        .collect();
    ensure!(
        changed > 0,
        "no stateRetentionPolicy in {}",
        local.display()
    );
    let path = stack
        .state_dir()
        .join("config-short-workflow-retention.yaml");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(path)
}

/// With a workflow state retention of 2 s on the recurring service's
/// sidecar, a completed recurrence workflow is gone from Dapr's state
/// (404) soon after it completed; its effect (the next instance) stays.
async fn a_finished_workflows_state_is_purged_after_the_retention(stack: &mut Stack) -> Result<()> {
    let config = config_with_workflow_retention(stack, "2s")?;
    stack.set_sidecar_config("recurring-task-service", Some(config))?;
    stack.stop_sidecar("recurring-task-service").await?;
    let result = async {
        stack.start_sidecar("recurring-task-service").await?;
        let client = TodoClient::new(stack);
        let task = recurring_task(
            &client,
            "take out bins",
            "weekly",
            "2026-05-04T07:00:00Z",
            "UTC",
        )
        .await?;
        let id = text(&task, "/id").to_owned();
        series_becomes(stack, &id, true, Value::Null).await?;
        client.complete(&id, None).await?.expect(200)?;
        let (next, _) = next_instance(&client, &id, Duration::from_secs(30)).await?;
        let instance = format!("recurrence-{id}");
        let url = format!(
            "{}/v1.0/workflows/dapr/{instance}",
            stack.dapr_http_url("recurring-task-service")
        );
        let started = Instant::now();
        let gone = eventually(
            Duration::from_secs(60),
            "the completed workflow's state is purged",
            || async {
                let w = get_json(&url, &stack.operator_token()).await?;
                ensure!(
                    w.status == 404 || w.body["runtimeStatus"] == "COMPLETED",
                    "{} {}",
                    w.status,
                    w.body
                );
                Ok((w.status == 404).then_some(w.body))
            },
        )
        .await?;
        eprintln!(
            "    workflow state purged {} ms after the next instance was seen: {gone}",
            started.elapsed().as_millis()
        );
        ensure!(
            children(&client, &id).await?.len() == 1 && stored_children(stack, &id).await? == 1,
            "its effect stays: one next instance ({})",
            next["id"]
        );
        anyhow::Ok(())
    }
    .await;
    // The stack's own configuration again, whatever happened.
    stack.set_sidecar_config("recurring-task-service", None)?;
    stack.stop_sidecar("recurring-task-service").await?;
    stack.start_sidecar("recurring-task-service").await?;
    result
}

/// Waits until the recurring service has consumed the newest `task-events`
/// event of `task_id` (its id read from the Todo service's outbox).
async fn consumed_last_event_of(stack: &Stack, task_id: &str) -> Result<()> {
    let db = admin_db(stack).await?;
    let event_id: uuid::Uuid = sqlx::query_scalar(
        "select event_id from todo.outbox where task_id = $1 and topic = 'task-events' \
         order by id desc limit 1",
    )
    .bind(task_id.parse::<uuid::Uuid>()?)
    .fetch_one(&db)
    .await
    .with_context(|| format!("the newest event of {task_id}"))?;
    consumed(stack, &event_id.to_string()).await
}

/// Whether `answer` is the 404 a user gets for a parent that is not theirs,
/// naming it.
fn refused_parent(answer: &Answer, parent: &str) -> bool {
    answer.status == 404
        && answer.body["error"] == "not_found"
        && text(&answer.body, "/message").contains(parent)
}

async fn another_users_task_is_refused_as_a_parent_so_their_series_survives(
    stack: &Stack,
) -> Result<()> {
    let alice = TodoClient::new(stack);
    let bob = TodoClient::new(stack);
    let theirs = recurring_task(
        &alice,
        "water plants",
        "daily",
        "2026-06-01T08:00:00Z",
        "UTC",
    )
    .await?;
    let series = text(&theirs, "/id");
    series_becomes(stack, series, true, Value::Null).await?;

    // Bob names Alice's task as the parent of a new recurring task of his,
    // and of one he has (PUT); what gets in, he deletes, which would end
    // the series his task joined.
    let hijack = json!({
        "title": "hijack", "recurrence_schedule": "daily",
        "due_date": "2026-06-02T08:00:00Z", "parent_task_id": series,
    });
    let created = bob.create(hijack.clone()).await?;
    let (_, own) = bob.create_task("mine").await?;
    let replaced = bob
        .send("PUT", &format!("/api/v1/tasks/{own}"), Some(hijack), &[])
        .await?;
    let mut bobs = vec![own.clone()];
    if created.status == 201 {
        bobs.push(text(&created.body, "/id").to_owned());
    }
    for id in &bobs {
        bob.delete(id).await?.expect(204)?;
        consumed_last_event_of(stack, id).await?;
    }

    let s = schedule(stack, series).await?;
    ensure!(
        s["is_active"] == true && s["ended_reason"].is_null(),
        "Alice's series was ended by Bob's task: {s}"
    );
    ensure!(
        s["current_task_id"] == theirs["id"] && s["instances"] == 1 && s["title"] == "water plants",
        "Alice's series was changed by Bob's task: {s}"
    );
    ensure!(
        refused_parent(&created, series),
        "a create naming another user's task as parent: {} {}",
        created.status,
        created.body
    );
    ensure!(
        refused_parent(&replaced, series),
        "a PUT naming another user's task as parent: {} {}",
        replaced.status,
        replaced.body
    );
    // Alice's own task is a parent she may name.
    alice
        .create(json!({ "title": "extra", "parent_task_id": series }))
        .await?
        .expect(201)?;
    Ok(())
}

async fn an_instance_whose_parent_was_deleted_stays_editable(stack: &Stack) -> Result<()> {
    let client = TodoClient::new(stack);
    let (_, parent) = client.create_task("first").await?;
    let child = client
        .create(json!({ "title": "second", "parent_task_id": parent }))
        .await?
        .expect(201)?;
    let child_id = text(&child, "/id");
    client.delete(&parent).await?.expect(204)?;

    // The parent is gone, but an update that keeps it is an ordinary update.
    let put = client
        .send(
            "PUT",
            &format!("/api/v1/tasks/{child_id}"),
            Some(json!({ "title": "second, renamed", "parent_task_id": parent })),
            &[],
        )
        .await?
        .expect(200)?;
    ensure!(put["parent_task_id"] == parent.as_str(), "{put}");
    client
        .patch(child_id, json!({ "title": "second, patched" }))
        .await?
        .expect(200)?;
    // Setting it anew is checked like any parent: it no longer exists.
    let (_, other) = client.create_task("third").await?;
    let reparented = client
        .send(
            "PUT",
            &format!("/api/v1/tasks/{other}"),
            Some(json!({ "title": "third", "parent_task_id": parent })),
            &[],
        )
        .await?;
    ensure!(
        refused_parent(&reparented, &parent),
        "a deleted parent set anew: {} {}",
        reparented.status,
        reparented.body
    );
    Ok(())
}
