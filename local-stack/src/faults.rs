//! Faults on a running stack, for the system tests and benchmarks: stopping,
//! starting, pausing and resuming Kafka, pausing and resuming a service, restarting the Dapr scheduler, stopping, starting or
//! killing a service or its sidecar (every replica of it, or one), and changing a service's environment
//! or its sidecar's configuration file for its next start, and, for the chaos
//! campaign, the same faults on one replica or one sidecar at a time
//! (SIGKILL, SIGSTOP/SIGCONT) and stopping and starting PostgreSQL, placement
//! and the scheduler apart. Each start waits until the part is ready again.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::processes::Role;
use crate::spec::Replica;
use crate::{KAFKA_BROKERS_ENV, KafkaMode, Stack, cmd, dapr};

impl Stack {
    /// Stops the broker (SIGTERM, then SIGKILL after 20 s). Its data is kept.
    pub async fn stop_kafka(&mut self) -> Result<()> {
        if !matches!(self.kafka_mode, KafkaMode::Local(_)) {
            bail!("Kafka is external ({KAFKA_BROKERS_ENV}); the stack cannot stop it");
        }
        if let Some(mut m) = self.processes.take(Role::Kafka) {
            m.stop().await?;
        }
        Ok(())
    }

    /// Freezes the broker (SIGSTOP): its connections stay open but nothing is
    /// answered, a broker that is slow rather than gone. Call
    /// [`Stack::resume_kafka`] on every path afterwards.
    pub fn pause_kafka(&mut self) -> Result<()> {
        self.signal_kafka(nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume_kafka(&mut self) -> Result<()> {
        self.signal_kafka(nix::sys::signal::Signal::SIGCONT)
    }

    fn signal_kafka(&mut self, signal: nix::sys::signal::Signal) -> Result<()> {
        if !matches!(self.kafka_mode, KafkaMode::Local(_)) {
            bail!("Kafka is external ({KAFKA_BROKERS_ENV}); the stack cannot pause it");
        }
        let Some(pid) = self.processes.get(Role::Kafka).and_then(|m| m.pid()) else {
            bail!("Kafka is not running");
        };
        let pid = i32::try_from(pid)?;
        cmd::step(format!("kafka: {signal}"));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)?;
        Ok(())
    }

    /// Freezes every replica of a service (SIGSTOP): its sockets stay open but
    /// nothing is answered, a dependency that is slow rather than gone. Call
    /// [`Stack::resume_service`] on every path afterwards.
    pub fn pause_service(&self, app_id: &str) -> Result<()> {
        self.signal_service(app_id, nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a paused service go on (SIGCONT to every replica).
    pub fn resume_service(&self, app_id: &str) -> Result<()> {
        self.signal_service(app_id, nix::sys::signal::Signal::SIGCONT)
    }

    fn signal_service(&self, app_id: &str, signal: nix::sys::signal::Signal) -> Result<()> {
        let pids = self.service_pids(app_id);
        if pids.is_empty() {
            bail!("{app_id} is not running");
        }
        for pid in pids {
            cmd::step(format!("{app_id}: {signal} to {pid}"));
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid)?), signal)?;
        }
        Ok(())
    }

    /// Starts the broker again on the same data and waits until it is ready.
    pub async fn start_kafka(&mut self) -> Result<()> {
        let KafkaMode::Local(k) = &self.kafka_mode else {
            bail!("Kafka is external ({KAFKA_BROKERS_ENV}); the stack cannot start it");
        };
        if let Some(m) = self.processes.get_mut(Role::Kafka) {
            if m.exited().is_none() {
                return Ok(());
            }
            self.processes.take(Role::Kafka);
        }
        let m = k.start(&self.state).await?;
        self.processes.put(Role::Kafka, m);
        Ok(())
    }

    /// Starts the stack's own PostgreSQL again on its data and waits until it
    /// takes connections.
    pub async fn start_postgres(&mut self) -> Result<()> {
        if let Some(m) = self.processes.get_mut(Role::Postgres) {
            if m.exited().is_none() {
                return Ok(());
            }
            self.processes.take(Role::Postgres);
        }
        let m =
            crate::postgres::start_own(&self.state, &self.pg_target, &self.creds, false).await?;
        self.processes.put(Role::Postgres, m);
        Ok(())
    }

    /// Stops the Dapr scheduler (SIGTERM) and starts it again on the same
    /// etcd data, waiting until it is healthy. Jobs and workflow timers
    /// persist across it.
    pub async fn restart_scheduler(&mut self) -> Result<()> {
        if let Some(mut m) = self.processes.take(Role::Scheduler) {
            m.stop().await?;
        }
        let m = dapr::start_scheduler(&self.state, &self.dapr_bins, &self.client).await?;
        self.processes.put(Role::Scheduler, m);
        Ok(())
    }

    /// Stops a service's sidecars, of every replica (SIGTERM; daprd drains
    /// gracefully).
    pub async fn stop_sidecar(&mut self, app_id: &str) -> Result<()> {
        self.spec(app_id)?;
        for replica in self.replicas(app_id) {
            if let Some(mut m) = self.processes.take(Role::Sidecar(replica)) {
                m.stop().await?;
            }
        }
        Ok(())
    }

    /// Stops the sidecar of one replica only (the others go on).
    pub async fn stop_replica_sidecar(&mut self, replica: Replica) -> Result<()> {
        if let Some(mut m) = self.processes.take(Role::Sidecar(replica)) {
            m.stop().await?;
        }
        Ok(())
    }

    /// Starts the sidecar of one replica again and waits until it is ready.
    pub async fn start_replica_sidecar(&mut self, replica: Replica) -> Result<()> {
        self.spawn_sidecar(&replica)?;
        let app_running = self.processes.contains(Role::App(replica));
        self.wait_sidecar(&replica, app_running).await
    }

    /// Starts a service's sidecars again (the apps keep running) and waits
    /// until each is ready (fully if its app runs, else until its API is up).
    pub async fn start_sidecar(&mut self, app_id: &str) -> Result<()> {
        self.spec(app_id)?;
        for replica in self.replicas(app_id) {
            let role = Role::Sidecar(replica);
            if let Some(m) = self.processes.get_mut(role) {
                if m.exited().is_none() {
                    continue;
                }
                self.processes.take(role);
            }
            self.spawn_sidecar(&replica)?;
            let app_running = self.processes.contains(Role::App(replica));
            self.wait_sidecar(&replica, app_running).await?;
        }
        Ok(())
    }

    /// Stops a service, every replica (SIGTERM, SIGKILL after 10 s).
    pub async fn stop_service(&mut self, app_id: &str) -> Result<()> {
        self.spec(app_id)?;
        for replica in self.replicas(app_id) {
            if let Some(mut m) = self.processes.take(Role::App(replica)) {
                m.stop().await?;
            }
        }
        Ok(())
    }

    /// Stops one replica of a service (SIGTERM, SIGKILL after its stop
    /// timeout); the other replicas go on.
    pub async fn stop_replica(&mut self, replica: Replica) -> Result<()> {
        if let Some(mut m) = self.processes.take(Role::App(replica)) {
            cmd::step(format!("{}: SIGTERM", replica.name()));
            m.stop().await?;
        }
        Ok(())
    }

    /// Starts one replica of a service again and waits until it is ready
    /// (`/health/ready` if its sidecar runs, else `/health`).
    pub async fn start_replica(&mut self, replica: Replica) -> Result<()> {
        let role = Role::App(replica);
        if let Some(m) = self.processes.get_mut(role) {
            if m.exited().is_none() {
                return Ok(());
            }
            self.processes.take(role);
        }
        self.spawn_app(&replica)?;
        let sidecar_running = self.processes.contains(Role::Sidecar(replica));
        self.wait_app(&replica, sidecar_running).await
    }

    /// Starts a service's replicas again and waits until each is ready
    /// (`/health/ready` if its sidecar runs, else `/health`).
    pub async fn start_service(&mut self, app_id: &str) -> Result<()> {
        self.spec(app_id)?;
        for replica in self.replicas(app_id) {
            let role = Role::App(replica);
            if let Some(m) = self.processes.get_mut(role) {
                if m.exited().is_none() {
                    continue;
                }
                self.processes.take(role);
            }
            self.spawn_app(&replica)?;
            let sidecar_running = self.processes.contains(Role::Sidecar(replica));
            self.wait_app(&replica, sidecar_running).await?;
        }
        Ok(())
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

    /// Another sidecar configuration file for a service's sidecars from their
    /// next start on (None: `deploy/local/config.yaml` again), e.g. a short
    /// workflow state retention in a test.
    pub fn set_sidecar_config(&mut self, app_id: &str, config: Option<PathBuf>) -> Result<()> {
        let spec = self.spec(app_id)?;
        match config {
            Some(path) => self.sidecar_config.insert(spec.app_id, path),
            None => self.sidecar_config.remove(spec.app_id),
        };
        Ok(())
    }

    /// SIGKILL to a service, every replica (crash tests).
    pub async fn kill_service(&mut self, app_id: &str) -> Result<()> {
        self.spec(app_id)?;
        for replica in self.replicas(app_id) {
            if let Some(mut m) = self.processes.take(Role::App(replica)) {
                cmd::step(format!("{}: SIGKILL", replica.name()));
                m.kill_now();
            }
        }
        Ok(())
    }

    /// SIGKILL to one replica of a service (its process group); the others go
    /// on. [`Stack::start_replica`] starts it again.
    pub fn kill_replica(&mut self, replica: Replica) {
        if let Some(mut m) = self.processes.take(Role::App(replica)) {
            cmd::step(format!("{}: SIGKILL", replica.name()));
            m.kill_now();
        }
    }

    /// SIGKILL to the sidecar of one replica; [`Stack::start_replica_sidecar`]
    /// starts it again.
    pub fn kill_replica_sidecar(&mut self, replica: Replica) {
        if let Some(mut m) = self.processes.take(Role::Sidecar(replica)) {
            cmd::step(format!("{}-daprd: SIGKILL", replica.name()));
            m.kill_now();
        }
    }

    /// The process id of one replica (`sidecar`: of its sidecar), if it runs:
    /// what a pause is sent to, and its resume later (a supervisor may
    /// have replaced a paused process meanwhile; the new one is left alone).
    pub fn replica_pid(&self, replica: Replica, sidecar: bool) -> Option<u32> {
        let role = if sidecar {
            Role::Sidecar(replica)
        } else {
            Role::App(replica)
        };
        self.processes.get(role).and_then(|m| m.pid())
    }

    /// SIGSTOP (`pause`) or SIGCONT to one process of the stack by id, as
    /// returned by [`Stack::replica_pid`]; a process that is gone is not an
    /// error (nothing to resume).
    pub fn signal_pid(&self, pid: u32, pause: bool) -> Result<()> {
        let signal = if pause {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        cmd::step(format!("{signal} to {pid}"));
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid)?), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops the stack's own PostgreSQL (fast shutdown: SIGINT, clients are
    /// disconnected); [`Stack::start_postgres`] starts it on the same data.
    pub async fn stop_postgres(&mut self) -> Result<()> {
        if let Some(mut m) = self.processes.take(Role::Postgres) {
            m.stop().await?;
        }
        Ok(())
    }

    /// Stops the Dapr placement service (SIGTERM).
    pub async fn stop_placement(&mut self) -> Result<()> {
        if let Some(mut m) = self.processes.take(Role::Placement) {
            m.stop().await?;
        }
        Ok(())
    }

    /// Starts placement again (if it is not running) and waits until healthy.
    pub async fn start_placement(&mut self) -> Result<()> {
        if let Some(m) = self.processes.get_mut(Role::Placement) {
            if m.exited().is_none() {
                return Ok(());
            }
            self.processes.take(Role::Placement);
        }
        let m = dapr::start_placement(&self.state, &self.dapr_bins, &self.client).await?;
        self.processes.put(Role::Placement, m);
        Ok(())
    }

    /// Stops the Dapr scheduler (SIGTERM); its etcd data is kept.
    pub async fn stop_scheduler(&mut self) -> Result<()> {
        if let Some(mut m) = self.processes.take(Role::Scheduler) {
            m.stop().await?;
        }
        Ok(())
    }

    /// Starts the scheduler again (if it is not running) on the same etcd
    /// data and waits until healthy.
    pub async fn start_scheduler(&mut self) -> Result<()> {
        if let Some(m) = self.processes.get_mut(Role::Scheduler) {
            if m.exited().is_none() {
                return Ok(());
            }
            self.processes.take(Role::Scheduler);
        }
        let m = dapr::start_scheduler(&self.state, &self.dapr_bins, &self.client).await?;
        self.processes.put(Role::Scheduler, m);
        Ok(())
    }

    /// Names of the stack's processes that are not running: stopped on
    /// purpose and never started again, or started and failed to come up
    /// (an empty slot, which [`Stack::revive`] does not restart).
    pub fn missing_processes(&mut self) -> Vec<String> {
        let mut missing = Vec::new();
        for role in self.processes.roles() {
            let running = self
                .processes
                .get_mut(role)
                .is_some_and(|m| m.exited().is_none());
            if !running {
                missing.push(match role {
                    Role::Postgres => "postgres".to_owned(),
                    Role::Kafka => "kafka".to_owned(),
                    Role::Placement => "placement".to_owned(),
                    Role::Scheduler => "scheduler".to_owned(),
                    Role::Sidecar(r) => format!("{}-daprd", r.name()),
                    Role::App(r) => r.name(),
                });
            }
        }
        missing
    }
}
