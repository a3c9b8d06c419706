//! Snapshots of every event shape the todo service publishes: the CloudEvent
//! Dapr carries, with the envelope of architecture §3 as its data. A change to
//! these is a change of the contract every consumer reads.

use chrono::{DateTime, Utc};
use todo_core::envelope::{EventEnvelope, EventType};
use todo_service::domain::{Recurrence, Task, TaskFields, TaskStatus};
use todo_service::view::TaskView;
use uuid::Uuid;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn task(status: TaskStatus, version: i64) -> Task {
    Task {
        id: Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap(),
        user_id: "alice".into(),
        fields: TaskFields {
            title: "Pay rent".into(),
            description: Some("Transfer before the 1st".into()),
            status,
            due_date: Some(at("2026-03-31T09:00:00Z")),
            reminder_time: Some(at("2026-03-30T18:00:00Z")),
            is_recurring: true,
            recurrence_schedule: Some(Recurrence::Monthly),
            timezone: "Europe/Berlin".into(),
            parent_task_id: None,
        },
        created_at: at("2026-03-01T08:30:00.123Z"),
        updated_at: at("2026-03-02T10:00:00.456Z"),
        version,
    }
}

fn cloud_event(event_type: EventType, task: &Task) -> serde_json::Value {
    let mut envelope = EventEnvelope::new(
        event_type,
        at("2026-03-02T10:00:00.456789Z"),
        task.id,
        &task.user_id,
        TaskView::from(task).to_value(),
    );
    envelope.event_id = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
    serde_json::to_value(envelope.to_cloud_event("todo-service")).unwrap()
}

fn snapshot(name: &str, value: serde_json::Value) {
    insta::with_settings!({ snapshot_path => "../../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, value);
    });
}

#[test]
fn task_created_event() {
    snapshot(
        "task-created",
        cloud_event(EventType::TaskCreated, &task(TaskStatus::Pending, 1)),
    );
}

#[test]
fn task_updated_event() {
    snapshot(
        "task-updated",
        cloud_event(EventType::TaskUpdated, &task(TaskStatus::InProgress, 2)),
    );
}

#[test]
fn task_completed_event() {
    snapshot(
        "task-completed",
        cloud_event(EventType::TaskCompleted, &task(TaskStatus::Complete, 3)),
    );
}

#[test]
fn task_deleted_event_carries_the_last_snapshot() {
    snapshot(
        "task-deleted",
        cloud_event(EventType::TaskDeleted, &task(TaskStatus::Complete, 3)),
    );
}
