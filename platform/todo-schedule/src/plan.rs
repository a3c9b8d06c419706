//! What a task event means for recurrence and reminders, decided as plain data
//! before anything is done: the recurring-task service turns a [`Plan`] into a
//! workflow start, Jobs API calls and schedule rows.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use todo_contract::{EventType, TaskSnapshot, TaskStatus, Timestamp};
use uuid::Uuid;

use crate::schedule::{self, Anchor, Frequency, ScheduleError};

/// The next instance of a recurring task, ready to be created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextInstance {
    pub title: String,
    pub description: Option<String>,
    pub due_date: Timestamp,
    pub reminder_time: Option<Timestamp>,
    pub recurrence_schedule: Frequency,
    pub timezone: String,
    /// The completed instance this one follows.
    pub parent_task_id: Uuid,
}

/// One thing to do because of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Create the next instance of the series (through a workflow).
    CreateNext(NextInstance),
    /// Schedule, or replace, the task's reminder job at this time.
    ScheduleReminder { task_id: Uuid, at: Timestamp },
    /// Delete the task's pending reminder job, if any.
    CancelReminder { task_id: Uuid },
    /// The series this task belongs to, if any, ends: no further instance.
    EndSeries { task_id: Uuid },
}

/// The steps an event calls for, in order.
pub type Plan = Vec<Step>;

/// How late a reminder is still delivered. One whose time passed before its
/// event was handled (the service was down, or catching up) fires at once if it
/// is at most this late; an older one is not delivered at all, so a service
/// that reads the topic from its start does not flood users with stale ones.
pub fn late_reminder_grace() -> TimeDelta {
    TimeDelta::hours(1)
}

/// Decides what `event_type` about `task` calls for. `now` only decides whether
/// a reminder is still to be delivered (ahead, or late by at most
/// [`late_reminder_grace`]; whether it already fired is the caller's to
/// check); `anchor` is the series anchor (from its first due date) when known,
/// else the task's own due date anchors it.
pub fn plan(
    event_type: EventType,
    task: &TaskSnapshot,
    now: DateTime<Utc>,
    anchor: Option<Anchor>,
) -> Result<Plan, ScheduleError> {
    let reminder_ahead = task
        .reminder_time
        .filter(|at| at.get() > now - late_reminder_grace());
    let task_id = task.id;
    let mut steps = Vec::new();
    match event_type {
        EventType::TaskCreated | EventType::TaskUpdated if task.status != TaskStatus::Complete => {
            match reminder_ahead {
                Some(at) => steps.push(Step::ScheduleReminder { task_id, at }),
                None => steps.push(Step::CancelReminder { task_id }),
            }
        }
        EventType::TaskCreated | EventType::TaskUpdated | EventType::TaskCompleted => {
            steps.push(Step::CancelReminder { task_id });
            if event_type == EventType::TaskCompleted
                && let Some(next) = next_instance(task, anchor)?
            {
                steps.push(Step::CreateNext(next));
            }
        }
        EventType::TaskDeleted => {
            steps.push(Step::CancelReminder { task_id });
            steps.push(Step::EndSeries { task_id });
        }
        EventType::ReminderFired | EventType::NotificationDelivered => {}
    }
    Ok(steps)
}

/// The instance after `task`, when it is a recurring task with a due date.
pub fn next_instance(
    task: &TaskSnapshot,
    anchor: Option<Anchor>,
) -> Result<Option<NextInstance>, ScheduleError> {
    let (true, Some(frequency), Some(due)) =
        (task.is_recurring, task.recurrence_schedule, task.due_date)
    else {
        return Ok(None);
    };
    let due = due.get();
    let tz = schedule::time_zone(&task.timezone)?;
    let anchor = anchor.unwrap_or_else(|| Anchor::of(due, tz));
    let next_due = schedule::next_due(due, frequency, tz, anchor)?;
    Ok(Some(NextInstance {
        title: task.title.clone(),
        description: task.description.clone(),
        due_date: Timestamp::new(next_due),
        reminder_time: task
            .reminder_time
            .map(|r| Timestamp::new(schedule::next_reminder(due, r.get(), next_due))),
        recurrence_schedule: frequency,
        timezone: task.timezone.clone(),
        parent_task_id: task.id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    const T1: Uuid = Uuid::from_u128(1);

    fn task() -> TaskSnapshot {
        TaskSnapshot {
            id: T1,
            title: "Stand-up".into(),
            description: None,
            status: TaskStatus::Pending,
            due_date: Some(ts("2026-03-28T08:00:00Z")),
            reminder_time: Some(ts("2026-03-28T07:45:00Z")),
            is_recurring: true,
            recurrence_schedule: Some(Frequency::Daily),
            timezone: "Europe/Berlin".into(),
            parent_task_id: None,
            created_at: ts("2026-03-01T00:00:00Z"),
            updated_at: ts("2026-03-01T00:00:00Z"),
            version: 1,
        }
    }

    const BEFORE: &str = "2026-03-27T12:00:00Z";

    #[test]
    fn a_new_task_with_a_future_reminder_schedules_it() {
        let steps = plan(EventType::TaskCreated, &task(), at(BEFORE), None).unwrap();
        assert_eq!(
            steps,
            vec![Step::ScheduleReminder {
                task_id: T1,
                at: ts("2026-03-28T07:45:00Z")
            }]
        );
    }

    #[test]
    fn removing_or_passing_the_reminder_cancels_it() {
        let t = TaskSnapshot {
            reminder_time: None,
            ..task()
        };
        assert_eq!(
            plan(EventType::TaskUpdated, &t, at(BEFORE), None).unwrap(),
            vec![Step::CancelReminder { task_id: T1 }]
        );
        let much_later = at("2026-03-28T08:46:00Z");
        assert_eq!(
            plan(EventType::TaskUpdated, &task(), much_later, None).unwrap(),
            vec![Step::CancelReminder { task_id: T1 }]
        );
    }

    #[test]
    fn a_reminder_missed_by_less_than_the_grace_is_still_delivered() {
        let late = at("2026-03-28T08:40:00Z");
        assert_eq!(
            plan(EventType::TaskCreated, &task(), late, None).unwrap(),
            vec![Step::ScheduleReminder {
                task_id: T1,
                at: ts("2026-03-28T07:45:00Z")
            }]
        );
    }

    #[test]
    fn completing_a_recurring_task_cancels_its_reminder_and_creates_the_next_instance() {
        let t = TaskSnapshot {
            status: TaskStatus::Complete,
            ..task()
        };
        let steps = plan(
            EventType::TaskCompleted,
            &t,
            at("2026-03-28T20:00:00Z"),
            None,
        )
        .unwrap();
        let next = NextInstance {
            title: "Stand-up".into(),
            description: None,
            // 09:00 CET on the 28th -> 09:00 CEST on the 29th (DST began that night).
            due_date: ts("2026-03-29T07:00:00Z"),
            reminder_time: Some(ts("2026-03-29T06:45:00Z")),
            recurrence_schedule: Frequency::Daily,
            timezone: "Europe/Berlin".into(),
            parent_task_id: T1,
        };
        assert_eq!(
            steps,
            vec![Step::CancelReminder { task_id: T1 }, Step::CreateNext(next)]
        );
    }

    #[test]
    fn completing_a_one_off_task_only_cancels_its_reminder() {
        let t = TaskSnapshot {
            status: TaskStatus::Complete,
            is_recurring: false,
            recurrence_schedule: None,
            ..task()
        };
        assert_eq!(
            plan(EventType::TaskCompleted, &t, at(BEFORE), None).unwrap(),
            vec![Step::CancelReminder { task_id: T1 }]
        );
    }

    #[test]
    fn deleting_a_recurring_task_ends_its_series() {
        let steps = plan(EventType::TaskDeleted, &task(), at(BEFORE), None).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::CancelReminder { task_id: T1 },
                Step::EndSeries { task_id: T1 }
            ]
        );
    }

    #[test]
    fn the_series_anchor_wins_over_the_instance_due_date() {
        // The 28 Feb instance of a series anchored on the 31st is followed by 31 Mar.
        let t = TaskSnapshot {
            status: TaskStatus::Complete,
            due_date: Some(ts("2026-02-28T10:00:00Z")),
            reminder_time: None,
            recurrence_schedule: Some(Frequency::Monthly),
            timezone: "UTC".into(),
            ..task()
        };
        let anchor = Anchor::of(at("2026-01-31T10:00:00Z"), chrono_tz::UTC);
        let next = next_instance(&t, Some(anchor)).unwrap().unwrap();
        assert_eq!(next.due_date, ts("2026-03-31T10:00:00Z"));
    }
}
