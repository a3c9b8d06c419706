//! The audit service's settings: only the common ones of
//! `todo_core::bootstrap::Common`, from `AUDIT_*` variables
//! (`AUDIT_MAX_BODY_BYTES`, `AUDIT_DB_MAX_CONNECTIONS`, `AUDIT_DB_SECRET`,
//! `AUDIT_SIDECAR_TIMEOUT_MS`).

/// The audit service has no settings of its own.
pub type AuditConfig = todo_core::bootstrap::NoConfig;
