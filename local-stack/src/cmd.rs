//! Progress lines and logged external commands (short-lived ones: installs,
//! builds, provisioning). Long-running processes live in `crate::proc`.
//! Public so that xtask's installs (`cargo xtask deploy-tools`) print their
//! steps and commands the same way.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// One progress line per step, on stderr so it shows under `cargo test` too.
pub fn step(msg: impl std::fmt::Display) {
    eprintln!("[stack] {msg}");
}

/// A step that finished, with its duration.
pub fn done(msg: impl std::fmt::Display, started: Instant) {
    eprintln!("[stack] {msg} ({:.1}s)", started.elapsed().as_secs_f64());
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+*".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `program arg1 'arg 2'` for logs.
pub fn display(program: &OsStr, args: &[&OsStr]) -> String {
    let mut out = quote(program);
    for a in args {
        out.push(' ');
        out.push_str(&quote(a));
    }
    out
}

pub fn display_cmd(cmd: &Command) -> String {
    let std = cmd.as_std();
    let args: Vec<&OsStr> = std.get_args().collect();
    let mut line = display(std.get_program(), &args);
    if let Some(dir) = std.get_current_dir() {
        line = format!("(cd {} && {line})", quote(dir.as_os_str()));
    }
    line
}

/// Logs the command line (indented under the current step).
pub fn log_cmd(line: &str) {
    eprintln!("[stack]     $ {line}");
}

/// Runs a command with the terminal's stdout/stderr (builds, installs), fails on
/// a non-zero exit. Killed if the future is dropped.
pub async fn run(cmd: &mut Command) -> Result<()> {
    let line = display_cmd(cmd);
    log_cmd(&line);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let status = cmd
        .status()
        .await
        .with_context(|| format!("cannot run `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs a command capturing its output; optional stdin text. Fails on a non-zero
/// exit with stderr/stdout in the error.
pub async fn run_capture(cmd: &mut Command, stdin: Option<&str>) -> Result<Output> {
    let out = run_capture_status(cmd, stdin).await?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}{}",
            display_cmd(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(out)
}

/// Like [`run_capture`] but returns the output whatever the exit status.
pub async fn run_capture_status(cmd: &mut Command, stdin: Option<&str>) -> Result<Output> {
    let line = display_cmd(cmd);
    log_cmd(&line);
    run_quiet(cmd, stdin).await
}

/// Runs without logging the command line (readiness probes run many times).
pub async fn run_quiet(cmd: &mut Command, stdin: Option<&str>) -> Result<Output> {
    let line = display_cmd(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{line}`"))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().context("stdin pipe")?;
        pipe.write_all(text.as_bytes()).await?;
        drop(pipe);
    }
    child
        .wait_with_output()
        .await
        .with_context(|| format!("waiting for `{line}`"))
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
