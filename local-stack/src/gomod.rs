//! The Go toolchain and the Go module proxy: finding `go`, fetching a
//! module's source into the module cache, and reading a `go.mod`'s
//! `require` and `replace` directives (for wrapper modules that build a
//! module whose own `replace`s `go install` refuses). Used by the Dapr build (`dapr`) and
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

/// The lines of every `verb` directive (`require`, `replace`, ...) of a
/// `go.mod`, in the single-line and the block form, without comments:
/// `github.com/a/b v1.0.0`, `k8s.io/api => ./staging/src/k8s.io/api`.
pub fn directives(go_mod: &str, verb: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if in_block {
            if line == ")" {
                in_block = false;
            } else if !line.is_empty() {
                out.push(line.to_owned());
            }
            continue;
        }
        let Some(rest) = line.strip_prefix(verb) else {
            continue;
        };
        if !rest.starts_with([' ', '\t', '(']) {
            continue;
        }
        match rest.trim() {
            "(" => in_block = true,
            "" => {}
            directive => out.push(directive.to_owned()),
        }
    }
    out
}

/// One `replace` directive: `old [version] => new [version]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replace {
    pub old: String,
    pub old_version: Option<String>,
    /// A module path, or a folder (`./...`, `../...`) with no version.
    pub new: String,
    pub new_version: Option<String>,
}

impl Replace {
    /// As `go mod edit -replace` takes it: `old[@v]=new[@v]`.
    pub fn edit_flag(&self) -> String {
        let side = |path: &str, version: &Option<String>| match version {
            Some(v) => format!("{path}@{v}"),
            None => path.to_owned(),
        };
        format!(
            "-replace={}={}",
            side(&self.old, &self.old_version),
            side(&self.new, &self.new_version)
        )
    }
}

/// The `replace` directives of a `go.mod`.
pub fn replaces(go_mod: &str) -> Vec<Replace> {
    directives(go_mod, "replace")
        .iter()
        .filter_map(|line| {
            let (old, new) = line.split_once("=>")?;
            let mut old = old.split_whitespace().map(str::to_owned);
            let mut new = new.split_whitespace().map(str::to_owned);
            Some(Replace {
                old: old.next()?,
                old_version: old.next(),
                new: new.next()?,
                new_version: new.next(),
            })
        })
        .collect()
}

/// The `require` directives of a `go.mod` as `(module, version)`.
pub fn requires(go_mod: &str) -> Vec<(String, String)> {
    directives(go_mod, "require")
        .iter()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_MOD: &str = "module example.com/x

go 1.26.0

require github.com/a/b v1.2.3

require (
\tk8s.io/api v0.0.0
\tgithub.com/c/d v0.1.0 // indirect
)

replace github.com/a/b v1.2.3 => github.com/fork/b v1.2.4 // a fork

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
)
";

    #[test]
    fn requires_reads_single_lines_and_blocks_without_comments() {
        assert_eq!(
            requires(GO_MOD),
            [
                ("github.com/a/b", "v1.2.3"),
                ("k8s.io/api", "v0.0.0"),
                ("github.com/c/d", "v0.1.0")
            ]
            .map(|(m, v)| (m.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn replaces_become_go_mod_edit_flags() {
        let flags: Vec<String> = replaces(GO_MOD).iter().map(Replace::edit_flag).collect();
        assert_eq!(
            flags,
            [
                "-replace=github.com/a/b@v1.2.3=github.com/fork/b@v1.2.4",
                "-replace=k8s.io/api=./staging/src/k8s.io/api"
            ]
        );
    }
}
