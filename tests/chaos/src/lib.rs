//! The chaos campaign: a steady mixed workload of a few users (plain and
//! recurring tasks, reminders seconds out, WebSocket clients reconnecting
//! with `since`) against the real local stack with two replicas of every
//! service, under a seeded, printed schedule of overlapping faults (`kill -9`
//! and SIGSTOP of each replica and sidecar, Kafka, PostgreSQL, placement and
//! scheduler stopped and started). Then the platform's promises are checked
//! from sources it does not control: the topics read with kcat, the
//! database as the superuser, the clients' own logs.
//!
//! `cargo xtask chaos` runs [`run`] for 30 minutes by default. The short
//! campaign is not in `cargo xtask test` yet: with seed 20703792 a
//! notification sidecar is still left unable to run workflows (see the
//! README's Chaos campaign section); the checks' own unit tests are.
//! Modules: `schedule` (the faults as a pure function of the seed),
//! `workload` and `client` (the users), `faults` (carrying the schedule out
//! on the stack, recovery probes), `checks` (the verdict, pure) and
//! `report`.

pub mod checks;
pub mod client;
pub mod faults;
pub mod report;
pub mod schedule;
pub mod workload;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use todo_local_stack::{Stack, StackOptions};

pub use report::Report;

use crate::checks::{Event, Notification, Observed, check_all};
use crate::client::Api;
use crate::faults::Probe;
use crate::schedule::REPLICAS;
use crate::workload::{Target, Workload};

/// The checks wait at least this long after the last write: every
/// reminder set by then is due.
const MIN_SETTLE: Duration = Duration::from_secs(15);

/// A campaign's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Minutes of faults (the workload runs through them).
    pub minutes: f64,
    pub seed: u64,
    /// The stack's state folder, `.state/<name>`.
    pub state_name: String,
    /// Users writing at once, each with a WebSocket client.
    pub users: usize,
    /// How long the checks may take to pass after the last fault.
    pub settle_within: Duration,
    /// One long outage of Kafka or PostgreSQL, if any.
    pub outage: Option<schedule::Outage>,
}

impl Options {
    pub fn new(minutes: f64, seed: u64) -> Options {
        Options {
            minutes,
            seed,
            state_name: "chaos".to_owned(),
            users: 4,
            // Past the workflow watchdogs' defaults (a look every 30 s at
            // instances without progress for 300 s) and a delivery after.
            settle_within: Duration::from_secs(420),
            outage: None,
        }
    }
}

/// A seed from the clock and a fresh UUID, for a campaign not replaying one.
pub fn random_seed() -> u64 {
    let u = uuid::Uuid::new_v4().as_u64_pair();
    // Small enough to type back in.
    (u.0 ^ u.1) % 1_000_000_000
}

/// Brings a stack of its own up (two replicas of every service, state in
/// `.state/<state_name>`, wiped first), runs the campaign on it, and takes
/// it down. An `Err` is a campaign that could not run (the stack did not
/// come up); a violation is in the report.
pub async fn run(options: Options) -> Result<Report> {
    let mut stack_options = StackOptions::for_tests(&options.state_name).with_replicas(REPLICAS)?;
    stack_options.browser = false;
    let mut stack = Stack::up(stack_options).await?;
    let report = run_on(&mut stack, &options).await;
    if let Err(e) = stack.shutdown().await {
        eprintln!("chaos: stack shutdown: {e:#}");
    }
    report
}

/// The campaign on a running stack (with [`REPLICAS`] replicas of every
/// service).
pub async fn run_on(stack: &mut Stack, options: &Options) -> Result<Report> {
    let faults = schedule::schedule_with(options.seed, options.minutes, options.outage);
    eprintln!(
        "CHAOS seed {} ({} min): {} faults planned",
        options.seed,
        options.minutes,
        faults.len()
    );
    for f in &faults {
        eprintln!("  {f}");
    }
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&stack.pg_admin_url())
        .await
        .context("connecting to PostgreSQL as the superuser")?;
    let todo_bases = stack.app_urls("todo-service");
    let ws_bases: Vec<String> = stack
        .app_urls("websocket-service")
        .iter()
        .map(|b| b.replacen("http://", "ws://", 1))
        .collect();
    let prefix = format!("chaos-{}", options.seed);
    let users: Vec<(String, String)> = (0..options.users)
        .map(|n| {
            let user = format!("{prefix}-user-{n}");
            let token = stack.user_token(&user);
            (user, token)
        })
        .collect();
    let probe_user = format!("{prefix}-probe");
    let probe = Probe {
        api: Api::new(
            todo_bases.clone(),
            &probe_user,
            stack.user_token(&probe_user),
        ),
        db: db.clone(),
    };
    // The platform takes a write and audits it before anything starts.
    let (ready, warmup) = probe.run(Instant::now()).await;
    ready.with_context(|| format!("the platform is not ready before the campaign: {warmup:?}"))?;

    let target = Target {
        todo_bases,
        ws_bases,
        users,
    };
    let mut workload = Workload::start(&target, options.seed);
    let start = Instant::now();
    let executed = faults::execute(stack, &faults, start, &probe).await;
    let (restored, still_missing) = faults::restore(stack, Duration::from_secs(180)).await;
    workload.stop_writes().await;
    eprintln!(
        "CHAOS faults over after {:.0}s; {} writes; checking",
        start.elapsed().as_secs_f64(),
        workload.writes().len()
    );

    let brokers = stack.kafka_brokers();
    let settle_started = Instant::now();
    let deadline = settle_started + options.settle_within;
    let mut writes = workload.writes();
    writes.push(warmup);
    writes.extend(executed.probe_writes.iter().cloned());
    // Poll until nothing is missing any more (what is there twice or out of
    // order stays so) or the deadline passes: what is still missing then is
    // a violation.
    loop {
        let observed = observe(&brokers, &db, writes.clone(), workload.stream_logs()).await;
        let clean = match &observed {
            // Not before every reminder of the last writes (at most 10 s
            // out) is due.
            Ok(o) => check_all(o).1.missing == 0 && settle_started.elapsed() >= MIN_SETTLE,
            Err(_) => false,
        };
        if clean || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let settle = settle_started.elapsed();
    let streams = workload.finish().await;
    let observed = observe(&brokers, &db, writes.clone(), streams.streams)
        .await
        .context("reading Kafka and the database for the checks")?;
    let (mut violations, counts) = check_all(&observed);
    for name in still_missing {
        violations.push(checks::Violation {
            check: "every process runs again",
            detail: format!("{name} is not running after the campaign"),
        });
    }
    for run in &executed.runs {
        if run.recovery.is_none() {
            violations.push(checks::Violation {
                check: "recovery",
                detail: format!(
                    "no probe write was acknowledged and audited within {}s of the end of: {}",
                    180, run.fault
                ),
            });
        }
    }
    Ok(Report {
        seed: options.seed,
        minutes: options.minutes,
        faults: executed.runs,
        counts,
        writes: writes.len(),
        violations,
        supervisor: executed.supervisor,
        restored,
        settle,
    })
}

/// Reads both task topics with kcat and the audit and notification tables
/// as the superuser.
async fn observe(
    brokers: &str,
    db: &sqlx::PgPool,
    writes: Vec<workload::Write>,
    streams: Vec<(String, client::StreamLog)>,
) -> Result<Observed> {
    let read = |topic: &'static str| async move {
        let records = todo_local_stack::read_topic(brokers, topic).await?;
        Ok::<_, anyhow::Error>(
            records
                .iter()
                .filter_map(|r| Event::parse(r.partition, r.offset, &r.value))
                .collect::<Vec<_>>(),
        )
    };
    let task_events = read("task-events").await?;
    let task_updates = read("task-updates").await?;
    let audited: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "select event_id::text, count(*) from audit.audit_record group by event_id",
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .collect();
    type Row = (
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        String,
    );
    let notifications = sqlx::query_as::<_, Row>(
        "select task_id::text, remind_at, created_at, sent_at, status from notification.notification",
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(task_id, remind_at, created_at, sent_at, status)| Notification {
        task_id,
        remind_at,
        created_at,
        sent_at,
        status,
    })
    .collect();
    Ok(Observed {
        writes,
        task_events,
        task_updates,
        audited,
        notifications,
        streams,
        now: Utc::now(),
    })
}
