//! Bringing a stack up: [`Stack::up`] installs or builds what is missing,
//! checks every fixed port, starts PostgreSQL, Kafka, placement and scheduler
//! in parallel, provisions roles and topics, then each service's sidecar and
//! app, and waits until all are ready. Also the spawn-and-wait steps the
//! fault methods reuse to start one sidecar or app again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::creds::{self, Credentials};
use crate::kafka::{self, LocalKafka};
use crate::options::{StackOptions, cache_dir};
use crate::postgres::{self, PgTarget};
use crate::processes::{Processes, Role};
use crate::services::{self, build_services, workspace_root};
use crate::spec::{
    DAPR_SCHEMA, KAFKA_CONTROLLER_PORT, KAFKA_PORT, PG_PORT, PLACEMENT_HEALTHZ_PORT,
    PLACEMENT_METRICS_PORT, PLACEMENT_PORT, PLACEMENT_RAFT_PORT, Replica,
    SCHEDULER_ETCD_CLIENT_PORT, SCHEDULER_ETCD_PEER_PORT, SCHEDULER_HEALTHZ_PORT,
    SCHEDULER_METRICS_PORT, SCHEDULER_PORT, SERVICES, topic_partitions,
};
use crate::{KAFKA_BROKERS_ENV, KafkaMode, PG_ADMIN_URL_ENV, Stack, cmd, dapr, install, proc};

/// How long a service (app + sidecar) may take to become ready.
const SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Login roles (= schemas) provisioned on every start: every service of the
/// table, started or not (so one can be run by hand against a `--no-services`
/// stack), plus the Dapr state store's.
pub(crate) fn db_roles() -> Vec<&'static str> {
    SERVICES
        .iter()
        .map(|s| s.schema)
        .chain([DAPR_SCHEMA])
        .collect()
}

/// Removes everything in the state folder but the lock file.
pub(crate) fn wipe_state(state: &Path) -> Result<()> {
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
            browser: opts.browser,
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
            None => PgTarget::own(&state, PG_PORT)?,
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

        let base_sidecar_config =
            dapr::sidecar_config(&state, &repo, opts.name_resolution_cleanup_every)?;
        let mut stack = Stack {
            base_sidecar_config,
            repo,
            state,
            services: opts.services,
            replicas: opts.replicas,
            next_replica: Default::default(),
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
            processes: Processes::default(),
            app_env: BTreeMap::new(),
            sidecar_config: BTreeMap::new(),
            dev_trust_user_header: opts.dev_trust_user_header,
            _lock: lock,
        };
        if let Err(e) = stack.start_all(installed_pg).await {
            cmd::step(format!("start failed, stopping what was started: {e:#}"));
            let _ = stack.processes.stop_all().await;
            return Err(e);
        }
        cmd::done("stack is up", started);
        Ok(stack)
    }

    /// Every fixed port, before anything starts (fail fast, naming the holder).
    async fn check_ports(&self, installed_pg: bool) -> Result<()> {
        if matches!(self.pg_target, PgTarget::Own { .. }) {
            postgres::check_port(PG_PORT, installed_pg).await?;
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
        for replica in self.all_replicas() {
            proc::ensure_port_free(replica.app_port(), &replica.name())?;
            proc::ensure_port_free(replica.internal_port(), &replica.name())?;
            dapr::ensure_sidecar_ports_free(&replica)?;
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
        let placement_fut = async {
            dapr::start_placement(&state, &self.dapr_bins, &self.client)
                .await
                .map(Some)
        };
        let scheduler_fut = async {
            dapr::start_scheduler(&state, &self.dapr_bins, &self.client)
                .await
                .map(Some)
        };
        let (pg, kafka, placement, scheduler) =
            tokio::join!(pg_fut, kafka_fut, placement_fut, scheduler_fut);
        // Recorded in this order whatever finished first, and kept even if
        // another failed, so that a failed start stops them in reverse.
        let mut first_err = None;
        for (role, started) in [
            (Role::Postgres, pg),
            (Role::Kafka, kafka),
            (Role::Placement, placement),
            (Role::Scheduler, scheduler),
        ] {
            match started {
                Ok(Some(m)) => self.processes.put(role, m),
                Ok(None) => {}
                Err(e) => first_err = first_err.or(Some(e)),
            }
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
                let most = self.replicas.values().copied().max().unwrap_or(1);
                kafka::ensure_topics(&brokers, &self.kafka_libs, topic_partitions(most)).await
            }
        );
        provisioned?;
        topics?;

        // Services: all sidecars, then all apps (an app reads its secrets
        // through its sidecar at startup), then wait for everything.
        let replicas = self.all_replicas();
        for replica in &replicas {
            proc::ensure_port_free(replica.app_port(), &replica.name())?;
            self.spawn_sidecar(replica)?;
        }
        for replica in &replicas {
            self.wait_sidecar(replica, false).await?;
        }
        for replica in &replicas {
            self.spawn_app(replica)?;
        }
        for replica in &replicas {
            self.wait_app(replica, true).await?;
            self.wait_sidecar(replica, true).await?;
        }
        Ok(())
    }

    pub(crate) fn spawn_sidecar(&mut self, replica: &Replica) -> Result<()> {
        dapr::ensure_sidecar_ports_free(replica)?;
        cmd::step(format!("{}: starting sidecar", replica.name()));
        let config = self
            .sidecar_config
            .get(replica.spec.app_id)
            .cloned()
            .unwrap_or_else(|| self.base_sidecar_config.clone());
        let launch = dapr::daprd_launch(
            &self.state,
            &self.repo,
            &self.dapr_bins,
            replica,
            self.creds.app_api_token(replica.spec.app_id),
            &config,
        );
        let m = proc::spawn(&self.state, launch)?;
        self.processes.put(Role::Sidecar(*replica), m);
        Ok(())
    }

    /// `full`: `/v1.0/healthz` (everything, app included) -> 204; otherwise
    /// `/v1.0/healthz/outbound` (API up, components loaded) -> 204.
    pub(crate) async fn wait_sidecar(&mut self, replica: &Replica, full: bool) -> Result<()> {
        let started = Instant::now();
        let path = if full {
            "/v1.0/healthz"
        } else {
            "/v1.0/healthz/outbound"
        };
        let url = format!("http://127.0.0.1:{}{path}", replica.dapr_http_port());
        let client = self.client.clone();
        let m = self
            .processes
            .get_mut(Role::Sidecar(*replica))
            .ok_or_else(|| anyhow!("{} sidecar is not running", replica.name()))?;
        dapr::wait_http(m, &client, &url, 204, SERVICE_READY_TIMEOUT).await?;
        cmd::done(
            format!(
                "{}: sidecar {} on 127.0.0.1:{}",
                replica.name(),
                if full { "ready" } else { "up" },
                replica.dapr_http_port()
            ),
            started,
        );
        Ok(())
    }

    pub(crate) fn spawn_app(&mut self, replica: &Replica) -> Result<()> {
        let app_id = replica.spec.app_id;
        let bin = self
            .app_bins
            .get(app_id)
            .ok_or_else(|| anyhow!("{app_id} was not built"))?
            .clone();
        proc::ensure_port_free(replica.app_port(), &replica.name())?;
        proc::ensure_port_free(replica.internal_port(), &replica.name())?;
        cmd::step(format!("{}: starting", replica.name()));
        let mut launch = services::app_launch(
            &bin,
            replica,
            self.creds.app_api_token(app_id),
            self.dev_trust_user_header,
        );
        for (k, v) in self.app_env.get(app_id).into_iter().flatten() {
            launch = launch.env(k, v.clone());
        }
        let m = proc::spawn(&self.state, launch)?;
        self.processes.put(Role::App(*replica), m);
        Ok(())
    }

    /// `ready`: `/health/ready` (database and sidecar reachable) -> 200;
    /// otherwise the liveness endpoint `/health` -> 200.
    pub(crate) async fn wait_app(&mut self, replica: &Replica, ready: bool) -> Result<()> {
        let started = Instant::now();
        let path = if ready { "/health/ready" } else { "/health" };
        let url = format!("http://127.0.0.1:{}{path}", replica.app_port());
        let client = self.client.clone();
        let m = self
            .processes
            .get_mut(Role::App(*replica))
            .ok_or_else(|| anyhow!("{} is not running", replica.name()))?;
        dapr::wait_http(m, &client, &url, 200, SERVICE_READY_TIMEOUT).await?;
        cmd::done(
            format!(
                "{}: {} on 127.0.0.1:{}",
                replica.name(),
                if ready { "ready" } else { "live" },
                replica.app_port()
            ),
            started,
        );
        Ok(())
    }
}
