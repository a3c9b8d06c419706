//! `cargo xtask bench`: drives creates, updates and completes against a fresh
//! local stack from this process and prints latency percentiles (request, and
//! request start → event on Kafka by the broker's timestamps) and throughput.
//!
//! Phase 1 paces writes at a fixed rate (default 200/s) to measure latency
//! under steady load, and the audit lag (event timestamp → recorded_at) under
//! it; phase 2 runs closed-loop with many concurrent clients to measure
//! sustained throughput while the audit service is stopped, then restarts it
//! and measures its catch-up rate. Numbers are printed, never asserted.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use todo_local_stack::{Stack, StackOptions};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Writes in the paced phase.
    #[arg(long, default_value_t = 6_000)]
    paced_ops: usize,
    /// Writes per second in the paced phase.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Writes in the closed-loop phase (the audit service is down meanwhile).
    #[arg(long, default_value_t = 10_000)]
    burst_ops: usize,
    /// Concurrent clients in the closed-loop phase.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// The user every write is made as (and whose audit records are counted).
const BENCH_USER: &str = "bench";

/// One write: when it started (wall clock, ms), how long it took, and which
/// task version it produced (to find its event on Kafka).
struct Sample {
    started_ms: i64,
    latency: Duration,
    task_version: Option<(String, i64)>,
}

#[derive(Clone)]
struct Driver {
    http: reqwest::Client,
    base: String,
    /// Bearer token of the user [`BENCH_USER`], minted once up front.
    token: Arc<str>,
    created: Arc<Mutex<VecDeque<String>>>,
    updated: Arc<Mutex<VecDeque<String>>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<Mutex<HashMap<u16, usize>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Driver {
    /// The next operation of the create → update → complete cycle.
    async fn step(&self, n: usize) {
        let pick = |q: &Arc<Mutex<VecDeque<String>>>| q.lock().unwrap().pop_front();
        let (method, path, body, next) = match n % 3 {
            1 => match pick(&self.created) {
                Some(id) => (
                    "PATCH",
                    format!("/api/v1/tasks/{id}"),
                    Some(json!({"title": format!("edited {n}")})),
                    Some(&self.updated),
                ),
                None => (
                    "POST",
                    "/api/v1/tasks".to_owned(),
                    Some(json!({"title": format!("task {n}")})),
                    Some(&self.created),
                ),
            },
            2 => match pick(&self.updated) {
                Some(id) => ("POST", format!("/api/v1/tasks/{id}/complete"), None, None),
                None => (
                    "POST",
                    "/api/v1/tasks".to_owned(),
                    Some(json!({"title": format!("task {n}")})),
                    Some(&self.created),
                ),
            },
            _ => (
                "POST",
                "/api/v1/tasks".to_owned(),
                Some(json!({"title": format!("task {n}")})),
                Some(&self.created),
            ),
        };
        let started_ms = now_ms();
        let started = Instant::now();
        let mut req = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.base),
            )
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let result = req.send().await;
        let latency = started.elapsed();
        match result {
            Ok(res) if res.status().is_success() => {
                let v: Value = res.json().await.unwrap_or(Value::Null);
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                let version = v["version"].as_i64().unwrap_or(0);
                if let Some(q) = next {
                    q.lock().unwrap().push_back(id.clone());
                }
                self.samples.lock().unwrap().push(Sample {
                    started_ms,
                    latency,
                    task_version: Some((id, version)),
                });
            }
            Ok(res) => {
                *self
                    .errors
                    .lock()
                    .unwrap()
                    .entry(res.status().as_u16())
                    .or_default() += 1
            }
            Err(_) => *self.errors.lock().unwrap().entry(0).or_default() += 1,
        }
    }

    fn take(&self) -> (Vec<Sample>, HashMap<u16, usize>) {
        (
            std::mem::take(&mut *self.samples.lock().unwrap()),
            std::mem::take(&mut *self.errors.lock().unwrap()),
        )
    }
}

/// Waits until the audit trail holds `expected` records of [`BENCH_USER`].
async fn wait_for_audit(db: &sqlx::PgPool, expected: i64) -> Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n: i64 =
            sqlx::query_scalar("select count(*) from audit.audit_record where user_id = $1")
                .bind(BENCH_USER)
                .fetch_one(db)
                .await?;
        if n >= expected {
            return Ok(n);
        }
        if Instant::now() > deadline {
            bail!("the audit trail holds {n} of {expected} records after 300s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn summary(name: &str, mut values_ms: Vec<f64>) {
    values_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  {name:<34} n={:<6} p50={:>7.2} ms  p95={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        values_ms.len(),
        percentile(&values_ms, 50.0),
        percentile(&values_ms, 95.0),
        percentile(&values_ms, 99.0),
        values_ms.last().copied().unwrap_or(f64::NAN)
    );
}

/// Broker timestamps of `task-events` records, by (task id, version).
async fn kafka_times(stack: &Stack) -> Result<HashMap<(String, i64), i64>> {
    let mut times = HashMap::new();
    for record in todo_local_stack::read_topic(&stack.kafka_brokers(), "task-events").await? {
        let Ok(ce) = serde_json::from_str::<Value>(&record.value) else {
            continue;
        };
        let data = &ce["data"];
        let key = (
            data["task_id"].as_str().unwrap_or_default().to_owned(),
            data["payload"]["version"].as_i64().unwrap_or(0),
        );
        times.insert(key, record.timestamp_ms);
    }
    Ok(times)
}

fn report(
    phase: &str,
    samples: &[Sample],
    errors: &HashMap<u16, usize>,
    times: &HashMap<(String, i64), i64>,
    elapsed: Duration,
) {
    println!(
        "{phase}: {} successful writes in {:.1}s = {:.0} writes/s; errors: {errors:?}",
        samples.len(),
        elapsed.as_secs_f64(),
        samples.len() as f64 / elapsed.as_secs_f64()
    );
    summary(
        "request latency",
        samples
            .iter()
            .map(|s| s.latency.as_secs_f64() * 1000.0)
            .collect(),
    );
    let mut missing = 0;
    let to_kafka: Vec<f64> = samples
        .iter()
        .filter_map(|s| {
            let t = s.task_version.as_ref().and_then(|k| times.get(k));
            if t.is_none() {
                missing += 1;
            }
            t.map(|ts| (ts - s.started_ms) as f64)
        })
        .collect();
    summary("request start -> event on Kafka", to_kafka);
    if missing > 0 {
        println!(
            "  {missing} acknowledged writes have no event on task-events (this would be a bug)"
        );
    }
}

pub async fn run(o: Options) -> Result<()> {
    println!("bench: bringing up a fresh stack (.state/bench)");
    let mut stack = Stack::up(StackOptions::for_tests("bench")).await?;
    let driver = Driver {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?,
        base: stack.app_url("todo-service"),
        token: stack.user_token(BENCH_USER).into(),
        created: Default::default(),
        updated: Default::default(),
        samples: Default::default(),
        errors: Default::default(),
    };
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.pg_admin_url())
        .await?;
    // Warm-up: connections, statement caches, the relay.
    let warmup = 300;
    for n in 0..warmup {
        driver.step(n).await;
    }
    let warm = driver.take().0.len();
    if warm != warmup {
        bail!("{} of {warmup} warm-up writes failed", warmup - warm);
    }

    println!("phase 1: {} writes paced at {}/s", o.paced_ops, o.rate);
    let paced_from = Utc::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(o.rate));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(o.paced_ops);
    for n in 0..o.paced_ops {
        ticker.tick().await;
        let d = driver.clone();
        handles.push(tokio::spawn(async move { d.step(n).await }));
    }
    for h in handles {
        h.await?;
    }
    let paced_elapsed = started.elapsed();
    let paced_to = Utc::now();
    let (paced, paced_errors) = driver.take();
    let paced_total = warmup as i64 + paced.len() as i64;

    let recorded_before_outage = wait_for_audit(&db, paced_total).await?;
    let lags: Vec<f64> = sqlx::query_scalar(
        "select (extract(epoch from recorded_at - event_timestamp) * 1000)::float8 from audit.audit_record \
         where user_id = $1 and event_timestamp between $2 and $3",
    )
    .bind(BENCH_USER)
    .bind(paced_from)
    .bind(paced_to)
    .fetch_all(&db)
    .await?;

    println!(
        "phase 2: stopping the audit service; {} writes from {} concurrent clients",
        o.burst_ops, o.concurrency
    );
    stack.stop_service("audit-service").await?;
    stack.stop_sidecar("audit-service").await?;
    let outage_started = Utc::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..o.concurrency {
        let d = driver.clone();
        let next = next.clone();
        let total = o.burst_ops;
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                d.step(n).await;
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let burst_elapsed = started.elapsed();
    let (burst, burst_errors) = driver.take();
    let backlog = burst.len() as i64;

    let restarted = Instant::now();
    stack.start_sidecar("audit-service").await?;
    stack.start_service("audit-service").await?;
    wait_for_audit(&db, recorded_before_outage + backlog).await?;
    let caught_up = restarted.elapsed();
    let (first, last): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "select min(recorded_at), max(recorded_at) from audit.audit_record where user_id = $1 and event_timestamp >= $2",
    )
    .bind(BENCH_USER)
    .bind(outage_started)
    .fetch_one(&db)
    .await?;
    let processing = (last - first).num_milliseconds().max(1) as f64 / 1000.0;

    let times = kafka_times(&stack).await?;
    println!();
    report(
        &format!("phase 1 (paced at {}/s)", o.rate),
        &paced,
        &paced_errors,
        &times,
        paced_elapsed,
    );
    summary("audit lag (event -> recorded_at)", lags);
    report(
        &format!("phase 2 ({} clients, closed loop)", o.concurrency),
        &burst,
        &burst_errors,
        &times,
        burst_elapsed,
    );
    println!(
        "audit catch-up: {backlog} events accumulated while it was down; all recorded {:.2}s after the restart began \
         ({:.0} events/s, including sidecar start and consumer-group join); first to last record {:.2}s ({:.0} events/s)",
        caught_up.as_secs_f64(),
        backlog as f64 / caught_up.as_secs_f64(),
        processing,
        backlog as f64 / processing
    );
    stack.shutdown().await?;
    Ok(())
}

/// The CPU's model name (`/proc/cpuinfo`), printed with every benchmark's
/// figures: they differ several times between machines.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned())
}
