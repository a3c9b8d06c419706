//! The AsyncAPI document `openapi/asyncapi.json`.
//!
//! - Freshness: the committed file must be `asyncapi::document()`, compared as
//!   JSON and then as pretty-printed text (what `cargo xtask openapi` writes).
//!   On a mismatch the failure shows a unified diff (`similar`, as the services'
//!   OpenAPI checks do) and the regeneration command. Not an insta snapshot:
//!   the committed file itself is the thing consumers read, so it is what is
//!   compared, with no second copy.
//! - Schemas: events built from the contract types (and the document's own
//!   examples) validate against their message's payload schema (draft 7, the
//!   AsyncAPI schema format), and not against another event type's; every
//!   property the schemas name is one the events carry, and back.
//! - Validator: the AsyncAPI CLI, `@asyncapi/cli` [`CLI_VERSION`], validates the
//!   committed file. The first run installs it with npm into
//!   `$XDG_CACHE_HOME/todo-platform/asyncapi-cli-<version>` (default
//!   `~/.cache/...`): about 1.5 GB, 1–2 minutes; later runs take ~3 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use todo_contract::asyncapi::{self, CONSUMERS, PRODUCERS};
use todo_contract::dead_letter::DEAD_LETTER_TYPE;
use todo_contract::reminder::{self, Channel, NotificationDelivered, NotificationType, Reminder};
use todo_contract::{
    EventEnvelope, EventType, Frequency, TaskSnapshot, TaskStatus, Timestamp, Topic,
};
use uuid::Uuid;

/// The newest `@asyncapi/cli` whose `engines` accept Node 20 (5.x and 6.x
/// require Node 24).
const CLI_VERSION: &str = "4.1.1";
const REGENERATE: &str = "cargo xtask openapi";

fn committed_path() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    root.join("openapi/asyncapi.json")
}

fn pretty(v: &Value) -> String {
    let mut text = serde_json::to_string_pretty(v).expect("JSON prints");
    text.push('\n');
    text
}

#[test]
fn the_committed_document_is_current() {
    let path = committed_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} unreadable ({e}): run `{REGENERATE}`", path.display()));
    let committed: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): run `{REGENERATE}`", path.display()));
    let current = asyncapi::document();
    if committed != current {
        let diff = similar::TextDiff::from_lines(&pretty(&committed), &pretty(&current))
            .unified_diff()
            .context_radius(3)
            .header("committed", "document()")
            .to_string();
        panic!(
            "{} is stale: run `{REGENERATE}` and commit the result\n{diff}",
            path.display()
        );
    }
    assert!(
        text == pretty(&committed),
        "{} is not pretty JSON with a trailing newline: run `{REGENERATE}`",
        path.display()
    );
}

/// One event of each type, built from the contract types as a producer would,
/// with the optional fields the document's examples fill left empty.
fn events() -> Vec<(EventType, Value)> {
    let at = |s: &str| Timestamp::parse(s).unwrap();
    let task_id = Uuid::from_u128(0x6f96_19ff_8b86_4011_b42d_00c0_4fc9_64ff);
    let reminder = Reminder {
        task_id,
        user_id: "bob".into(),
        title: "Water the plants".into(),
        due_date: None,
        remind_at: at("2026-05-01T07:30:00Z"),
    };
    let wrap = |t: EventType, payload: Value, event_id: Uuid, source: &str| {
        let envelope =
            EventEnvelope::new(t, at("2026-05-01T07:30:00.250Z"), task_id, "bob", payload)
                .with_event_id(event_id);
        serde_json::to_value(envelope.to_cloud_event(source)).unwrap()
    };
    let mut out = Vec::new();
    for (i, t) in EventType::TASK.into_iter().enumerate() {
        let task = TaskSnapshot {
            id: task_id,
            title: "Water the plants".into(),
            description: None,
            status: if t == EventType::TaskCompleted {
                TaskStatus::Complete
            } else {
                TaskStatus::Pending
            },
            due_date: None,
            reminder_time: None,
            is_recurring: false,
            recurrence_schedule: None::<Frequency>,
            timezone: "UTC".into(),
            parent_task_id: Some(Uuid::from_u128(1)),
            created_at: at("2026-05-01T07:00:00Z"),
            updated_at: at("2026-05-01T07:30:00.250Z"),
            version: i as i64 + 1,
        };
        let payload = serde_json::to_value(task).unwrap();
        out.push((t, wrap(t, payload, Uuid::now_v7(), "todo-service")));
    }
    let payload = serde_json::to_value(&reminder).unwrap();
    out.push((
        EventType::ReminderFired,
        wrap(
            EventType::ReminderFired,
            payload,
            reminder.event_id(),
            "recurring-task-service",
        ),
    ));
    let id = reminder::notification_id(reminder.event_id(), Channel::InApp);
    let delivered = NotificationDelivered {
        notification_id: id,
        notification_type: NotificationType::Reminder,
        channel: Channel::InApp,
        title: reminder.title.clone(),
        due_date: None,
        remind_at: reminder.remind_at,
    };
    out.push((
        EventType::NotificationDelivered,
        wrap(
            EventType::NotificationDelivered,
            serde_json::to_value(delivered).unwrap(),
            reminder::delivered_event_id(id),
            "notification-service",
        ),
    ));
    assert_eq!(
        out.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        EventType::ALL
    );
    out
}

/// A draft-7 validator of message `t`'s payload schema, resolving `$ref`s
/// against the whole document.
fn payload_validator(doc: &Value, t: EventType) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$ref"] = json!(format!("#/components/messages/{t}/payload"));
    jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("the payload schema of {t} does not compile: {e}"))
}

fn errors(validator: &jsonschema::Validator, event: &Value) -> Vec<String> {
    validator
        .iter_errors(event)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn events_validate_against_their_message_schema_only() {
    let doc = asyncapi::document();
    let validators: Vec<_> = EventType::ALL
        .map(|t| (t, payload_validator(&doc, t)))
        .to_vec();
    for (t, event) in events() {
        let examples = doc["components"]["messages"][t.as_str()]["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("message {t} has no examples"));
        assert!(!examples.is_empty(), "message {t} has no examples");
        let instances = std::iter::once(&event).chain(examples.iter().map(|e| &e["payload"]));
        for instance in instances {
            for (other, validator) in &validators {
                let errs = errors(validator, instance);
                if *other == t {
                    assert!(
                        errs.is_empty(),
                        "a {t} event fails its schema: {errs:#?}\n{instance:#}"
                    );
                } else {
                    assert!(!errs.is_empty(), "a {t} event passes the schema of {other}");
                }
            }
        }
    }
}

/// The keys of a schema's `properties` (following a `$ref`).
fn property_names<'a>(doc: &'a Value, schema: &'a Value) -> Vec<&'a str> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .expect("a $ref resolves"),
        None => schema,
    };
    let mut names: Vec<&str> = schema["properties"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names
}

fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[test]
fn the_schemas_name_exactly_the_fields_events_carry() {
    let doc = asyncapi::document();
    for (t, event) in events() {
        let ce = &doc["components"]["messages"][t.as_str()]["payload"];
        let envelope = &ce["properties"]["data"];
        let payload = &envelope["properties"]["payload"];
        assert_eq!(
            property_names(&doc, ce),
            keys(&event),
            "{t}: CloudEvent attributes"
        );
        assert_eq!(
            property_names(&doc, envelope),
            keys(&event["data"]),
            "{t}: envelope fields"
        );
        assert_eq!(
            property_names(&doc, payload),
            keys(&event["data"]["payload"]),
            "{t}: payload fields"
        );
    }
}

fn walk<'a>(v: &'a Value, path: String, visit: &mut impl FnMut(&str, &str, &'a Value)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                visit(&path, k, child);
                walk(child, format!("{path}/{k}"), visit);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{path}/{i}"), visit);
            }
        }
        _ => {}
    }
}

#[test]
fn every_ref_resolves_and_no_schema_names_its_dialect() {
    let doc = asyncapi::document();
    let mut problems = Vec::new();
    walk(&doc, String::new(), &mut |path, key, value| {
        let resolves = |r: &str| {
            r.strip_prefix('#')
                .is_some_and(|p| doc.pointer(p).is_some())
        };
        if key == "$ref" && !value.as_str().is_some_and(resolves) {
            problems.push(format!("{path}: $ref {value} resolves to nothing"));
        }
        if key == "$schema" {
            problems.push(format!("{path}: $schema {value}"));
        }
    });
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn channels_messages_and_operations_cover_the_contract() {
    let doc = asyncapi::document();
    let names = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let mut topics: Vec<String> = Topic::ALL
        .iter()
        .flat_map(|t| [t.name().to_owned(), t.dead_letter_topic().to_owned()])
        .collect();
    topics.sort();
    assert_eq!(names(&doc["channels"]), topics);
    for topic in Topic::ALL {
        assert_eq!(doc["channels"][topic.name()]["address"], topic.name());
        let dlq = topic.dead_letter_topic();
        assert_eq!(doc["channels"][dlq]["address"], dlq);
        assert!(
            doc["channels"][dlq]["messages"]
                .get(DEAD_LETTER_TYPE)
                .is_some()
        );
    }
    let mut types: Vec<String> = EventType::ALL
        .iter()
        .map(|t| t.as_str().to_owned())
        .chain([DEAD_LETTER_TYPE.to_owned()])
        .collect();
    types.sort();
    assert_eq!(names(&doc["components"]["messages"]), types);
    for t in EventType::TASK {
        for topic in [Topic::TaskEvents, Topic::TaskUpdates] {
            assert!(
                doc["channels"][topic.name()]["messages"]
                    .get(t.as_str())
                    .is_some(),
                "{t} on {topic}"
            );
        }
    }
    assert_eq!(
        doc["operations"].as_object().unwrap().len(),
        PRODUCERS.len() + 2 * CONSUMERS.len()
    );
    for (app, topic) in CONSUMERS {
        let op = &doc["operations"][format!("{app}.receive.{topic}")];
        assert_eq!(op["action"], "receive");
        assert_eq!(op["bindings"]["kafka"]["groupId"]["const"], app);
        let announce = &doc["operations"][format!("{app}.send.{}", topic.dead_letter_topic())];
        assert_eq!(announce["action"], "send");
    }
}

#[test]
fn a_dead_letter_notice_validates_against_its_message_schema_and_no_event_does() {
    let doc = asyncapi::document();
    let mut root = doc.clone();
    root["$ref"] = json!(format!("#/components/messages/{DEAD_LETTER_TYPE}/payload"));
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("the dead-letter schema compiles");
    let example = &doc["components"]["messages"][DEAD_LETTER_TYPE]["examples"][0]["payload"];
    let errs = errors(&validator, example);
    assert!(errs.is_empty(), "the example fails its schema: {errs:#?}");
    let mut no_reason = example.clone();
    no_reason["data"].as_object_mut().unwrap().remove("reason");
    assert!(
        !errors(&validator, &no_reason).is_empty(),
        "a notice without a reason passes"
    );
    for (t, event) in events() {
        assert!(
            !errors(&validator, &event).is_empty(),
            "a {t} event passes the dead-letter schema"
        );
    }
}

/// `$XDG_CACHE_HOME/todo-platform`, else `~/.cache/todo-platform` (the local
/// stack's cache convention).
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("todo-platform")
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

fn run(mut cmd: Command) -> std::process::Output {
    eprintln!("$ {}", show(&cmd));
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run `{}`: {e}", show(&cmd)))
}

fn output_of(out: &std::process::Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Installs `@asyncapi/cli@CLI_VERSION` under `dir` (through a scratch folder
/// renamed into place, so an interrupted install is never taken for one).
/// Install scripts are not run: the CLI's would add shell completion to the
/// user's `~/.bashrc`.
fn install_cli(dir: &Path) {
    let scratch = dir.with_file_name(format!(
        "asyncapi-cli-{CLI_VERSION}.partial-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("package.json"), "{ \"private\": true }\n").unwrap();
    let mut npm = Command::new("npm");
    npm.arg("install")
        .arg("--prefix")
        .arg(&scratch)
        .args(["--no-save", "--no-audit", "--no-fund", "--ignore-scripts"])
        .arg(format!("@asyncapi/cli@{CLI_VERSION}"));
    let started = Instant::now();
    let out = run(npm);
    assert!(
        out.status.success(),
        "npm install failed: {}",
        output_of(&out)
    );
    eprintln!(
        "installed @asyncapi/cli@{CLI_VERSION} in {:.0?}",
        started.elapsed()
    );
    if std::fs::rename(&scratch, dir).is_err() {
        // Another run installed it meanwhile.
        let _ = std::fs::remove_dir_all(&scratch);
    }
}

#[test]
fn the_asyncapi_cli_validates_the_committed_document() {
    let dir = cache_dir().join(format!("asyncapi-cli-{CLI_VERSION}"));
    let bin = dir.join("node_modules/.bin/asyncapi");
    if !bin.exists() {
        install_cli(&dir);
    }
    // Analytics off (the CLI reads this file; it ignores `ASYNCAPI_METRICS`),
    // no update check, and its oclif folders inside the install.
    let analytics = dir.join("analytics.json");
    std::fs::write(
        &analytics,
        "{\"analyticsEnabled\":\"false\",\"infoMessageShown\":\"true\",\"userID\":\"todo-platform-tests\"}\n",
    )
    .unwrap();
    let mut validate = Command::new(&bin);
    validate
        .arg("validate")
        .arg(committed_path())
        .args(["--fail-severity", "warn"])
        .env("ASYNCAPI_METRICS_CONFIG_PATH", &analytics)
        .env("ASYNCAPI_SKIP_NEW_VERSION_CHECK", "true")
        .env("ASYNCAPI_CACHE_DIR", dir.join("oclif/cache"))
        .env("ASYNCAPI_CONFIG_DIR", dir.join("oclif/config"))
        .env("ASYNCAPI_DATA_DIR", dir.join("oclif/data"));
    let out = run(validate);
    eprintln!("{}", output_of(&out));
    assert!(
        out.status.success(),
        "asyncapi validate failed: {}",
        output_of(&out)
    );
}
