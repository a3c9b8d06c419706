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
}

impl TodoConfig {
    pub fn publish_wait(&self) -> Duration {
        Duration::from_millis(self.publish_wait_ms)
    }
}

fn publish_wait_ms() -> u64 {
    3000
}
