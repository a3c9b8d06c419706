//! The recurring-task service's own settings, from `RECURRING_*` variables
//! (all optional; body limit, pool size, database secret and sidecar timeout
//! are the common ones of `todo_core::bootstrap::Common`).

use std::time::Duration;

use serde::Deserialize;
use todo_core::database::{Retention, default_prune_interval_secs, default_retention_hours};
use todo_core::workflow::{Watching, default_stale_secs, default_watch_secs};

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
    /// How often each replica looks for reminders their jobs did not fire
    /// (`RECURRING_RECONCILE_INTERVAL_SECS`, default 30, at least 1).
    #[serde(default = "reconcile_interval_secs")]
    pub reconcile_interval_secs: u64,
    /// How late a scheduled reminder must be before the reconciler fires it
    /// instead of its job (`RECURRING_RECONCILE_LATE_SECS`, default 60): a
    /// job fires within about a second of its time, so a reminder this late
    /// has lost its job or the job gave up.
    #[serde(default = "reconcile_late_secs")]
    pub reconcile_late_secs: u64,
    /// How long a requested next instance may stay unfinished without its
    /// recurrence workflow instance making progress before the watchdog
    /// starts the workflow again (`RECURRING_WORKFLOW_STALE_SECS`, default
    /// 300: a step that keeps retrying moves at least every 30 s).
    #[serde(default = "default_stale_secs")]
    pub workflow_stale_secs: u64,
    /// How often each replica's watchdog looks (`RECURRING_WORKFLOW_WATCH_SECS`, default 30).
    #[serde(default = "default_watch_secs")]
    pub workflow_watch_secs: u64,
}

impl RecurringConfig {
    /// The retention of finished rows.
    pub fn retention(&self) -> Retention {
        Retention::new(self.retention_hours, self.prune_interval_secs)
    }

    /// The recurrence watchdog's settings.
    pub fn watching(&self) -> Watching {
        Watching::new(self.workflow_watch_secs, self.workflow_stale_secs)
    }

    /// When the reconciler runs and what it takes as overdue.
    pub fn reconciling(&self) -> Reconciling {
        Reconciling {
            every: Duration::from_secs(self.reconcile_interval_secs.max(1)),
            late_by: Duration::from_secs(self.reconcile_late_secs),
        }
    }
}

/// How the reconciler of overdue reminders runs (see
/// [`crate::service::RecurringService::fire_overdue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciling {
    pub every: Duration,
    pub late_by: Duration,
}

fn reconcile_interval_secs() -> u64 {
    30
}

fn reconcile_late_secs() -> u64 {
    60
}

fn todo_app_id() -> String {
    "todo-service".to_owned()
}
