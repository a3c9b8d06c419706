//! The audit service's own settings, from `AUDIT_*` variables (all optional).

use serde::Deserialize;

/// Tunables of the audit service.
#[derive(Debug, Clone, Deserialize)]
pub struct AuditConfig {
    /// Largest request body, including bulk deliveries (`AUDIT_MAX_BODY_BYTES`, default 8 MiB).
    #[serde(default = "max_body_bytes")]
    pub max_body_bytes: usize,
    /// Database pool size (`AUDIT_DB_MAX_CONNECTIONS`, default 10).
    #[serde(default = "db_max_connections")]
    pub db_max_connections: u32,
    /// Secret holding the database URL under key `url` (`AUDIT_DB_SECRET`).
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
    "audit-db".to_owned()
}
