//! The notification service's settings: only the common ones of
//! `todo_core::bootstrap::Common`, from `NOTIFICATION_*` variables
//! (`NOTIFICATION_MAX_BODY_BYTES`, `NOTIFICATION_DB_MAX_CONNECTIONS`,
//! `NOTIFICATION_DB_SECRET`, `NOTIFICATION_SIDECAR_TIMEOUT_MS`).

/// The notification service has no settings of its own.
pub type NotificationConfig = todo_core::bootstrap::NoConfig;
