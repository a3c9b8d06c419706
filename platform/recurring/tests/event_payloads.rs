//! Snapshot of the `reminder-fired` event the recurring-task service publishes
//! to `reminders`: the CloudEvent Dapr carries, with the envelope as its data.

use chrono::{DateTime, Utc};
use todo_workflows::reminder::Reminder;
use uuid::Uuid;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[test]
fn reminder_fired_event() {
    let reminder = Reminder {
        task_id: Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap(),
        user_id: "alice".into(),
        title: "Pay rent".into(),
        due_date: Some(at("2026-03-31T09:00:00Z")),
        remind_at: at("2026-03-30T18:00:00Z"),
    };
    let event = recurring_task_service::trigger::reminder_fired(
        &reminder,
        at("2026-03-30T18:00:00.012345Z"),
    );
    let value = serde_json::to_value(event.to_cloud_event(recurring_task_service::APP_ID)).unwrap();
    insta::with_settings!({ snapshot_path => "../../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!("reminder-fired", value);
    });
}
