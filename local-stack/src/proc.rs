//! Long-running child processes: spawned in their own process group (so the
//! terminal's Ctrl-C reaches only the parent, which stops them in order), output
//! appended to `<state>/logs/<name>.log`, a pid file in `<state>/pids/` so a later
//! run can kill what a crashed run left behind.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cmd::{self, display, log_cmd};

/// What to start.
pub(crate) struct Launch {
    /// Log and pid file name, e.g. `postgres`, `todo-service-daprd`.
    pub name: String,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Graceful stop signal (PostgreSQL: SIGINT = fast shutdown).
    pub stop_signal: Signal,
    /// How long to wait after the graceful signal before SIGKILL.
    pub stop_timeout: Duration,
    /// The argv the process ends up with, if the program execs another one
    /// (`setpriv ... postgres ...`): used to recognise leftovers.
    pub final_argv: Option<Vec<String>>,
}

impl Launch {
    pub fn new(name: impl Into<String>, program: impl Into<OsString>, cwd: &Path) -> Self {
        Launch {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: cwd.to_path_buf(),
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            final_argv: None,
        }
    }
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_string(), v.into()));
        self
    }
    fn argv(&self) -> Vec<String> {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct PidFile {
    pid: i32,
    /// Spawn time (ns since epoch): leftovers are stopped newest first.
    started_ns: u128,
    signal: i32,
    timeout_ms: u64,
    /// Accepted values of `/proc/<pid>/cmdline`.
    argvs: Vec<Vec<String>>,
}

/// A running child process owned by the stack.
pub(crate) struct Managed {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
    pidfile: PathBuf,
    stop_signal: Signal,
    stop_timeout: Duration,
}

pub(crate) fn pids_dir(state: &Path) -> PathBuf {
    state.join("pids")
}

pub(crate) fn logs_dir(state: &Path) -> PathBuf {
    state.join("logs")
}

/// Spawns `launch` with output appended to `<state>/logs/<name>.log`.
pub(crate) fn spawn(state: &Path, launch: Launch) -> Result<Managed> {
    let logs = logs_dir(state);
    fs::create_dir_all(&logs)?;
    fs::create_dir_all(pids_dir(state))?;
    let log_path = logs.join(format!("{}.log", launch.name));
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let args: Vec<&std::ffi::OsStr> = launch.args.iter().map(|a| a.as_os_str()).collect();
    let line = display(&launch.program, &args);
    log_cmd(&format!("{line}    > {}", log_path.display()));
    writeln!(
        log,
        "==== {} starting (unix time {}): {line}",
        launch.name,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    )?;
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    for (k, v) in &launch.env {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let mut argvs = vec![launch.argv()];
    if let Some(f) = &launch.final_argv {
        argvs.push(f.clone());
    }
    let pidfile = pids_dir(state).join(format!("{}.pid", launch.name));
    let record = PidFile {
        pid: child.id() as i32,
        started_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
        signal: launch.stop_signal as i32,
        timeout_ms: launch.stop_timeout.as_millis() as u64,
        argvs,
    };
    fs::write(&pidfile, serde_json::to_vec(&record)?)?;
    Ok(Managed {
        name: launch.name,
        log: log_path,
        child: Some(child),
        pidfile,
        stop_signal: launch.stop_signal,
        stop_timeout: launch.stop_timeout,
    })
}

impl Managed {
    /// Its name (that of its log file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id, while it has not been stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Graceful stop: the stop signal, then SIGKILL for the whole process group
    /// after the deadline. Idempotent.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(child.id() as i32);
        let started = Instant::now();
        if child.try_wait()?.is_none() {
            let _ = kill(pid, self.stop_signal);
            let deadline = started + self.stop_timeout;
            while child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    // The whole group (e.g. a postmaster's backends); the
                    // unreaped leader keeps the group id from being reused.
                    cmd::step(format!(
                        "{}: still running {}s after {:?}, sending SIGKILL",
                        self.name,
                        self.stop_timeout.as_secs(),
                        self.stop_signal
                    ));
                    let _ = killpg(pid, Signal::SIGKILL);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            child.wait()?;
        }
        let _ = fs::remove_file(&self.pidfile);
        cmd::done(format!("{}: stopped", self.name), started);
        Ok(())
    }

    /// Immediate SIGKILL of the process group (crash tests, Drop).
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only while the leader is unreaped (its pid cannot be reused yet).
            if matches!(child.try_wait(), Ok(None)) {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
            }
            let _ = fs::remove_file(&self.pidfile);
        }
    }

    /// Error for a process that exited while we waited for it.
    pub fn died_error(&mut self, status: std::process::ExitStatus) -> anyhow::Error {
        anyhow::anyhow!(
            "{} exited ({status}) while starting; log {}:\n{}",
            self.name,
            self.log.display(),
            cmd::tail(&self.log, 30)
        )
    }

    /// Polls `check` until it returns true; fails if the process exits or the
    /// deadline passes, naming the log file.
    pub async fn wait_until<F, Fut>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(self.died_error(status));
            }
            if check().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready after {}s ({what}); log {}:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log.display(),
                    cmd::tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.kill_now();
    }
}

fn read_cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // zombie or kernel thread
    }
    Some(
        raw.strip_suffix(&[0])
            .unwrap_or(&raw)
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

fn alive(pid: i32) -> bool {
    // A zombie has an empty cmdline; a reaped process has no /proc entry.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Stops the processes a previous (crashed) run left behind, newest first.
/// Only processes whose command line still matches what was recorded are touched.
pub(crate) async fn kill_leftovers(state: &Path) -> Result<()> {
    let dir = pids_dir(state);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut found: Vec<(PathBuf, PidFile)> = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "pid") {
            match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<PidFile>(&b).ok())
            {
                Some(pf) => found.push((path, pf)),
                None => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.1.started_ns));
    for (path, pf) in found {
        let matches = read_cmdline(pf.pid).is_some_and(|c| pf.argvs.contains(&c));
        if matches && alive(pf.pid) {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            cmd::step(format!(
                "stopping leftover {name} (pid {}) from a previous run",
                pf.pid
            ));
            let pid = Pid::from_raw(pf.pid);
            let signal = Signal::try_from(pf.signal).unwrap_or(Signal::SIGTERM);
            let _ = kill(pid, signal);
            let deadline = Instant::now() + Duration::from_millis(pf.timeout_ms);
            while alive(pf.pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if alive(pf.pid) {
                // Its group shares the leader's pid (process_group(0)).
                let _ = killpg(pid, Signal::SIGKILL);
            }
            while alive(pf.pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let _ = fs::remove_file(&path);
    }
    Ok(())
}

/// Best-effort description of who listens on a local TCP port.
pub(crate) fn port_owner(port: u16) -> Option<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue; // not LISTEN
            }
            let local_port = cols[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                let cmdline = read_cmdline(pid).unwrap_or_default().join(" ");
                return Some(format!("pid {pid}: {cmdline}"));
            }
        }
    }
    Some("a process this user cannot see".to_string())
}

/// Fails with a clear message if a local port is already taken.
pub(crate) fn ensure_port_free(port: u16, what: &str) -> Result<()> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => {
            drop(l);
            Ok(())
        }
        Err(e) => {
            let owner = port_owner(port).unwrap_or_else(|| "unknown process".into());
            let switch = match port {
                crate::PG_PORT | crate::DATABASE_PG_PORT => format!(
                    "; to use that PostgreSQL server instead, set {} to a superuser URL of it",
                    crate::PG_ADMIN_URL_ENV
                ),
                crate::KAFKA_PORT | crate::KAFKA_CONTROLLER_PORT => format!(
                    "; to use that Kafka broker instead, set {}",
                    crate::KAFKA_BROKERS_ENV
                ),
                _ => String::new(),
            };
            bail!("port {port} (needed for {what}) is not free: {e}; held by {owner}{switch}")
        }
    }
}

/// An exclusive lock on `<state>/stack.lock` for the lifetime of a stack
/// (released by the kernel if the process dies).
pub(crate) fn lock_state(state: &Path) -> Result<nix::fcntl::Flock<File>> {
    fs::create_dir_all(state)?;
    let path = state.join("stack.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, Errno::EWOULDBLOCK)) => bail!(
            "another stack is running with state folder {} (lock {} is held); stop it first",
            state.display(),
            path.display()
        ),
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}
