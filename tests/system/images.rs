//! The container images, built here from the repository's `Dockerfile` with
//! podman on a debootstrapped Debian base (`todo_local_stack::images`), with
//! the release binaries this test run built (`BINARIES=prebuilt`), and run
//! against this stack: each service's image as one more replica of its
//! service, on the host network beside a sidecar of its own, as uid 10001 on
//! a read-only root filesystem with no capabilities; the console's image in
//! a real terminal. Prints each image's size.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use libtest_mimic::Trial;
use serde_json::Value;
use todo_local_stack::images::{CONSOLE_TARGET, IMAGE_TARGETS, Podman, image_name};
use todo_local_stack::{ServiceSpec, Stack, workspace_root};

use crate::support::terminal::Terminal;
use crate::support::{eventually, text};
use crate::{Ctx, exclusive};

pub fn trials(ctx: &Ctx) -> Vec<Trial> {
    // Exclusive: each image joins its service's consumer group and workflow
    // actors as one more replica while it runs.
    vec![exclusive!(
        ctx,
        every_image_builds_from_the_dockerfile_and_runs_as_non_root_against_the_stack
    )]
}

/// The uid and gid the Dockerfile gives every image.
const IMAGE_UID: &str = "10001";

/// Where cargo put this test binary's sibling binaries (the services, the
/// console): `<target>/release/deps/system-<hash>` -> `<target>/release`.
fn release_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .context("the test binary's folder")
}

async fn every_image_builds_from_the_dockerfile_and_runs_as_non_root_against_the_stack(
    stack: &mut Stack,
) -> Result<()> {
    let started = Instant::now();
    let podman = Podman::ensure().await?;
    podman.ensure_base_image().await?;
    let context = todo_local_stack::images::prebuilt_context(
        &workspace_root(),
        &release_dir()?,
        &stack.state_dir().join("image-context"),
    )
    .await?;
    let mut sizes = Vec::new();
    for target in IMAGE_TARGETS {
        let built = Instant::now();
        podman.build_prebuilt(&context, target).await?;
        let image = image_name(target);
        check_image_config(&podman, &image, target).await?;
        let size = podman.image_size(&image).await?;
        sizes.push((image, size, built.elapsed()));
    }
    let services: Vec<&'static ServiceSpec> = stack.services().to_vec();
    for spec in services {
        run_service_image(stack, &podman, spec)
            .await
            .with_context(|| format!("the image {}", image_name(spec.app_id)))?;
    }
    run_console_image(stack, &podman)
        .await
        .with_context(|| format!("the image {}", image_name(CONSOLE_TARGET)))?;
    eprintln!(
        "images (podman's sizes; base {}):",
        todo_local_stack::images::BASE_IMAGE
    );
    for (image, size, took) in &sizes {
        eprintln!(
            "  {image:<45} {:>6.1} MB  (built in {:.1}s)",
            *size as f64 / 1e6,
            took.as_secs_f64()
        );
    }
    eprintln!(
        "images: built and run in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the image itself says: non-root user, SIGTERM, and for a service
/// its port and a health check that needs no shell.
async fn check_image_config(podman: &Podman, image: &str, target: &str) -> Result<()> {
    let config = podman
        .run(&["image", "inspect", "--format", "{{json .Config}}", image])
        .await?;
    let config: Value = serde_json::from_str(&config).context("podman's image config")?;
    ensure!(
        text(&config, "/User") == format!("{IMAGE_UID}:{IMAGE_UID}"),
        "{image} runs as {:?}",
        config["User"]
    );
    ensure!(
        text(&config, "/StopSignal") == "SIGTERM",
        "{image} stops with {:?}",
        config["StopSignal"]
    );
    let entrypoint = config["Entrypoint"].to_string();
    ensure!(
        entrypoint.contains(target),
        "{image}'s entrypoint is {entrypoint}"
    );
    if target == CONSOLE_TARGET {
        return Ok(());
    }
    let spec = todo_local_stack::find_service(target).context("a service target")?;
    let port = format!("{}/tcp", spec.app_port);
    ensure!(
        config["ExposedPorts"].get(&port).is_some(),
        "{image} does not expose {port}: {}",
        config["ExposedPorts"]
    );
    // Docker's format only; podman shows it beside the OCI config.
    let check = podman
        .run(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Healthcheck.Test}}",
            image,
        ])
        .await?;
    ensure!(
        check == format!("[\"CMD\",\"/usr/local/bin/{target}\",\"health\"]"),
        "{image}'s health check is {check}"
    );
    Ok(())
}

/// `podman run` arguments every container of the proof gets: the host
/// network (the stack listens on loopback), a read-only root filesystem
/// (podman mounts a tmpfs on /tmp), no capabilities, no privilege
/// escalation, and no health-check timer (this machine has no systemd;
/// `podman healthcheck run` runs the check instead).
const RUN_FLAGS: [&str; 7] = [
    "--network=host",
    "--read-only",
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
    "--health-interval=disable",
    "--log-driver=k8s-file",
    "--pull=never",
];

/// One service's image as an extra replica: its own sidecar on the host,
/// the container with the environment the stack gives its replicas; ready
/// with every check ok, non-root, healthy by its own check, and stopped
/// gracefully by SIGTERM.
async fn run_service_image(stack: &mut Stack, podman: &Podman, spec: &ServiceSpec) -> Result<()> {
    let started = Instant::now();
    let name = format!("todo-image-{}", spec.app_id);
    let _ = podman.query(&["rm", "--force", &name]).await;
    let (replica, env) = stack.outside_replica(spec.app_id).await?;
    // In a file, so that the app API token stays out of the logged command.
    let env_file = stack.state_dir().join(format!("{name}.env"));
    let lines: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&env_file, lines.concat())?;
    let env_file = format!("--env-file={}", env_file.display());
    let mut args: Vec<String> = ["run", "--detach", "--name", &name, &env_file]
        .into_iter()
        .chain(RUN_FLAGS)
        .map(str::to_owned)
        .collect();
    args.push(image_name(spec.app_id));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match podman.run(&args).await {
        Ok(_) => check_service_container(stack, podman, &name, replica).await,
        Err(e) => Err(e),
    };
    let outcome = match outcome {
        Ok(()) => Ok(()),
        Err(e) => {
            let logs = podman.query(&["logs", "--tail", "30", &name]).await;
            Err(e.context(format!(
                "the container's last lines:\n{}",
                logs.unwrap_or_default()
            )))
        }
    };
    let _ = podman.query(&["rm", "--force", &name]).await;
    stack.stop_replica_sidecar(replica).await?;
    outcome?;
    eprintln!(
        "images: {} ran as replica {} on 127.0.0.1:{}, ready and stopped gracefully ({:.1}s)",
        image_name(spec.app_id),
        replica.index + 1,
        replica.app_port(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn check_service_container(
    stack: &mut Stack,
    podman: &Podman,
    name: &str,
    replica: todo_local_stack::Replica,
) -> Result<()> {
    let url = format!("http://127.0.0.1:{}/health/ready", replica.app_port());
    let client = reqwest::Client::builder().no_proxy().build()?;
    let report = eventually(
        Duration::from_secs(60),
        &format!("GET {url} -> 200"),
        || async {
            if podman
                .query(&["inspect", "--format", "{{.State.Running}}", name])
                .await
                .as_deref()
                != Some("true")
            {
                bail!("the container is not running");
            }
            let Ok(res) = client
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            else {
                return Ok(None);
            };
            if res.status() != 200 {
                return Ok(None);
            }
            Ok(Some(res.json::<Value>().await?))
        },
    )
    .await?;
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = checks.iter().map(|c| text(c, "/name")).collect();
    ensure!(
        names.contains(&"database") && names.contains(&"sidecar"),
        "readiness checks {report}"
    );
    ensure!(
        checks.iter().all(|c| text(c, "/status") == "ok"),
        "readiness {report}"
    );
    stack.wait_replica_sidecar_ready(replica).await?;

    // The process in the container, seen from the host: uid and gid 10001.
    let pid = podman
        .run(&["inspect", "--format", "{{.State.Pid}}", name])
        .await?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        ensure!(
            !ids.is_empty() && ids.iter().all(|id| *id == IMAGE_UID),
            "the service runs with {field} {ids:?}"
        );
    }
    // The image's own HEALTHCHECK (`<binary> health`), run inside it.
    podman.run(&["healthcheck", "run", name]).await?;

    // SIGTERM (the image's STOPSIGNAL): a clean exit well before podman
    // would send SIGKILL.
    let stopping = Instant::now();
    podman.run(&["stop", "--time", "20", name]).await?;
    let took = stopping.elapsed();
    let code = podman
        .run(&["inspect", "--format", "{{.State.ExitCode}}", name])
        .await?;
    ensure!(code == "0", "exit code {code} after SIGTERM ({took:?})");
    ensure!(took < Duration::from_secs(15), "stopping took {took:?}");
    let logs = podman.run(&["logs", name]).await?;
    ensure!(
        logs.contains("shutting down"),
        "no graceful shutdown in the logs"
    );
    Ok(())
}

/// The console's image in a real terminal, with an operator token in
/// `TODO_ADMIN_TOKEN` and this stack's URLs: it streams (`● live`) as uid
/// 10001 and quits cleanly with `q`.
async fn run_console_image(stack: &mut Stack, podman: &Podman) -> Result<()> {
    let name = "todo-image-console";
    let _ = podman.query(&["rm", "--force", name]).await;
    let token = stack.operator_token();
    let term = Terminal::open(120, 30, &[("TODO_ADMIN_TOKEN", &token)]).await?;
    let mut line = vec![
        "podman".to_owned(),
        "run".to_owned(),
        "--rm".to_owned(),
        "--interactive".to_owned(),
        "--tty".to_owned(),
        format!("--name={name}"),
        "--env=TODO_ADMIN_TOKEN".to_owned(),
    ];
    line.extend(RUN_FLAGS.iter().map(|f| (*f).to_owned()));
    line.push(image_name(CONSOLE_TARGET));
    for (flag, app) in [
        ("--todo-url", "todo-service"),
        ("--audit-url", "audit-service"),
        ("--websocket-url", "websocket-service"),
        ("--notification-url", "notification-service"),
        ("--recurring-url", "recurring-task-service"),
    ] {
        line.push(flag.to_owned());
        line.push(stack.app_url(app));
    }
    let conf = podman.conf().display().to_string();
    term.line(&format!(
        "CONTAINERS_CONF='{conf}' {}; echo \"console exited with $?\"",
        line.join(" ")
    ))
    .await?;
    let outcome = async {
        term.shows("● live", Duration::from_secs(30)).await?;
        term.shows("operator", Duration::from_secs(5)).await?;
        let pid = podman
            .run(&["inspect", "--format", "{{.State.Pid}}", name])
            .await?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        ensure!(uid == IMAGE_UID, "the console runs as uid {uid}");
        term.keys(&["q"]).await?;
        term.shows("console exited with 0", Duration::from_secs(10))
            .await?;
        Ok(())
    }
    .await;
    let _ = podman.query(&["rm", "--force", name]).await;
    outcome
}
