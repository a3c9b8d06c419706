//! User story 5 (reminders) and guarantee 7, against the real stack: a task's
//! reminder is a Dapr job (scheduler) of the recurring-task service, whose
//! trigger publishes `reminder-fired`; the notification service turns it into
//! one in-app notification with the `notification_delivery_v1` workflow and
//! pushes it to the user's WebSocket clients.

use std::time::Duration;

use anyhow::{Result, ensure};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};
use todo_local_stack::Stack;

use crate::support::{TodoClient, WsClient, admin_db, eventually, get_json, text};
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
    get_json(&format!(
        "{}/api/v1/notifications?{query}",
        notification_url(stack)
    ))
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
    let mut ws = WsClient::user(stack, &client.user, None).await?;
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
    let reminders = get_json(&format!(
        "{}/api/v1/reminders?task_id={id}",
        stack.app_url("recurring-task-service")
    ))
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
        let a = get_json(&format!("{base}{path}")).await?;
        ensure!(a.status == status, "{path}: {} {}", a.status, a.body);
        ensure!(a.body["error"].is_string(), "{path}: {}", a.body);
    }
    let http = reqwest::Client::new();
    let missing = http
        .post(format!(
            "{base}/api/v1/notifications/{}/retry",
            uuid::Uuid::new_v4()
        ))
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
            let r = get_json(&format!("{recurring}/api/v1/reminders?task_id={id}"))
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
        .timeout(Duration::from_secs(30))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
}

async fn a_delivery_that_fails_while_kafka_is_down_is_marked_failed_and_a_retry_sends_it(
    stack: &mut Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let due = whole_second_in(1);
    let task = client
        .create(json!({ "title": "retry me", "reminder_time": due.to_rfc3339() }))
        .await?
        .expect(201)?;
    let n = sent_once(stack, text(&task, "/id"), due, Duration::from_secs(15)).await?;
    let id = text(&n, "/id").to_owned();
    // Seed the failed state (as an operator would find it) directly in the
    // database; the failure that follows is real.
    let db = admin_db(stack).await?;
    sqlx::query("update notification.notification set status = 'failed', last_error = 'seeded' where id = $1")
        .bind(id.parse::<uuid::Uuid>()?)
        .execute(&db)
        .await?;
    stack.stop_kafka().await?;
    let outcome = async {
        let (status, body) = retry(stack, &id).await?;
        ensure!(
            status == 202 && body["status"] == "pending" && body["attempts"] == 2,
            "{status} {body}"
        );
        let (again, _) = retry(stack, &id).await?;
        ensure!(
            again == 409,
            "a pending notification cannot be retried: {again}"
        );
        let failed = eventually(Duration::from_secs(120), "the attempt fails", || async {
            let n = get_json(&format!(
                "{}/api/v1/notifications/{id}",
                notification_url(stack)
            ))
            .await?
            .expect(200)?;
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
    .await;
    stack.start_kafka().await?;
    outcome?;
    let (status, body) = retry(stack, &id).await?;
    ensure!(status == 202 && body["attempts"] == 3, "{status} {body}");
    let sent = eventually(Duration::from_secs(60), "the retry is sent", || async {
        let n = get_json(&format!(
            "{}/api/v1/notifications/{id}",
            notification_url(stack)
        ))
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
