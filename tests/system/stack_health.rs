//! The stack keeps itself running: its sidecars outlive the name
//! resolution's cleanup (which once ended every sidecar an hour after start),
//! and a process that dies behind the stack's back is restarted and reported
//! in one line, while a deliberate stop is left alone.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use todo_local_stack::Stack;
use todo_local_stack::supervise::Supervisor;

use crate::support::{TodoClient, eventually, get_json, text};
use crate::{Ctx, exclusive, shared};

/// How often the test stack's SQLite name resolution cleans up if its
/// configuration leaves the cleanup on (the component's default: hourly).
pub const NAME_RESOLUTION_CLEANUP_EVERY: Duration = Duration::from_secs(3);

/// The cleanups the sidecars are watched through.
const CLEANUP_CYCLES: u32 = 4;

/// The resolver's registration renewal period (its `updateInterval`, 5 s by
/// default): a sidecar whose registration a cleanup deleted exits at its
/// next renewal.
const RENEWAL: Duration = Duration::from_secs(5);

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        shared!(ctx, sidecars_outlive_the_name_resolution_cleanup),
        exclusive!(
            ctx,
            a_sidecar_killed_behind_the_stacks_back_is_reported_and_restarted
        ),
    ]
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// The status and body of a GET, or `None` when nothing answers.
async fn answer(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let res = client.get(url).send().await.ok()?;
    let status = res.status().as_u16();
    Some((status, res.text().await.unwrap_or_default()))
}

/// The status of a GET, or `None` when nothing answers.
async fn status(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Every sidecar's pid, by app id.
fn sidecar_pids(stack: &Stack) -> Vec<(&'static str, Vec<u32>)> {
    stack
        .services()
        .iter()
        .map(|s| (s.app_id, stack.sidecar_pids(s.app_id)))
        .collect()
}

/// The lines of a log file of the stack (none if it does not exist).
fn log_lines(stack: &Stack, file: &str) -> Result<Vec<String>> {
    let path = stack.logs_dir().join(file);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Service invocation between every pair of services resolves through the
/// SQLite name resolution: each app's `/health`, through each sidecar.
async fn every_service_reaches_every_other(stack: &Stack, client: &reqwest::Client) -> Result<()> {
    for caller in stack.services() {
        for callee in stack.services() {
            let url = format!(
                "{}/v1.0/invoke/{}/method/health",
                stack.dapr_http_url(caller.app_id),
                callee.app_id
            );
            let got = answer(client, &url).await;
            ensure!(
                got.as_ref().is_some_and(|(status, _)| *status == 200),
                "{} -> {} through Dapr: {got:?}",
                caller.app_id,
                callee.app_id
            );
        }
    }
    Ok(())
}

async fn sidecars_outlive_the_name_resolution_cleanup(stack: &Stack) -> Result<()> {
    let client = client();
    let before = sidecar_pids(stack);
    ensure!(
        before.iter().all(|(_, pids)| !pids.is_empty()),
        "every sidecar runs: {before:?}"
    );
    // Several cleanups, and a renewal after the last one: a sidecar whose
    // registration a cleanup took exits at its next renewal.
    let until = Instant::now() + NAME_RESOLUTION_CLEANUP_EVERY * CLEANUP_CYCLES + RENEWAL;
    let mut rounds = 0;
    while Instant::now() < until {
        every_service_reaches_every_other(stack, &client).await?;
        rounds += 1;
    }
    every_service_reaches_every_other(stack, &client).await?;
    let after = sidecar_pids(stack);
    ensure!(
        after == before,
        "the same sidecars run after {CLEANUP_CYCLES} cleanups: {before:?} then {after:?}"
    );
    for spec in stack.services() {
        for replica in stack.replicas(spec.app_id) {
            let file = format!("{}-daprd.log", replica.name());
            let lost: Vec<String> = log_lines(stack, &file)?
                .into_iter()
                .filter(|l| l.contains("Host registration lost"))
                .collect();
            ensure!(lost.is_empty(), "{file}: {lost:#?}");
        }
    }
    eprintln!("    {rounds} rounds of invocations between every pair of services");
    Ok(())
}

/// What `cargo xtask up` does while it runs: a sidecar killed with SIGKILL
/// by something other than the stack is named in one line (how it ended, its
/// last log line) and started again, and works; a deliberate stop is left
/// alone.
async fn a_sidecar_killed_behind_the_stacks_back_is_reported_and_restarted(
    stack: &mut Stack,
) -> Result<()> {
    let app = "audit-service";
    let name = format!("{app}-daprd");
    let client = client();
    let healthz = format!("{}/v1.0/healthz", stack.dapr_http_url(app));
    let old = match stack.sidecar_pids(app)[..] {
        [pid] => pid,
        ref pids => bail!("one {app} sidecar runs: {pids:?}"),
    };
    let mut supervisor = Supervisor::default();
    ensure!(
        supervisor.look(stack).await.is_empty(),
        "nothing to report before the kill"
    );

    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(old)?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let deadline = killed + Duration::from_secs(60);
    let reports = loop {
        let reports = supervisor.look(stack).await;
        if !reports.is_empty() {
            break reports;
        }
        ensure!(Instant::now() < deadline, "no report 60 s after the kill");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let new = match stack.sidecar_pids(app)[..] {
        [pid] => pid,
        ref pids => bail!("one {app} sidecar runs after the restart: {pids:?}"),
    };
    ensure!(new != old, "a new sidecar process: {old} then {new}");
    ensure!(
        status(&client, &healthz).await == Some(204),
        "the restarted sidecar is healthy"
    );
    eprintln!(
        "    {name}: pid {old} killed, pid {new} healthy {:.1}s later",
        killed.elapsed().as_secs_f64()
    );

    // One line, naming the process, how it ended and the last line it logged
    // before the restart's own first line.
    let [report] = &reports[..] else {
        bail!("one report: {reports:#?}");
    };
    let line = &report.line;
    ensure!(
        line.starts_with(&format!("SUPERVISOR: {name} exited")) && line.contains("SIGKILL"),
        "the report names the sidecar and how it ended: {line}"
    );
    ensure!(line.ends_with("restarted (attempt 1)"), "{line}");
    let log = log_lines(stack, &format!("{name}.log"))?;
    let restart = log
        .iter()
        .rposition(|l| l.starts_with(&format!("==== {name} starting")))
        .context("the restart's first line in the sidecar's log")?;
    let last = log[..restart]
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("a line before the restart")?;
    ensure!(
        line.contains(&format!("{:?}", last.trim())),
        "the report quotes the killed sidecar's last log line {last:?}: {line}"
    );

    // The restarted sidecar does its work: a task's event reaches the audit
    // service through it.
    let alice = TodoClient::new(stack);
    let task = alice
        .create(json!({ "title": "after a sidecar crash" }))
        .await?
        .expect(201)?;
    let id = text(&task, "/id").to_owned();
    let url = format!("{}/api/v1/audit?task_id={id}", stack.app_url(app));
    let operator = stack.operator_token();
    eventually(
        Duration::from_secs(30),
        "the task's audit record",
        || async {
            let page = get_json(&url, &operator).await?.expect(200)?;
            Ok(page["records"]
                .as_array()
                .is_some_and(|r| r.len() == 1)
                .then_some(()))
        },
    )
    .await?;

    // A deliberate stop is not a death: nothing is reported or restarted.
    stack.stop_sidecar(app).await?;
    let reports = supervisor.look(stack).await;
    let pids = stack.sidecar_pids(app);
    stack.start_sidecar(app).await?;
    ensure!(reports.is_empty(), "nothing reported: {reports:#?}");
    ensure!(
        pids.is_empty(),
        "no {app} sidecar after a deliberate stop: {pids:?}"
    );
    Ok(())
}
