//! The notification service's own settings, from `NOTIFICATION_*` variables (all optional).

use serde::Deserialize;

/// Tunables of the notification service.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationConfig {
    /// Largest request body, including bulk deliveries (`NOTIFICATION_MAX_BODY_BYTES`, default 8 MiB).
    #[serde(default = "max_body_bytes")]
    pub max_body_bytes: usize,
    /// Database pool size (`NOTIFICATION_DB_MAX_CONNECTIONS`, default 10).
    #[serde(default = "db_max_connections")]
    pub db_max_connections: u32,
    /// Secret holding the database URL under key `url` (`NOTIFICATION_DB_SECRET`).
    #[serde(default = "db_secret")]
    pub db_secret: String,
}

fn max_body_bytes() -> usize {
    8 * 1024 * 1024
}
fn db_max_connections() -> u32 {
    10
}
fn db_secret() -> String {
    "notification-db".to_owned()
}
