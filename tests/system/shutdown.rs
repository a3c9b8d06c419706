//! Stopping a service while it is being written to, as a rolling restart
//! does: the Todo service gets SIGTERM with writes in flight. It stops
//! taking new connections, finishes the requests it has, and only then
//! stops publishing; so no write it saved is answered 5xx, and nothing it
//! saved waits for its next start to reach Kafka.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use todo_local_stack::Stack;

use crate::support::{admin_db, eventually, read_topic, text};
use crate::{Ctx, exclusive};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![exclusive!(
        ctx,
        a_service_stopped_mid_write_answers_no_saved_write_with_5xx_and_publishes_all_it_saved
    )]
}

const TODO: &str = "todo-service";
/// Writers at once: enough that some are always in flight.
const WRITERS: usize = 12;

/// What one write got.
#[derive(Debug)]
struct Write {
    title: String,
    /// The status and body, or none when the connection failed (refused,
    /// or closed before an answer): the client cannot know what happened.
    answer: Option<(u16, Value)>,
}

/// Writes tasks to `base` one after another, each with its own title and
/// Idempotency-Key, until a write gets no answer (the service stopped
/// listening); counts the 201s in `created`.
async fn writer(
    base: String,
    token: String,
    prefix: String,
    created: Arc<AtomicUsize>,
) -> Vec<Write> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut writes = Vec::new();
    for n in 0.. {
        let title = format!("{prefix}-{n}");
        let sent = http
            .post(format!("{base}/api/v1/tasks"))
            .bearer_auth(&token)
            .header("Idempotency-Key", &title)
            .json(&json!({ "title": title }))
            .send()
            .await;
        let answer = match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                let body = res.json::<Value>().await.unwrap_or(Value::Null);
                Some((status, body))
            }
            Err(_) => None,
        };
        let stop = answer.is_none();
        if matches!(answer, Some((201, _))) {
            created.fetch_add(1, Ordering::Relaxed);
        }
        writes.push(Write { title, answer });
        if stop {
            break;
        }
    }
    writes
}

async fn a_service_stopped_mid_write_answers_no_saved_write_with_5xx_and_publishes_all_it_saved(
    stack: &mut Stack,
) -> Result<()> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let user = format!("drain-{run}");
    let token = stack.user_token(&user);
    // One replica gets SIGTERM (the only one in the first pass); every
    // writer writes to it.
    let replica = stack.replicas(TODO)[0];
    let base = format!("http://127.0.0.1:{}", replica.app_port());
    let created = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                base.clone(),
                token.clone(),
                format!("drain-{run}-{w}"),
                created.clone(),
            ))
        })
        .collect();
    let outcome = async {
        eventually(Duration::from_secs(30), "writes under way", || async {
            Ok((created.load(Ordering::Relaxed) >= 50).then_some(()))
        })
        .await?;
        // Writes are held just before their commit (the task table locked by the
        // superuser) until the service has begun to shut down: they commit
        // during the drain, where a relay that stopped at SIGTERM leaves them
        // unpublished, each answered 503 after the publish wait.
        let db = admin_db(stack).await?;
        let mut lock = db.begin().await?;
        sqlx::query("lock table todo.task in share row exclusive mode")
            .execute(&mut *lock)
            .await?;
        let waiting = eventually(
            Duration::from_secs(10),
            "writes waiting on the lock",
            || async {
                let waiting: i64 = sqlx::query_scalar(
                    "select count(*) from pg_stat_activity \
                 where wait_event_type = 'Lock' and query ilike '%insert into task %'",
                )
                .fetch_one(&db)
                .await?;
                Ok((waiting >= 3).then_some(()))
            },
        )
        .await;
        if let Err(e) = waiting {
            let activity: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                "select wait_event_type, state, left(query, 80) from pg_stat_activity \
                 where backend_type = 'client backend'",
            )
            .fetch_all(&db)
            .await?;
            bail!("{e:#}: {activity:#?}");
        }
        let log = stack.logs_dir().join(format!("{}.log", replica.name()));
        let shutting_down = move || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("shutting down")
                .count()
        };
        let before = shutting_down();
        let release = tokio::spawn(async move {
            let begun = eventually(Duration::from_secs(10), "the drain begun", || async {
                Ok((shutting_down() > before).then_some(()))
            })
            .await;
            let committed = lock.commit().await;
            begun.and(committed.map_err(anyhow::Error::from))
        });
        stack.stop_replica(replica).await?;
        release.await.context("the lock holder panicked")??;
        let mut writes = Vec::new();
        for w in writers {
            writes.extend(w.await.context("a writer panicked")?);
        }
        judge(stack, &user, &writes).await
    }
    .await;
    // Whatever was found, the stack goes on with the service running.
    let restarted = stack.start_replica(replica).await;
    outcome?;
    restarted
}

/// Every write answered 5xx left no trace; every write answered 2xx, and
/// every task saved at all, has its `task-created` on Kafka, while the
/// stopped replica is still down.
async fn judge(stack: &Stack, user: &str, writes: &[Write]) -> Result<()> {
    let db = admin_db(stack).await?;
    let saved: Vec<(String, uuid::Uuid)> =
        sqlx::query_as("select title, id from todo.task where user_id = $1")
            .bind(user)
            .fetch_all(&db)
            .await?;
    let saved_title = |title: &str| saved.iter().any(|(t, _)| t == title);
    let mut failures = Vec::new();
    let (mut ok, mut refused, mut unanswered) = (0, 0, 0);
    for w in writes {
        match &w.answer {
            Some((status, _)) if *status >= 500 => {
                refused += 1;
                if saved_title(&w.title) {
                    failures.push(format!("{}: answered {status} but saved", w.title));
                }
            }
            Some((201, body)) => {
                ok += 1;
                if text(body, "/title") != w.title {
                    failures.push(format!("{}: answered 201 with {body}", w.title));
                }
            }
            Some((status, body)) => {
                failures.push(format!("{}: answered {status} {body}", w.title));
            }
            None => unanswered += 1,
        }
    }
    let on_kafka: std::collections::HashSet<String> = eventually(
        Duration::from_secs(15),
        "every saved task's task-created on task-events",
        || async {
            let published: std::collections::HashSet<String> = read_topic(stack, "task-events")
                .await?
                .into_iter()
                .filter(|r| r.envelope()["user_id"] == user)
                .filter(|r| r.envelope()["event_type"] == "task-created")
                .filter_map(|r| r.envelope()["task_id"].as_str().map(str::to_owned))
                .collect();
            let all = saved
                .iter()
                .all(|(_, id)| published.contains(&id.to_string()));
            Ok(all.then_some(published))
        },
    )
    .await
    .unwrap_or_default();
    for (title, id) in &saved {
        if !on_kafka.contains(&id.to_string()) {
            failures.push(format!("{title} ({id}): saved, but not on Kafka"));
        }
    }
    eprintln!(
        "    {} writes: {ok} answered 201, {refused} answered 5xx, {unanswered} without an answer; \
         {} saved",
        writes.len(),
        saved.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} of {} writes broke the promise:\n  {}",
            failures.len(),
            writes.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}
