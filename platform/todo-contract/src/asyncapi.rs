//! The AsyncAPI 3.0 document of the event contract, generated from its types.
//!
//! [`document`] has one channel per [`Topic`] (address = topic name), one
//! message per [`EventType`] (the CloudEvent wrapping the envelope of its
//! payload, with an example), a `send` operation per producing app and topic
//! ([`PRODUCERS`]) and a `receive` operation per consuming app and topic
//! ([`CONSUMERS`]). The payload types' schemas are schemars' (draft 7, as
//! serialized) in `components/schemas`; the envelope and CloudEvent schemas are
//! written out here because those types do not derive `JsonSchema`, and the
//! crate's tests check real events against them.
//!
//! `cargo xtask openapi` writes it to `openapi/asyncapi.json`.

use schemars::{Schema, SchemaGenerator, generate::SchemaSettings};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::dead_letter::{DEAD_LETTER_TYPE, DeadLetterNotice};
use crate::envelope::{CloudEvent, EventEnvelope, EventType, PUBSUB_NAME, SCHEMA_VERSION, Topic};
use crate::reminder::{self, Channel, NotificationDelivered, NotificationType, Reminder};
use crate::task::{Frequency, TaskSnapshot, TaskStatus};
use crate::time::Timestamp;

/// The AsyncAPI version the document follows.
pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// Version of the Kafka bindings used.
const KAFKA_BINDINGS: &str = "0.5.0";
/// The id of the one server: the broker `cargo xtask up` starts.
const SERVER: &str = "local";
const LOCAL_BROKER: &str = "127.0.0.1:9092";

/// Who publishes: app id, topic, and the event types it publishes there.
pub const PRODUCERS: [(&str, Topic, &[EventType]); 4] = [
    ("todo-service", Topic::TaskEvents, &EventType::TASK),
    ("todo-service", Topic::TaskUpdates, &EventType::TASK),
    (
        "recurring-task-service",
        Topic::Reminders,
        &[EventType::ReminderFired],
    ),
    (
        "notification-service",
        Topic::TaskUpdates,
        &[EventType::NotificationDelivered],
    ),
];

/// Who subscribes: app id (also its Kafka consumer group) and topic.
pub const CONSUMERS: [(&str, Topic); 4] = [
    ("audit-service", Topic::TaskEvents),
    ("recurring-task-service", Topic::TaskEvents),
    ("websocket-service", Topic::TaskUpdates),
    ("notification-service", Topic::Reminders),
];

/// The AsyncAPI 3.0.0 document of every topic, message and producer/consumer.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .for_serialize()
        .into_generator();
    let mut messages: Map<String, Value> = EventType::ALL
        .into_iter()
        .map(|t| (t.as_str().to_owned(), message(&mut generator, t)))
        .collect();
    messages.insert(
        DEAD_LETTER_TYPE.to_owned(),
        dead_letter::message(&mut generator),
    );
    let schemas = generator.take_definitions(true);
    let mut channels: Map<String, Value> = Topic::ALL
        .into_iter()
        .map(|topic| (topic.name().to_owned(), channel(topic)))
        .collect();
    for topic in Topic::ALL {
        channels.insert(
            topic.dead_letter_topic().to_owned(),
            dead_letter::channel(topic),
        );
    }
    let mut operations = Map::new();
    for (app, topic, types) in PRODUCERS {
        let refs: Vec<Value> = types.iter().map(|t| message_ref(topic, *t)).collect();
        operations.insert(
            format!("{app}.send.{topic}"),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{topic}") },
                "title": format!("{app} publishes to {topic}"),
                "summary": format!("Published by {app} through Dapr (component `{PUBSUB_NAME}`), keyed by task id."),
                "messages": refs,
            }),
        );
    }
    for (app, topic) in CONSUMERS {
        let refs: Vec<Value> = event_types_on(topic)
            .map(|t| message_ref(topic, t))
            .collect();
        operations.insert(
            format!("{app}.receive.{topic}"),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{topic}") },
                "title": format!("{app} consumes {topic}"),
                "summary": format!("Read by {app} with its own consumer group, `{app}`."),
                "messages": refs,
                "bindings": { "kafka": {
                    "groupId": { "type": "string", "const": app },
                    "bindingVersion": KAFKA_BINDINGS,
                } },
            }),
        );
    }
    for (app, topic) in CONSUMERS {
        let dlq = topic.dead_letter_topic();
        operations.insert(
            format!("{app}.send.{dlq}"),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{dlq}") },
                "title": format!("{app} announces its dead letters of {topic}"),
                "summary": format!("Published by {app} through Dapr for each event of {topic} it keeps as a dead letter."),
                "messages": [{ "$ref": format!("#/channels/{dlq}/messages/{DEAD_LETTER_TYPE}") }],
            }),
        );
    }
    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Todo platform events",
            "version": SCHEMA_VERSION,
            "description": description(),
        },
        "defaultContentType": CloudEvent::CONTENT_TYPE,
        "servers": { SERVER: {
            "host": LOCAL_BROKER,
            "protocol": "kafka",
            "description": "The local single-node Kafka broker of `cargo xtask up`.",
        } },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
        },
    })
}

fn description() -> String {
    format!(
        "The events the Todo platform's services exchange through Dapr pub/sub \
(component `{PUBSUB_NAME}`) over Kafka.

**Envelope.** Every event is an envelope of `event_id`, `event_type`, \
`schema_version`, `timestamp`, `task_id`, `user_id` and a `payload` whose type \
`event_type` names.

**CloudEvents.** The envelope is the `data` of a CloudEvents 1.0 structured-mode \
event (`{ct}`): `id` = `event_id`, `source` = the producing app id, `type` = \
`event_type`, `subject` = the task id, `time` = `timestamp`. Dapr delivers it as \
published, adding attributes of its own (such as `topic`, `pubsubname`, `traceparent`).

**Duplicates.** Delivery is at least once: consumers deduplicate on `event_id`. \
The ids of `reminder-fired` and `notification-delivered` events are derived from \
the reminder occurrence, so a repeated firing or delivery has the same id.

**Ordering.** The Kafka record key is the task id, so the events of one task stay \
in one partition, in the order they were published; there is no order across tasks.

**Schema versions.** This is schema version `{SCHEMA_VERSION}`. A consumer \
keeps an event whose `schema_version` it does not know as a dead letter and \
moves on: it is never applied half-understood.

**Dead letters.** An event a consumer can never apply (malformed, of an unknown \
schema version, refused by its rules) is kept in the consumer's `dead_letter` \
table with the reason, listed and redriven by operators \
(`/api/v1/dead-letters` on that service), and announced on the topic's \
dead-letter topic `<topic>-dlq` as a `dead-letter` CloudEvent; the partition \
moves on. A failure that may pass (the database or the sidecar down) is \
retried, never dead-lettered.

**Timestamps** are RFC 3339 in UTC with exactly three fractional digits and `Z`, \
e.g. `2026-03-31T09:00:00.000Z`.",
        ct = CloudEvent::CONTENT_TYPE,
    )
}

/// The event types some app publishes on `topic`, in [`EventType::ALL`] order.
fn event_types_on(topic: Topic) -> impl Iterator<Item = EventType> {
    EventType::ALL.into_iter().filter(move |t| {
        PRODUCERS
            .iter()
            .any(|(_, to, types)| *to == topic && types.contains(t))
    })
}

/// The apps that publish `t`.
fn producers_of(t: EventType) -> Vec<&'static str> {
    let mut apps: Vec<&str> = Vec::new();
    for (app, _, types) in PRODUCERS {
        if types.contains(&t) && !apps.contains(&app) {
            apps.push(app);
        }
    }
    apps
}

fn message_ref(topic: Topic, t: EventType) -> Value {
    json!({ "$ref": format!("#/channels/{topic}/messages/{t}") })
}

fn channel(topic: Topic) -> Value {
    let messages: Map<String, Value> = event_types_on(topic)
        .map(|t| {
            (
                t.as_str().to_owned(),
                json!({ "$ref": format!("#/components/messages/{t}") }),
            )
        })
        .collect();
    let list = |apps: Vec<&str>| apps.join(", ");
    let producers = list(
        PRODUCERS
            .iter()
            .filter(|(_, to, _)| *to == topic)
            .map(|(app, _, _)| *app)
            .collect(),
    );
    let consumers = list(
        CONSUMERS
            .iter()
            .filter(|(_, from)| *from == topic)
            .map(|(app, _)| *app)
            .collect(),
    );
    json!({
        "address": topic.name(),
        "description": format!(
            "{} Published by {producers}; consumed by {consumers}.",
            topic_description(topic),
        ),
        "messages": messages,
    })
}

/// The doc comment of the [`Topic`] variant, from its schema.
fn topic_description(topic: Topic) -> String {
    let schema = schemars::schema_for!(Topic);
    schema
        .get("oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("const").and_then(Value::as_str) == Some(topic.name()))
        .and_then(|v| v.get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn message(generator: &mut SchemaGenerator, t: EventType) -> Value {
    let example = example(t);
    let (title, summary) = match t {
        EventType::TaskCreated => (
            "Task created",
            "A task was created; the payload is the new task.",
        ),
        EventType::TaskUpdated => (
            "Task updated",
            "A task changed; the payload is the task after the change.",
        ),
        EventType::TaskCompleted => (
            "Task completed",
            "A task was completed; the payload is the task after the change.",
        ),
        EventType::TaskDeleted => (
            "Task deleted",
            "A task was deleted; the payload is the task as it was before.",
        ),
        EventType::ReminderFired => (
            "Reminder fired",
            "A task's reminder came due; the payload is the reminder.",
        ),
        EventType::NotificationDelivered => (
            "Notification delivered",
            "A reminder reached its user's live clients; the payload is the notification.",
        ),
    };
    json!({
        "name": t.as_str(),
        "title": title,
        "summary": summary,
        "description": format!("Published by {}.", producers_of(t).join(", ")),
        "contentType": CloudEvent::CONTENT_TYPE,
        "payload": cloud_event_schema(generator, t, &example),
        "bindings": { "kafka": {
            "key": {
                "type": "string",
                "format": "uuid",
                "description": "The task id: the events of one task share a partition.",
            },
            "bindingVersion": KAFKA_BINDINGS,
        } },
        "examples": [{ "name": t.as_str(), "summary": title, "payload": example }],
    })
}

/// The CloudEvent of event type `t`; `example` (a serialized one) supplies the
/// constant attributes `specversion` and `datacontenttype`.
fn cloud_event_schema(generator: &mut SchemaGenerator, t: EventType, example: &Value) -> Value {
    json!({
        "type": "object",
        "description": "A CloudEvents 1.0 event in structured mode; `data` is the envelope.",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"],
        "properties": {
            "specversion": { "const": example["specversion"] },
            "id": described(generator.subschema_for::<Uuid>(), "The envelope's `event_id`."),
            "source": {
                "type": "string",
                "enum": producers_of(t),
                "description": "The producing app id.",
            },
            "type": { "const": t, "description": "The envelope's `event_type`." },
            "subject": described(generator.subschema_for::<Uuid>(), "The task id."),
            "time": described(generator.subschema_for::<Timestamp>(), "The envelope's `timestamp`."),
            "datacontenttype": { "const": example["datacontenttype"] },
            "data": envelope_schema(generator, t),
        },
    })
}

fn envelope_schema(generator: &mut SchemaGenerator, t: EventType) -> Value {
    let payload = match t {
        EventType::TaskCreated
        | EventType::TaskUpdated
        | EventType::TaskCompleted
        | EventType::TaskDeleted => generator.subschema_for::<TaskSnapshot>(),
        EventType::ReminderFired => generator.subschema_for::<Reminder>(),
        EventType::NotificationDelivered => generator.subschema_for::<NotificationDelivered>(),
    };
    json!({
        "type": "object",
        "description": format!("The envelope, schema version {SCHEMA_VERSION}."),
        "required": ["event_id", "event_type", "schema_version", "timestamp", "task_id", "user_id", "payload"],
        "properties": {
            "event_id": described(
                generator.subschema_for::<Uuid>(),
                "Unique per event; consumers deduplicate on it.",
            ),
            "event_type": { "const": t, "description": "What happened; names the type of `payload`." },
            "schema_version": {
                "const": SCHEMA_VERSION,
                "description": "A consumer keeps an event of a version it does not know as a dead letter (listed and redriven by operators at /api/v1/dead-letters) and moves on; it is never applied half-understood.",
            },
            "timestamp": described(generator.subschema_for::<Timestamp>(), "When it happened."),
            "task_id": described(generator.subschema_for::<Uuid>(), "The task (and the Kafka record key)."),
            "user_id": described(generator.subschema_for::<String>(), "Owner of the task."),
            "payload": payload,
        },
    })
}

/// `schema` with `text` in front of its description.
fn described(mut schema: Schema, text: &str) -> Value {
    let text = match schema.get("description").and_then(Value::as_str) {
        Some(own) => format!("{text} {own}"),
        None => text.to_owned(),
    };
    schema.insert("description".to_owned(), text.into());
    schema.to_value()
}

/// An example event of type `t`, as its (first) producer publishes it.
fn example(t: EventType) -> Value {
    let at = |s: &str| Timestamp::parse(s).expect("a valid example time");
    let task_id = Uuid::from_u128(0x0195_f3a1_7c40_7b2e_9d31_4e5f_6a7b_8c9d);
    let due = at("2026-03-31T09:00:00.000Z");
    let remind_at = at("2026-03-31T08:00:00.000Z");
    let reminder = Reminder {
        task_id,
        user_id: "alice".into(),
        title: "Pay rent".into(),
        due_date: Some(due),
        remind_at,
    };
    let envelope = match t {
        EventType::ReminderFired => envelope(t, at("2026-03-31T08:00:00.012Z"), task_id, &reminder)
            .with_event_id(reminder.event_id()),
        EventType::NotificationDelivered => {
            let id = reminder::notification_id(reminder.event_id(), Channel::InApp);
            let delivered = NotificationDelivered {
                notification_id: id,
                notification_type: NotificationType::Reminder,
                channel: Channel::InApp,
                title: reminder.title.clone(),
                due_date: reminder.due_date,
                remind_at,
            };
            envelope(t, at("2026-03-31T08:00:00.040Z"), task_id, &delivered)
                .with_event_id(reminder::delivered_event_id(id))
        }
        EventType::TaskCreated
        | EventType::TaskUpdated
        | EventType::TaskCompleted
        | EventType::TaskDeleted => {
            let step = EventType::TASK
                .iter()
                .position(|x| *x == t)
                .unwrap_or_default();
            let status = match t {
                EventType::TaskCreated => TaskStatus::Pending,
                EventType::TaskUpdated => TaskStatus::InProgress,
                _ => TaskStatus::Complete,
            };
            let created = at("2026-03-02T10:00:00.456Z");
            let updated =
                Timestamp::new(created.get() + chrono::Duration::minutes(step as i64 * 5));
            let task = TaskSnapshot {
                id: task_id,
                title: "Pay rent".into(),
                description: Some("Transfer to the landlord".into()),
                status,
                due_date: Some(due),
                reminder_time: Some(remind_at),
                is_recurring: true,
                recurrence_schedule: Some(Frequency::Monthly),
                timezone: "Europe/Berlin".into(),
                parent_task_id: None,
                created_at: created,
                updated_at: updated,
                version: step as i64 + 1,
            };
            let event_id =
                Uuid::from_u128(0x0195_f3a1_7c40_7000_8000_0000_0000_0000 | (step as u128 + 1));
            envelope(t, updated, task_id, &task).with_event_id(event_id)
        }
    };
    let source = producers_of(t).first().copied().unwrap_or_default();
    serde_json::to_value(envelope.to_cloud_event(source)).expect("an example event serializes")
}

fn envelope(
    t: EventType,
    at: Timestamp,
    task_id: Uuid,
    payload: &impl Serialize,
) -> EventEnvelope<Value> {
    let payload = serde_json::to_value(payload).expect("a payload serializes");
    EventEnvelope::new(t, at, task_id, "alice", payload)
}

/// The dead-letter topics: their channels and their one message.
mod dead_letter {
    use super::*;

    pub(super) fn channel(topic: Topic) -> Value {
        let consumers: Vec<&str> = CONSUMERS
            .iter()
            .filter(|(_, from)| *from == topic)
            .map(|(app, _)| *app)
            .collect();
        json!({
            "address": topic.dead_letter_topic(),
            "description": format!(
                "The events of {topic} a consumer kept as dead letters, announced by {}.",
                consumers.join(", "),
            ),
            "messages": {
                DEAD_LETTER_TYPE: { "$ref": format!("#/components/messages/{DEAD_LETTER_TYPE}") },
            },
        })
    }

    pub(super) fn message(generator: &mut SchemaGenerator) -> Value {
        let example = example();
        let consumers: Vec<&str> = {
            let mut apps: Vec<&str> = CONSUMERS.iter().map(|(app, _)| *app).collect();
            apps.dedup();
            apps
        };
        json!({
            "name": DEAD_LETTER_TYPE,
            "title": "Dead letter",
            "summary": "A consumer could not apply an event and kept it as a dead letter; the data says which, why and how often it failed.",
            "description": "Published at least once per failed attempt; a repeat has the same `id`.",
            "contentType": CloudEvent::CONTENT_TYPE,
            "payload": {
                "type": "object",
                "description": "A CloudEvents 1.0 event in structured mode; `data` is the notice.",
                "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"],
                "properties": {
                    "specversion": { "const": "1.0" },
                    "id": { "type": "string", "description": "`dead-letter:<consumer>:<dead letter id>:<attempts>`." },
                    "source": { "type": "string", "enum": consumers, "description": "The consumer that kept it." },
                    "type": { "const": DEAD_LETTER_TYPE },
                    "subject": { "type": "string", "description": "The task id, or the event key of an event without a readable envelope." },
                    "time": described(generator.subschema_for::<Timestamp>(), "When it last failed."),
                    "datacontenttype": { "const": "application/json" },
                    "data": generator.subschema_for::<DeadLetterNotice>().to_value(),
                },
            },
            "bindings": { "kafka": {
                "key": {
                    "type": "string",
                    "description": "The task id (the event key without one).",
                },
                "bindingVersion": KAFKA_BINDINGS,
            } },
            "examples": [{ "name": DEAD_LETTER_TYPE, "summary": "An unknown schema version", "payload": example }],
        })
    }

    /// A dead letter of a `task-created` event of a schema version the
    /// audit service does not know.
    pub(super) fn example() -> Value {
        let event = super::example(EventType::TaskCreated);
        let mut future = event.clone();
        future["data"]["schema_version"] = json!("2.0");
        let at = Timestamp::parse("2026-03-02T10:00:01.000Z").expect("a valid example time");
        DeadLetterNotice {
            dead_letter_id: 7,
            topic: Topic::TaskEvents,
            consumer: "audit-service".into(),
            reason: format!(
                "schema version 2.0 is unknown to this consumer (it reads {SCHEMA_VERSION})"
            ),
            attempts: 1,
            event_key: event["id"].as_str().unwrap_or_default().to_owned(),
            task_id: event["subject"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok()),
            first_failed_at: at,
            failed_at: at,
            event: future,
        }
        .to_cloud_event()
    }
}
