//! The recurring-task service's own settings, from `RECURRING_*` variables (all optional).

use serde::Deserialize;

/// Tunables of the recurring-task service.
#[derive(Debug, Clone, Deserialize)]
pub struct RecurringConfig {
    /// Largest request body, including bulk deliveries (`RECURRING_MAX_BODY_BYTES`, default 8 MiB).
    #[serde(default = "max_body_bytes")]
    pub max_body_bytes: usize,
    /// Database pool size (`RECURRING_DB_MAX_CONNECTIONS`, default 10).
    #[serde(default = "db_max_connections")]
    pub db_max_connections: u32,
    /// Secret holding the database URL under key `url` (`RECURRING_DB_SECRET`).
    #[serde(default = "db_secret")]
    pub db_secret: String,
    /// App id of the Todo service, invoked through Dapr (`RECURRING_TODO_APP_ID`).
    #[serde(default = "todo_app_id")]
    pub todo_app_id: String,
}

fn max_body_bytes() -> usize {
    8 * 1024 * 1024
}
fn db_max_connections() -> u32 {
    10
}
fn db_secret() -> String {
    "recurring-db".to_owned()
}
fn todo_app_id() -> String {
    "todo-service".to_owned()
}
