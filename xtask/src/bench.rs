//! `cargo xtask bench`: drives creates, updates and completes against a fresh
//! local stack from this process and prints latency percentiles (request, and
//! request start → event on Kafka by the broker's timestamps) and throughput.
//!
//! Phase 1 paces writes at a fixed rate (default 200/s) to measure latency
//! under steady load, and the audit lag (event timestamp → recorded_at) under
//! it; phase 2 runs closed-loop with many concurrent clients to measure
//! sustained throughput while the audit service is stopped, then restarts it
//! and measures its catch-up rate; phase 3 paces other users' writes twice,
//! first alone, then while many clients keep updating one hot task, and
//! compares their request → Kafka latency (`--hot-only` runs just phase 3).
//! Numbers are printed, never asserted.

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
    /// Run only phase 3 (one hot task beside other users' writes).
    #[arg(long)]
    hot_only: bool,
    /// Seconds of other users' writes in each half of phase 3.
    #[arg(long, default_value_t = 20)]
    hot_secs: u64,
    /// Writes per second of the other users in phase 3 (both halves).
    #[arg(long, default_value_t = 100)]
    others_rate: u32,
    /// Other users in phase 3, each with tasks of their own.
    #[arg(long, default_value_t = 20)]
    other_users: usize,
    /// Concurrent clients updating the hot task in phase 3's second half.
    #[arg(long, default_value_t = 16)]
    hot_writers: usize,
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
        self.record(result, started_ms, started, next).await;
    }

    /// Records the outcome of a write started at `started`; a created or
    /// updated task goes on to the queue `next`.
    async fn record(
        &self,
        result: reqwest::Result<reqwest::Response>,
        started_ms: i64,
        started: Instant,
        next: Option<&Arc<Mutex<VecDeque<String>>>>,
    ) {
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

    /// Renames task `id` (one `task-updated`), timed like [`Driver::step`].
    async fn patch_title(&self, id: &str, title: &str) {
        let started_ms = now_ms();
        let started = Instant::now();
        let result = self
            .http
            .patch(format!("{}/api/v1/tasks/{id}", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "title": title }))
            .send()
            .await;
        self.record(result, started_ms, started, None).await;
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
    let to_kafka = to_kafka_ms(samples, times);
    let missing = samples.len() - to_kafka.len();
    summary("request start -> event on Kafka", to_kafka);
    if missing > 0 {
        println!(
            "  {missing} acknowledged writes have no event on task-events (this would be a bug)"
        );
    }
}

impl Driver {
    /// A driver writing as `user`.
    fn new(stack: &Stack, http: &reqwest::Client, user: &str) -> Driver {
        Driver {
            http: http.clone(),
            base: stack.app_url("todo-service"),
            token: stack.user_token(user).into(),
            created: Default::default(),
            updated: Default::default(),
            samples: Default::default(),
            errors: Default::default(),
        }
    }
}

pub async fn run(o: Options) -> Result<()> {
    println!("bench: bringing up a fresh stack (.state/bench)");
    let mut stack = Stack::up(StackOptions::for_tests("bench")).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    if o.hot_only {
        let result = hot_task(&stack, &http, &o).await;
        stack.shutdown().await?;
        return result;
    }
    let driver = Driver::new(&stack, &http, BENCH_USER);
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
    println!();
    let result = hot_task(&stack, &http, &o).await;
    stack.shutdown().await?;
    result
}

/// Phase 3: the other users' writes paced at `o.others_rate` for `o.hot_secs`
/// alone, then as long again while `o.hot_writers` clients update one task of
/// another user back to back; prints the other users' latencies of both
/// halves (request start → event on Kafka above all) and their ratio.
async fn hot_task(stack: &Stack, http: &reqwest::Client, o: &Options) -> Result<()> {
    let others: Vec<Driver> = (0..o.other_users)
        .map(|i| Driver::new(stack, http, &format!("bench-other-{i}")))
        .collect();
    let hot = Driver::new(stack, http, "bench-hot");
    // Warm-up: every user's first task, the hot task, connections.
    for (n, d) in others.iter().enumerate() {
        d.step(n * 3).await;
    }
    hot.step(0).await;
    let hot_task = hot.created.lock().unwrap().pop_front();
    let Some(hot_task) = hot_task else {
        bail!("the hot task could not be created: {:?}", hot.take().1);
    };
    for d in &others {
        d.take();
    }
    hot.take();

    println!(
        "phase 3: {} other users' writes paced at {}/s for {}s, alone",
        o.other_users, o.others_rate, o.hot_secs
    );
    let (alone, alone_errors, alone_elapsed) = paced_others(&others, o).await?;

    println!(
        "phase 3: the same again while {} clients update one hot task back to back",
        o.hot_writers
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..o.hot_writers)
        .map(|w| {
            let (hot, task, stop) = (hot.clone(), hot_task.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    hot.patch_title(&task, &format!("hot {w}-{n}")).await;
                    n += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let (busy, busy_errors, busy_elapsed) = paced_others(&others, o).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let hot_elapsed = started.elapsed();
    let (hot_samples, hot_errors) = hot.take();

    let times = kafka_times(stack).await?;
    println!();
    report(
        &format!("phase 3, other users alone ({}/s)", o.others_rate),
        &alone,
        &alone_errors,
        &times,
        alone_elapsed,
    );
    report(
        &format!(
            "phase 3, other users beside a hot task ({}/s)",
            o.others_rate
        ),
        &busy,
        &busy_errors,
        &times,
        busy_elapsed,
    );
    report(
        &format!("phase 3, the hot task ({} clients)", o.hot_writers),
        &hot_samples,
        &hot_errors,
        &times,
        hot_elapsed,
    );
    let p99 = |samples: &[Sample]| {
        let mut v = to_kafka_ms(samples, &times);
        v.sort_by(|a, b| a.total_cmp(b));
        percentile(&v, 99.0)
    };
    let (alone_p99, busy_p99) = (p99(&alone), p99(&busy));
    println!(
        "phase 3: other users' p99 request start -> event on Kafka {alone_p99:.1} ms alone, \
         {busy_p99:.1} ms beside the hot task: x{:.2} (on {})",
        busy_p99 / alone_p99,
        cpu_model()
    );
    Ok(())
}

/// The other users' writes, paced at `o.others_rate` for `o.hot_secs`, each
/// to the next user in turn; their samples, errors and how long it took.
async fn paced_others(
    others: &[Driver],
    o: &Options,
) -> Result<(Vec<Sample>, HashMap<u16, usize>, Duration)> {
    let total = (u64::from(o.others_rate) * o.hot_secs) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(o.others_rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(total);
    for n in 0..total {
        ticker.tick().await;
        let d = others[n % others.len()].clone();
        // Each user's own sequence of steps: create, update, complete, ...
        let step = n / others.len();
        handles.push(tokio::spawn(async move { d.step(step).await }));
    }
    for h in handles {
        h.await?;
    }
    let elapsed = started.elapsed();
    let mut samples = Vec::new();
    let mut errors: HashMap<u16, usize> = HashMap::new();
    for d in others {
        let (s, e) = d.take();
        samples.extend(s);
        for (status, n) in e {
            *errors.entry(status).or_default() += n;
        }
    }
    Ok((samples, errors, elapsed))
}

/// Request start → broker timestamp of each sample's event, in ms (samples
/// whose event is not on the topic are left out; [`report`] counts them).
fn to_kafka_ms(samples: &[Sample], times: &HashMap<(String, i64), i64>) -> Vec<f64> {
    samples
        .iter()
        .filter_map(|s| {
            let ts = s.task_version.as_ref().and_then(|k| times.get(k))?;
            Some((ts - s.started_ms) as f64)
        })
        .collect()
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
