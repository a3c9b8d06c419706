//! Carrying out a fault schedule on the running stack: each fault begins
//! and ends at its planned offset (a slow start of one part delays the
//! actions after it, all by the same lag, and the actual times are what is
//! reported); what dies on its own meanwhile is restarted
//! (`Stack::revive`), as Kubernetes restarts a container that exits, but a
//! process that is only unready is left alone (a paused one is unready on
//! purpose, and the supervisor's restart of an unready service waits for it
//! to become ready, which would hold the schedule up); and after each fault ends a probe write measures how
//! long the platform took to take a write again and audit it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::Method;
use serde_json::json;
use todo_local_stack::{Replica, Stack};

use crate::client::Api;
use crate::schedule::{Fault, FaultKind};
use crate::workload::{Op, Outcome, Write};

/// What happened to one planned fault.
#[derive(Debug, Clone)]
pub struct FaultRun {
    pub fault: Fault,
    /// When it began and ended, from the campaign's start.
    pub began: Option<Duration>,
    pub ended: Option<Duration>,
    /// Why beginning or ending it failed, if it did.
    pub error: Option<String>,
    /// From its end until a probe write was acknowledged and audited.
    pub recovery: Option<Duration>,
}

/// Writes made to measure recovery, and the platform's own restarts.
#[derive(Debug, Default)]
pub struct Executed {
    pub runs: Vec<FaultRun>,
    pub probe_writes: Vec<Write>,
    /// Lines of the supervisor (a process that died on its own and was
    /// restarted, or stayed unready), with their offset.
    pub supervisor: Vec<String>,
}

/// Where probes write and read.
#[derive(Clone)]
pub struct Probe {
    pub api: Api,
    pub db: sqlx::PgPool,
}

/// How long a probe keeps trying before it declares the platform not
/// recovered.
const PROBE_DEADLINE: Duration = Duration::from_secs(180);

impl Probe {
    /// Creates a task (retrying with one Idempotency-Key) and waits until
    /// its `task-created` is audited; the time that took, and the write.
    pub async fn run(&self, from: Instant) -> (Option<Duration>, Write) {
        let title = format!("probe {}", uuid::Uuid::new_v4());
        let key = uuid::Uuid::new_v4().to_string();
        let body = json!({ "title": title });
        let mut statuses = Vec::new();
        let mut write = Write {
            user: self.api.user.clone(),
            op: Op::Create,
            task_id: None,
            titles: vec![title],
            outcome: Outcome::Unknown,
            version: None,
            recurring: false,
            reminder_at: None,
            statuses: Vec::new(),
        };
        let deadline = from + PROBE_DEADLINE;
        let id = loop {
            let a = self
                .api
                .send(Method::POST, "/api/v1/tasks", Some(&body), Some(&key))
                .await;
            statuses.push(a.status);
            if a.status == 201 {
                write.outcome = Outcome::Acked;
                write.version = a.body["version"].as_i64();
                break a.body["id"].as_str().map(str::to_owned);
            }
            write.outcome = match a.status {
                503 => Outcome::Refused,
                0 | 500 | 502 | 504 => Outcome::Unknown,
                s => Outcome::Other(s),
            };
            if Instant::now() >= deadline || matches!(write.outcome, Outcome::Other(_)) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        write.statuses = statuses;
        write.task_id = id.clone();
        let Some(id) = id else {
            return (None, write);
        };
        let Ok(task) = uuid::Uuid::parse_str(&id) else {
            return (None, write);
        };
        while Instant::now() < deadline {
            let audited: Result<i64, _> = sqlx::query_scalar(
                "select count(*) from audit.audit_record where task_id = $1 and event_type = 'task-created'",
            )
            .bind(task)
            .fetch_one(&self.db)
            .await;
            if matches!(audited, Ok(n) if n > 0) {
                return (Some(from.elapsed()), write);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (None, write)
    }
}

fn replica_of(stack: &Stack, fault: &Fault) -> Option<Replica> {
    let (app, index) = fault.replica?;
    stack.replicas(app).into_iter().find(|r| r.index == index)
}

/// Begins a fault; for a pause, returns the id of the process paused.
async fn begin(stack: &mut Stack, fault: &Fault) -> Result<Option<u32>> {
    let replica = replica_of(stack, fault);
    match (fault.kind, replica) {
        (FaultKind::KillApp, Some(r)) => stack.kill_replica(r),
        (FaultKind::KillSidecar, Some(r)) => stack.kill_replica_sidecar(r),
        (FaultKind::PauseApp | FaultKind::PauseSidecar, Some(r)) => {
            let sidecar = fault.kind == FaultKind::PauseSidecar;
            let Some(pid) = stack.replica_pid(r, sidecar) else {
                anyhow::bail!("{} is not running", fault.target());
            };
            stack.signal_pid(pid, true)?;
            return Ok(Some(pid));
        }
        (FaultKind::Kafka, _) => stack.stop_kafka().await?,
        (FaultKind::Postgres, _) => stack.stop_postgres().await?,
        (FaultKind::Placement, _) => stack.stop_placement().await?,
        (FaultKind::Scheduler, _) => stack.stop_scheduler().await?,
        (kind, None) => anyhow::bail!("{kind} needs a replica"),
    }
    Ok(None)
}

/// How long ending a replica's or sidecar's fault waits for it to be ready.
const READY_WAIT: Duration = Duration::from_secs(15);

/// Ends a fault: starts what was stopped, resumes what was paused.
async fn end(stack: &mut Stack, fault: &Fault, paused: Option<u32>) -> Result<()> {
    let replica = replica_of(stack, fault);
    match (fault.kind, replica) {
        // The process is spawned and recorded before its readiness is
        // awaited, so giving up the wait leaves it running: its readiness
        // may depend on a part another fault holds down, and the schedule
        // must go on meanwhile.
        (FaultKind::KillApp, Some(r)) => tokio::time::timeout(READY_WAIT, stack.start_replica(r))
            .await
            .unwrap_or(Ok(())),
        (FaultKind::KillSidecar, Some(r)) => {
            tokio::time::timeout(READY_WAIT, stack.start_replica_sidecar(r))
                .await
                .unwrap_or(Ok(()))
        }
        (FaultKind::PauseApp | FaultKind::PauseSidecar, _) => match paused {
            Some(pid) => stack.signal_pid(pid, false),
            None => Ok(()),
        },
        (FaultKind::Kafka, _) => stack.start_kafka().await,
        (FaultKind::Postgres, _) => stack.start_postgres().await,
        (FaultKind::Placement, _) => stack.start_placement().await,
        (FaultKind::Scheduler, _) => stack.start_scheduler().await,
        (kind, None) => anyhow::bail!("{kind} needs a replica"),
    }
}

/// Carries out `faults` from `start` on, one action at a time in time
/// order, probing recovery after each end. Returns once every fault has
/// ended and every probe finished.
pub async fn execute(
    stack: &mut Stack,
    faults: &[Fault],
    start: Instant,
    probe: &Probe,
) -> Executed {
    // (offset, fault index, begin?) in time order; an end before a begin at
    // the same instant.
    let mut actions: Vec<(Duration, usize, bool)> = faults
        .iter()
        .enumerate()
        .flat_map(|(i, f)| [(f.at, i, true), (f.end(), i, false)])
        .collect();
    actions.sort_by_key(|(t, i, b)| (*t, *b, *i));
    let mut runs: Vec<FaultRun> = faults
        .iter()
        .map(|f| FaultRun {
            fault: f.clone(),
            began: None,
            ended: None,
            error: None,
            recovery: None,
        })
        .collect();
    let mut paused: Vec<Option<u32>> = vec![None; faults.len()];
    let supervisor_lines = Arc::new(Mutex::new(Vec::new()));
    let mut probes = Vec::new();
    // How far behind the plan the actions run (a start that waits for a
    // part to be ready takes seconds): every later action is shifted by it,
    // so no fault is cut shorter than planned (a pause still outlasts the
    // timeouts); faults under way when the lag grew only last longer.
    let mut lag = Duration::ZERO;
    for (planned, i, is_begin) in actions {
        let at = planned + lag;
        // Until the action is due, look after the stack as its supervisor.
        while start.elapsed() < at {
            let left = at - start.elapsed();
            if left > Duration::from_secs(2) {
                for line in stack.revive().await {
                    supervisor_lines
                        .lock()
                        .expect("lines")
                        .push(format!("t+{:.1}s {line}", start.elapsed().as_secs_f64()));
                }
            }
            let left = at.saturating_sub(start.elapsed());
            // The schedule is timed on purpose: this wait is the fault's
            // planned start or duration, not a stand-in for synchronisation.
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
        lag = lag.max(start.elapsed().saturating_sub(planned));
        let fault = &faults[i];
        eprintln!(
            "CHAOS t+{:.1}s {} {}",
            start.elapsed().as_secs_f64(),
            if is_begin { "begin" } else { "end  " },
            fault
        );
        if is_begin {
            runs[i].began = Some(start.elapsed());
            match begin(stack, fault).await {
                Ok(pid) => paused[i] = pid,
                Err(e) => runs[i].error = Some(format!("begin: {e:#}")),
            }
        } else {
            let result = end(stack, fault, paused[i]).await;
            let ended = Instant::now();
            runs[i].ended = Some(start.elapsed());
            if let Err(e) = result {
                let e = format!("end: {e:#}");
                runs[i].error = Some(match runs[i].error.take() {
                    Some(b) => format!("{b}; {e}"),
                    None => e,
                });
            }
            let probe = probe.clone();
            probes.push((i, tokio::spawn(async move { probe.run(ended).await })));
        }
    }
    let mut probe_writes = Vec::new();
    for (i, handle) in probes {
        if let Ok((recovery, write)) = handle.await {
            runs[i].recovery = recovery;
            probe_writes.push(write);
        }
    }
    let supervisor = supervisor_lines.lock().expect("lines").clone();
    Executed {
        runs,
        probe_writes,
        supervisor,
    }
}

/// After the campaign every process must run again: what failed to start
/// is started, what died is revived (the lines say what it had to do);
/// returns those lines and what still does not run.
pub async fn restore(stack: &mut Stack, within: Duration) -> (Vec<String>, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut lines = Vec::new();
    loop {
        lines.extend(stack.revive().await);
        let missing = stack.missing_processes();
        if missing.is_empty() || Instant::now() >= deadline {
            return (lines, missing);
        }
        for name in &missing {
            let result = restart_by_name(stack, name).await;
            lines.push(format!(
                "restore: {name} was not running; start: {}",
                match &result {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("{e:#}"),
                }
            ));
        }
    }
}

async fn restart_by_name(stack: &mut Stack, name: &str) -> Result<()> {
    match name {
        "postgres" => return stack.start_postgres().await,
        "kafka" => return stack.start_kafka().await,
        "placement" => return stack.start_placement().await,
        "scheduler" => return stack.start_scheduler().await,
        _ => {}
    }
    let all: Vec<Replica> = stack
        .services()
        .iter()
        .flat_map(|s| stack.replicas(s.app_id))
        .collect();
    for r in all {
        if name == format!("{}-daprd", r.name()) {
            return stack.start_replica_sidecar(r).await;
        }
        if name == r.name() {
            return stack.start_replica(r).await;
        }
    }
    anyhow::bail!("no process named {name}")
}
