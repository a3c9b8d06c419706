//! A task reminder as it travels: the data of its Dapr job, the payload of
//! the `reminder-fired` event that job publishes to `reminders`, and the
//! payload of the `notification-delivered` event on `task-updates`.
//!
//! Ids are derived, never drawn: one reminder occurrence (a task and the
//! instant it reminds of) always has the same event id, and each channel's
//! notification of it the same notification id. A job trigger that Dapr
//! delivers twice, or a redelivered event, therefore names the same thing and
//! every consumer's dedupe catches it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{EventEnvelope, EventType};
use crate::time::Timestamp;

/// Namespace of the platform's derived (UUID v5) ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_3c2a_5b7e_4f0a_9c1d_2e3f_4a5b_6c7d);

/// One reminder of one task: the payload of `reminder-fired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reminder {
    pub task_id: Uuid,
    /// The task's owner, who gets the notification.
    pub user_id: String,
    pub title: String,
    pub due_date: Option<Timestamp>,
    /// When the reminder is due.
    pub remind_at: Timestamp,
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
pub enum NotificationType {
    Reminder,
}

impl NotificationType {
    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::Reminder => "reminder",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        (s == "reminder").then_some(NotificationType::Reminder)
    }
}

/// How a notification reaches its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
pub enum Channel {
    /// Pushed to the user's live clients on `task-updates`.
    InApp,
}

impl Channel {
    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "in_app",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        (s == "in_app").then_some(Channel::InApp)
    }
}

/// The payload of `notification-delivered`: a reminder reached its user's
/// live clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationDelivered {
    pub notification_id: Uuid,
    pub notification_type: NotificationType,
    pub channel: Channel,
    pub title: String,
    pub due_date: Option<Timestamp>,
    pub remind_at: Timestamp,
}

impl Reminder {
    /// The name of its Dapr job (one per task: a new time replaces the old).
    pub fn job_name(&self) -> String {
        reminder_job_name(self.task_id)
    }

    /// Its `reminder-fired` event, fired at `now`: the event id is derived
    /// ([`Reminder::event_id`]), so firing twice publishes the same event.
    pub fn fired(&self, now: Timestamp) -> EventEnvelope<&Reminder> {
        EventEnvelope::new(
            EventType::ReminderFired,
            now,
            self.task_id,
            self.user_id.clone(),
            self,
        )
        .with_event_id(self.event_id())
    }

    /// The `notification-delivered` event of its notification
    /// `notification_id` on `channel`, delivered at `now` (event id derived
    /// from the notification).
    pub fn delivered(
        &self,
        notification_id: Uuid,
        channel: Channel,
        now: Timestamp,
    ) -> EventEnvelope<NotificationDelivered> {
        let payload = NotificationDelivered {
            notification_id,
            notification_type: NotificationType::Reminder,
            channel,
            title: self.title.clone(),
            due_date: self.due_date,
            remind_at: self.remind_at,
        };
        EventEnvelope::new(
            EventType::NotificationDelivered,
            now,
            self.task_id,
            self.user_id.clone(),
            payload,
        )
        .with_event_id(delivered_event_id(notification_id))
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

/// The name of a task's reminder job.
pub fn reminder_job_name(task_id: Uuid) -> String {
    format!("reminder-{task_id}")
}

/// The id of the notification of reminder event `reminder_event_id` on `channel`.
pub fn notification_id(reminder_event_id: Uuid, channel: Channel) -> Uuid {
    derived_id(&format!(
        "notification:{}:{reminder_event_id}",
        channel.as_str()
    ))
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
            remind_at: Timestamp::parse(at).unwrap(),
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
    fn notification_ids_are_stable_per_event_and_differ_from_the_event() {
        let e = reminder("2026-03-01T08:00:00Z").event_id();
        let in_app = notification_id(e, Channel::InApp);
        assert_eq!(in_app, notification_id(e, Channel::InApp));
        assert_ne!(in_app, notification_id(Uuid::from_u128(1), Channel::InApp));
        assert_ne!(in_app, e);
        assert_ne!(delivered_event_id(in_app), in_app);
    }
}
