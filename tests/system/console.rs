//! The operator console `todo-admin`, the real binary in a real terminal
//! (tmux), against the real stack: what an operator sees and does with it.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use chrono::{DateTime, TimeDelta, Utc};
use libtest_mimic::Trial;
use serde_json::json;
use todo_local_stack::Stack;

use crate::support::terminal::Terminal;
use crate::support::{TodoClient, admin_db, claims, eventually, get_json, hs256, text, with};
use crate::{Ctx, exclusive, shared};

pub fn trials(ctx: &Ctx) -> Vec<Trial> {
    vec![
        shared!(
            ctx,
            the_console_shows_a_task_created_through_the_api_within_2s_and_opens_its_audit_history
        ),
        shared!(
            ctx,
            the_console_retries_a_failed_notification_with_r_and_shows_it_sent
        ),
        shared!(
            ctx,
            the_console_says_a_refused_token_in_its_status_line_instead_of_showing_empty_views
        ),
        exclusive!(
            ctx,
            the_console_shows_the_stopped_audit_service_down_in_health_while_live_keeps_streaming
        ),
        exclusive!(
            ctx,
            the_console_resumes_a_dropped_stream_after_its_last_seq_and_marks_the_gap
        ),
        exclusive!(
            ctx,
            the_console_redrives_a_dead_letter_with_r_once_its_cause_is_removed_and_it_is_applied_once
        ),
    ]
}

/// The console's flags for this stack's services.
fn urls(stack: &Stack) -> Vec<String> {
    [
        ("--todo-url", "todo-service"),
        ("--audit-url", "audit-service"),
        ("--websocket-url", "websocket-service"),
        ("--notification-url", "notification-service"),
        ("--recurring-url", "recurring-task-service"),
    ]
    .into_iter()
    .flat_map(|(flag, app)| [flag.to_owned(), stack.app_url(app)])
    .collect()
}

/// A terminal running the console with `token`, its stream open.
async fn console(stack: &Stack, token: &str) -> Result<Terminal> {
    let term = Terminal::open(160, 45, &[("TODO_ADMIN_TOKEN", token)]).await?;
    term.start_console(&urls(stack)).await?;
    Ok(term)
}

async fn live_console(stack: &Stack) -> Result<Terminal> {
    let term = console(stack, &stack.operator_token()).await?;
    term.shows("● live", Duration::from_secs(10)).await?;
    Ok(term)
}

/// Types `/`, clears what the prompt holds, types `filter`, Enter.
async fn filter(term: &Terminal, filter: &str) -> Result<()> {
    term.keys(&["/"]).await?;
    term.keys(&["C-u"]).await.ok();
    for _ in 0..60 {
        term.keys(&["BSpace"]).await?;
    }
    term.line(filter).await
}

async fn the_console_shows_a_task_created_through_the_api_within_2s_and_opens_its_audit_history(
    stack: &Stack,
) -> Result<()> {
    let term = live_console(stack).await?;
    let client = TodoClient::new(stack);
    let title = format!(
        "console {}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let created = Instant::now();
    let (_, id) = client.create_task(&title).await?;
    term.shows(&title, Duration::from_secs(2)).await?;
    eprintln!(
        "    created → shown in the console's Live view: {} ms",
        created.elapsed().as_millis()
    );
    // Only this task's updates, so the newest row (selected) is its own.
    filter(&term, &format!("task:{id}")).await?;
    term.showing("only the task's update", Duration::from_secs(5), |s| {
        s.contains(&format!("task:{id}")) && s.contains(&title) && s.contains("task-created")
    })
    .await?;
    term.keys(&["t"]).await?;
    let screen = term
        .showing("its audit history", Duration::from_secs(10), |s| {
            s.contains(&format!("Task {id}"))
                && s.contains("1 audit record")
                && s.contains("task-created")
        })
        .await?;
    ensure!(screen.contains(&title), "{screen}");
    // A change to the task shows up in the open history by itself.
    client
        .patch(&id, json!({ "title": format!("{title} (renamed)") }))
        .await?
        .expect(200)?;
    term.showing("the change in the history", Duration::from_secs(10), |s| {
        s.contains("2 audit records")
            && s.contains(&format!("title: \"{title}\" → \"{title} (renamed)\""))
    })
    .await?;
    term.keys(&["q"]).await?;
    term.left_clean().await
}

fn whole_second_in(secs: i64) -> DateTime<Utc> {
    use chrono::DurationRound;
    (Utc::now() + TimeDelta::seconds(secs + 1))
        .duration_trunc(TimeDelta::seconds(1))
        .expect("truncating to a second")
}

async fn the_console_retries_a_failed_notification_with_r_and_shows_it_sent(
    stack: &Stack,
) -> Result<()> {
    let client = TodoClient::new(stack);
    let title = format!("retry {}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let task = client
        .create(json!({ "title": title, "reminder_time": whole_second_in(1).to_rfc3339() }))
        .await?
        .expect(201)?;
    let task_id = text(&task, "/id").to_owned();
    let base = stack.app_url("notification-service");
    let list = format!("{base}/api/v1/notifications?task_id={task_id}");
    let sent =
        eventually(Duration::from_secs(20), "the reminder is sent", || async {
            let page = get_json(&list, &stack.operator_token())
                .await?
                .expect(200)?;
            Ok((page["notifications"][0]["status"] == "sent")
                .then(|| page["notifications"][0].clone()))
        })
        .await?;
    let id: uuid::Uuid = text(&sent, "/id").parse()?;
    // The failed state as an operator finds it after 7 failed attempts
    // (seeded: the failure itself is tested with Kafka down in reminders.rs).
    sqlx::query(
        "update notification.notification set status = 'failed', sent_at = null, \
         last_error = 'kafka: client has run out of available brokers' where id = $1",
    )
    .bind(id)
    .execute(&admin_db(stack).await?)
    .await?;

    let term = live_console(stack).await?;
    term.keys(&["3"]).await?;
    filter(&term, &format!("task:{task_id}")).await?;
    term.showing(
        "the failed notification and its error",
        Duration::from_secs(10),
        |s| {
            s.contains("failed")
                && s.contains(&title)
                && s.contains("client has run out of available brokers")
        },
    )
    .await?;
    term.keys(&["r"]).await?;
    let screen = term
        .showing(
            "the retried notification sent",
            Duration::from_secs(30),
            |s| {
                s.lines()
                    .any(|l| l.contains(&title) && l.trim_start_matches('│').starts_with("sent "))
            },
        )
        .await?;
    ensure!(
        !screen.contains("last error:"),
        "a sent one has no error left: {screen}"
    );
    let now = get_json(
        &format!("{base}/api/v1/notifications/{id}"),
        &stack.operator_token(),
    )
    .await?
    .expect(200)?;
    ensure!(now["status"] == "sent" && now["attempts"] == 2, "{now}");
    term.keys(&["C-c"]).await?;
    term.left_clean().await
}

async fn the_console_says_a_refused_token_in_its_status_line_instead_of_showing_empty_views(
    stack: &Stack,
) -> Result<()> {
    let claims = with(claims("operator"), "roles", json!(["operator"]));
    let forged = hs256(b"not the stack's signing key, but long enough.", &claims);
    let term = console(stack, &forged).await?;
    term.shows("TOKEN REFUSED by", Duration::from_secs(10))
        .await?;
    term.keys(&["3"]).await?;
    term.showing(
        "the view says why it is empty",
        Duration::from_secs(10),
        |s| s.contains("notification-service refused the console's token"),
    )
    .await?;
    term.keys(&["q"]).await?;
    term.left_clean().await
}

async fn the_console_shows_the_stopped_audit_service_down_in_health_while_live_keeps_streaming(
    stack: &mut Stack,
) -> Result<()> {
    let term = live_console(stack).await?;
    term.keys(&["5"]).await?;
    let audit_row = |s: &str, state: &str| {
        s.lines()
            .any(|l| l.contains("audit-service") && l.contains(state))
    };
    term.showing("audit-service ready", Duration::from_secs(10), |s| {
        audit_row(s, " ready ")
    })
    .await?;
    stack.stop_service("audit-service").await?;
    let outcome = async {
        term.showing("audit-service DOWN", Duration::from_secs(10), |s| {
            audit_row(s, "DOWN")
        })
        .await?;
        let client = TodoClient::new(stack);
        let title = format!(
            "while audit is down {}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        client.create_task(&title).await?;
        term.keys(&["1"]).await?;
        term.shows(&title, Duration::from_secs(5)).await?;
        term.keys(&["5"]).await?;
        term.showing(
            "Health again: only the audit service down",
            Duration::from_secs(5),
            |s| s.contains("Health:") && audit_row(s, "DOWN") && s.matches(" ready ").count() >= 4,
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    stack.start_service("audit-service").await?;
    outcome?;
    term.showing("audit-service ready again", Duration::from_secs(15), |s| {
        audit_row(s, " ready ")
    })
    .await?;
    term.keys(&["q"]).await?;
    term.left_clean().await
}

async fn the_console_resumes_a_dropped_stream_after_its_last_seq_and_marks_the_gap(
    stack: &mut Stack,
) -> Result<()> {
    let term = live_console(stack).await?;
    let client = TodoClient::new(stack);
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let before = format!("before the drop {tag}");
    client.create_task(&before).await?;
    term.shows(&before, Duration::from_secs(5)).await?;
    stack.stop_service("websocket-service").await?;
    let missed: Vec<String> = (1..=3).map(|i| format!("missed {i} {tag}")).collect();
    let outcome = async {
        term.shows("; reconnecting", Duration::from_secs(10))
            .await?;
        for title in &missed {
            client.create_task(title).await?;
        }
        anyhow::Ok(())
    }
    .await;
    stack.start_service("websocket-service").await?;
    outcome?;
    let screen = term
        .showing(
            "the missed updates after the gap marker",
            Duration::from_secs(30),
            |s| s.contains("resumed after seq") && missed.iter().all(|t| s.contains(t.as_str())),
        )
        .await?;
    // Each update once, the gap's marker after the last one seen before it.
    for title in missed.iter().chain([&before]) {
        ensure!(
            screen.matches(title.as_str()).count() == 1,
            "{title} shown once: {screen}"
        );
    }
    let row = |needle: &str| screen.lines().position(|l| l.contains(needle));
    ensure!(
        row(&before) < row("; reconnecting") && row("; reconnecting") < row("resumed after seq"),
        "the marks are where the stream dropped and resumed: {screen}"
    );
    term.keys(&["q"]).await?;
    term.left_clean().await
}

/// A real dead letter: a constraint added to the audit table behind the
/// service's back (as a bad migration would) refuses one task's record. The
/// Dead letters view shows it with its reason; `r` while the cause stands
/// says it is still failing and keeps the row; once the cause is removed,
/// `r` says applied, the row goes, and the task's history has the event
/// exactly once. Exclusive: the DDL takes the audit table's lock, and the
/// newest dead letter must be this one.
async fn the_console_redrives_a_dead_letter_with_r_once_its_cause_is_removed_and_it_is_applied_once(
    stack: &mut Stack,
) -> Result<()> {
    let stack = &*stack;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let title = format!("console poison {tag}");
    let constraint = format!("test_console_poison_{tag}");
    let db = admin_db(stack).await?;
    // The tag is hex, so the title and the name are safe to splice in.
    sqlx::query(&format!(
        "alter table audit.audit_record add constraint {constraint} \
         check (payload->>'title' is distinct from '{title}') not valid"
    ))
    .execute(&db)
    .await?;
    let cure = || async {
        sqlx::query(&format!(
            "alter table audit.audit_record drop constraint if exists {constraint}"
        ))
        .execute(&db)
        .await
    };
    let checked = async {
        let term = live_console(stack).await?;
        let (_, id) = TodoClient::new(stack).create_task(&title).await?;
        term.keys(&["6"]).await?;
        // Its row: the audit service's, on task-events, of this task.
        let row = |s: &str| {
            s.lines()
                .any(|l| l.contains("audit ") && l.contains("task-events") && l.contains(&id[..8]))
        };
        term.showing(
            "the dead letter in the view",
            Duration::from_secs(20),
            |s| row(s),
        )
        .await?;
        term.keys(&["g"]).await?;
        let screen = term
            .showing(
                "the dead letter selected, with its reason",
                Duration::from_secs(5),
                |s| s.contains(&format!("task {id}")) && s.contains(&constraint),
            )
            .await?;
        let before = failed_attempts(&screen)?;
        term.keys(&["r"]).await?;
        term.showing(
            "still failing while the cause stands, one more attempt counted",
            Duration::from_secs(10),
            |s| {
                s.contains("still failing")
                    && row(s)
                    && failed_attempts(s).is_ok_and(|n| n == before + 1)
            },
        )
        .await?;
        cure().await?;
        term.keys(&["r"]).await?;
        term.showing("applied, and the row gone", Duration::from_secs(10), |s| {
            s.contains(": applied") && !row(s) && !s.contains(&format!("task {id}"))
        })
        .await?;
        let audit = stack.app_url("audit-service");
        let history = get_json(
            &format!("{audit}/api/v1/audit?task_id={id}"),
            &stack.operator_token(),
        )
        .await?
        .expect(200)?;
        ensure!(
            history["total"] == 1 && history["records"][0]["event_type"] == "task-created",
            "the event recorded once: {history}"
        );
        let redriven = get_json(
            &format!("{audit}/api/v1/dead-letters?state=redriven&limit=500"),
            &stack.operator_token(),
        )
        .await?
        .expect(200)?;
        let letter = redriven["dead_letters"]
            .as_array()
            .and_then(|l| l.iter().find(|d| d["task_id"] == id.as_str()).cloned());
        ensure!(
            letter.is_some_and(|d| d["redriven_at"].is_string() && d["attempts"] == before + 1),
            "the dead letter is redriven, its failed attempts kept: {redriven}"
        );
        term.keys(&["q"]).await?;
        term.left_clean().await
    }
    .await;
    cure().await?;
    checked
}

/// The `N failed attempts` the selected dead letter's box shows.
fn failed_attempts(screen: &str) -> Result<u64> {
    screen
        .split(" failed attempts")
        .next()
        .filter(|_| screen.contains(" failed attempts"))
        .and_then(|head| head.rsplit(['│', ' ']).next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no failed attempts shown:\n{screen}"))
}
