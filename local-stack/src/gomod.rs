//! The Go toolchain and the Go module proxy: finding `go`, and fetching a
//! module's source into the module cache. Used by the Dapr build (`dapr`) and
//! by xtask's deployment tools, which build Helm, kubeconform and others the
//! same way.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::process::Command;

use crate::cmd;

/// The `go` command on PATH; fails naming `why` (what it is needed for).
pub fn go(why: &str) -> Result<PathBuf> {
    crate::install::require(
        cmd::which("go"),
        &format!("go (the Go toolchain, 1.24 or newer, to build {why})"),
    )
}

/// A module version as `go mod download -json` reports it.
#[derive(Debug, Clone)]
pub struct ModuleSource {
    /// The unpacked source in the module cache (read-only files).
    pub dir: PathBuf,
    /// That version's `go.mod`.
    pub go_mod: PathBuf,
}

/// Downloads `module@version` (e.g. `github.com/dapr/dapr@v1.18.2`) through
/// the module proxy unless it is in the module cache already, logging the
/// command.
pub async fn download(go: &Path, module_at_version: &str) -> Result<ModuleSource> {
    let out = cmd::run_capture(
        Command::new(go)
            .args(["mod", "download", "-json"])
            .arg(module_at_version),
        None,
    )
    .await?;
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `go mod download -json` output")?;
    let field = |name: &str| {
        info[name]
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("`go mod download -json {module_at_version}` gave no {name}"))
    };
    Ok(ModuleSource {
        dir: field("Dir")?,
        go_mod: field("GoMod")?,
    })
}

/// `chmod -R u+w`: copies of module-cache folders are read-only, and must be
/// made writable before they can be changed or removed.
pub async fn make_writable(path: &Path) -> Result<()> {
    cmd::run_quiet(Command::new("chmod").arg("-R").arg("u+w").arg(path), None).await?;
    Ok(())
}
