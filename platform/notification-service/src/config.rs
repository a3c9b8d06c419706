//! The notification service's own settings, from `NOTIFICATION_*` variables
//! (all optional; body limit, pool size, database secret and sidecar timeout
//! are the common ones of `todo_core::bootstrap::Common`).

use std::time::Duration;

use serde::Deserialize;
use todo_core::database::{Retention, default_prune_interval_secs, default_retention_hours};
use todo_core::workflow::{Watching, default_stale_secs, default_watch_secs};

/// Tunables of the notification service.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationConfig {
    /// How long sent notifications are kept (`NOTIFICATION_RETENTION_HOURS`,
    /// default 168, at least 1); pending and failed ones are never pruned.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// How often they are pruned (`NOTIFICATION_PRUNE_INTERVAL_SECS`, default 600).
    #[serde(default = "default_prune_interval_secs")]
    pub prune_interval_secs: u64,
    /// How long delivery of a notification keeps trying, with backoff up to
    /// a minute between tries, before the notification is marked failed
    /// (`NOTIFICATION_DELIVERY_PATIENCE_SECS`, default 7200: longer than an
    /// hour's outage of Kafka or the database).
    #[serde(default = "delivery_patience_secs")]
    pub delivery_patience_secs: u64,
    /// How long a notification may stay pending without its delivery
    /// instance making progress before the watchdog starts it again
    /// (`NOTIFICATION_WORKFLOW_STALE_SECS`, default 300: a delivery that keeps
    /// retrying moves at least every minute).
    #[serde(default = "default_stale_secs")]
    pub workflow_stale_secs: u64,
    /// How often each replica's watchdog looks (`NOTIFICATION_WORKFLOW_WATCH_SECS`, default 30).
    #[serde(default = "default_watch_secs")]
    pub workflow_watch_secs: u64,
}

fn delivery_patience_secs() -> u64 {
    2 * 3600
}

impl NotificationConfig {
    /// The retention of sent notifications.
    pub fn retention(&self) -> Retention {
        Retention::new(self.retention_hours, self.prune_interval_secs)
    }

    /// The delivery watchdog's settings.
    pub fn watching(&self) -> Watching {
        Watching::new(self.workflow_watch_secs, self.workflow_stale_secs)
    }

    /// How long delivery keeps trying.
    pub fn delivery_patience(&self) -> Duration {
        Duration::from_secs(self.delivery_patience_secs.max(1))
    }
}
