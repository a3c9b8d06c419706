//! The HTTP contract, as a generated client would meet it: Schemathesis runs
//! all its checks against every service's `/openapi.json` on the real stack —
//! no 5xx, every answer conforms to its documented status, headers and
//! schema, nothing the document allows is refused (see `schemathesis.toml`
//! for 422), nothing it forbids is accepted, 405s carry `Allow`, and created
//! resources can be read back (stateful phase).

use std::path::Path;

use anyhow::{Context, Result, ensure};
use todo_local_stack::Stack;

use crate::{Ctx, exclusive};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        exclusive!(
            ctx,
            every_service_keeps_its_openapi_contract_under_schemathesis
        ),
        exclusive!(
            ctx,
            http_metric_series_stay_bounded_whatever_paths_callers_send
        ),
    ]
}

/// How many `http_requests_total` series a service's `/metrics` shows.
async fn request_series(base_url: &str) -> Result<usize> {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count())
}

/// Metrics are labelled by route template, never by the path a caller sent:
/// thousands of distinct job trigger names and unknown paths add no series.
async fn http_metric_series_stay_bounded_whatever_paths_callers_send(
    stack: &mut Stack,
) -> Result<()> {
    use futures::StreamExt;
    let base = stack.app_url("recurring-task-service");
    // Job triggers are served on the port the sidecar calls.
    let internal = stack.internal_url("recurring-task-service");
    let client = reqwest::Client::new();
    let requests = |n: usize| {
        let client = client.clone();
        let (base, internal) = (base.clone(), internal.clone());
        futures::stream::iter(0..n)
            .map(move |_| {
                let (client, base, internal) = (client.clone(), base.clone(), internal.clone());
                async move {
                    let id = uuid::Uuid::new_v4();
                    // Without the app token: 401, like any stranger's call.
                    client
                        .post(format!("{internal}/job/reminder-{id}"))
                        .send()
                        .await?;
                    client.get(format!("{base}/nope/{id}")).send().await?;
                    client
                        .get(format!("{base}/api/v1/schedules/{id}/x"))
                        .send()
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
    };
    // One of each kind first, so the series they need exist (reading
    // `/metrics` is a request too).
    for r in requests(1).await {
        r?;
    }
    request_series(&base).await?;
    let before = request_series(&base).await?;
    for r in requests(1000).await {
        r?;
    }
    let after = request_series(&base).await?;
    ensure!(
        after == before,
        "3000 distinct paths grew the http_requests_total series from {before} to {after}"
    );
    Ok(())
}

/// Examples per operation and phase: enough to find what is listed in
/// `schemathesis.toml`'s comments within a minute for all services.
const MAX_EXAMPLES: &str = "50";

async fn every_service_keeps_its_openapi_contract_under_schemathesis(
    stack: &mut Stack,
) -> Result<()> {
    let schemathesis = todo_local_stack::schemathesis().await?;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let mut failures = Vec::new();
    let token = stack.token("contract-fuzz", true, std::time::Duration::from_secs(3600));
    for spec in stack.services().to_vec() {
        let url = format!("{}/openapi.json", stack.app_url(spec.app_id));
        let mut command = tokio::process::Command::new(&schemathesis);
        command
            .arg("--config-file")
            .arg(&config)
            .args([
                "run",
                &url,
                "--checks",
                "all",
                "--max-examples",
                MAX_EXAMPLES,
            ])
            // One worker: with two, schemathesis compiles its generated
            // code on two threads at once, and the Python it runs on (3.11)
            // sometimes fails that with "SystemError: AST constructor
            // recursion depth mismatch", a crash of the tool, not an answer
            // of the service.
            .args(["--workers", "1", "--request-timeout", "10"])
            // Tasks belong to their caller: one caller, so what the stateful
            // phase creates it can read, change and delete; an operator, so
            // that every route is reachable (schemathesis.toml names it).
            .env("TODO_CONTRACT_TOKEN", &token)
            // Its cache folder (`.schemathesis/`) goes with the stack's state.
            .current_dir(stack.state_dir())
            .kill_on_drop(true);
        eprintln!(
            "$ {} --config-file {} run {url} --checks all ...",
            schemathesis.display(),
            config.display()
        );
        let out = command
            .output()
            .await
            .with_context(|| format!("running {}", schemathesis.display()))?;
        let report = String::from_utf8_lossy(&out.stdout);
        let summary = report.lines().last().unwrap_or_default().to_owned();
        eprintln!("{}: {summary}", spec.app_id);
        if !out.status.success() {
            failures.push(format!(
                "{} ({url}): schemathesis exited with {}\n{report}\n{}",
                spec.app_id,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}
