//! Schemathesis, the property-based HTTP contract tester, from PyPI: installed
//! on first use into its own virtual environment in the cache folder (keyed by
//! version, outside the work tree), then run against a service's
//! `/openapi.json`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::process::Command;

use crate::{cache_dir, cmd};

/// The pinned version.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// The `schemathesis` command, installing it first if missing (about a minute).
pub async fn schemathesis() -> Result<PathBuf> {
    let venv = cache_dir().join(format!("schemathesis-{SCHEMATHESIS_VERSION}"));
    let bin = venv.join("bin").join("schemathesis");
    // The stamp is written last: a half-made environment is made again.
    let stamp = venv.join(".installed");
    if stamp.exists() && bin.exists() {
        return Ok(bin);
    }
    let started = Instant::now();
    cmd::step(format!(
        "schemathesis: installing {SCHEMATHESIS_VERSION} from PyPI into {}",
        venv.display()
    ));
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    cmd::run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).await?;
    cmd::run(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("schemathesis=={SCHEMATHESIS_VERSION}")),
    )
    .await?;
    std::fs::write(&stamp, SCHEMATHESIS_VERSION)?;
    cmd::done("schemathesis: installed", started);
    Ok(bin)
}
