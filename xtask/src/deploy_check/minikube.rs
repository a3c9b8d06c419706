//! What can be proven of `deploy/minikube/` without Minikube: each script's
//! `--dry-run` plan (the Dapr chart and version the project builds, the six
//! image builds, the chart with values-minikube.yaml, the five services
//! waited for, numbered steps), the token `smoke.sh` mints (accepted by the
//! services' own token check) and its WebSocket reader (against a real
//! WebSocket server).

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use futures::SinkExt;
use todo_core::auth::{AuthSettings, Authenticator, Identity};
use todo_local_stack::DAPR_VERSION;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::{
    Message,
    handshake::server::{ErrorResponse, Request, Response},
    http::{HeaderValue, StatusCode},
};

use super::lint::repo_root;

fn script(name: &str) -> PathBuf {
    repo_root().join("deploy/minikube").join(name)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a script under bash with the given arguments, with none of the
/// scripts' settings inherited from the caller's environment.
async fn bash(args: &[&str]) -> Output {
    bash_with(args, &[]).await
}

/// [`bash`] with some of the scripts' settings given.
async fn bash_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("bash");
    c.args(args);
    for var in [
        "MINIKUBE_PROFILE",
        "KUBE_CONTEXT",
        "NAMESPACE",
        "RELEASE",
        "DAPR_VERSION",
        "IMAGE_REPOSITORY",
        "IMAGE_TAG",
        "DRY_RUN",
        "MINIKUBE_CPUS",
        "MINIKUBE_MEMORY",
        "IMAGE_BUILDER",
    ] {
        c.env_remove(var);
    }
    c.envs(env.iter().copied());
    c.output().await.unwrap()
}

/// Every `[<script> i/N]` from 1 to N appears, in order, and nothing more.
fn assert_steps_numbered(out: &str, script: &str) {
    let marker = format!("==> [{script} ");
    let steps: Vec<(u32, u32)> = out
        .lines()
        .filter_map(|l| l.strip_prefix(&marker))
        .map(|rest| {
            let (i, n) = rest.split_once(']').unwrap().0.split_once('/').unwrap();
            (i.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    assert!(!steps.is_empty(), "no steps in:\n{out}");
    let total = steps[0].1;
    let expected: Vec<(u32, u32)> = (1..=total).map(|i| (i, total)).collect();
    assert_eq!(steps, expected, "{out}");
}

#[tokio::test]
async fn up_dry_run_installs_dapr_builds_six_images_and_installs_the_chart() {
    let out = bash_with(
        &[script("up.sh").to_str().unwrap(), "--dry-run"],
        &[("IMAGE_BUILDER", "minikube")],
    )
    .await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert_steps_numbered(&said, "up");
    for expected in [
        "helm repo add dapr https://dapr.github.io/helm-charts/".to_owned(),
        format!(
            "helm --kube-context todo-platform upgrade --install dapr dapr/dapr --version {DAPR_VERSION} --namespace dapr-system"
        ),
        "minikube start -p todo-platform --cpus 4 --memory 8192".to_owned(),
        "deploy/helm/todo-platform --namespace todo-dev --create-namespace -f ".to_owned(),
        "deploy/helm/todo-platform/values-minikube.yaml --set image.repository=todo-platform --set image.tag=0.1.0".to_owned(),
        format!("minikube -p todo-platform image pull ghcr.io/dapr/daprd:{DAPR_VERSION}"),
        "deploy/minikube/smoke.sh".to_owned(),
        "SC-001: five services ready within 60 s".to_owned(),
    ] {
        assert!(said.contains(&expected), "missing {expected:?} in:\n{said}");
    }
    for target in [
        "todo-service",
        "audit-service",
        "websocket-service",
        "notification-service",
        "recurring-task-service",
        "todo-admin",
    ] {
        let build = format!(
            "minikube -p todo-platform image build -t todo-platform/{target}:0.1.0 --build-opt target={target} --build-env DOCKER_BUILDKIT=1 "
        );
        assert!(said.contains(&build), "missing {build:?} in:\n{said}");
    }
    for service in [
        "todo-service",
        "audit-service",
        "websocket-service",
        "notification-service",
        "recurring-task-service",
    ] {
        let wait = format!("rollout status deployment/{service} --timeout");
        assert!(said.contains(&wait), "missing {wait:?} in:\n{said}");
    }
    let install = said
        .find("upgrade --install todo ")
        .expect("the chart is installed");
    let dapr = said.find("upgrade --install dapr ").unwrap();
    let build = said.find("image build").unwrap();
    let wait = said.find("rollout status").unwrap();
    assert!(dapr < build && build < install && install < wait, "{said}");
}

#[tokio::test]
async fn up_dry_run_builds_through_minikubes_docker_daemon_with_buildkit() {
    let out = bash_with(
        &[script("up.sh").to_str().unwrap(), "--dry-run"],
        &[("IMAGE_BUILDER", "docker")],
    )
    .await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("$ eval \"$(minikube -p todo-platform docker-env --shell bash)\""),
        "{said}"
    );
    let builds: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("$ docker build --load --target "))
        .collect();
    assert_eq!(builds.len(), 6, "{said}");
    assert!(
        builds[0].contains("--target todo-service -t todo-platform/todo-service:0.1.0 "),
        "{said}"
    );
    assert!(!said.contains("image build"), "{said}");
}

#[tokio::test]
async fn up_refuses_less_than_the_minimum_resources_and_names_the_step() {
    let mut c = Command::new("bash");
    c.arg(script("up.sh"))
        .arg("--dry-run")
        .env("MINIKUBE_MEMORY", "2048");
    let out = c.output().await.unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("below the minimum"), "{said}");
    assert!(
        said.contains("FAILED: up, step 1/9 \"check the tools and the CPU and memory"),
        "{said}"
    );
    assert!(said.contains("inspect with:"), "{said}");
}

#[tokio::test]
async fn smoke_and_down_dry_runs_list_their_steps() {
    let out = bash(&[script("smoke.sh").to_str().unwrap(), "--dry-run"]).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for service in ["todo-service:18001", "websocket-service:18003"] {
        let (name, port) = service.split_once(':').unwrap();
        let forward = format!("port-forward svc/{name} {port}:");
        assert!(said.contains(&forward), "missing {forward:?} in:\n{said}");
    }
    assert!(said.contains("get secret auth-signing-key"), "{said}");

    let out = bash(&[script("down.sh").to_str().unwrap(), "--dry-run"]).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert_steps_numbered(&said, "down");
    assert!(said.contains("minikube delete -p todo-platform"), "{said}");

    let out = bash(&[
        script("down.sh").to_str().unwrap(),
        "--dry-run",
        "--keep-minikube",
    ])
    .await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert_steps_numbered(&said, "down");
    assert!(
        said.contains("uninstall todo --namespace todo-dev"),
        "{said}"
    );
    assert!(
        said.contains("uninstall dapr --namespace dapr-system"),
        "{said}"
    );
    assert!(!said.contains("minikube delete"), "{said}");
}

/// Sources lib.sh in a fresh bash and runs `code` there.
async fn with_lib(code: &str) -> Output {
    let program = format!(
        "set -euo pipefail\nsource {}\n{code}",
        script("lib.sh").display()
    );
    bash(&["-c", &program]).await
}

#[tokio::test]
async fn a_token_smoke_sh_mints_is_accepted_by_the_services_token_check() {
    // Any bytes, as the chart's generated key may hold: hex keeps them whole.
    let key: Vec<u8> = (0u8..48)
        .map(|i| i.wrapping_mul(37).wrapping_add(5))
        .collect();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let auth = Authenticator::with_secret(&key, &AuthSettings::default()).unwrap();
    for (user, operator, expected) in [
        ("smoke-1", "0", Identity::user("smoke-1")),
        ("ops", "1", Identity::operator("ops")),
    ] {
        let out = with_lib(&format!("mint_jwt {hex} {user} {operator} 600")).await;
        assert!(out.status.success(), "{}", text(&out));
        let token = String::from_utf8(out.stdout).unwrap();
        assert_eq!(auth.verify(token.trim()).await.unwrap(), expected);
    }
    // The key read from the Secret goes through to_hex.
    let out = with_lib("printf 'ab\\001' | to_hex").await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "616201");
    // A token signed with another key is refused.
    let out = with_lib(&format!("mint_jwt {} smoke-1 0 600", "ff".repeat(48))).await;
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(auth.verify(token.trim()).await.is_err());
}

/// A WebSocket server that accepts one connection when it carries
/// `Authorization: Bearer good` (answering protocol `todo-updates`), then
/// sends `messages` and stays open.
async fn websocket_server(messages: Vec<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // The callback's type is tungstenite's, error response and all.
        #[allow(clippy::result_large_err)]
        let check = |request: &Request, mut response: Response| {
            let authorized = request
                .headers()
                .get("authorization")
                .is_some_and(|v| v == "Bearer good");
            if !authorized {
                let mut refused = ErrorResponse::new(Some("no".into()));
                *refused.status_mut() = StatusCode::UNAUTHORIZED;
                return Err(refused);
            }
            response.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static("todo-updates"),
            );
            Ok(response)
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
            return;
        };
        for m in messages {
            ws.send(Message::text(m)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    port
}

#[tokio::test]
async fn smoke_sh_reads_a_websocket_update_and_reports_a_refused_handshake() {
    let update =
        r#"{"event_type":"task-created","task_id":"3f56afbd-cd6c-486a-a824-24ad8e79f270","seq":7}"#;
    let port = websocket_server(vec![
        r#"{"type":"ready","seq":6}"#.to_owned(),
        update.to_owned(),
    ])
    .await;
    let out = with_lib(&format!(
        "ws_expect {port} '/ws?since=0' good 3f56afbd-cd6c-486a-a824-24ad8e79f270 10"
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "3f56afbd-cd6c-486a-a824-24ad8e79f270"
    );

    let port = websocket_server(vec![update.to_owned()]).await;
    let out = with_lib(&format!(
        "ws_expect {port} '/ws?since=0' good some-other-task 2"
    ))
    .await;
    assert_eq!(out.status.code(), Some(124), "{}", text(&out));

    let port = websocket_server(vec![update.to_owned()]).await;
    let out = with_lib(&format!("ws_expect {port} '/ws?since=0' bad 3f56afbd 5")).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("WebSocket handshake refused: HTTP/1.1 401"),
        "{}",
        text(&out)
    );
}
