//! The real local stack: PostgreSQL, Kafka (KRaft), the Dapr control plane
//! (placement, scheduler) and every service with its `daprd` sidecar.
//!
//! Used by `cargo xtask up` (and `bench`) and by the system tests in
//! `tests/system`:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use todo_local_stack::{Stack, StackOptions};
//! let mut stack = Stack::up(StackOptions::for_tests("example")).await?;
//! let url = stack.app_url("todo-service");
//! stack.stop_kafka().await?;
//! stack.start_kafka().await?;
//! stack.shutdown().await?;
//! # let _ = url; Ok(()) }
//! ```
//!
//! Everything missing is installed or built first (Debian packages with apt-get,
//! Kafka jars with Maven, Dapr with Go, services with cargo); caches live in
//! `$XDG_CACHE_HOME/todo-platform` (default `~/.cache/todo-platform`), state
//! (data, logs, pid files, generated secrets) in the state folder.
//!
//! Environment overrides: `TODO_PLATFORM_PG_ADMIN_URL` (use that PostgreSQL
//! server, superuser URL), `TODO_PLATFORM_KAFKA_BROKERS` (use that broker),
//! `DAPR_BIN_DIR` (use those daprd/placement/scheduler; `~/.dapr/bin` is picked
//! up too).
//!
//! [`Stack`] and its accessors are here; bringing it up is in `start`, the
//! faults tests inject (stopping Kafka, a sidecar, a service...) in `faults`,
//! the ordered list of what runs, which shutdown and `Drop` both walk
//! backwards, in `processes`, and [`StackOptions`] in `options`. The other
//! modules each own one piece: `postgres`, `kafka`, `dapr`, `services`
//! (building and launching the apps), `install`, `gomod` (the Go toolchain
//! and module proxy, public for xtask's Go-built tools), `creds`, `tokens` (bearer
//! tokens signed with the state folder's key), `proc` (child processes,
//! pid files, ports), `cmd` (logging what runs; public, so xtask's own
//! installs log the same way) and `pypi` (tools from PyPI: Schemathesis,
//! sqlx-cli, and [`pypi_tool`] for any other); `database` is PostgreSQL alone, for
//! the database-level tests; `images` builds the container images with podman
//! on a debootstrapped Debian base (the image proof of the system tests).

pub mod cmd;
mod creds;
mod dapr;
mod database;
mod faults;
pub mod gomod;
pub mod images;
mod install;
mod kafka;
mod options;
mod postgres;
mod proc;
mod processes;
mod pypi;
mod services;
mod spec;
mod start;
pub mod supervise;
mod tokens;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

pub use dapr::BIN_DIR_ENV as DAPR_BIN_DIR_ENV;
pub use database::Database;
pub use install::apt_install;
pub use kafka::BROKERS_ENV as KAFKA_BROKERS_ENV;
pub use kafka::{TopicRecord, read_topic};
pub use options::{StackOptions, cache_dir};
pub use postgres::ADMIN_URL_ENV as PG_ADMIN_URL_ENV;
pub use postgres::provisioning_sql_with_password_variables;
pub use pypi::{
    SCHEMATHESIS_VERSION, SQLX_CLI_VERSION, cargo_sqlx, schemathesis, tool as pypi_tool,
};
pub use services::{build_services, cargo_command, without_package_env, workspace_root};
pub use spec::*;
pub use tokens::{OPERATOR_SUBJECT, STACK_TOKEN_TTL, mint_token};

use crate::creds::Credentials;
use crate::dapr::DaprBins;
use crate::kafka::LocalKafka;
use crate::postgres::PgTarget;
use crate::processes::{Processes, Role};

/// The broker: one the stack runs itself, or one named by
/// `TODO_PLATFORM_KAFKA_BROKERS` (which it can neither stop nor start).
enum KafkaMode {
    Local(LocalKafka),
    External(String),
}

/// A running stack. Dropping it kills every process (SIGKILL); call
/// [`Stack::shutdown`] for a clean stop.
pub struct Stack {
    repo: PathBuf,
    state: PathBuf,
    services: Vec<&'static ServiceSpec>,
    /// Replicas per app id (absent: one).
    replicas: BTreeMap<&'static str, u16>,
    /// Turns [`Stack::app_url`] round the replicas.
    next_replica: AtomicUsize,
    creds: Credentials,
    pg_target: PgTarget,
    kafka_mode: KafkaMode,
    kafka_libs: PathBuf,
    dapr_bins: DaprBins,
    /// The sidecars' configuration file (`daprd --config`) unless
    /// `sidecar_config` names another for a service: `deploy/local/config.yaml`
    /// or a copy with another name-resolution cleanup interval.
    base_sidecar_config: PathBuf,
    app_bins: BTreeMap<&'static str, PathBuf>,
    client: reqwest::Client,
    /// Every process the stack started, in start order.
    processes: Processes,
    /// Extra environment per service, applied when it (re)starts.
    app_env: BTreeMap<&'static str, Vec<(String, String)>>,
    /// Another sidecar configuration file per service than
    /// `deploy/local/config.yaml`, applied when its sidecar (re)starts.
    sidecar_config: BTreeMap<&'static str, PathBuf>,
    /// Services trust `X-User-Id` without a token ([`StackOptions::dev_trust_user_header`]).
    dev_trust_user_header: bool,
    _lock: nix::fcntl::Flock<File>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("state", &self.state)
            .field(
                "services",
                &self.services.iter().map(|s| s.app_id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Stack {
    fn spec(&self, app_id: &str) -> Result<&'static ServiceSpec> {
        self.services
            .iter()
            .copied()
            .find(|s| s.app_id == app_id)
            .ok_or_else(|| anyhow!("service {app_id:?} is not part of this stack"))
    }

    /// The spec of a service of this stack (or of the global table).
    ///
    /// # Panics
    /// If `app_id` is unknown.
    pub fn service(&self, app_id: &str) -> &ServiceSpec {
        match self.spec(app_id) {
            Ok(s) => s,
            Err(_) => {
                find_service(app_id).unwrap_or_else(|| panic!("unknown service app id {app_id:?}"))
            }
        }
    }

    /// The services of this stack, in start order.
    pub fn services(&self) -> &[&'static ServiceSpec] {
        &self.services
    }

    /// The running replicas of a service (one unless asked for more).
    ///
    /// # Panics
    /// If `app_id` is unknown.
    pub fn replicas(&self, app_id: &str) -> Vec<Replica> {
        let spec = self
            .spec(app_id)
            .ok()
            .or_else(|| find_service(app_id))
            .unwrap_or_else(|| panic!("unknown service app id {app_id:?}"));
        let n = self.replicas.get(spec.app_id).copied().unwrap_or(1);
        (0..n).map(|index| Replica { spec, index }).collect()
    }

    /// Every replica of every service, in start order.
    pub(crate) fn all_replicas(&self) -> Vec<Replica> {
        self.services
            .iter()
            .flat_map(|s| self.replicas(s.app_id))
            .collect()
    }

    /// The address of a service, `http://127.0.0.1:<port>`. With several
    /// replicas each call names the next one, as a load balancer in front of
    /// them would, so that callers spread over every replica.
    pub fn app_url(&self, app_id: &str) -> String {
        let replicas = self.replicas(app_id);
        let turn = self.next_replica.fetch_add(1, Ordering::Relaxed) % replicas.len();
        format!("http://127.0.0.1:{}", replicas[turn].app_port())
    }

    /// The address of every replica of a service, first to last.
    pub fn app_urls(&self, app_id: &str) -> Vec<String> {
        self.replicas(app_id)
            .iter()
            .map(|r| format!("http://127.0.0.1:{}", r.app_port()))
            .collect()
    }

    /// `http://127.0.0.1:<dapr_http_port>` (the first replica's sidecar).
    pub fn dapr_http_url(&self, app_id: &str) -> String {
        format!("http://127.0.0.1:{}", self.service(app_id).dapr_http_port)
    }

    /// Kafka bootstrap servers, e.g. `127.0.0.1:9092`.
    pub fn kafka_brokers(&self) -> String {
        match &self.kafka_mode {
            KafkaMode::Local(_) => kafka::local_brokers(),
            KafkaMode::External(b) => b.clone(),
        }
    }

    /// Superuser URL on the platform database.
    pub fn pg_admin_url(&self) -> String {
        self.pg_target.admin_url(&self.creds)
    }

    /// URL of the login role that owns `schema` (what the service gets from
    /// its `<schema>-db` secret).
    pub fn db_url(&self, schema: &str) -> String {
        self.pg_target.endpoint().role_url(&self.creds, schema)
    }

    /// The token `app_id`'s sidecars send to it (`dapr-api-token` header):
    /// each app its own.
    pub fn app_api_token(&self, app_id: &str) -> &str {
        self.creds.app_api_token(app_id)
    }

    /// The address only a service's sidecar should call (its internal port,
    /// loopback): the first replica's, `http://127.0.0.1:<port>`.
    pub fn internal_url(&self, app_id: &str) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.replicas(app_id)[0].internal_port()
        )
    }

    /// A bearer token of `user` (with the operator role if `operator`),
    /// valid from now for `ttl`: HS256 with the stack's signing key, the
    /// issuer and audience the services expect by default. The subject is
    /// not checked, so a test can mint one the services must refuse.
    pub fn token(&self, user: &str, operator: bool, ttl: Duration) -> String {
        tokens::mint(&self.creds.auth_signing_key, user, operator, ttl)
    }

    /// A plain user's bearer token, valid for [`STACK_TOKEN_TTL`] (12 h).
    pub fn user_token(&self, user: &str) -> String {
        self.token(user, false, STACK_TOKEN_TTL)
    }

    /// An operator's bearer token (subject [`OPERATOR_SUBJECT`], role
    /// `operator`), valid for [`STACK_TOKEN_TTL`] (12 h): audit and listing
    /// routes of every user, the WebSocket operator stream.
    pub fn operator_token(&self) -> String {
        self.token(OPERATOR_SUBJECT, true, STACK_TOKEN_TTL)
    }

    /// The HS256 key the services verify tokens with (secret
    /// `auth-signing-key`, key `key`), for tests that forge tokens
    /// themselves (expired, wrong audience, odd claims...).
    pub fn signing_key(&self) -> &str {
        &self.creds.auth_signing_key
    }

    /// The process id of a running service (its first running replica, not
    /// its sidecar), e.g. to read its memory from `/proc/<pid>/status`.
    pub fn service_pid(&self, app_id: &str) -> Option<u32> {
        self.service_pids(app_id).into_iter().next()
    }

    /// The process ids of every running sidecar of a service, first replica
    /// first.
    pub fn sidecar_pids(&self, app_id: &str) -> Vec<u32> {
        self.pids(app_id, Role::Sidecar)
    }

    /// The process ids of every running replica of a service (to freeze the
    /// whole service, say).
    pub fn service_pids(&self, app_id: &str) -> Vec<u32> {
        self.pids(app_id, Role::App)
    }

    /// The process ids of `role` of every replica of a service that runs.
    fn pids(&self, app_id: &str, role: fn(Replica) -> Role) -> Vec<u32> {
        let Ok(spec) = self.spec(app_id) else {
            return Vec::new();
        };
        self.replicas(spec.app_id)
            .into_iter()
            .filter_map(|r| self.processes.get(role(r)))
            .filter_map(|m| m.pid())
            .collect()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// `<state>/logs`: one `<name>.log` per process.
    pub fn logs_dir(&self) -> PathBuf {
        proc::logs_dir(&self.state)
    }

    /// Clean stop of everything, in reverse start order.
    pub async fn shutdown(mut self) -> Result<()> {
        let started = Instant::now();
        cmd::step("stopping the stack");
        self.processes.stop_all().await?;
        cmd::done("stack stopped", started);
        Ok(())
    }
}

impl Drop for Stack {
    /// Best effort: SIGKILL whatever still runs, newest first.
    fn drop(&mut self) {
        self.processes.kill_all();
    }
}

// Tests share one stack across threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Stack>();
};
