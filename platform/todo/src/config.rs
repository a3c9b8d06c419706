//! The todo service's own settings, from `TODO_*` variables (all optional;
//! `TODO_MAX_BODY_BYTES` (default 1 MiB), `TODO_DB_MAX_CONNECTIONS` (20) and
//! `TODO_DB_SECRET` are the common ones of `todo_core::bootstrap::Common`).

use std::time::Duration;

use serde::Deserialize;

/// Tunables of the todo service.
#[derive(Debug, Clone, Deserialize)]
pub struct TodoConfig {
    /// How long a write waits for its events to reach Kafka before answering
    /// 503 (`TODO_PUBLISH_WAIT_MS`, default 3000).
    #[serde(default = "publish_wait_ms")]
    pub publish_wait_ms: u64,
    /// Upper bound of one publish call to the sidecar (`TODO_PUBLISH_CALL_TIMEOUT_MS`,
    /// default 60 000). Longer than the sidecar's own bounded retries, so the
    /// relay never gives up on a call whose message may still be delivered.
    #[serde(default = "publish_call_timeout_ms")]
    pub publish_call_timeout_ms: u64,
}

impl TodoConfig {
    pub fn publish_wait(&self) -> Duration {
        Duration::from_millis(self.publish_wait_ms)
    }
    pub fn publish_call_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_call_timeout_ms)
    }
}

fn publish_wait_ms() -> u64 {
    3000
}
fn publish_call_timeout_ms() -> u64 {
    60_000
}
