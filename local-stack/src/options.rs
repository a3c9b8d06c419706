//! What to bring up and where its state and caches live: [`StackOptions`]
//! (`cargo xtask up` uses [`StackOptions::local`], the system tests
//! [`StackOptions::for_tests`]) and [`cache_dir`], shared by every stack.

use std::path::PathBuf;

use crate::services::workspace_root;
use crate::spec::{SERVICES, ServiceSpec};

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
    /// live-page tests; the platform itself does not need them.
    pub browser: bool,
}

impl StackOptions {
    /// `<repo>/.state`, all services, state kept between runs.
    pub fn local() -> Self {
        StackOptions {
            state_dir: workspace_root().join(".state"),
            fresh: false,
            services: SERVICES.iter().collect(),
            browser: false,
        }
    }

    /// `<repo>/.state/<name>`, all services, wiped at start.
    pub fn for_tests(name: &str) -> Self {
        StackOptions {
            state_dir: workspace_root().join(".state").join(name),
            fresh: true,
            services: SERVICES.iter().collect(),
            browser: true,
        }
    }
}
