//! User story 5 (reminders) and guarantee 7, against the real stack: a task's
//! reminder is a Dapr job (scheduler) of the recurring-task service, whose
//! trigger publishes `reminder-fired`; the notification service turns it into
//! one in-app notification with the `notification_delivery_v1` workflow and
//! pushes it to the user's WebSocket clients.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};
use todo_local_stack::Stack;

use crate::support::{
    TodoClient, WsClient, admin_db, eventually, get_json, terminate_workflow, text,
    with_service_env,
};
use crate::{Ctx, exclusive, shared};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        shared!(
            ctx,
            a_reminder_due_in_seconds_becomes_one_sent_notification_that_the_users_websocket_receives
        ),
        shared!(
            ctx,
            fifty_reminders_due_in_the_same_second_become_fifty_notifications
        ),
        shared!(ctx, notifications_answer_bad_input_and_bad_retries_with_json_errors),
        exclusive!(
            ctx,
            a_reminder_survives_a_restart_of_the_scheduler_and_the_services_before_it_is_due
        ),
        exclusive!(
            ctx,
            a_delivery_that_fails_while_kafka_is_down_is_marked_failed_and_a_retry_sends_it
        ),
        exclusive!(
            ctx,
            a_reminder_whose_time_passed_while_the_recurring_service_was_down_is_delivered_late_once
        ),
        exclusive!(
            ctx,
            a_reminder_whose_job_was_lost_is_fired_by_the_reconciler_once_and_not_early
        ),
        exclusive!(
            ctx,
            a_delivery_keeps_trying_through_a_kafka_outage_longer_than_its_old_retries_and_is_sent_once
        ),
        exclusive!(
            ctx,
            a_delivery_whose_workflow_instance_ended_without_sending_is_started_again_and_sent_once
        ),
        exclusive!(
            ctx,
            a_reminder_cancelled_while_its_trigger_publishes_ends_either_fired_and_sent_or_cancelled_never_both
        ),
        shared!(ctx, a_job_trigger_whose_body_cannot_be_read_is_answered_with_an_error),
        shared!(
            ctx,
            triggers_of_one_reminder_arriving_together_on_any_replica_fire_it_once
        ),
        exclusive!(
            ctx,
            reminders_and_retries_are_accepted_while_the_workflow_engine_is_unreachable_and_sent_when_it_returns
        ),
    ]
}

fn notification_url(stack: &Stack) -> String {
    stack.app_url("notification-service")
}

/// A whole second at least `secs` seconds from now.
fn whole_second_in(secs: i64) -> DateTime<Utc> {
    (Utc::now() + TimeDelta::seconds(secs + 1))
        .duration_trunc(TimeDelta::seconds(1))
        .expect("truncating to a second")
}

fn time_of(v: &Value, pointer: &str) -> Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text(v, pointer))?.to_utc())
}

/// The notifications matching `query` (e.g. `task_id=...`).
async fn notifications(stack: &Stack, query: &str) -> Result<Value> {
    get_json(
        &format!("{}/api/v1/notifications?{query}", notification_url(stack)),
        &stack.operator_token(),
    )
    .await?
    .expect(200)
}

/// Waits until `task_id` has a sent notification; checks it is the only one
/// and was sent no earlier than `due` and within 10 s of it.
async fn sent_once(
    stack: &Stack,
    task_id: &str,
    due: DateTime<Utc>,
    within: Duration,
) -> Result<Value> {
    let n = eventually(
        within,
        &format!("a sent notification for {task_id}"),
        || async {
            let page = notifications(stack, &format!("task_id={task_id}")).await?;
            Ok((page["notifications"][0]["status"] == "sent").then_some(page))
        },
    )
    .await?;
    ensure!(n["total"] == 1, "exactly one notification: {n}");
    let n = n["notifications"][0].clone();
    let sent_at = time_of(&n, "/sent_at")?;
    ensure!(sent_at >= due, "sent at {sent_at}, before its time {due}");
    ensure!(
        sent_at - due <= TimeDelta::seconds(10),
        "sent at {sent_at}, more than 10 s after {due}"
    );
    ensure!(
        n["channel"] == "in_app" && n["notification_type"] == "reminder",
        "{n}"
    );
    Ok(n)
}

async fn a_reminder_due_in_seconds_becomes_one_sent_notification_that_the_users_websocket_receives(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let mut ws = WsClient::user(stack, &client.token, None).await?;
    let due = whole_second_in(3);
    let task = client
        .create(json!({ "title": "call the dentist", "reminder_time": due.to_rfc3339() }))
        .await?
        .expect(201)?;
    let id = text(&task, "/id");
    let pushed = ws
        .until(id, "notification-delivered", Duration::from_secs(20))
        .await?;
    let n = sent_once(stack, id, due, Duration::from_secs(5)).await?;
    eprintln!(
        "    reminder due {due} -> notification sent after {} ms",
        (time_of(&n, "/sent_at")? - due).num_milliseconds()
    );
    ensure!(
        n["user_id"] == client.user.as_str() && n["title"] == "call the dentist",
        "{n}"
    );
    ensure!(
        pushed["payload"]["notification_id"] == n["id"],
        "the pushed update names the notification: {pushed}"
    );
    ensure!(pushed["user_id"] == client.user.as_str(), "{pushed}");
    // The reminder job is done.
    let reminders = get_json(
        &format!(
            "{}/api/v1/reminders?task_id={id}",
            stack.app_url("recurring-task-service")
        ),
        &stack.operator_token(),
    )
    .await?
    .expect(200)?;
    ensure!(
        reminders["reminders"][0]["status"] == "fired",
        "{reminders}"
    );
    Ok(())
}

async fn fifty_reminders_due_in_the_same_second_become_fifty_notifications(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let due = whole_second_in(8);
    let mut ids = Vec::new();
    for i in 0..50 {
        let t = client
            .create(json!({ "title": format!("reminder {i}"), "reminder_time": due.to_rfc3339() }))
            .await?
            .expect(201)?;
        ids.push(text(&t, "/id").to_owned());
    }
    ensure!(
        Utc::now() < due,
        "the 50 tasks were created before their reminder time"
    );
    let query = format!("user_id={}&limit=500", client.user);
    let page = eventually(Duration::from_secs(30), "50 sent notifications", || async {
        let page = notifications(stack, &query).await?;
        let sent = page["notifications"]
            .as_array()
            .map(|ns| ns.iter().filter(|n| n["status"] == "sent").count())
            .unwrap_or(0);
        Ok((sent >= 50).then_some(page))
    })
    .await?;
    let ns = page["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        page["total"] == 50 && ns.len() == 50,
        "exactly 50: {}",
        page["total"]
    );
    let mut tasks: Vec<&str> = ns.iter().map(|n| text(n, "/task_id")).collect();
    tasks.sort_unstable();
    tasks.dedup();
    ensure!(tasks.len() == 50, "one per task, none doubled");
    let mut latest = TimeDelta::zero();
    for n in &ns {
        let late = time_of(n, "/sent_at")? - due;
        ensure!(
            late >= TimeDelta::zero() && late <= TimeDelta::seconds(10),
            "sent {late} after its time: {n}"
        );
        latest = latest.max(late);
    }
    eprintln!(
        "    50 reminders due {due}: all sent, the last after {} ms",
        latest.num_milliseconds()
    );
    Ok(())
}

async fn notifications_answer_bad_input_and_bad_retries_with_json_errors(
    stack: &Stack,
) -> Result<()> {
    let base = notification_url(stack);
    for (path, status) in [
        ("/api/v1/notifications?status=bogus", 400),
        ("/api/v1/notifications?task_id=nope", 400),
        ("/api/v1/notifications?limit=501", 400),
        ("/api/v1/notifications/not-a-uuid", 400),
        (
            &format!("/api/v1/notifications/{}", uuid::Uuid::new_v4()),
            404,
        ),
    ] {
        let a = get_json(&format!("{base}{path}"), &stack.operator_token()).await?;
        ensure!(a.status == status, "{path}: {} {}", a.status, a.body);
        ensure!(a.body["error"].is_string(), "{path}: {}", a.body);
    }
    let http = reqwest::Client::new();
    let missing = http
        .post(format!(
            "{base}/api/v1/notifications/{}/retry",
            uuid::Uuid::new_v4()
        ))
        .bearer_auth(stack.operator_token())
        .send()
        .await?;
    ensure!(
        missing.status() == 404,
        "retry of an unknown notification: {}",
        missing.status()
    );
    // A sent notification cannot be retried.
    let client = TodoClient::new(stack);
    let due = whole_second_in(1);
    let task = client
        .create(json!({ "title": "sent once", "reminder_time": due.to_rfc3339() }))
        .await?
        .expect(201)?;
    let n = sent_once(stack, text(&task, "/id"), due, Duration::from_secs(15)).await?;
    let r = http
        .post(format!(
            "{base}/api/v1/notifications/{}/retry",
            text(&n, "/id")
        ))
        .bearer_auth(stack.operator_token())
        .send()
        .await?;
    ensure!(
        r.status() == 409,
        "retry of a sent notification: {}",
        r.status()
    );
    let body: Value = r.json().await?;
    ensure!(body["error"] == "not_failed", "{body}");
    Ok(())
}

async fn a_reminder_survives_a_restart_of_the_scheduler_and_the_services_before_it_is_due(
    stack: &mut Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let due = whole_second_in(25);
    let task = client
        .create(json!({ "title": "survives restarts", "reminder_time": due.to_rfc3339() }))
        .await?
        .expect(201)?;
    let id = text(&task, "/id").to_owned();
    let recurring = stack.app_url("recurring-task-service");
    eventually(
        Duration::from_secs(10),
        "the reminder job is scheduled",
        || async {
            let r = get_json(
                &format!("{recurring}/api/v1/reminders?task_id={id}"),
                &stack.operator_token(),
            )
            .await?
            .expect(200)?;
            Ok((r["reminders"][0]["status"] == "scheduled").then_some(()))
        },
    )
    .await?;
    for app in ["recurring-task-service", "notification-service"] {
        stack.stop_service(app).await?;
        stack.stop_sidecar(app).await?;
    }
    stack.restart_scheduler().await?;
    for app in ["recurring-task-service", "notification-service"] {
        stack.start_sidecar(app).await?;
        stack.start_service(app).await?;
    }
    ensure!(
        Utc::now() < due,
        "everything restarted before the reminder was due"
    );
    let left = (due - Utc::now()).to_std().unwrap_or_default();
    sent_once(stack, &id, due, left + Duration::from_secs(15)).await?;
    Ok(())
}

/// POSTs a retry of notification `id`; the status and body.
async fn retry(stack: &Stack, id: &str) -> Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/notifications/{id}/retry",
            notification_url(stack)
        ))
        .bearer_auth(stack.operator_token())
        .timeout(Duration::from_secs(30))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
}

/// A notification that was sent for a task created with a reminder due in a
/// second, then seeded failed (as an operator would find it) directly in
/// the database, so that what follows (a retry) is real: its task's id and
/// its id.
async fn seeded_failed_notification(stack: &Stack, title: &str) -> Result<(String, String)> {
    let client = TodoClient::new(stack);
    let due = whole_second_in(1);
    let task = client
        .create(json!({ "title": title, "reminder_time": due.to_rfc3339() }))
        .await?
        .expect(201)?;
    let task_id = text(&task, "/id").to_owned();
    let n = sent_once(stack, &task_id, due, Duration::from_secs(15)).await?;
    let id = text(&n, "/id").to_owned();
    seed_failed(stack, &id).await?;
    Ok((task_id, id))
}

async fn a_delivery_that_fails_while_kafka_is_down_is_marked_failed_and_a_retry_sends_it(
    stack: &mut Stack,
) -> Result<()> {
    // The failure that follows the seeded one is real.
    let (_, id) = seeded_failed_notification(stack, "retry me").await?;
    // Delivery gives up after 15 s here (two hours by default), so that the
    // failure path is seen in seconds.
    with_service_env(
        stack,
        "notification-service",
        &[("NOTIFICATION_DELIVERY_PATIENCE_SECS", "15")],
        async |stack| {
            stack.stop_kafka().await?;
            let outcome = fails_while_kafka_is_down(stack, &id).await;
            stack.start_kafka().await?;
            outcome
        },
    )
    .await?;
    let (status, body) = retry(stack, &id).await?;

    ensure!(status == 202 && body["attempts"] == 3, "{status} {body}");
    let sent = eventually(Duration::from_secs(60), "the retry is sent", || async {
        let n = get_json(
            &format!("{}/api/v1/notifications/{id}", notification_url(stack)),
            &stack.operator_token(),
        )
        .await?
        .expect(200)?;
        Ok((n["status"] == "sent").then_some(n))
    })
    .await?;
    ensure!(
        sent["last_error"].is_null() && sent["attempts"] == 3,
        "{sent}"
    );
    Ok(())
}

/// Seeds the failed state of notification `id` (as an operator would find
/// it) directly in the database; what follows it is real.
async fn seed_failed(stack: &Stack, id: &str) -> Result<()> {
    let db = admin_db(stack).await?;
    sqlx::query("update notification.notification set status = 'failed', last_error = 'seeded' where id = $1")
        .bind(id.parse::<uuid::Uuid>()?)
        .execute(&db)
        .await?;
    Ok(())
}

/// Notification `id` as the service shows it.
async fn notification(stack: &Stack, id: &str) -> Result<Value> {
    get_json(
        &format!("{}/api/v1/notifications/{id}", notification_url(stack)),
        &stack.operator_token(),
    )
    .await?
    .expect(200)
}

/// With Kafka down, a retry of failed notification `id` is accepted as its
/// second attempt, and that attempt fails for real once its patience runs out.
async fn fails_while_kafka_is_down(stack: &Stack, id: &str) -> Result<()> {
    let (status, body) = retry(stack, id).await?;
    ensure!(
        status == 202 && body["status"] == "pending" && body["attempts"] == 2,
        "{status} {body}"
    );
    let (again, _) = retry(stack, id).await?;
    ensure!(
        again == 409,
        "a pending notification cannot be retried: {again}"
    );
    let failed = eventually(Duration::from_secs(120), "the attempt fails", || async {
        let n = notification(stack, id).await?;
        Ok((n["status"] == "failed").then_some(n))
    })
    .await?;
    ensure!(
        failed["last_error"].as_str().is_some_and(|e| e != "seeded"),
        "the real error is kept: {failed}"
    );
    ensure!(failed["attempts"] == 2, "{failed}");
    Ok(())
}

/// Longer than delivery used to keep trying (6 retries over about 30 s).
const OUTAGE: Duration = Duration::from_secs(45);

async fn a_delivery_keeps_trying_through_a_kafka_outage_longer_than_its_old_retries_and_is_sent_once(
    stack: &mut Stack,
) -> Result<()> {
    let (task_id, id) = seeded_failed_notification(stack, "outlasts an outage").await?;
    stack.stop_kafka().await?;
    let outage = async {
        let (status, body) = retry(stack, &id).await?;
        ensure!(status == 202 && body["attempts"] == 2, "{status} {body}");
        // Through the whole outage the attempt is still trying: never failed.
        let until = tokio::time::Instant::now() + OUTAGE;
        while tokio::time::Instant::now() < until {
            let n = notification(stack, &id).await?;
            ensure!(
                n["status"] == "pending",
                "gave up during a {}-second Kafka outage: {n}",
                OUTAGE.as_secs()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }
    .await;
    stack.start_kafka().await?;
    outage?;
    let back = Utc::now();
    // Sent by the same attempt once Kafka is back, without anyone retrying
    // (the backoff between tries is at most a minute).
    let sent = eventually(Duration::from_secs(90), "the attempt is sent", || async {
        let n = notification(stack, &id).await?;
        Ok((n["status"] == "sent").then_some(n))
    })
    .await?;
    ensure!(
        sent["attempts"] == 2 && sent["last_error"].is_null(),
        "{sent}"
    );
    let page = notifications(stack, &format!("task_id={task_id}")).await?;
    ensure!(page["total"] == 1, "still one notification: {page}");
    eprintln!(
        "    sent {} ms after Kafka came back",
        (time_of(&sent, "/sent_at")? - back).num_milliseconds()
    );
    Ok(())
}

async fn a_delivery_whose_workflow_instance_ended_without_sending_is_started_again_and_sent_once(
    stack: &mut Stack,
) -> Result<()> {
    // The watchdog looks every second for deliveries 3 s without progress
    // (every 30 s for 5 minutes by default).
    with_service_env(
        stack,
        "notification-service",
        &[
            ("NOTIFICATION_WORKFLOW_WATCH_SECS", "1"),
            ("NOTIFICATION_WORKFLOW_STALE_SECS", "3"),
        ],
        async |stack| abandoned_delivery_is_sent(stack).await,
    )
    .await
}

async fn abandoned_delivery_is_sent(stack: &mut Stack) -> Result<()> {
    let (task_id, id) = seeded_failed_notification(stack, "abandoned delivery").await?;
    // Kafka is down so that the attempt cannot send before the engine gives
    // its instance up.
    stack.stop_kafka().await?;
    let abandoned = async {
        let (status, body) = retry(stack, &id).await?;
        ensure!(status == 202 && body["attempts"] == 2, "{status} {body}");
        terminate_workflow(stack, "notification-service", &format!("delivery-{id}-2")).await
    }
    .await;
    stack.start_kafka().await?;
    abandoned?;
    let sent = eventually(
        Duration::from_secs(60),
        "the notification is sent",
        || async {
            let n = notification(stack, &id).await?;
            Ok((n["status"] == "sent").then_some(n))
        },
    )
    .await?;
    ensure!(sent["attempts"] == 2, "still the second attempt: {sent}");
    let page = notifications(stack, &format!("task_id={task_id}")).await?;
    ensure!(page["total"] == 1, "still one notification: {page}");
    let rescues: i32 =
        sqlx::query_scalar("select rescues from notification.notification where id = $1")
            .bind(id.parse::<uuid::Uuid>()?)
            .fetch_one(&admin_db(stack).await?)
            .await?;
    ensure!(rescues >= 1, "started again by the watchdog: {rescues}");
    Ok(())
}

async fn a_reminder_whose_job_was_lost_is_fired_by_the_reconciler_once_and_not_early(
    stack: &mut Stack,
) -> Result<()> {
    // The reconciler looks every second for reminders 2 s late (every 30 s
    // for 60 s by default).
    with_service_env(
        stack,
        "recurring-task-service",
        &[
            ("RECURRING_RECONCILE_INTERVAL_SECS", "1"),
            ("RECURRING_RECONCILE_LATE_SECS", "2"),
        ],
        async |stack| reminder_without_its_job_is_sent(stack).await,
    )
    .await
}

async fn reminder_without_its_job_is_sent(stack: &Stack) -> Result<()> {
    let client = TodoClient::new(stack);
    let due = whole_second_in(6);
    let task = client
        .create(json!({ "title": "job lost", "reminder_time": due.to_rfc3339() }))
        .await?
        .expect(201)?;
    let id = text(&task, "/id").to_owned();
    let job = format!(
        "{}/v1.0/jobs/reminder-{id}",
        stack.dapr_http_url("recurring-task-service")
    );
    let http = reqwest::Client::new();
    eventually(
        Duration::from_secs(10),
        "the reminder job exists",
        || async {
            Ok(http
                .get(&job)
                .send()
                .await?
                .status()
                .is_success()
                .then_some(()))
        },
    )
    .await?;
    // The job is lost behind the service's back, as when its failure policy
    // gives up during an outage or the scheduler loses its state.
    let deleted = http.delete(&job).send().await?;
    ensure!(
        deleted.status().is_success(),
        "deleting the job: {}",
        deleted.status()
    );
    ensure!(
        Utc::now() < due,
        "the job was deleted before the reminder was due"
    );
    let n = sent_once(stack, &id, due, Duration::from_secs(30)).await?;
    eprintln!(
        "    job deleted; the reconciler's notification was sent {} ms after the reminder time",
        (time_of(&n, "/sent_at")? - due).num_milliseconds()
    );
    ensure!(
        reminder_of(stack, &id).await?["status"] == "fired",
        "the reminder is marked fired"
    );
    Ok(())
}

async fn a_reminder_whose_time_passed_while_the_recurring_service_was_down_is_delivered_late_once(
    stack: &mut Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    stack.stop_service("recurring-task-service").await?;
    let due = whole_second_in(1);
    let created = client
        .create(json!({ "title": "missed while down", "reminder_time": due.to_rfc3339() }))
        .await;
    let waited = async {
        let task = created?.expect(201)?;
        // Let the reminder time pass while nothing can schedule its job.
        eventually(
            Duration::from_secs(10),
            "the reminder time passes",
            || async { Ok((Utc::now() > due + TimeDelta::seconds(2)).then_some(())) },
        )
        .await?;
        Ok::<_, anyhow::Error>(task)
    }
    .await;
    stack.start_service("recurring-task-service").await?;
    let task = waited?;
    let restarted = Utc::now();
    let n = eventually(
        Duration::from_secs(15),
        "the late reminder is sent",
        || async {
            let page = notifications(stack, &format!("task_id={}", text(&task, "/id"))).await?;
            Ok((page["notifications"][0]["status"] == "sent").then_some(page))
        },
    )
    .await?;
    ensure!(n["total"] == 1, "exactly one: {n}");
    let sent_at = time_of(&n["notifications"][0], "/sent_at")?;
    eprintln!(
        "    reminder due {due}, service back {restarted}: sent {} ms after the restart",
        (sent_at - restarted).num_milliseconds()
    );
    Ok(())
}

/// Sends `cloud_event` to `app`'s subscription route for `topic` as its
/// sidecar would (with the app API token); the delivery status it answers.
async fn deliver(stack: &Stack, app: &str, topic: &str, cloud_event: &Value) -> Result<String> {
    let r = reqwest::Client::new()
        .post(format!("{}/events/{topic}", stack.internal_url(app)))
        .header("dapr-api-token", stack.app_api_token(app))
        .timeout(Duration::from_secs(30))
        .json(cloud_event)
        .send()
        .await?;
    ensure!(r.status() == 200, "delivery to {app}: {}", r.status());
    let body: Value = r.json().await?;
    Ok(text(&body, "/status").to_owned())
}

/// A CloudEvent with the envelope of `event_type` about `task_id`.
fn cloud_event(event_type: &str, task_id: &str, user: &str, payload: Value) -> Value {
    let event_id = uuid::Uuid::new_v4().to_string();
    json!({
        "specversion": "1.0", "id": event_id, "source": "system-tests", "type": event_type,
        "datacontenttype": "application/json",
        "data": { "event_id": event_id, "event_type": event_type, "schema_version": "1.0",
                  "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                  "task_id": task_id, "user_id": user, "payload": payload }
    })
}

/// The reminder of `task_id` as the recurring-task service lists it.
async fn reminder_of(stack: &Stack, task_id: &str) -> Result<Value> {
    let r = get_json(
        &format!(
            "{}/api/v1/reminders?task_id={task_id}",
            stack.app_url("recurring-task-service")
        ),
        &stack.operator_token(),
    )
    .await?
    .expect(200)?;
    Ok(r["reminders"][0].clone())
}

/// A task of `client` whose reminder is an hour away, once the recurring
/// service has scheduled it; returns the task and its id.
async fn reminder_an_hour_away(
    stack: &Stack,
    client: &TodoClient,
    title: &str,
) -> Result<(Value, String)> {
    let remind_at = whole_second_in(3600);
    let task = client
        .create(json!({ "title": title, "reminder_time": remind_at.to_rfc3339() }))
        .await?
        .expect(201)?;
    let id = text(&task, "/id").to_owned();
    eventually(
        Duration::from_secs(10),
        "the reminder is scheduled",
        || async { Ok((reminder_of(stack, &id).await?["status"] == "scheduled").then_some(())) },
    )
    .await?;
    Ok((task, id))
}

async fn a_reminder_cancelled_while_its_trigger_publishes_ends_either_fired_and_sent_or_cancelled_never_both(
    stack: &mut Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let (task, id) = reminder_an_hour_away(stack, &client, "fire or cancel").await?;
    let reminder = json!({ "task_id": id, "user_id": client.user, "title": "fire or cancel",
                           "due_date": null, "remind_at": task["reminder_time"] });
    // The broker freezes, so that publishing `reminder-fired` takes a while.
    stack.pause_kafka()?;
    let interleaved = async {
        // The scheduler triggers the job (as daprd calls it) ...
        let trigger = tokio::spawn({
            let url = format!(
                "{}/job/reminder-{id}",
                stack.internal_url("recurring-task-service")
            );
            let token = stack.app_api_token("recurring-task-service").to_owned();
            let body = reminder.clone();
            async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .header("dapr-api-token", token)
                    .timeout(Duration::from_secs(120))
                    .json(&body)
                    .send()
                    .await?;
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                anyhow::Ok((status, body))
            }
        });
        // ... and, before its answer (at most 2 s), the user clears the
        // reminder: the recurring service applies that update meanwhile.
        let early = tokio::time::timeout(Duration::from_secs(2), async {
            while !trigger.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let mut cleared = task.clone();
        cleared["reminder_time"] = Value::Null;
        let update = cloud_event("task-updated", &id, &client.user, cleared);
        let status = deliver(stack, "recurring-task-service", "task-events", &update).await?;
        ensure!(status == "SUCCESS", "the update is applied: {status}");
        eprintln!(
            "    trigger answered before the cancellation: {}",
            early.is_ok()
        );
        anyhow::Ok(trigger)
    }
    .await;
    stack.resume_kafka()?;
    let (status, answer) = interleaved?.await??;
    let r = reminder_of(stack, &id).await?;
    eprintln!("    trigger: {status} {answer}; reminder: {}", r["status"]);
    match text(&answer, "/status") {
        "fired" => {
            ensure!(
                r["status"] == "fired",
                "answered fired, but the reminder is {r}"
            );
            let page = eventually(
                Duration::from_secs(60),
                "its notification is sent",
                || async {
                    let page = notifications(stack, &format!("task_id={id}")).await?;
                    Ok((page["notifications"][0]["status"] == "sent").then_some(page))
                },
            )
            .await?;
            ensure!(page["total"] == 1, "exactly one notification: {page}");
        }
        "stale" => ensure!(
            r["status"] == "cancelled",
            "answered stale, but the reminder is {r}"
        ),
        other => anyhow::bail!("unexpected trigger answer {status} {other}: {answer}"),
    }
    Ok(())
}

async fn a_job_trigger_whose_body_cannot_be_read_is_answered_with_an_error(
    stack: &Stack,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The body announces 200 bytes, 20 arrive, then the sender stops sending:
    // the reminder cannot be read, so the scheduler must be told to try again.
    let addr = stack
        .internal_url("recurring-task-service")
        .trim_start_matches("http://")
        .to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "POST /job/reminder-{} HTTP/1.1\r\nhost: {addr}\r\ndapr-api-token: {}\r\n\
         content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"task_id\": \"0190f0b0",
        uuid::Uuid::new_v4(),
        stack.app_api_token("recurring-task-service")
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.shutdown().await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
        .await
        .context("no answer within 10 s")??;
    let status_line = answer.lines().next().unwrap_or_default().to_owned();
    eprintln!("    truncated trigger answered: {status_line}");
    ensure!(
        !status_line.contains(" 200 ")
            && !status_line.contains(" 404 ")
            && !answer.contains("ignored"),
        "a trigger whose body could not be read must fail so the job retries: {answer}"
    );
    Ok(())
}

/// The reminder-fired event of a reminder for `task_id`.
fn reminder_fired(task_id: &str, user: &str, title: &str) -> Value {
    let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    cloud_event(
        "reminder-fired",
        task_id,
        user,
        json!({ "task_id": task_id, "user_id": user, "title": title, "due_date": null, "remind_at": at }),
    )
}

async fn reminders_and_retries_are_accepted_while_the_workflow_engine_is_unreachable_and_sent_when_it_returns(
    stack: &mut Stack,
) -> Result<()> {
    let user = format!("user-{}", uuid::Uuid::new_v4());
    // A notification that failed earlier (seeded as an operator would find it).
    let earlier = uuid::Uuid::new_v4().to_string();
    let status = deliver(
        stack,
        "notification-service",
        "reminders",
        &reminder_fired(&earlier, &user, "earlier"),
    )
    .await?;
    ensure!(status == "SUCCESS", "{status}");
    let n = eventually(
        Duration::from_secs(20),
        "the earlier one is sent",
        || async {
            let page = notifications(stack, &format!("task_id={earlier}")).await?;
            Ok((page["notifications"][0]["status"] == "sent")
                .then_some(page["notifications"][0].clone()))
        },
    )
    .await?;
    let earlier_id = text(&n, "/id").to_owned();
    let db = admin_db(stack).await?;
    sqlx::query("update notification.notification set status = 'failed', last_error = 'seeded' where id = $1")
        .bind(earlier_id.parse::<uuid::Uuid>()?)
        .execute(&db)
        .await?;

    // The notification service's sidecar (its workflow engine) goes away.
    stack.stop_sidecar("notification-service").await?;
    let task = uuid::Uuid::new_v4().to_string();
    let during = async {
        let status = deliver(
            stack,
            "notification-service",
            "reminders",
            &reminder_fired(&task, &user, "now"),
        )
        .await?;
        ensure!(
            status == "SUCCESS",
            "the reminder is taken in while the engine is away: {status}"
        );
        let page = notifications(stack, &format!("task_id={task}")).await?;
        ensure!(
            page["total"] == 1 && page["notifications"][0]["status"] == "pending",
            "recorded as pending at once: {page}"
        );
        let (status, body) = retry(stack, &earlier_id).await?;
        ensure!(
            status == 202 && body["status"] == "pending" && body["attempts"] == 2,
            "the retry is accepted while the engine is away: {status} {body}"
        );
        anyhow::Ok(())
    }
    .await;
    stack.start_sidecar("notification-service").await?;
    during?;
    for t in [&task, &earlier] {
        let sent = eventually(Duration::from_secs(60), &format!("{t} is sent"), || async {
            let page = notifications(stack, &format!("task_id={t}")).await?;
            Ok((page["notifications"][0]["status"] == "sent").then_some(page))
        })
        .await?;
        ensure!(sent["total"] == 1, "exactly one: {sent}");
    }
    let retried = notifications(stack, &format!("task_id={earlier}")).await?;
    ensure!(retried["notifications"][0]["attempts"] == 2, "{retried}");
    Ok(())
}

async fn triggers_of_one_reminder_arriving_together_on_any_replica_fire_it_once(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let (task, id) = reminder_an_hour_away(stack, &client, "once").await?;
    // The same trigger, 8 times at once: what a retried trigger landing on
    // another replica (or the scheduler's at-least-once delivery) looks like.
    let url = format!(
        "{}/job/reminder-{id}",
        stack.internal_url("recurring-task-service")
    );
    let body = json!({ "task_id": id, "user_id": client.user, "title": "once",
                       "due_date": null, "remind_at": task["reminder_time"] });
    let answers = futures::future::join_all((0..8).map(|_| {
        reqwest::Client::new()
            .post(&url)
            .header(
                "dapr-api-token",
                stack.app_api_token("recurring-task-service"),
            )
            .json(&body)
            .send()
    }))
    .await;
    let mut outcomes = Vec::new();
    for a in answers {
        let a = a?;
        ensure!(a.status() == 200, "trigger answered {}", a.status());
        let v: Value = a.json().await?;
        outcomes.push(text(&v, "/status").to_owned());
    }
    outcomes.sort();
    ensure!(
        outcomes.iter().filter(|o| *o == "fired").count() == 1
            && outcomes.iter().filter(|o| *o == "already_fired").count() == 7,
        "one trigger fires it, the others find it fired: {outcomes:?}"
    );
    let page = eventually(
        Duration::from_secs(20),
        "its notification is sent",
        || async {
            let page = notifications(stack, &format!("task_id={id}")).await?;
            Ok((page["notifications"][0]["status"] == "sent").then_some(page))
        },
    )
    .await?;
    ensure!(page["total"] == 1, "exactly one notification: {page}");
    Ok(())
}
