//! The real local stack: PostgreSQL, Kafka (KRaft), the Dapr control plane
//! (placement, scheduler) and every service with its `daprd` sidecar.
//!
//! Used by `cargo xtask up` and by the stack tests:
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

mod cmd;
mod creds;
mod dapr;
mod install;
mod kafka;
mod postgres;
mod proc;
mod services;
mod spec;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

pub use dapr::BIN_DIR_ENV as DAPR_BIN_DIR_ENV;
pub use kafka::BROKERS_ENV as KAFKA_BROKERS_ENV;
pub use kafka::{TopicRecord, read_topic};
pub use postgres::ADMIN_URL_ENV as PG_ADMIN_URL_ENV;
pub use services::{build_services, cargo_command, workspace_root};
pub use spec::*;

use crate::creds::Credentials;
use crate::dapr::DaprBins;
use crate::kafka::LocalKafka;
use crate::postgres::PgTarget;
use crate::proc::Managed;

/// How long a service (app + sidecar) may take to become ready.
const SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(60);

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
}

impl StackOptions {
    /// `<repo>/.state`, all services, state kept between runs.
    pub fn local() -> Self {
        StackOptions {
            state_dir: workspace_root().join(".state"),
            fresh: false,
            services: SERVICES.iter().collect(),
        }
    }

    /// `<repo>/.state/<name>`, all services, wiped at start.
    pub fn for_tests(name: &str) -> Self {
        StackOptions {
            state_dir: workspace_root().join(".state").join(name),
            fresh: true,
            services: SERVICES.iter().collect(),
        }
    }
}

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
    creds: Credentials,
    pg_target: PgTarget,
    kafka_mode: KafkaMode,
    kafka_libs: PathBuf,
    dapr_bins: DaprBins,
    app_bins: BTreeMap<&'static str, PathBuf>,
    client: reqwest::Client,
    postgres: Option<Managed>,
    kafka: Option<Managed>,
    placement: Option<Managed>,
    scheduler: Option<Managed>,
    sidecars: BTreeMap<&'static str, Managed>,
    apps: BTreeMap<&'static str, Managed>,
    /// Extra environment per service, applied when it (re)starts.
    app_env: BTreeMap<&'static str, Vec<(String, String)>>,
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

/// Login roles (= schemas) provisioned on every start: every service of the
/// table, started or not (so one can be run by hand against a `--no-services`
/// stack), plus the Dapr state store's.
fn db_roles() -> Vec<&'static str> {
    SERVICES
        .iter()
        .map(|s| s.schema)
        .chain([DAPR_SCHEMA])
        .collect()
}

/// Removes everything in the state folder but the lock file.
fn wipe_state(state: &Path) -> Result<()> {
    for e in std::fs::read_dir(state)?.flatten() {
        if e.file_name() == "stack.lock" {
            continue;
        }
        let p = e.path();
        let r = if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

impl Stack {
    /// Installs/builds what is missing, starts everything and waits until ready.
    pub async fn up(opts: StackOptions) -> Result<Stack> {
        let started = Instant::now();
        let repo = workspace_root();
        let cache = cache_dir();
        let state = std::path::absolute(&opts.state_dir)?;
        cmd::step(format!("state folder {}", state.display()));
        let lock = proc::lock_state(&state)?;
        proc::kill_leftovers(&state).await?;
        if opts.fresh {
            wipe_state(&state)?;
        }
        std::fs::create_dir_all(proc::logs_dir(&state))?;

        // Prepare: packages, jars, binaries (cached after the first run).
        let pg_external = PgTarget::from_env()?;
        let kafka_external = std::env::var(KAFKA_BROKERS_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        let needs = install::Needs {
            pg_server: pg_external.is_none(),
            kafka_jars: !kafka::jars_cached(&cache, &repo)?,
        };
        let installed_pg = install::ensure_packages(&needs).await?;
        kafka::fetch_jars(&cache, &repo).await?;
        let dapr_bins = dapr::ensure_binaries(&cache, &repo).await?;
        let app_bins = build_services(&opts.services).await?;

        let pg_target = match pg_external {
            Some(t) => {
                cmd::step(format!("postgres: using {PG_ADMIN_URL_ENV}"));
                t
            }
            None => PgTarget::own(&state)?,
        };
        let kafka_mode = match kafka_external {
            Some(b) => {
                cmd::step(format!("kafka: using {KAFKA_BROKERS_ENV}={b}"));
                KafkaMode::External(b)
            }
            None => KafkaMode::Local(LocalKafka::new(&state, &cache)),
        };
        let creds = Credentials::load_or_create(&state, &db_roles())?;
        creds::write_secrets_json(
            &state,
            &creds,
            &pg_target.endpoint(),
            &SERVICES.iter().map(|s| s.schema).collect::<Vec<_>>(),
            DAPR_SCHEMA,
        )?;

        let mut stack = Stack {
            repo,
            state,
            services: opts.services,
            creds,
            pg_target,
            kafka_mode,
            kafka_libs: kafka::libs_dir(&cache),
            dapr_bins,
            app_bins,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .context("building the HTTP client")?,
            postgres: None,
            kafka: None,
            placement: None,
            scheduler: None,
            sidecars: BTreeMap::new(),
            apps: BTreeMap::new(),
            app_env: BTreeMap::new(),
            _lock: lock,
        };
        if let Err(e) = stack.start_all(installed_pg).await {
            cmd::step(format!("start failed, stopping what was started: {e:#}"));
            let _ = stack.stop_all().await;
            return Err(e);
        }
        cmd::done("stack is up", started);
        Ok(stack)
    }

    /// Every fixed port, before anything starts (fail fast, naming the holder).
    async fn check_ports(&self, installed_pg: bool) -> Result<()> {
        if matches!(self.pg_target, PgTarget::Own { .. }) {
            postgres::check_port(installed_pg).await?;
        }
        let mut ports = vec![
            (PLACEMENT_PORT, "placement"),
            (PLACEMENT_HEALTHZ_PORT, "placement healthz"),
            (PLACEMENT_METRICS_PORT, "placement metrics"),
            (PLACEMENT_RAFT_PORT, "placement raft"),
            (SCHEDULER_PORT, "scheduler"),
            (SCHEDULER_HEALTHZ_PORT, "scheduler healthz"),
            (SCHEDULER_METRICS_PORT, "scheduler metrics"),
            (SCHEDULER_ETCD_CLIENT_PORT, "scheduler etcd client"),
            (SCHEDULER_ETCD_PEER_PORT, "scheduler etcd peer"),
        ];
        if matches!(self.kafka_mode, KafkaMode::Local(_)) {
            ports.push((KAFKA_PORT, "Kafka"));
            ports.push((KAFKA_CONTROLLER_PORT, "the Kafka controller"));
        }
        for (port, what) in ports {
            proc::ensure_port_free(port, what)?;
        }
        for spec in &self.services {
            proc::ensure_port_free(spec.app_port, spec.app_id)?;
            dapr::ensure_sidecar_ports_free(spec)?;
        }
        Ok(())
    }

    async fn start_all(&mut self, installed_pg: bool) -> Result<()> {
        self.check_ports(installed_pg).await?;
        // Infrastructure in parallel.
        let state = self.state.clone();
        let pg_fut = async {
            match &self.pg_target {
                PgTarget::Own { .. } => {
                    postgres::start_own(&state, &self.pg_target, &self.creds, installed_pg)
                        .await
                        .map(Some)
                }
                PgTarget::External { .. } => Ok(None),
            }
        };
        let kafka_fut = async {
            match &self.kafka_mode {
                KafkaMode::Local(k) => k.start(&state).await.map(Some),
                KafkaMode::External(_) => Ok(None),
            }
        };
        let placement_fut = dapr::start_placement(&state, &self.dapr_bins, &self.client);
        let scheduler_fut = dapr::start_scheduler(&state, &self.dapr_bins, &self.client);
        let (pg, kafka, placement, scheduler) =
            tokio::join!(pg_fut, kafka_fut, placement_fut, scheduler_fut);
        let mut first_err = None;
        match pg {
            Ok(m) => self.postgres = m,
            Err(e) => first_err = first_err.or(Some(e)),
        }
        match kafka {
            Ok(m) => self.kafka = m,
            Err(e) => first_err = first_err.or(Some(e)),
        }
        match placement {
            Ok(m) => self.placement = Some(m),
            Err(e) => first_err = first_err.or(Some(e)),
        }
        match scheduler {
            Ok(m) => self.scheduler = Some(m),
            Err(e) => first_err = first_err.or(Some(e)),
        }
        if let Some(e) = first_err {
            return Err(e);
        }

        let roles = db_roles();
        let brokers = self.kafka_brokers();
        let (provisioned, topics) = tokio::join!(
            postgres::provision(&self.pg_target, &self.creds, &roles),
            async {
                if matches!(self.kafka_mode, KafkaMode::External(_))
                    && !kafka::broker_ready(&brokers).await
                {
                    bail!("Kafka broker {brokers} ({KAFKA_BROKERS_ENV}) does not answer");
                }
                kafka::ensure_topics(&brokers, &self.kafka_libs).await
            }
        );
        provisioned?;
        topics?;

        // Services: all sidecars, then all apps (an app reads its secrets
        // through its sidecar at startup), then wait for everything.
        let specs = self.services.clone();
        for spec in &specs {
            proc::ensure_port_free(spec.app_port, spec.app_id)?;
            self.spawn_sidecar(spec)?;
        }
        for spec in &specs {
            self.wait_sidecar(spec, false).await?;
        }
        for spec in &specs {
            self.spawn_app(spec)?;
        }
        for spec in &specs {
            self.wait_app(spec, true).await?;
            self.wait_sidecar(spec, true).await?;
        }
        Ok(())
    }

    fn spawn_sidecar(&mut self, spec: &'static ServiceSpec) -> Result<()> {
        dapr::ensure_sidecar_ports_free(spec)?;
        cmd::step(format!("{}: starting sidecar", spec.app_id));
        let launch = dapr::daprd_launch(
            &self.state,
            &self.repo,
            &self.dapr_bins,
            spec,
            &self.creds.app_api_token,
        );
        let m = proc::spawn(&self.state, launch)?;
        self.sidecars.insert(spec.app_id, m);
        Ok(())
    }

    /// `full`: `/v1.0/healthz` (everything, app included) -> 204; otherwise
    /// `/v1.0/healthz/outbound` (API up, components loaded) -> 204.
    async fn wait_sidecar(&mut self, spec: &ServiceSpec, full: bool) -> Result<()> {
        let started = Instant::now();
        let path = if full {
            "/v1.0/healthz"
        } else {
            "/v1.0/healthz/outbound"
        };
        let url = format!("http://127.0.0.1:{}{path}", spec.dapr_http_port);
        let client = self.client.clone();
        let m = self
            .sidecars
            .get_mut(spec.app_id)
            .ok_or_else(|| anyhow!("{} sidecar is not running", spec.app_id))?;
        dapr::wait_http(m, &client, &url, 204, SERVICE_READY_TIMEOUT).await?;
        cmd::done(
            format!(
                "{}: sidecar {} on 127.0.0.1:{}",
                spec.app_id,
                if full { "ready" } else { "up" },
                spec.dapr_http_port
            ),
            started,
        );
        Ok(())
    }

    fn spawn_app(&mut self, spec: &'static ServiceSpec) -> Result<()> {
        let bin = self
            .app_bins
            .get(spec.app_id)
            .ok_or_else(|| anyhow!("{} was not built", spec.app_id))?
            .clone();
        proc::ensure_port_free(spec.app_port, spec.app_id)?;
        cmd::step(format!("{}: starting", spec.app_id));
        let mut launch = services::app_launch(&bin, spec, &self.creds.app_api_token);
        for (k, v) in self.app_env.get(spec.app_id).into_iter().flatten() {
            launch = launch.env(k, v.clone());
        }
        let m = proc::spawn(&self.state, launch)?;
        self.apps.insert(spec.app_id, m);
        Ok(())
    }

    /// `ready`: `/health/ready` (database and sidecar reachable) -> 200;
    /// otherwise the liveness endpoint `/health` -> 200.
    async fn wait_app(&mut self, spec: &ServiceSpec, ready: bool) -> Result<()> {
        let started = Instant::now();
        let path = if ready { "/health/ready" } else { "/health" };
        let url = format!("http://127.0.0.1:{}{path}", spec.app_port);
        let client = self.client.clone();
        let m = self
            .apps
            .get_mut(spec.app_id)
            .ok_or_else(|| anyhow!("{} is not running", spec.app_id))?;
        dapr::wait_http(m, &client, &url, 200, SERVICE_READY_TIMEOUT).await?;
        cmd::done(
            format!(
                "{}: {} on 127.0.0.1:{}",
                spec.app_id,
                if ready { "ready" } else { "live" },
                spec.app_port
            ),
            started,
        );
        Ok(())
    }

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

    /// `http://127.0.0.1:<app_port>`
    pub fn app_url(&self, app_id: &str) -> String {
        format!("http://127.0.0.1:{}", self.service(app_id).app_port)
    }

    /// `http://127.0.0.1:<dapr_http_port>` (the service's sidecar).
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

    /// The token sidecars send to their apps (`dapr-api-token` header).
    pub fn app_api_token(&self) -> &str {
        &self.creds.app_api_token
    }

    /// The token of the WebSocket service's operator stream (secret
    /// `operator-token`, key `token`).
    pub fn operator_token(&self) -> &str {
        &self.creds.operator_token
    }

    /// The process id of a running service (not its sidecar), e.g. to read
    /// its memory from `/proc/<pid>/status`.
    pub fn service_pid(&self, app_id: &str) -> Option<u32> {
        self.apps.get(app_id).and_then(Managed::pid)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// `<state>/logs`: one `<name>.log` per process.
    pub fn logs_dir(&self) -> PathBuf {
        proc::logs_dir(&self.state)
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 20 s). Its data is kept.
    pub async fn stop_kafka(&mut self) -> Result<()> {
        if !matches!(self.kafka_mode, KafkaMode::Local(_)) {
            bail!("Kafka is external ({KAFKA_BROKERS_ENV}); the stack cannot stop it");
        }
        if let Some(mut m) = self.kafka.take() {
            m.stop().await?;
        }
        Ok(())
    }

    /// Starts the broker again on the same data and waits until it is ready.
    pub async fn start_kafka(&mut self) -> Result<()> {
        let KafkaMode::Local(k) = &self.kafka_mode else {
            bail!("Kafka is external ({KAFKA_BROKERS_ENV}); the stack cannot start it");
        };
        if let Some(m) = &mut self.kafka {
            if m.exited().is_none() {
                return Ok(());
            }
            self.kafka = None;
        }
        let m = k.start(&self.state).await?;
        self.kafka = Some(m);
        Ok(())
    }

    /// Stops the Dapr scheduler (SIGTERM) and starts it again on the same
    /// etcd data, waiting until it is healthy. Jobs and workflow timers
    /// persist across it.
    pub async fn restart_scheduler(&mut self) -> Result<()> {
        if let Some(mut m) = self.scheduler.take() {
            m.stop().await?;
        }
        let m = dapr::start_scheduler(&self.state, &self.dapr_bins, &self.client).await?;
        self.scheduler = Some(m);
        Ok(())
    }

    /// Stops a service's sidecar (SIGTERM; daprd drains gracefully).
    pub async fn stop_sidecar(&mut self, app_id: &str) -> Result<()> {
        let spec = self.spec(app_id)?;
        if let Some(mut m) = self.sidecars.remove(spec.app_id) {
            m.stop().await?;
        }
        Ok(())
    }

    /// Starts a service's sidecar again (the app keeps running) and waits until
    /// it is ready (fully if the app runs, else until its API is up).
    pub async fn start_sidecar(&mut self, app_id: &str) -> Result<()> {
        let spec = self.spec(app_id)?;
        if let Some(m) = self.sidecars.get_mut(spec.app_id) {
            if m.exited().is_none() {
                return Ok(());
            }
            self.sidecars.remove(spec.app_id);
        }
        self.spawn_sidecar(spec)?;
        let app_running = self.apps.contains_key(spec.app_id);
        self.wait_sidecar(spec, app_running).await
    }

    /// Stops a service (SIGTERM, SIGKILL after 10 s).
    pub async fn stop_service(&mut self, app_id: &str) -> Result<()> {
        let spec = self.spec(app_id)?;
        if let Some(mut m) = self.apps.remove(spec.app_id) {
            m.stop().await?;
        }
        Ok(())
    }

    /// Starts a service again and waits until it is ready (`/health/ready`
    /// if its sidecar runs, else `/health`).
    pub async fn start_service(&mut self, app_id: &str) -> Result<()> {
        let spec = self.spec(app_id)?;
        if let Some(m) = self.apps.get_mut(spec.app_id) {
            if m.exited().is_none() {
                return Ok(());
            }
            self.apps.remove(spec.app_id);
        }
        self.spawn_app(spec)?;
        let sidecar_running = self.sidecars.contains_key(spec.app_id);
        self.wait_app(spec, sidecar_running).await
    }

    /// Extra environment variables for a service from its next start on
    /// (replacing earlier ones; empty: none), e.g. a short retention in a test.
    pub fn set_service_env(&mut self, app_id: &str, vars: &[(&str, &str)]) -> Result<()> {
        let spec = self.spec(app_id)?;
        self.app_env.insert(
            spec.app_id,
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        Ok(())
    }

    /// SIGKILL to a service (crash tests).
    pub async fn kill_service(&mut self, app_id: &str) -> Result<()> {
        let spec = self.spec(app_id)?;
        if let Some(mut m) = self.apps.remove(spec.app_id) {
            cmd::step(format!("{app_id}: SIGKILL"));
            m.kill_now();
        }
        Ok(())
    }

    /// Stops everything, in reverse start order.
    async fn stop_all(&mut self) -> Result<()> {
        let mut first_err: Option<anyhow::Error> = None;
        for spec in self.services.clone().iter().rev() {
            for map in [&mut self.apps, &mut self.sidecars] {
                if let Some(mut m) = map.remove(spec.app_id)
                    && let Err(e) = m.stop().await
                {
                    first_err.get_or_insert(e);
                }
            }
        }
        for slot in [
            &mut self.scheduler,
            &mut self.placement,
            &mut self.kafka,
            &mut self.postgres,
        ] {
            if let Some(mut m) = slot.take()
                && let Err(e) = m.stop().await
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Clean stop of everything, in reverse start order.
    pub async fn shutdown(mut self) -> Result<()> {
        let started = Instant::now();
        cmd::step("stopping the stack");
        self.stop_all().await?;
        cmd::done("stack stopped", started);
        Ok(())
    }
}

impl Drop for Stack {
    /// Best effort: SIGKILL whatever still runs, newest first.
    fn drop(&mut self) {
        for spec in self.services.iter().rev() {
            if let Some(mut m) = self.apps.remove(spec.app_id) {
                m.kill_now();
            }
            if let Some(mut m) = self.sidecars.remove(spec.app_id) {
                m.kill_now();
            }
        }
        for slot in [
            &mut self.scheduler,
            &mut self.placement,
            &mut self.kafka,
            &mut self.postgres,
        ] {
            if let Some(mut m) = slot.take() {
                m.kill_now();
            }
        }
    }
}

// Tests share one stack across threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Stack>();
};
