//! Snapshots of every event shape on the platform's topics, exactly as
//! producers build them: the CloudEvent Dapr carries, with the envelope as its
//! data and the typed payload inside. A change here is a change of the
//! contract every consumer reads (and of `openapi/asyncapi.json`).

use todo_contract::{
    Channel, EventEnvelope, EventType, Frequency, Reminder, TaskSnapshot, TaskStatus, Timestamp,
    reminder::notification_id,
};
use uuid::Uuid;

fn at(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn task(status: TaskStatus, version: i64) -> TaskSnapshot {
    TaskSnapshot {
        id: Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap(),
        title: "Pay rent".into(),
        description: Some("Transfer before the 1st".into()),
        status,
        due_date: Some(at("2026-03-31T09:00:00Z")),
        reminder_time: Some(at("2026-03-30T18:00:00Z")),
        is_recurring: true,
        recurrence_schedule: Some(Frequency::Monthly),
        timezone: "Europe/Berlin".into(),
        parent_task_id: None,
        created_at: at("2026-03-01T08:30:00.123Z"),
        updated_at: at("2026-03-02T10:00:00.456Z"),
        version,
    }
}

fn task_event(event_type: EventType, task: TaskSnapshot) -> serde_json::Value {
    let envelope = EventEnvelope::new(
        event_type,
        at("2026-03-02T10:00:00.456789Z"),
        task.id,
        "alice",
        task,
    )
    .with_event_id(Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap());
    serde_json::to_value(envelope.to_cloud_event("todo-service")).unwrap()
}

fn reminder() -> Reminder {
    Reminder {
        task_id: Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap(),
        user_id: "alice".into(),
        title: "Pay rent".into(),
        due_date: Some(at("2026-03-31T09:00:00Z")),
        remind_at: at("2026-03-30T18:00:00Z"),
    }
}

fn snapshot(name: &str, value: serde_json::Value) {
    insta::with_settings!({ snapshot_path => "../../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_json_snapshot!(name, value);
    });
}

#[test]
fn task_created_event() {
    snapshot(
        "task-created",
        task_event(EventType::TaskCreated, task(TaskStatus::Pending, 1)),
    );
}

#[test]
fn task_updated_event() {
    snapshot(
        "task-updated",
        task_event(EventType::TaskUpdated, task(TaskStatus::InProgress, 2)),
    );
}

#[test]
fn task_completed_event() {
    snapshot(
        "task-completed",
        task_event(EventType::TaskCompleted, task(TaskStatus::Complete, 3)),
    );
}

#[test]
fn task_deleted_event_carries_the_last_snapshot() {
    snapshot(
        "task-deleted",
        task_event(EventType::TaskDeleted, task(TaskStatus::Complete, 3)),
    );
}

#[test]
fn reminder_fired_event() {
    let r = reminder();
    let event = r.fired(at("2026-03-30T18:00:00.012345Z"));
    snapshot(
        "reminder-fired",
        serde_json::to_value(event.to_cloud_event("recurring-task-service")).unwrap(),
    );
}

#[test]
fn notification_delivered_event() {
    let r = reminder();
    let id = notification_id(r.event_id(), Channel::InApp);
    let event = r.delivered(id, Channel::InApp, at("2026-03-30T18:00:00.045678Z"));
    snapshot(
        "notification-delivered",
        serde_json::to_value(event.to_cloud_event("notification-service")).unwrap(),
    );
}

#[test]
fn every_snapshot_reads_back_as_its_typed_payload() {
    let events = [
        task_event(EventType::TaskCreated, task(TaskStatus::Pending, 1)),
        serde_json::to_value(reminder().fired(Timestamp::now()).to_cloud_event("r")).unwrap(),
        serde_json::to_value(
            reminder()
                .delivered(Uuid::nil(), Channel::InApp, Timestamp::now())
                .to_cloud_event("n"),
        )
        .unwrap(),
    ];
    for ce in events {
        let envelope: EventEnvelope = serde_json::from_value(ce["data"].clone()).unwrap();
        envelope.typed().unwrap();
    }
}

#[test]
fn dead_letter_notice() {
    let mut event = task_event(EventType::TaskCreated, task(TaskStatus::Pending, 1));
    event["data"]["schema_version"] = serde_json::json!("2.0");
    let notice = todo_contract::dead_letter::DeadLetterNotice {
        dead_letter_id: 42,
        topic: todo_contract::Topic::TaskEvents,
        consumer: "audit-service".into(),
        reason: "schema version 2.0 is unknown to this consumer (it reads 1.0)".into(),
        attempts: 2,
        event_key: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
        task_id: Some(Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap()),
        first_failed_at: at("2026-03-02T10:00:01.000Z"),
        failed_at: at("2026-03-02T10:05:00.250Z"),
        event,
    };
    snapshot("dead-letter", notice.to_cloud_event());
}
