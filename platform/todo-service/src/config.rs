//! The todo service's own settings, from `TODO_*` variables (all optional;
//! `TODO_MAX_BODY_BYTES` (default 1 MiB), `TODO_DB_MAX_CONNECTIONS` (20),
//! `TODO_DB_SECRET` and `TODO_SIDECAR_TIMEOUT_MS` (60 000: one publish call)
//! are the common ones of `todo_core::bootstrap::Common`).

use std::time::Duration;

use serde::Deserialize;

/// Tunables of the todo service.
#[derive(Debug, Clone, Deserialize)]
pub struct TodoConfig {
    /// How long a write waits for its events to reach Kafka before answering
    /// 503 (`TODO_PUBLISH_WAIT_MS`, default 3000).
    #[serde(default = "publish_wait_ms")]
    pub publish_wait_ms: u64,
    /// How often published events and expired idempotency keys are deleted,
    /// whatever the load (`TODO_PRUNE_INTERVAL_SECS`, default 60; at least 1).
    #[serde(default = "prune_interval_secs")]
    pub prune_interval_secs: u64,
    /// How long a published event stays in the outbox, for inspection
    /// (`TODO_OUTBOX_RETENTION_SECS`, default 3600).
    #[serde(default = "outbox_retention_secs")]
    pub outbox_retention_secs: u64,
    /// How long an Idempotency-Key is remembered
    /// (`TODO_IDEMPOTENCY_RETENTION_SECS`, default 86 400: 24 hours).
    #[serde(default = "idempotency_retention_secs")]
    pub idempotency_retention_secs: u64,
    /// App ids whose calls through Dapr may act for a user
    /// (`TODO_TRUSTED_CALLERS`, comma-separated, default
    /// `recurring-task-service`).
    #[serde(default = "trusted_callers")]
    pub trusted_callers: String,
}

impl TodoConfig {
    pub fn publish_wait(&self) -> Duration {
        Duration::from_millis(self.publish_wait_ms)
    }

    /// The trusted caller app ids, one per item.
    pub fn trusted_callers(&self) -> Vec<String> {
        self.trusted_callers
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// What the outbox pruner keeps, and how often it runs.
    pub fn pruning(&self) -> Pruning {
        Pruning {
            every: Duration::from_secs(self.prune_interval_secs.max(1)),
            keep_published: Duration::from_secs(self.outbox_retention_secs),
            keep_keys: Duration::from_secs(self.idempotency_retention_secs),
        }
    }
}

/// The outbox pruner's settings (see [`crate::relay::prune_periodically`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruning {
    pub every: Duration,
    pub keep_published: Duration,
    pub keep_keys: Duration,
}

fn publish_wait_ms() -> u64 {
    3000
}
fn prune_interval_secs() -> u64 {
    60
}
fn outbox_retention_secs() -> u64 {
    3600
}
fn idempotency_retention_secs() -> u64 {
    24 * 3600
}
fn trusted_callers() -> String {
    "recurring-task-service".to_owned()
}
