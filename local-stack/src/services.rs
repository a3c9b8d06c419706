//! Building the service binaries and launching them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

use crate::cmd;
use crate::proc::Launch;
use crate::spec::{Replica, ServiceSpec};

/// The workspace root (this crate lives in `<root>/local-stack`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.parent().unwrap_or(here).to_path_buf();
    root.canonicalize().unwrap_or(root)
}

/// `cargo` (the one running us, if any) in the workspace root, without the
/// variables cargo sets for the package being run or tested
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...): build scripts such as ring's
/// watch them, so leaking them from `cargo run`/`cargo test` into a nested
/// build would rebuild half the dependency tree every time.
pub fn cargo_command() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(workspace_root());
    without_package_env(&mut c);
    c
}

/// Removes from `c`'s environment the variables cargo sets for the package
/// being run or tested (see [`cargo_command`]), for any command that runs
/// cargo in turn.
pub fn without_package_env(c: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_BIN_EXE_")
            || matches!(
                key,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            c.env_remove(key);
        }
    }
}

/// `cargo build --release --workspace --all-targets` in one invocation; returns
/// each service's binary path (from cargo's JSON messages, so
/// `CARGO_TARGET_DIR` and friends are honoured).
///
/// The whole workspace with all targets, not just `-p <service>`: cargo unifies
/// features over the packages and targets it builds, so a narrower selection
/// than `cargo xtask test` / `cargo test --workspace` builds a second variant of
/// half the dependency tree (minutes on two cores) instead of reusing theirs.
pub async fn build_services(specs: &[&ServiceSpec]) -> Result<BTreeMap<&'static str, PathBuf>> {
    let mut bins = BTreeMap::new();
    if specs.is_empty() {
        return Ok(bins);
    }
    let started = Instant::now();
    let names: Vec<&str> = specs.iter().map(|s| s.package).collect();
    cmd::step(format!("cargo: building {}", names.join(", ")));
    let mut c = cargo_command();
    c.args([
        "build",
        "--release",
        "--workspace",
        "--all-targets",
        "--message-format=json-render-diagnostics",
    ]);
    cmd::log_cmd(&cmd::display_cmd(&c));
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run cargo")?;
    let stdout = child.stdout.take().context("cargo's output")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // A line per crate that cargo had to compile (fresh ones are skipped), so
    // a first build of many minutes shows where it is.
    let mut compiled = 0usize;
    while let Some(line) = lines.next_line().await.context("reading cargo's output")? {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let name = msg["target"]["name"].as_str().unwrap_or("?");
        if msg["fresh"] == false {
            compiled += 1;
            cmd::step(format!(
                "cargo: compiled {name} ({compiled} crates, {:.0}s)",
                started.elapsed().as_secs_f64()
            ));
        }
        let is_bin = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bin"));
        if !is_bin || msg["profile"]["test"] == true {
            continue;
        }
        if let (Some(spec), Some(exe)) = (
            specs.iter().find(|s| s.package == name),
            msg["executable"].as_str(),
        ) {
            bins.insert(spec.app_id, PathBuf::from(exe));
        }
    }
    let status = child.wait().await.context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build of {} failed ({status})", names.join(", "));
    }
    for s in specs {
        if !bins.contains_key(s.app_id) {
            bail!(
                "cargo built package {} but reported no binary named {}",
                s.package,
                s.package
            );
        }
    }
    cmd::done("cargo: services built", started);
    Ok(bins)
}

/// The service process: configuration through the environment only; its
/// own app API token (`app_api_token`, the one its sidecar presents).
/// `AUTH_DEV_TRUST_USER_HEADER` is always set, `true` only with
/// `dev_trust_user_header` (development: `X-User-Id` trusted without a
/// token), so that one exported in the caller's shell cannot loosen a test
/// stack.
pub(crate) fn app_launch(
    bin: &Path,
    replica: &Replica,
    app_api_token: &str,
    dev_trust_user_header: bool,
) -> Launch {
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut launch = Launch::new(replica.name(), bin, &workspace_root())
        .env("APP_PORT", replica.app_port().to_string())
        .env("APP_INTERNAL_PORT", replica.internal_port().to_string())
        .env("DAPR_HTTP_PORT", replica.dapr_http_port().to_string())
        .env("DAPR_GRPC_PORT", replica.dapr_grpc_port().to_string())
        .env("APP_API_TOKEN", app_api_token)
        .env("RUST_LOG", rust_log)
        .env(
            DEV_TRUST_USER_HEADER_ENV,
            if dev_trust_user_header {
                "true"
            } else {
                "false"
            },
        );
    launch.stop_timeout = Duration::from_secs(10);
    launch
}

/// The variable of `todo_core::auth::AuthSettings::dev_trust_user_header`.
const DEV_TRUST_USER_HEADER_ENV: &str = "AUTH_DEV_TRUST_USER_HEADER";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TODO_SERVICE;

    fn trust_env(dev_trust_user_header: bool) -> Vec<String> {
        let replica = Replica {
            spec: &TODO_SERVICE,
            index: 0,
        };
        app_launch(Path::new("/bin/true"), &replica, "t", dev_trust_user_header)
            .env
            .into_iter()
            .filter(|(k, _)| k == DEV_TRUST_USER_HEADER_ENV)
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn services_trust_x_user_id_only_when_the_stack_says_so() {
        assert_eq!(trust_env(true), ["true"]);
        assert_eq!(trust_env(false), ["false"]);
    }
}
