//! Made-up data in the services' exact shapes, for the console's tests
//! (unit and snapshot) and the `cargo xtask bench console` feed. Fixed
//! ids and times, so what is drawn from them never changes.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::model::{
    AuditRecord, Check, ConsumerCounters, DeadLetter, DeadLetterPage, FailedIntent,
    FailedIntentPage, Notification, Readiness, Reminder, Schedule,
};

/// The fixtures' "now": 2026-03-02 10:00:00 UTC.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The `n`th fixture id (stable, readable: `00000000-0000-4000-8000-0000000000nn`).
pub fn id(n: u64) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | u128::from(n))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A task snapshot as the Todo API and the events carry it.
pub fn task(task: u64, title: &str, status: &str, version: i64) -> Value {
    json!({
        "id": id(task), "title": title, "description": null, "status": status,
        "due_date": stamp(now() + TimeDelta::hours(2)), "reminder_time": null,
        "is_recurring": false, "recurrence_schedule": null, "timezone": "Europe/Berlin",
        "parent_task_id": null, "created_at": stamp(now() - TimeDelta::minutes(5)),
        "updated_at": stamp(now() - TimeDelta::minutes(5) + TimeDelta::seconds(version)),
        "version": version,
    })
}

/// An update of the operator stream, as the WebSocket service sends it.
pub fn update_text(
    seq: i64,
    event_type: &str,
    user: &str,
    task_n: u64,
    at: DateTime<Utc>,
    payload: &Value,
) -> String {
    json!({
        "event_id": id(100_000 + seq as u64), "event_type": event_type, "schema_version": "1.0",
        "timestamp": stamp(at), "task_id": id(task_n), "user_id": user,
        "payload": payload, "seq": seq,
    })
    .to_string()
}

/// A `task-created` update of task `seq % 50` of user `user-<seq % 7>` at `at`.
pub fn created_text(seq: i64, at: DateTime<Utc>) -> String {
    let n = (seq % 50) as u64 + 1;
    update_text(
        seq,
        "task-created",
        &format!("user-{}", seq % 7),
        n,
        at,
        &task(n, &format!("Task number {n}"), "pending", 1),
    )
}

/// A task's trail: created, renamed, completed.
pub fn audit_trail(task_n: u64) -> Vec<AuditRecord> {
    let steps = [
        ("task-created", task(task_n, "Buy milk", "pending", 1)),
        ("task-updated", task(task_n, "Buy oat milk", "pending", 2)),
        (
            "task-completed",
            task(task_n, "Buy oat milk", "completed", 3),
        ),
    ];
    steps
        .into_iter()
        .enumerate()
        .map(|(i, (event_type, payload))| {
            let at = now() - TimeDelta::minutes(5) + TimeDelta::seconds(i as i64 * 30);
            AuditRecord {
                id: id(200 + i as u64),
                event_id: id(300 + i as u64),
                event_type: event_type.to_owned(),
                task_id: id(task_n),
                user_id: "alice".to_owned(),
                timestamp: at,
                recorded_at: at + TimeDelta::milliseconds(12),
                payload,
            }
        })
        .collect()
}

pub fn notification(n: u64, status: &str, user: &str, title: &str) -> Notification {
    let remind_at = now() - TimeDelta::minutes(n as i64);
    Notification {
        id: id(400 + n),
        task_id: id(n),
        user_id: user.to_owned(),
        title: title.to_owned(),
        status: status.to_owned(),
        attempts: if status == "failed" { 7 } else { 1 },
        last_error: (status == "failed").then(|| {
            "publishing notification-delivered to task-updates: kafka: client has run out of available brokers to talk to".to_owned()
        }),
        remind_at,
        created_at: remind_at,
        sent_at: (status == "sent").then_some(remind_at + TimeDelta::milliseconds(40)),
        updated_at: remind_at + TimeDelta::seconds(30),
    }
}

pub fn notifications() -> Vec<Notification> {
    vec![
        notification(1, "failed", "alice", "Call the bank"),
        notification(2, "sent", "bob", "Stand-up"),
        notification(3, "pending", "alice", "Water the plants"),
    ]
}

pub fn schedules() -> Vec<Schedule> {
    vec![
        Schedule {
            id: id(10),
            user_id: "alice".to_owned(),
            title: "Stand-up".to_owned(),
            frequency: "daily".to_owned(),
            timezone: "Europe/Berlin".to_owned(),
            next_due_date: Some(now() + TimeDelta::hours(23)),
            current_task_id: Some(id(12)),
            instances: 3,
            is_active: true,
            ended_reason: None,
        },
        Schedule {
            id: id(20),
            user_id: "bob".to_owned(),
            title: "Rent".to_owned(),
            frequency: "monthly".to_owned(),
            timezone: "America/New_York".to_owned(),
            next_due_date: Some(now() + TimeDelta::days(20)),
            current_task_id: Some(id(21)),
            instances: 2,
            is_active: false,
            ended_reason: Some("deleted".to_owned()),
        },
    ]
}

pub fn reminders() -> Vec<Reminder> {
    vec![
        Reminder {
            task_id: id(12),
            user_id: "alice".to_owned(),
            title: "Stand-up".to_owned(),
            status: "scheduled".to_owned(),
            remind_at: now() + TimeDelta::seconds(252),
            fired_at: None,
        },
        Reminder {
            task_id: id(11),
            user_id: "alice".to_owned(),
            title: "Stand-up".to_owned(),
            status: "fired".to_owned(),
            remind_at: now() - TimeDelta::hours(23),
            fired_at: Some(now() - TimeDelta::hours(23)),
        },
        Reminder {
            task_id: id(21),
            user_id: "bob".to_owned(),
            title: "Rent".to_owned(),
            status: "cancelled".to_owned(),
            remind_at: now() + TimeDelta::days(19),
            fired_at: None,
        },
    ]
}

pub fn ready() -> Readiness {
    Readiness {
        status: "ready".to_owned(),
        checks: vec![
            Check {
                name: "database".to_owned(),
                status: "ok".to_owned(),
                detail: None,
            },
            Check {
                name: "sidecar".to_owned(),
                status: "ok".to_owned(),
                detail: None,
            },
        ],
    }
}

pub fn counters(consumed: u64) -> ConsumerCounters {
    ConsumerCounters {
        consumed,
        duplicates: consumed / 50,
        dead_letters: 0,
    }
}

/// Dead letter `id` of `consumer`'s `topic`, about task `task_n` (if any),
/// last failed `minutes` ago after `attempts` failed attempts.
pub fn dead_letter(
    consumer: &str,
    id: i64,
    topic: &str,
    task_n: Option<u64>,
    minutes: i64,
    attempts: i64,
    reason: &str,
) -> DeadLetter {
    let event_id = id_at(500, id);
    DeadLetter {
        id,
        topic: topic.to_owned(),
        event_key: event_id.to_string(),
        task_id: task_n.map(self::id),
        consumer: consumer.to_owned(),
        reason: reason.to_owned(),
        attempts,
        event: json!({
            "specversion": "1.0", "type": "com.dapr.event.sent", "source": "todo-service",
            "id": event_id, "topic": topic, "datacontenttype": "application/json",
            "data": { "event_id": event_id, "event_type": "task-created", "schema_version": "1.0",
                      "task_id": task_n.map(self::id), "user_id": "alice", "payload": {} },
        }),
        first_failed_at: now() - TimeDelta::minutes(minutes + 30),
        failed_at: now() - TimeDelta::minutes(minutes),
        redriven_at: None,
    }
}

fn id_at(base: u64, n: i64) -> Uuid {
    id(base + n.unsigned_abs())
}

/// One service's page of open dead letters.
pub fn dead_letter_page(letters: Vec<DeadLetter>) -> DeadLetterPage {
    DeadLetterPage {
        total: letters.len() as i64,
        dead_letters: letters,
    }
}

/// Open dead letters of each consuming service, as the four answer them.
pub fn dead_letters(consumer: &str) -> DeadLetterPage {
    let constraint = "database: error returned from database: new row for relation \"audit_record\" \
        violates check constraint \"no_empty_title\"";
    let letters = match consumer {
        "audit-service" => vec![
            dead_letter(consumer, 17, "task-events", Some(5), 4, 3, constraint),
            dead_letter(
                consumer,
                12,
                "task-events",
                None,
                180,
                1,
                "malformed event: data is not JSON: expected value at line 1 column 1",
            ),
        ],
        "websocket-service" => vec![dead_letter(
            consumer,
            3,
            "task-updates",
            Some(7),
            2,
            1,
            "event of schema version 99.0, which this consumer does not know (it reads 1.x)",
        )],
        "recurring-task-service" => vec![dead_letter(
            consumer,
            8,
            "reminders",
            Some(12),
            61,
            2,
            "database: no row in series for task 00000000-0000-4000-8000-00000000000c",
        )],
        _ => Vec::new(),
    };
    dead_letter_page(letters)
}

pub fn failed_intent(
    key: &str,
    kind: &str,
    task_n: u64,
    minutes: i64,
    reason: &str,
) -> FailedIntent {
    FailedIntent {
        key: key.to_owned(),
        kind: kind.to_owned(),
        task_id: Some(id(task_n)),
        payload: json!({ "task_id": id(task_n) }),
        attempts: 8,
        reason: reason.to_owned(),
        failed_at: now() - TimeDelta::minutes(minutes),
    }
}

/// Failed intents of the two services that dispatch them.
pub fn failed_intents(service: &str) -> FailedIntentPage {
    let intents = match service {
        "notification-service" => vec![failed_intent(
            &format!("delivery-{}", id(401)),
            "start_delivery",
            1,
            7,
            "workflow start refused: InvalidArgument: input is not valid JSON",
        )],
        "recurring-task-service" => vec![failed_intent(
            &format!("reminder-{}", id(12)),
            "job",
            12,
            25,
            "scheduler refused the job: OutOfRange: due time is before 1970",
        )],
        _ => Vec::new(),
    };
    FailedIntentPage {
        total: intents.len() as i64,
        intents,
    }
}
