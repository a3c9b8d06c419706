//! What to bring up and where its state and caches live: [`StackOptions`]
//! (`cargo xtask up` uses [`StackOptions::local`], the system tests
//! [`StackOptions::for_tests`]) and [`cache_dir`], shared by every stack.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::services::workspace_root;
use crate::spec::{MAX_REPLICAS, SERVICES, ServiceSpec, find_service};

/// `$XDG_CACHE_HOME/todo-platform` or `~/.cache/todo-platform`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("todo-platform")
}

/// What to bring up, and where its state lives.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Data, logs, pid files and generated secrets (git-ignored).
    pub state_dir: PathBuf,
    /// Wipe the state folder first.
    pub fresh: bool,
    /// Services to build and start (each with its sidecar), in start order.
    pub services: Vec<&'static ServiceSpec>,
    /// Install Chromium and ChromeDriver too (about 440 MB), for the
    /// live-page tests, and tmux for the console tests; the platform itself
    /// does not need them.
    pub browser: bool,
    /// How many replicas of a service to run, by app id (absent: one).
    pub replicas: BTreeMap<&'static str, u16>,
    /// Development only: every service trusts `X-User-Id` as the caller
    /// when a request has no token (`AUTH_DEV_TRUST_USER_HEADER=true`).
    pub dev_trust_user_header: bool,
    /// Tests: the sidecars' SQLite name resolution cleans up this often
    /// instead of at its configured interval, if `deploy/local/config.yaml`
    /// leaves its cleanup on (the component's default: hourly), so that what
    /// that cleanup does to running sidecars shows in seconds. `None`: the
    /// configuration as it is.
    pub name_resolution_cleanup_every: Option<Duration>,
}

impl StackOptions {
    /// `<repo>/.state`, all services, state kept between runs.
    pub fn local() -> Self {
        StackOptions {
            state_dir: workspace_root().join(".state"),
            fresh: false,
            services: SERVICES.iter().collect(),
            browser: false,
            replicas: BTreeMap::new(),
            dev_trust_user_header: false,
            name_resolution_cleanup_every: None,
        }
    }

    /// `<repo>/.state/<name>`, all services, wiped at start.
    pub fn for_tests(name: &str) -> Self {
        StackOptions {
            state_dir: workspace_root().join(".state").join(name),
            fresh: true,
            services: SERVICES.iter().collect(),
            browser: true,
            replicas: BTreeMap::new(),
            dev_trust_user_header: false,
            name_resolution_cleanup_every: None,
        }
    }

    /// Runs `n` replicas of every service.
    pub fn with_replicas(mut self, n: u16) -> Result<Self> {
        for spec in SERVICES {
            self.set_replicas(spec.app_id, n)?;
        }
        Ok(self)
    }

    /// Runs `n` replicas of the service `app_id` (1 to [`MAX_REPLICAS`]).
    pub fn set_replicas(&mut self, app_id: &str, n: u16) -> Result<()> {
        let Some(spec) = find_service(app_id) else {
            bail!(
                "no service {app_id:?}; the services are {}",
                SERVICES
                    .iter()
                    .map(|s| s.app_id)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if !(1..=MAX_REPLICAS).contains(&n) {
            bail!("{app_id}: {n} replicas; between 1 and {MAX_REPLICAS} can run");
        }
        self.replicas.insert(spec.app_id, n);
        Ok(())
    }
}
