//! The campaign's verdict, as pure functions over what was observed from
//! sources the services do not control: the topics read with kcat, the
//! database read as the superuser, and the clients' own records (the
//! workload's writes and each WebSocket client's log). Each check returns
//! the violations it found; none of them can pass by construction, and each
//! is proven to catch one with synthetic records in the tests below.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::client::StreamLog;
use crate::workload::{Op, Outcome, Write};

/// One event as read from a topic: where it sits and the envelope fields
/// the checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub partition: i32,
    pub offset: i64,
    pub event_id: String,
    pub event_type: String,
    pub task_id: String,
    pub user_id: String,
    /// The task snapshot's `version` (task events only).
    pub version: Option<i64>,
    pub title: Option<String>,
    pub parent_task_id: Option<String>,
    pub is_recurring: bool,
    pub reminder_time: Option<DateTime<Utc>>,
}

impl Event {
    /// Parses a record's value (a CloudEvent whose `data` is the envelope);
    /// `None` for a record that is not one.
    pub fn parse(partition: i32, offset: i64, value: &str) -> Option<Event> {
        let ce: Value = serde_json::from_str(value).ok()?;
        let env = &ce["data"];
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let payload = &env["payload"];
        Some(Event {
            partition,
            offset,
            event_id: s(&env["event_id"])?,
            event_type: s(&env["event_type"])?,
            task_id: s(&env["task_id"]).unwrap_or_default(),
            user_id: s(&env["user_id"]).unwrap_or_default(),
            version: payload["version"].as_i64(),
            title: s(&payload["title"]),
            parent_task_id: s(&payload["parent_task_id"]),
            is_recurring: payload["is_recurring"].as_bool().unwrap_or(false),
            reminder_time: payload["reminder_time"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc()),
        })
    }
}

/// A notification row (`notification.notification`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub task_id: String,
    pub remind_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub status: String,
}

/// One broken promise: which check, and what exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub check: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.check, self.detail)
    }
}

fn violation(check: &'static str, detail: String) -> Violation {
    Violation { check, detail }
}

/// Everything observed, for one round of checks.
#[derive(Debug, Default)]
pub struct Observed {
    pub writes: Vec<Write>,
    pub task_events: Vec<Event>,
    pub task_updates: Vec<Event>,
    /// Audit records per event id.
    pub audited: HashMap<String, i64>,
    pub notifications: Vec<Notification>,
    pub streams: Vec<(String, StreamLog)>,
    /// When the observation was made: reminders due before it must have
    /// fired.
    pub now: DateTime<Utc>,
}

/// Counts for the report's table.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub acknowledged: usize,
    pub acknowledged_on_kafka: usize,
    pub refused: usize,
    pub unknown: usize,
    /// Writes answered with a status the workload did not expect, by status.
    pub other: BTreeMap<u16, usize>,
    pub task_events: usize,
    pub audited: usize,
    pub delivered: usize,
    pub expected_deliveries: usize,
    pub duplicates: usize,
    /// Extra copies of an event on a topic, with its id (at least once).
    pub redelivered: usize,
    pub missing: usize,
    pub recurring_completions: usize,
    pub reminders_due: usize,
    pub reconnects: u32,
}

/// Runs every check; returns the violations and the table's counts.
pub fn check_all(o: &Observed) -> (Vec<Violation>, Counts) {
    let mut counts = Counts::default();
    let mut v = Vec::new();
    v.extend(acknowledged_writes_are_on_kafka(o, &mut counts));
    for (topic, events) in [
        ("task-events", &o.task_events),
        ("task-updates", &o.task_updates),
    ] {
        v.extend(same_id_same_event(topic, events, &mut counts));
        v.extend(per_task_order(topic, events));
    }
    v.extend(refused_writes_left_no_trace_or_one(o));
    v.extend(every_event_audited_once(o, &mut counts));
    v.extend(every_update_delivered_once_in_order(o, &mut counts));
    v.extend(every_recurring_completion_has_one_next_instance(
        o,
        &mut counts,
    ));
    v.extend(every_due_reminder_notified_once_never_early(o, &mut counts));
    (v, counts)
}

/// Distinct events by id, first occurrence kept.
fn distinct(events: &[Event]) -> Vec<&Event> {
    let mut seen = HashSet::new();
    events
        .iter()
        .filter(|e| seen.insert(e.event_id.as_str()))
        .collect()
}

/// Every acknowledged write's event is on both task topics: the create's
/// `task-created`, the update's `task-updated` of the answered version, the
/// completion's `task-completed`, the deletion's `task-deleted`.
pub fn acknowledged_writes_are_on_kafka(o: &Observed, counts: &mut Counts) -> Vec<Violation> {
    let mut found = Vec::new();
    let index = |events: &[Event]| {
        let mut by_task: HashMap<String, Vec<Event>> = HashMap::new();
        for e in events {
            by_task
                .entry(e.task_id.clone())
                .or_default()
                .push(e.clone());
        }
        by_task
    };
    let topics = [
        ("task-events", index(&o.task_events)),
        ("task-updates", index(&o.task_updates)),
    ];
    for w in &o.writes {
        match w.outcome {
            Outcome::Acked => counts.acknowledged += 1,
            Outcome::Refused => {
                counts.refused += 1;
                continue;
            }
            Outcome::Unknown => {
                counts.unknown += 1;
                continue;
            }
            Outcome::Other(status) => {
                *counts.other.entry(status).or_default() += 1;
                continue;
            }
        }
        let Some(task) = &w.task_id else {
            found.push(violation(
                "acknowledged",
                format!("{:?} by {} acknowledged without a task id", w.op, w.user),
            ));
            continue;
        };
        let mut everywhere = true;
        for (topic, by_task) in &topics {
            let events = by_task.get(task).map(Vec::as_slice).unwrap_or_default();
            let present = events.iter().any(|e| match w.op {
                Op::Create => e.event_type == "task-created",
                Op::Update => e.event_type == "task-updated" && e.version == w.version,
                Op::Complete => e.event_type == "task-completed",
                Op::Delete => e.event_type == "task-deleted",
            });
            if !present {
                everywhere = false;
                found.push(violation(
                    "acknowledged",
                    format!(
                        "acknowledged {:?} of task {task} (version {:?}) has no event on {topic}",
                        w.op, w.version
                    ),
                ));
            }
        }
        if everywhere {
            counts.acknowledged_on_kafka += 1;
        } else {
            counts.missing += 1;
        }
    }
    found
}

/// An event id that is on a topic more than once names the same event each
/// time. Publishing is at least once: the outbox marks a row published after
/// Kafka confirmed it, and a workflow activity is retried until its
/// completion is recorded, so a crash or a PostgreSQL restart between the
/// two publishes the event again, with the same id. That is counted
/// (`redelivered`), not a violation: the consumers' inboxes apply each id
/// once, which [`every_event_audited_once`] and
/// [`every_update_delivered_once_in_order`] check at their effects. An id
/// that carries a different event is a violation.
pub fn same_id_same_event(topic: &str, events: &[Event], counts: &mut Counts) -> Vec<Violation> {
    let mut by_id: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        by_id.entry(e.event_id.as_str()).or_default().push(e);
    }
    let what = |e: &Event| {
        (
            e.event_type.clone(),
            e.task_id.clone(),
            e.user_id.clone(),
            e.version,
        )
    };
    let mut found: Vec<Violation> = Vec::new();
    for (id, es) in by_id {
        counts.redelivered += es.len() - 1;
        if es.iter().any(|e| what(e) != what(es[0])) {
            found.push(violation(
                "one id, one event",
                format!(
                    "event id {id} names different events on {topic}: {:?}",
                    es.iter()
                        .map(|e| (e.partition, e.offset, what(e)))
                        .collect::<Vec<_>>()
                ),
            ));
        }
    }
    found.sort_by(|a, b| a.detail.cmp(&b.detail));
    found
}

/// One task's events on a topic share a partition and come in order there:
/// `task-created` first, versions growing, nothing after `task-deleted`.
/// (`notification-delivered` updates carry no task snapshot and are left out.)
pub fn per_task_order(topic: &str, events: &[Event]) -> Vec<Violation> {
    let mut by_task: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in distinct(events) {
        if e.event_type.starts_with("task-") {
            by_task.entry(e.task_id.as_str()).or_default().push(e);
        }
    }
    let mut found = Vec::new();
    for (task, mut es) in by_task {
        let partitions: HashSet<i32> = es.iter().map(|e| e.partition).collect();
        if partitions.len() > 1 {
            found.push(violation(
                "per-task order",
                format!("task {task} is spread over partitions {partitions:?} of {topic}"),
            ));
            continue;
        }
        es.sort_by_key(|e| e.offset);
        let mut last: Option<&Event> = None;
        for e in &es {
            let bad = match last {
                None => e.event_type != "task-created",
                Some(prev) => {
                    prev.event_type == "task-deleted"
                        || e.event_type == "task-created"
                        || match (prev.version, e.version) {
                            (Some(a), Some(b)) if e.event_type == "task-deleted" => b < a,
                            (Some(a), Some(b)) => b <= a,
                            _ => false,
                        }
                }
            };
            if bad {
                found.push(violation(
                    "per-task order",
                    format!(
                        "task {task} on {topic}: {} v{:?} at offset {} after {} v{:?} at offset {}",
                        e.event_type,
                        e.version,
                        e.offset,
                        last.map(|l| l.event_type.as_str()).unwrap_or_default(),
                        last.and_then(|l| l.version),
                        last.map(|l| l.offset).unwrap_or_default()
                    ),
                ));
            }
            last = Some(e);
        }
    }
    found
}

/// A write that was not acknowledged left no trace or was published once;
/// an acknowledged create (retried with its key) is there exactly once.
/// Titles are unique per create and per update attempt, so they name the
/// write's event.
pub fn refused_writes_left_no_trace_or_one(o: &Observed) -> Vec<Violation> {
    let mut titled: HashMap<(&str, &str), HashSet<&str>> = HashMap::new();
    // A next instance repeats its parent's title; it is the recurrence's
    // write, not the client's.
    for e in distinct(&o.task_events) {
        if let (Some(t), None) = (&e.title, &e.parent_task_id) {
            titled
                .entry((e.event_type.as_str(), t.as_str()))
                .or_default()
                .insert(e.task_id.as_str());
        }
    }
    let mut found = Vec::new();
    for w in &o.writes {
        let event_type = match w.op {
            Op::Create => "task-created",
            Op::Update => "task-updated",
            _ => continue,
        };
        for title in &w.titles {
            let n = titled
                .get(&(event_type, title.as_str()))
                .map_or(0, HashSet::len);
            // An update's event counts once per task version, so count
            // distinct events by title instead.
            let n = if w.op == Op::Update {
                o.task_events
                    .iter()
                    .filter(|e| e.event_type == event_type && e.title.as_deref() == Some(title))
                    .map(|e| e.event_id.as_str())
                    .collect::<HashSet<_>>()
                    .len()
            } else {
                n
            };
            if n > 1 {
                found.push(violation(
                    "refused or retried write",
                    format!(
                        "{:?} {title:?} ({:?}, statuses {:?}) was applied {n} times",
                        w.op, w.outcome, w.statuses
                    ),
                ));
            }
        }
        if w.op == Op::Create && w.outcome == Outcome::Acked {
            let n = titled
                .get(&(event_type, w.titles[0].as_str()))
                .map_or(0, HashSet::len);
            if n != 1 {
                found.push(violation(
                    "refused or retried write",
                    format!(
                        "acknowledged create {:?} (statuses {:?}) made {n} tasks",
                        w.titles[0], w.statuses
                    ),
                ));
            }
        }
    }
    found
}

/// Every `task-events` event has exactly one audit record, and every audit
/// record is of an event on `task-events`.
pub fn every_event_audited_once(o: &Observed, counts: &mut Counts) -> Vec<Violation> {
    let events = distinct(&o.task_events);
    counts.task_events = events.len();
    let on_kafka: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for e in &events {
        match o.audited.get(&e.event_id).copied().unwrap_or(0) {
            1 => counts.audited += 1,
            0 => missing.push(format!("{} {} of {}", e.event_id, e.event_type, e.task_id)),
            n => {
                counts.duplicates += 1;
                found.push(violation(
                    "audited once",
                    format!("event {} has {n} audit records", e.event_id),
                ));
            }
        }
    }
    if !missing.is_empty() {
        counts.missing += missing.len();
        found.push(violation(
            "audited once",
            format!(
                "{} events on task-events have no audit record, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ),
        ));
    }
    let stray: Vec<&String> = o
        .audited
        .keys()
        .filter(|id| !on_kafka.contains(id.as_str()))
        .collect();
    if !stray.is_empty() {
        found.push(violation(
            "audited once",
            format!(
                "{} audit records are of events not on task-events, e.g. {:?}",
                stray.len(),
                &stray[..stray.len().min(5)]
            ),
        ));
    }
    found
}

/// Each user's client got every update of theirs on `task-updates` exactly
/// once, in growing `seq` order, across its reconnects, and nothing else.
pub fn every_update_delivered_once_in_order(o: &Observed, counts: &mut Counts) -> Vec<Violation> {
    let mut found = Vec::new();
    for (user, log) in &o.streams {
        counts.reconnects += log.connections.saturating_sub(1);
        let expected: HashSet<&str> = distinct(&o.task_updates)
            .into_iter()
            .filter(|e| &e.user_id == user)
            .map(|e| e.event_id.as_str())
            .collect();
        counts.expected_deliveries += expected.len();
        let mut times: HashMap<&str, usize> = HashMap::new();
        for r in &log.received {
            *times.entry(r.event_id.as_str()).or_default() += 1;
        }
        counts.delivered += times.keys().filter(|id| expected.contains(*id)).count();
        let doubled: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
        if !doubled.is_empty() {
            counts.duplicates += doubled.len();
            found.push(violation(
                "delivered once in order",
                format!(
                    "{user}: {} updates received more than once, e.g. {:?}",
                    doubled.len(),
                    &doubled[..doubled.len().min(5)]
                ),
            ));
        }
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|id| !times.contains_key(**id))
            .collect();
        if !missing.is_empty() {
            counts.missing += missing.len();
            found.push(violation(
                "delivered once in order",
                format!(
                    "{user}: {} of {} updates on task-updates never reached the client ({} connections), e.g. {:?}",
                    missing.len(),
                    expected.len(),
                    log.connections,
                    &missing[..missing.len().min(5)]
                ),
            ));
        }
        let stray: Vec<&str> = times
            .keys()
            .filter(|id| !expected.contains(*id))
            .copied()
            .collect();
        if !stray.is_empty() {
            found.push(violation(
                "delivered once in order",
                format!(
                    "{user}: {} updates received that are not this user's on task-updates, e.g. {:?}",
                    stray.len(),
                    &stray[..stray.len().min(5)]
                ),
            ));
        }
        for pair in log.received.windows(2) {
            if pair[1].seq <= pair[0].seq {
                found.push(violation(
                    "delivered once in order",
                    format!(
                        "{user}: seq {} (connection {}) after seq {} (connection {})",
                        pair[1].seq, pair[1].connection, pair[0].seq, pair[0].connection
                    ),
                ));
                break;
            }
        }
    }
    found
}

/// Every completed recurring instance has exactly one next instance (a
/// `task-created` naming it as parent).
pub fn every_recurring_completion_has_one_next_instance(
    o: &Observed,
    counts: &mut Counts,
) -> Vec<Violation> {
    let events = distinct(&o.task_events);
    let mut children: HashMap<&str, HashSet<&str>> = HashMap::new();
    for e in &events {
        if e.event_type == "task-created"
            && let Some(parent) = &e.parent_task_id
        {
            children
                .entry(parent.as_str())
                .or_default()
                .insert(e.task_id.as_str());
        }
    }
    let completed: HashSet<&str> = events
        .iter()
        .filter(|e| e.event_type == "task-completed" && e.is_recurring)
        .map(|e| e.task_id.as_str())
        .collect();
    counts.recurring_completions = completed.len();
    let mut found = Vec::new();
    let mut without = Vec::new();
    for task in completed {
        match children.get(task).map_or(0, HashSet::len) {
            1 => {}
            0 => without.push(task),
            n => {
                counts.duplicates += 1;
                found.push(violation(
                    "one next instance",
                    format!("completed recurring task {task} has {n} next instances"),
                ));
            }
        }
    }
    if !without.is_empty() {
        counts.missing += without.len();
        found.push(violation(
            "one next instance",
            format!(
                "{} completed recurring tasks have no next instance, e.g. {:?}",
                without.len(),
                &without[..without.len().min(5)]
            ),
        ));
    }
    found
}

/// Every reminder whose time has passed produced exactly one notification,
/// created and sent no earlier than its time.
pub fn every_due_reminder_notified_once_never_early(
    o: &Observed,
    counts: &mut Counts,
) -> Vec<Violation> {
    let mut by_task: HashMap<&str, Vec<&Notification>> = HashMap::new();
    for n in &o.notifications {
        by_task.entry(n.task_id.as_str()).or_default().push(n);
    }
    let mut found = Vec::new();
    let mut late = Vec::new();
    for e in distinct(&o.task_events) {
        let Some(at) = e.reminder_time else { continue };
        if e.event_type != "task-created" || at > o.now {
            continue;
        }
        counts.reminders_due += 1;
        let ns = by_task.get(e.task_id.as_str()).cloned().unwrap_or_default();
        match ns.as_slice() {
            [] => late.push(format!("{} due {at}", e.task_id)),
            [n] => {
                if n.created_at < at || n.sent_at.is_some_and(|s| s < at) {
                    found.push(violation(
                        "reminder once, never early",
                        format!(
                            "task {}: due {at}, notification created {} sent {:?}",
                            e.task_id, n.created_at, n.sent_at
                        ),
                    ));
                } else if n.status != "sent" {
                    late.push(format!("{} due {at} is {}", e.task_id, n.status));
                }
            }
            many => {
                counts.duplicates += 1;
                found.push(violation(
                    "reminder once, never early",
                    format!("task {}: {} notifications", e.task_id, many.len()),
                ));
            }
        }
    }
    if !late.is_empty() {
        counts.missing += late.len();
        found.push(violation(
            "reminder once, never early",
            format!(
                "{} due reminders have no sent notification, e.g. {:?}",
                late.len(),
                &late[..late.len().min(5)]
            ),
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Received;

    fn ev(offset: i64, id: &str, ty: &str, task: &str, version: i64) -> Event {
        Event {
            partition: 0,
            offset,
            event_id: id.to_owned(),
            event_type: ty.to_owned(),
            task_id: task.to_owned(),
            user_id: "u".to_owned(),
            version: Some(version),
            title: Some(format!("t-{task}")),
            parent_task_id: None,
            is_recurring: false,
            reminder_time: None,
        }
    }

    fn write(op: Op, task: &str, outcome: Outcome, version: Option<i64>) -> Write {
        Write {
            user: "u".to_owned(),
            op,
            task_id: Some(task.to_owned()),
            titles: if op == Op::Create {
                vec![format!("t-{task}")]
            } else {
                Vec::new()
            },
            outcome,
            version,
            recurring: false,
            reminder_at: None,
            statuses: vec![201],
        }
    }

    fn both(events: Vec<Event>) -> Observed {
        Observed {
            task_updates: events.clone(),
            task_events: events,
            now: Utc::now(),
            ..Observed::default()
        }
    }

    fn received(seqs_ids: &[(i64, &str)]) -> StreamLog {
        StreamLog {
            received: seqs_ids
                .iter()
                .map(|(seq, id)| Received {
                    seq: *seq,
                    event_id: (*id).to_owned(),
                    task_id: "a".to_owned(),
                    event_type: "task-created".to_owned(),
                    connection: 0,
                })
                .collect(),
            connections: 1,
            failed_connects: 0,
        }
    }

    #[test]
    fn a_clean_history_passes_every_check() {
        let mut o = both(vec![
            ev(0, "e1", "task-created", "a", 1),
            ev(1, "e2", "task-updated", "a", 2),
            ev(2, "e3", "task-deleted", "a", 2),
        ]);
        o.writes = vec![
            write(Op::Create, "a", Outcome::Acked, Some(1)),
            write(Op::Update, "a", Outcome::Acked, Some(2)),
            write(Op::Delete, "a", Outcome::Acked, None),
        ];
        o.audited = [("e1", 1), ("e2", 1), ("e3", 1)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        o.streams = vec![("u".to_owned(), received(&[(1, "e1"), (2, "e2"), (5, "e3")]))];
        let (v, counts) = check_all(&o);
        assert!(v.is_empty(), "{v:#?}");
        assert_eq!(counts.acknowledged_on_kafka, 3);
        assert_eq!(counts.delivered, 3);
    }

    #[test]
    fn an_acknowledged_write_without_its_event_is_caught() {
        let mut o = both(vec![ev(0, "e1", "task-created", "a", 1)]);
        o.writes = vec![write(Op::Update, "a", Outcome::Acked, Some(2))];
        let v = acknowledged_writes_are_on_kafka(&o, &mut Counts::default());
        assert_eq!(v.len(), 2, "missing on both topics: {v:#?}");
    }

    #[test]
    fn an_event_published_again_is_counted_and_an_id_reused_for_another_is_caught() {
        let again = vec![
            ev(0, "e1", "task-created", "a", 1),
            ev(1, "e1", "task-created", "a", 1),
        ];
        let mut counts = Counts::default();
        assert!(same_id_same_event("task-events", &again, &mut counts).is_empty());
        assert_eq!((counts.redelivered, counts.duplicates), (1, 0));
        let reused = vec![
            ev(0, "e1", "task-created", "a", 1),
            ev(1, "e1", "task-updated", "a", 2),
        ];
        assert_eq!(
            same_id_same_event("task-events", &reused, &mut Counts::default()).len(),
            1
        );
    }

    #[test]
    fn events_of_a_task_out_of_order_are_caught() {
        let swapped = vec![
            ev(0, "e1", "task-created", "a", 1),
            ev(1, "e3", "task-updated", "a", 3),
            ev(2, "e2", "task-updated", "a", 2),
        ];
        assert_eq!(per_task_order("task-events", &swapped).len(), 1);
        let after_delete = vec![
            ev(0, "e1", "task-created", "a", 1),
            ev(1, "e2", "task-deleted", "a", 1),
            ev(2, "e3", "task-updated", "a", 2),
        ];
        assert_eq!(per_task_order("task-events", &after_delete).len(), 1);
        let mut split = vec![
            ev(0, "e1", "task-created", "a", 1),
            ev(1, "e2", "task-updated", "a", 2),
        ];
        split[1].partition = 1;
        assert_eq!(per_task_order("task-events", &split).len(), 1);
    }

    #[test]
    fn a_refused_create_applied_twice_is_caught_and_one_applied_once_is_not() {
        let mut o = both(vec![ev(0, "e1", "task-created", "a", 1)]);
        o.writes = vec![write(Op::Create, "a", Outcome::Refused, None)];
        assert!(refused_writes_left_no_trace_or_one(&o).is_empty());
        let mut second = ev(3, "e9", "task-created", "b", 1);
        second.title = Some("t-a".to_owned());
        o.task_events.push(second.clone());
        assert_eq!(refused_writes_left_no_trace_or_one(&o).len(), 1);
        // The next instance of a recurring task repeats its title: not a
        // second create.
        o.task_events.pop();
        second.parent_task_id = Some("a".to_owned());
        o.task_events.push(second);
        assert!(refused_writes_left_no_trace_or_one(&o).is_empty());
    }

    #[test]
    fn a_duplicated_or_missing_audit_record_is_caught() {
        let mut o = both(vec![
            ev(0, "e1", "task-created", "a", 1),
            ev(1, "e2", "task-updated", "a", 2),
        ]);
        o.audited = [("e1".to_owned(), 2)].into();
        let mut counts = Counts::default();
        let v = every_event_audited_once(&o, &mut counts);
        assert_eq!(v.len(), 2, "{v:#?}");
        assert_eq!((counts.duplicates, counts.missing), (1, 1));
        o.audited = [("e1", 1), ("e2", 1), ("e7", 1)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        assert_eq!(
            every_event_audited_once(&o, &mut Counts::default()).len(),
            1
        );
    }

    #[test]
    fn a_client_missing_doubling_or_reordering_updates_is_caught() {
        let mut o = both(vec![
            ev(0, "e1", "task-created", "a", 1),
            ev(1, "e2", "task-updated", "a", 2),
        ]);
        let check = |o: &Observed| every_update_delivered_once_in_order(o, &mut Counts::default());
        o.streams = vec![("u".to_owned(), received(&[(1, "e1")]))];
        assert_eq!(check(&o).len(), 1, "missing");
        o.streams = vec![("u".to_owned(), received(&[(1, "e1"), (2, "e2"), (2, "e2")]))];
        assert_eq!(check(&o).len(), 2, "doubled, and seq not growing");
        o.streams = vec![("u".to_owned(), received(&[(2, "e2"), (1, "e1")]))];
        assert_eq!(check(&o).len(), 1, "out of seq order");
        o.streams = vec![("u".to_owned(), received(&[(1, "e1"), (2, "e2"), (3, "x")]))];
        assert_eq!(check(&o).len(), 1, "someone else's");
    }

    #[test]
    fn a_recurring_completion_with_none_or_two_next_instances_is_caught() {
        let mut done = ev(1, "e2", "task-completed", "a", 2);
        done.is_recurring = true;
        let child = |offset, id: &str, task: &str| {
            let mut c = ev(offset, id, "task-created", task, 1);
            c.parent_task_id = Some("a".to_owned());
            c
        };
        let check = |o: &Observed| {
            every_recurring_completion_has_one_next_instance(o, &mut Counts::default())
        };
        let mut o = both(vec![ev(0, "e1", "task-created", "a", 1), done]);
        assert_eq!(check(&o).len(), 1, "none");
        o.task_events.push(child(2, "e3", "b"));
        assert!(check(&o).is_empty());
        o.task_events.push(child(3, "e4", "c"));
        assert_eq!(check(&o).len(), 1, "two");
    }

    #[test]
    fn a_reminder_notified_twice_early_or_never_is_caught() {
        let due = Utc::now() - chrono::TimeDelta::seconds(30);
        let mut created = ev(0, "e1", "task-created", "a", 1);
        created.reminder_time = Some(due);
        let note = |offset_s: i64| Notification {
            task_id: "a".to_owned(),
            remind_at: due,
            created_at: due + chrono::TimeDelta::seconds(offset_s),
            sent_at: Some(due + chrono::TimeDelta::seconds(offset_s)),
            status: "sent".to_owned(),
        };
        let check =
            |o: &Observed| every_due_reminder_notified_once_never_early(o, &mut Counts::default());
        let mut o = both(vec![created]);
        assert_eq!(check(&o).len(), 1, "never");
        o.notifications = vec![note(1)];
        assert!(check(&o).is_empty());
        o.notifications = vec![note(-1)];
        assert_eq!(check(&o).len(), 1, "early");
        o.notifications = vec![note(1), note(2)];
        assert_eq!(check(&o).len(), 1, "twice");
        o.notifications = vec![Notification {
            status: "failed".to_owned(),
            sent_at: None,
            ..note(1)
        }];
        assert_eq!(check(&o).len(), 1, "not sent");
    }
}
