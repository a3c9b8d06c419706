//! A task reminder as it travels: the data of its Dapr job, and the payload of
//! the `reminder-fired` event that job publishes to `reminders`.
//!
//! Ids are derived, never drawn: one reminder occurrence (a task and the
//! instant it reminds of) always has the same event id, and each channel's
//! notification of it the same notification id. A job trigger that Dapr
//! delivers twice, or a redelivered event, therefore names the same thing and
//! every consumer's dedupe catches it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of the platform's derived (UUID v5) ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_3c2a_5b7e_4f0a_9c1d_2e3f_4a5b_6c7d);

/// One reminder of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    pub task_id: Uuid,
    /// The task's owner, who gets the notification.
    pub user_id: String,
    pub title: String,
    pub due_date: Option<DateTime<Utc>>,
    /// When the reminder is due.
    pub remind_at: DateTime<Utc>,
}

impl Reminder {
    /// The name of its Dapr job (one per task: a new time replaces the old).
    pub fn job_name(&self) -> String {
        crate::plan::reminder_job_name(&self.task_id.to_string())
    }

    /// The `event_id` of its `reminder-fired` event: the same for every firing
    /// of this task's reminder at this instant.
    pub fn event_id(&self) -> Uuid {
        derived_id(&format!(
            "reminder-fired:{}:{}",
            self.task_id,
            self.remind_at.timestamp_micros()
        ))
    }
}

/// The id of the notification of reminder event `reminder_event_id` on `channel`.
pub fn notification_id(reminder_event_id: Uuid, channel: &str) -> Uuid {
    derived_id(&format!("notification:{channel}:{reminder_event_id}"))
}

/// The `event_id` of the `notification-delivered` event of a notification.
pub fn delivered_event_id(notification_id: Uuid) -> Uuid {
    derived_id(&format!("notification-delivered:{notification_id}"))
}

fn derived_id(name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reminder(at: &str) -> Reminder {
        Reminder {
            task_id: Uuid::from_u128(7),
            user_id: "alice".into(),
            title: "Pay rent".into(),
            due_date: None,
            remind_at: DateTime::parse_from_rfc3339(at).unwrap().to_utc(),
        }
    }

    #[test]
    fn one_occurrence_has_one_event_id_and_a_new_time_another() {
        let a = reminder("2026-03-01T08:00:00Z");
        let renamed = Reminder {
            title: "Pay the rent".into(),
            ..a.clone()
        };
        assert_eq!(a.event_id(), renamed.event_id());
        assert_ne!(a.event_id(), reminder("2026-03-01T08:00:01Z").event_id());
        assert_eq!(
            a.job_name(),
            "reminder-00000000-0000-0000-0000-000000000007"
        );
    }

    #[test]
    fn notification_ids_differ_per_channel_and_from_the_event() {
        let e = reminder("2026-03-01T08:00:00Z").event_id();
        let in_app = notification_id(e, "in_app");
        assert_eq!(in_app, notification_id(e, "in_app"));
        assert_ne!(in_app, notification_id(e, "email"));
        assert_ne!(in_app, e);
        assert_ne!(delivered_event_id(in_app), in_app);
    }
}
