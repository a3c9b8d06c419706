//! `cargo xtask bench recurring`: recurrence and reminders on a fresh local
//! stack, from this process.
//!
//! 1. Completion → next instance: `--completions` recurring tasks are
//!    completed through the Todo API at `--rate` per second; a poller lists
//!    the user's tasks through the Todo API every 20 ms and notes when each
//!    next instance first appears (so figures include up to 20 ms of polling).
//! 2. Reminder due time → notification `sent_at`: `--reminders` tasks with
//!    reminders spread over one minute (whole seconds, the scheduler's
//!    granularity), read back from the notification API.
//!
//! 3. A slow dependency (issue 10 §4): the Todo service frozen (SIGSTOP)
//!    while `--waiting` completions need it for their next instance; how
//!    soon `--others` task events with reminders (produced with kcat) are
//!    applied meanwhile, how the recurring API answers, and how soon the next
//!    instances appear after the thaw.
//!
//! Requests carry bearer tokens minted before anything is timed: the user's
//! for the Todo API, the operator's for the notification, schedule and
//! reminder listings of a given user.
//!
//! Numbers are printed, never asserted; early or missing reminders are counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};
use todo_local_stack::{Stack, StackOptions};

use crate::bench::summary;

/// Options of `cargo xtask bench recurring`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Recurring completions measured.
    #[arg(long, default_value_t = 200)]
    completions: usize,
    /// Completions per second.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Reminders, spread over one minute.
    #[arg(long, default_value_t = 200)]
    reminders: usize,
    /// Completions left waiting on the frozen Todo service (more than the
    /// recurring service's pool of 10 connections).
    #[arg(long, default_value_t = 30)]
    waiting: usize,
    /// Other task events applied while it is frozen.
    #[arg(long, default_value_t = 100)]
    others: usize,
    /// Run only part 3 (the slow dependency).
    #[arg(long)]
    slow_only: bool,
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    todo: String,
    notification: String,
    user: String,
    /// `user`'s bearer token.
    token: String,
    /// An operator's bearer token, for listings of `user_id=<someone>`.
    operator_token: String,
}

impl Api {
    /// The same services as another user (whose token is minted here, so
    /// before anything is timed).
    fn as_user(&self, stack: &Stack, user: String) -> Api {
        Api {
            token: stack.user_token(&user),
            user,
            ..self.clone()
        }
    }

    /// GET `url` as the operator, as JSON. A 4xx (a refused token, say)
    /// fails at once instead of reading as an empty page for the whole run.
    async fn operator_get(&self, url: &str) -> Result<Value> {
        let res = self
            .http
            .get(url)
            .bearer_auth(&self.operator_token)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        if status.is_client_error() {
            bail!("{url}: {status} {body}");
        }
        Ok(body)
    }

    async fn todo(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.todo))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    async fn create(&self, body: Value) -> Result<String> {
        let t = self
            .todo(reqwest::Method::POST, "/api/v1/tasks", Some(body))
            .await?;
        Ok(t["id"].as_str().context("task id")?.to_owned())
    }

    /// Parent task id → task id of every task of the user that has a parent.
    async fn children(&self) -> Result<HashMap<String, String>> {
        let mut children = HashMap::new();
        for offset in (0..).step_by(200) {
            let page = self
                .todo(
                    reqwest::Method::GET,
                    &format!("/api/v1/tasks?limit=200&offset={offset}"),
                    None,
                )
                .await?;
            let tasks = page["tasks"].as_array().cloned().unwrap_or_default();
            children.extend(tasks.iter().filter_map(|t| {
                Some((
                    t["parent_task_id"].as_str()?.to_owned(),
                    t["id"].as_str()?.to_owned(),
                ))
            }));
            if tasks.len() < 200 {
                break;
            }
        }
        Ok(children)
    }
}

fn millis(d: TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

async fn completions(api: &Api, n: usize, rate: u32) -> Result<()> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            api.create(json!({
                "title": format!("recurring {i}"), "recurrence_schedule": "daily",
                "due_date": "2026-03-10T09:00:00Z", "timezone": "Europe/Berlin",
            }))
            .await?,
        );
    }
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let seen = seen.clone();
        let done = done.clone();
        let api = api.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(children) = api.children().await {
                    let now = Instant::now();
                    let mut seen = seen.lock().expect("lock");
                    for parent in children.into_keys() {
                        seen.entry(parent).or_insert(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut started = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    for id in &ids {
        ticker.tick().await;
        started.insert(id.clone(), Instant::now());
        api.todo(
            reqwest::Method::POST,
            &format!("/api/v1/tasks/{id}/complete"),
            None,
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().expect("lock").len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::Relaxed);
    poller.await?;
    let seen = seen.lock().expect("lock").clone();
    let latencies: Vec<f64> = started
        .iter()
        .filter_map(|(id, t0)| {
            seen.get(id)
                .map(|t| t.duration_since(*t0).as_secs_f64() * 1000.0)
        })
        .collect();
    println!(
        "completion -> next instance visible through the Todo API ({n} completions at {rate}/s):"
    );
    let seen_count = latencies.len();
    summary("completion -> next instance", latencies);
    println!("  missing next instances: {}", n - seen_count);
    Ok(())
}

async fn reminders(api: &Api, n: usize) -> Result<()> {
    let start = (Utc::now() + TimeDelta::seconds(20))
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut due: HashMap<String, DateTime<Utc>> = HashMap::new();
    for i in 0..n {
        let at = start + TimeDelta::seconds((i * 60 / n.max(1)) as i64);
        let id = api
            .create(json!({ "title": format!("reminder {i}"), "reminder_time": at.to_rfc3339() }))
            .await?;
        due.insert(id, at);
    }
    if Utc::now() >= start {
        bail!("creating {n} reminders took longer than 20 s; lower --reminders");
    }
    let last = start + TimeDelta::seconds(60);
    let url = format!(
        "{}/api/v1/notifications?user_id={}&limit=500",
        api.notification, api.user
    );
    let mut sent: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut stored = Value::Null;
    let give_up = last + TimeDelta::seconds(30);
    while sent.len() < n && Utc::now() < give_up {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let page = api.operator_get(&url).await?;
        for note in page["notifications"].as_array().into_iter().flatten() {
            if let (Some(task), Some(at)) = (note["task_id"].as_str(), note["sent_at"].as_str()) {
                sent.insert(task.to_owned(), DateTime::parse_from_rfc3339(at)?.to_utc());
            }
        }
        stored = page["total"].clone();
    }
    let mut lateness = Vec::new();
    let mut early = 0;
    for (task, at) in &due {
        if let Some(s) = sent.get(task) {
            let late = *s - *at;
            if late < TimeDelta::zero() {
                early += 1;
            }
            lateness.push(millis(late));
        }
    }
    let delivered = lateness.len();
    println!("reminder due time -> notification sent_at ({n} reminders due within one minute):");
    summary("due -> sent_at", lateness);
    println!(
        "  notifications stored: {stored} (expected {n}); sent: {delivered}; early: {early}; missed: {}",
        n - delivered
    );
    Ok(())
}

/// A task event as a producer other than the Todo service would put it on
/// `task-events` (CloudEvent with the envelope as data): `(key, value)`.
fn task_event(event_type: &str, payload: &Value, user: &str) -> (String, String) {
    let event_id = uuid::Uuid::new_v4().to_string();
    let task_id = payload["id"].as_str().unwrap_or_default().to_owned();
    let event = json!({
        "specversion": "1.0", "id": event_id, "source": "xtask-bench", "type": event_type,
        "datacontenttype": "application/json",
        "data": { "event_id": event_id, "event_type": event_type, "schema_version": "1.0",
                  "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                  "task_id": task_id, "user_id": user, "payload": payload }
    });
    (task_id, event.to_string())
}

/// Produces `records` (key, value) onto `topic` with kcat, in order.
async fn produce(stack: &Stack, topic: &str, records: &[(String, String)]) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kcat")
        .args(["-b", &stack.kafka_brokers(), "-P", "-t", topic, "-K", "\t"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running kcat -P")?;
    let mut stdin = child.stdin.take().context("kcat stdin")?;
    for (key, value) in records {
        stdin
            .write_all(format!("{key}\t{value}\n").as_bytes())
            .await?;
    }
    drop(stdin);
    if !child.wait().await?.success() {
        bail!("kcat -P failed");
    }
    Ok(())
}

/// 3. A slow dependency: the Todo service is frozen (SIGSTOP: its sockets stay
///    open, nothing is answered) while `waiting` completions need it for
///    their next instance; meanwhile `others` task events with reminders
///    (produced with kcat, as the Todo service would) must still be applied,
///    and the recurring service's API must still answer.
async fn slow_todo(stack: &Stack, api: &Api, waiting: usize, others: usize) -> Result<()> {
    let recurring = stack.app_url("recurring-task-service");
    let mut series = Vec::with_capacity(waiting);
    for i in 0..waiting {
        let id = api
            .create(json!({
                "title": format!("waits on todo {i}"), "recurrence_schedule": "daily",
                "due_date": "2026-03-10T09:00:00Z", "timezone": "UTC",
            }))
            .await?;
        series.push(
            api.todo(reqwest::Method::GET, &format!("/api/v1/tasks/{id}"), None)
                .await?,
        );
    }
    let known = format!("{recurring}/api/v1/schedules?user_id={}&limit=1", api.user);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = api.operator_get(&known).await?;
        if page["total"].as_u64() == Some(waiting as u64) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the recurring service did not see {waiting} series: {page}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let completions: Vec<(String, String)> = series
        .iter()
        .map(|t| {
            let mut done = t.clone();
            done["status"] = json!("complete");
            task_event("task-completed", &done, &api.user)
        })
        .collect();
    let remind_at =
        (Utc::now() + TimeDelta::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let other_user = format!("{}-others", api.user);
    let creations: Vec<(String, String)> = (0..others)
        .map(|i| {
            let mut t = series[0].clone();
            t["id"] = json!(uuid::Uuid::new_v4());
            t["title"] = json!(format!("other {i}"));
            t["is_recurring"] = json!(false);
            t["recurrence_schedule"] = Value::Null;
            t["reminder_time"] = json!(remind_at);
            task_event("task-created", &t, &other_user)
        })
        .collect();

    stack.pause_service("todo-service")?;
    let frozen = async {
        produce(stack, "task-events", &completions).await?;
        let t0 = Instant::now();
        produce(stack, "task-events", &creations).await?;
        let mut scheduled: HashMap<String, f64> = HashMap::new();
        let mut api_ms = Vec::new();
        let mut api_errors = 0;
        let reminders = format!(
            "{recurring}/api/v1/reminders?user_id={other_user}&status=scheduled&limit=500"
        );
        let deadline = t0 + Duration::from_secs(30);
        while scheduled.len() < others && Instant::now() < deadline {
            let asked = Instant::now();
            match api
                .http
                .get(&reminders)
                .bearer_auth(&api.operator_token)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    api_ms.push(asked.elapsed().as_secs_f64() * 1000.0);
                    let page: Value = r.json().await?;
                    let now = t0.elapsed().as_secs_f64() * 1000.0;
                    for r in page["reminders"].as_array().into_iter().flatten() {
                        if let Some(id) = r["task_id"].as_str() {
                            scheduled.entry(id.to_owned()).or_insert(now);
                        }
                    }
                }
                _ => api_errors += 1,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "with the Todo service frozen and {waiting} next instances waiting on it, {others} other task events (reminders):"
        );
        let applied = scheduled.len();
        summary("produced -> reminder scheduled", scheduled.into_values().collect());
        println!("  not applied within 30 s: {}", others - applied);
        summary("recurring API answer", api_ms);
        println!("  recurring API errors (e.g. 503, pool exhausted): {api_errors}");
        anyhow::Ok(())
    }
    .await;
    stack.resume_service("todo-service")?;
    frozen?;
    let thawed = Instant::now();
    let deadline = thawed + Duration::from_secs(120);
    let mut seen = 0;
    while Instant::now() < deadline {
        let children = api.children().await?;
        seen = series
            .iter()
            .filter(|t| t["id"].as_str().is_some_and(|id| children.contains_key(id)))
            .count();
        if seen == waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  after the thaw: {seen} of {waiting} next instances visible within {:.1} s",
        thawed.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn run(o: Options) -> Result<()> {
    let stack = Stack::up(StackOptions::for_tests("bench-recurring")).await?;
    let result = async {
        let user = format!("bench-{}", uuid::Uuid::new_v4());
        let api = Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            todo: stack.app_url("todo-service"),
            notification: stack.app_url("notification-service"),
            token: stack.user_token(&user),
            user,
            operator_token: stack.operator_token(),
        };
        // Warm-up: the first workflow start places the actor types.
        let warm = api.as_user(&stack, format!("warm-{}", uuid::Uuid::new_v4()));
        completions(&warm, 5, 5).await?;
        println!("(warm-up above)");
        if !o.slow_only {
            completions(&api, o.completions, o.rate).await?;
            let reminder_api = api.as_user(&stack, format!("bench-r-{}", uuid::Uuid::new_v4()));
            reminders(&reminder_api, o.reminders).await?;
        }
        let slow_api = api.as_user(&stack, format!("bench-s-{}", uuid::Uuid::new_v4()));
        slow_todo(&stack, &slow_api, o.waiting, o.others).await
    }
    .await;
    stack.shutdown().await?;
    result
}
