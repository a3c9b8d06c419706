//! The recurring-task service's own settings, from `RECURRING_*` variables
//! (all optional; body limit, pool size, database secret and sidecar timeout
//! are the common ones of `todo_core::bootstrap::Common`).

use serde::Deserialize;

/// Tunables of the recurring-task service.
#[derive(Debug, Clone, Deserialize)]
pub struct RecurringConfig {
    /// App id of the Todo service, invoked through Dapr (`RECURRING_TODO_APP_ID`).
    #[serde(default = "todo_app_id")]
    pub todo_app_id: String,
}

fn todo_app_id() -> String {
    "todo-service".to_owned()
}
