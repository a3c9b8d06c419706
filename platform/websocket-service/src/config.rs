//! The WebSocket service's own settings, from `WEBSOCKET_*` variables (all
//! optional; body limit, pool size and database secret are the common ones of
//! `todo_core::bootstrap::Common`).

use std::time::Duration;

use serde::Deserialize;

use crate::hub::Limits;

/// Tunables of the WebSocket service.
#[derive(Debug, Clone, Deserialize)]
pub struct WebsocketConfig {
    /// How long updates stay replayable (`WEBSOCKET_RETENTION_SECS`, default 24 h).
    #[serde(default = "retention_secs")]
    pub retention_secs: u64,
    /// How often expired updates are pruned (`WEBSOCKET_PRUNE_INTERVAL_SECS`, default 60).
    #[serde(default = "prune_interval_secs")]
    pub prune_interval_secs: u64,
    /// Updates a connection may have queued before it is closed as too slow
    /// (`WEBSOCKET_QUEUE_CAPACITY`, default 256).
    #[serde(default = "queue_capacity")]
    pub queue_capacity: usize,
    /// Streams one replica holds at most (`WEBSOCKET_MAX_STREAMS`, default
    /// 10 000); past it an upgrade is answered 429.
    #[serde(default = "max_streams")]
    pub max_streams: usize,
    /// Streams one token subject may hold on one replica
    /// (`WEBSOCKET_MAX_STREAMS_PER_USER`, default 16: tabs and devices of
    /// one person); past it an upgrade is answered 429.
    #[serde(default = "max_streams_per_user")]
    pub max_streams_per_user: usize,
}

impl WebsocketConfig {
    /// The retention window.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    /// The connection limits of one replica.
    pub fn limits(&self) -> Limits {
        Limits {
            total: self.max_streams,
            per_holder: self.max_streams_per_user,
        }
    }

    /// The pruning period (at least one second).
    pub fn prune_interval(&self) -> Duration {
        Duration::from_secs(self.prune_interval_secs.max(1))
    }
}

fn retention_secs() -> u64 {
    24 * 60 * 60
}
fn prune_interval_secs() -> u64 {
    60
}
fn queue_capacity() -> usize {
    256
}
fn max_streams() -> usize {
    10_000
}
fn max_streams_per_user() -> usize {
    16
}
