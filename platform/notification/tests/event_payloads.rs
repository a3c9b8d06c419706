//! Snapshot of the `notification-delivered` event the notification service
//! pushes on `task-updates` for the user's live clients.

use chrono::{DateTime, Utc};
use todo_workflows::delivery::IN_APP;
use todo_workflows::reminder::{Reminder, notification_id};
use uuid::Uuid;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[test]
fn notification_delivered_event() {
    let reminder = Reminder {
        task_id: Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap(),
        user_id: "alice".into(),
        title: "Pay rent".into(),
        due_date: Some(at("2026-03-31T09:00:00Z")),
        remind_at: at("2026-03-30T18:00:00Z"),
    };
    let id = notification_id(reminder.event_id(), IN_APP);
    let event = notification_service::delivery::delivered_event(
        id,
        &reminder,
        at("2026-03-30T18:00:00.045678Z"),
    );
    let value = serde_json::to_value(event.to_cloud_event(notification_service::APP_ID)).unwrap();
    insta::with_settings!({ snapshot_path => "../../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!("notification-delivered", value);
    });
}
