//! Watching a running stack: a child that exits (a sidecar, a service, the
//! broker, the database, the control plane) or a service that stays unready
//! is reported in one line, naming it, how it ended and its last log line, and
//! is started again with backoff (1 s doubling to 60 s, reset once it has run
//! for a minute). `cargo xtask up` runs [`Supervisor::watch`] until Ctrl-C;
//! the system tests call [`crate::Stack::revive`] before every test, so a
//! child that died during the previous one is reported and restarted there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::processes::Role;
use crate::spec::Replica;
use crate::{Stack, cmd, dapr};

/// First wait before a restart; doubled per failed restart up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A child that has run this long since its restart starts its backoff anew.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// A service answering `/health/ready` with anything but 200 this long is
/// restarted (its sidecar first, if that is what it reports failing).
pub const UNREADY_LIMIT: Duration = Duration::from_secs(60);

/// What one look at a child found and did: one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub line: String,
}

/// Backoff and unreadiness bookkeeping across looks.
#[derive(Default)]
pub struct Supervisor {
    restarts: HashMap<String, Restarts>,
    unready_since: HashMap<String, Instant>,
}

struct Restarts {
    attempts: u32,
    not_before: Instant,
    last: Instant,
}

impl Supervisor {
    /// Looks at the stack every second until `stop` resolves, printing each
    /// report as it happens.
    pub async fn watch(stack: &mut Stack, stop: impl Future<Output = ()>) {
        let mut supervisor = Supervisor::default();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            for report in supervisor.look(stack).await {
                eprintln!("{}", report.line);
            }
        }
    }

    /// Whether `name` may be restarted now; records the attempt.
    fn may_restart(&mut self, name: &str) -> Option<(u32, Duration)> {
        let now = Instant::now();
        let entry = self
            .restarts
            .entry(name.to_owned())
            .or_insert_with(|| Restarts {
                attempts: 0,
                not_before: now,
                last: now,
            });
        if entry.attempts > 0 && now.duration_since(entry.last) >= STABLE_AFTER {
            entry.attempts = 0;
            entry.not_before = now;
        }
        if now < entry.not_before {
            return None;
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(2u32.saturating_pow(entry.attempts))
            .min(MAX_BACKOFF);
        entry.attempts += 1;
        entry.not_before = now + backoff;
        entry.last = now;
        Some((entry.attempts, backoff))
    }

    /// One look: restarts every exited child whose backoff allows it, and
    /// every service unready past [`UNREADY_LIMIT`].
    pub async fn look(&mut self, stack: &mut Stack) -> Vec<Report> {
        let mut reports = Vec::new();
        for (role, name, status, last_line) in stack.exited_children() {
            let Some((attempt, backoff)) = self.may_restart(&name) else {
                continue;
            };
            let outcome = stack.restart_role(role).await;
            reports.push(Report {
                line: restart_line(&name, &status, &last_line, attempt, backoff, &outcome),
            });
        }
        for replica in stack.all_replicas() {
            let name = replica.name();
            if !stack.processes.contains(Role::App(replica)) {
                self.unready_since.remove(&name);
                continue;
            }
            match stack.app_unready(&replica).await {
                None => {
                    self.unready_since.remove(&name);
                }
                Some(why) => {
                    let since = *self
                        .unready_since
                        .entry(name.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() < UNREADY_LIMIT {
                        continue;
                    }
                    let Some((attempt, backoff)) = self.may_restart(&name) else {
                        continue;
                    };
                    self.unready_since.remove(&name);
                    let outcome = stack.restart_unready(replica).await;
                    let last_line = stack.last_log_line(Role::App(replica));
                    reports.push(Report {
                        line: restart_line(
                            &name,
                            &format!("unready for {}s ({why})", since.elapsed().as_secs()),
                            &last_line,
                            attempt,
                            backoff,
                            &outcome,
                        ),
                    });
                }
            }
        }
        reports
    }
}

fn restart_line(
    name: &str,
    how: &str,
    last_line: &str,
    attempt: u32,
    backoff: Duration,
    outcome: &Result<()>,
) -> String {
    let result = match outcome {
        Ok(()) => "restarted".to_owned(),
        Err(e) => format!(
            "restart failed ({}), next try in {}s",
            first_line(&format!("{e:#}")),
            backoff.as_secs()
        ),
    };
    format!("SUPERVISOR: {name} {how}; last log line: {last_line:?}; {result} (attempt {attempt})")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

impl Stack {
    /// Every child recorded as running that has exited: its role, name, exit
    /// status and last log line. Their slots are emptied (the role stays in
    /// place, so a restart keeps the stop order).
    pub(crate) fn exited_children(&mut self) -> Vec<(Role, String, String, String)> {
        let mut found = Vec::new();
        for role in self.processes.roles() {
            let Some(m) = self.processes.get_mut(role) else {
                continue;
            };
            if let Some(status) = m.exited() {
                let name = m.name().to_owned();
                let last = cmd::tail(m.log_path(), 1).trim().to_owned();
                self.processes.take(role);
                found.push((role, name, format!("exited ({status})"), last));
            }
        }
        found
    }

    /// The last line of the log of `role`'s process, if it runs.
    pub(crate) fn last_log_line(&self, role: Role) -> String {
        self.processes
            .get(role)
            .map(|m| cmd::tail(m.log_path(), 1).trim().to_owned())
            .unwrap_or_default()
    }

    /// Starts `role` again and waits until it is ready.
    pub(crate) async fn restart_role(&mut self, role: Role) -> Result<()> {
        match role {
            Role::Sidecar(replica) => {
                self.spawn_sidecar(&replica)?;
                let app_runs = self.processes.contains(Role::App(replica));
                self.wait_sidecar(&replica, app_runs).await
            }
            Role::App(replica) => {
                self.spawn_app(&replica)?;
                let sidecar_runs = self.processes.contains(Role::Sidecar(replica));
                self.wait_app(&replica, sidecar_runs).await
            }
            Role::Kafka => self.start_kafka().await,
            Role::Scheduler => self.restart_scheduler().await,
            Role::Placement => {
                let m = dapr::start_placement(&self.state, &self.dapr_bins, &self.client).await?;
                self.processes.put(Role::Placement, m);
                Ok(())
            }
            Role::Postgres => self.start_postgres().await,
        }
    }

    /// Why a replica's `/health/ready` is not 200 (`None` when it is).
    pub(crate) async fn app_unready(&self, replica: &Replica) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/health/ready", replica.app_port());
        match self
            .client
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 200 => None,
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                Some(format!("{status}: {}", first_line(&body)))
            }
            Err(e) => Some(format!("{e}")),
        }
    }

    /// A replica unready for too long: its sidecar is restarted (a dead or
    /// wedged sidecar is the usual cause), then the app.
    async fn restart_unready(&mut self, replica: Replica) -> Result<()> {
        if let Some(mut m) = self.processes.take(Role::App(replica)) {
            m.stop().await?;
        }
        if let Some(mut m) = self.processes.take(Role::Sidecar(replica)) {
            m.stop().await?;
        }
        self.spawn_sidecar(&replica)?;
        self.wait_sidecar(&replica, false).await?;
        self.spawn_app(&replica)?;
        self.wait_app(&replica, true).await
    }

    /// Reports (one line each, on stderr) and restarts every child that has
    /// exited since the last look: what a test run does between tests, so a
    /// death is named where it happened and the next test starts whole.
    pub async fn revive(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for (role, name, status, last_line) in self.exited_children() {
            let outcome = self.restart_role(role).await;
            let line = restart_line(&name, &status, &last_line, 1, FIRST_BACKOFF, &outcome);
            eprintln!("{line}");
            lines.push(line);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_doubling_from_one_second() {
        let mut supervisor = Supervisor::default();
        assert_eq!(supervisor.may_restart("kafka"), Some((1, FIRST_BACKOFF)));
        assert_eq!(supervisor.may_restart("kafka"), None, "within the backoff");
        assert_eq!(
            supervisor.may_restart("placement"),
            Some((1, FIRST_BACKOFF)),
            "each child has its own backoff"
        );
        let entry = supervisor.restarts.get_mut("kafka").unwrap();
        entry.not_before = Instant::now();
        assert_eq!(
            supervisor.may_restart("kafka"),
            Some((2, FIRST_BACKOFF * 2))
        );
        let entry = supervisor.restarts.get_mut("kafka").unwrap();
        entry.attempts = 10;
        entry.not_before = Instant::now();
        assert_eq!(supervisor.may_restart("kafka"), Some((11, MAX_BACKOFF)));
    }

    #[test]
    fn the_report_is_one_line_naming_the_child_and_its_last_words() {
        let last = r#"{"level":"info","msg":"renewed"}"#;
        let line = restart_line(
            "audit-service-daprd",
            "exited (signal: 9 (SIGKILL))",
            last,
            1,
            FIRST_BACKOFF,
            &Ok(()),
        );
        assert_eq!(
            line,
            format!(
                "SUPERVISOR: audit-service-daprd exited (signal: 9 (SIGKILL)); \
                 last log line: {last:?}; restarted (attempt 1)"
            )
        );
        let failed = restart_line(
            "kafka",
            "exited (exit status: 1)",
            "boom",
            3,
            Duration::from_secs(4),
            &Err(anyhow::anyhow!("port 9092 taken\nmore detail")),
        );
        assert!(!failed.contains('\n'), "{failed}");
        assert!(
            failed.ends_with("restart failed (port 9092 taken), next try in 4s (attempt 3)"),
            "{failed}"
        );
    }
}
