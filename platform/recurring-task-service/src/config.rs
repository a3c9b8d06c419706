//! The recurring-task service's own settings, from `RECURRING_*` variables
//! (all optional; body limit, pool size, database secret and sidecar timeout
//! are the common ones of `todo_core::bootstrap::Common`).

use serde::Deserialize;
use todo_core::database::{Retention, default_prune_interval_secs, default_retention_hours};

/// Tunables of the recurring-task service.
#[derive(Debug, Clone, Deserialize)]
pub struct RecurringConfig {
    /// App id of the Todo service, invoked through Dapr (`RECURRING_TODO_APP_ID`).
    #[serde(default = "todo_app_id")]
    pub todo_app_id: String,
    /// How long finished rows are kept (`RECURRING_RETENTION_HOURS`, default
    /// 168, at least 1): fired or cancelled reminders, created or withdrawn
    /// next instances, series ended by a deletion.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// How often they are pruned (`RECURRING_PRUNE_INTERVAL_SECS`, default 600).
    #[serde(default = "default_prune_interval_secs")]
    pub prune_interval_secs: u64,
}

impl RecurringConfig {
    /// The retention of finished rows.
    pub fn retention(&self) -> Retention {
        Retention::new(self.retention_hours, self.prune_interval_secs)
    }
}

fn todo_app_id() -> String {
    "todo-service".to_owned()
}
