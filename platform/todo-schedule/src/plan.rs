//! What a task event means for recurrence and reminders, decided as plain data
//! before anything is done: the recurring-task service turns a [`Plan`] into a
//! workflow start, Jobs API calls and schedule rows.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::schedule::{self, Anchor, Frequency, ScheduleError};

/// The fields of a task snapshot (an event's `payload`) that matter here.
/// Ids stay strings: this crate does no I/O and needs no UUID arithmetic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: String,
    pub due_date: Option<DateTime<Utc>>,
    pub reminder_time: Option<DateTime<Utc>>,
    pub is_recurring: bool,
    pub recurrence_schedule: Option<Frequency>,
    pub timezone: String,
    pub parent_task_id: Option<String>,
}

/// The next instance of a recurring task, ready to be created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextInstance {
    pub title: String,
    pub description: Option<String>,
    pub due_date: DateTime<Utc>,
    pub reminder_time: Option<DateTime<Utc>>,
    pub recurrence_schedule: Frequency,
    pub timezone: String,
    /// The completed instance this one follows.
    pub parent_task_id: String,
}

/// One thing to do because of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Create the next instance of the series (through a workflow).
    CreateNext(NextInstance),
    /// Schedule, or replace, the task's reminder job at this time.
    ScheduleReminder { task_id: String, at: DateTime<Utc> },
    /// Delete the task's pending reminder job, if any.
    CancelReminder { task_id: String },
    /// The series this task belongs to, if any, ends: no further instance
    /// (also when the task is no longer marked recurring).
    EndSeries { task_id: String },
}

/// The steps an event calls for, in order.
pub type Plan = Vec<Step>;

/// The job name of a task's reminder.
pub fn reminder_job_name(task_id: &str) -> String {
    format!("reminder-{task_id}")
}

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
    event_type: &str,
    task: &TaskSnapshot,
    now: DateTime<Utc>,
    anchor: Option<Anchor>,
) -> Result<Plan, ScheduleError> {
    let reminder_ahead = task
        .reminder_time
        .filter(|at| *at > now - late_reminder_grace());
    let mut steps = Vec::new();
    match event_type {
        "task-created" | "task-updated" if task.status != "complete" => match reminder_ahead {
            Some(at) => steps.push(Step::ScheduleReminder {
                task_id: task.id.clone(),
                at,
            }),
            None => steps.push(Step::CancelReminder {
                task_id: task.id.clone(),
            }),
        },
        "task-created" | "task-updated" | "task-completed" => {
            steps.push(Step::CancelReminder {
                task_id: task.id.clone(),
            });
            if event_type == "task-completed"
                && let Some(next) = next_instance(task, anchor)?
            {
                steps.push(Step::CreateNext(next));
            }
        }
        "task-deleted" => {
            steps.push(Step::CancelReminder {
                task_id: task.id.clone(),
            });
            steps.push(Step::EndSeries {
                task_id: task.id.clone(),
            });
        }
        _ => {}
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
    let tz = schedule::time_zone(&task.timezone)?;
    let anchor = anchor.unwrap_or_else(|| Anchor::of(due, tz));
    let next_due = schedule::next_due(due, frequency, tz, anchor)?;
    Ok(Some(NextInstance {
        title: task.title.clone(),
        description: task.description.clone(),
        due_date: next_due,
        reminder_time: task
            .reminder_time
            .map(|r| schedule::next_reminder(due, r, next_due)),
        recurrence_schedule: frequency,
        timezone: task.timezone.clone(),
        parent_task_id: task.id.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn task() -> TaskSnapshot {
        TaskSnapshot {
            id: "t1".into(),
            title: "Stand-up".into(),
            description: None,
            status: "pending".into(),
            due_date: Some(at("2026-03-28T08:00:00Z")),
            reminder_time: Some(at("2026-03-28T07:45:00Z")),
            is_recurring: true,
            recurrence_schedule: Some(Frequency::Daily),
            timezone: "Europe/Berlin".into(),
            parent_task_id: None,
        }
    }

    const BEFORE: &str = "2026-03-27T12:00:00Z";

    #[test]
    fn a_new_task_with_a_future_reminder_schedules_it() {
        let steps = plan("task-created", &task(), at(BEFORE), None).unwrap();
        assert_eq!(
            steps,
            vec![Step::ScheduleReminder {
                task_id: "t1".into(),
                at: at("2026-03-28T07:45:00Z")
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
            plan("task-updated", &t, at(BEFORE), None).unwrap(),
            vec![Step::CancelReminder {
                task_id: "t1".into()
            }]
        );
        let much_later = at("2026-03-28T08:46:00Z");
        assert_eq!(
            plan("task-updated", &task(), much_later, None).unwrap(),
            vec![Step::CancelReminder {
                task_id: "t1".into()
            }]
        );
    }

    #[test]
    fn a_reminder_missed_by_less_than_the_grace_is_still_delivered() {
        let late = at("2026-03-28T08:40:00Z");
        assert_eq!(
            plan("task-created", &task(), late, None).unwrap(),
            vec![Step::ScheduleReminder {
                task_id: "t1".into(),
                at: at("2026-03-28T07:45:00Z")
            }]
        );
    }

    #[test]
    fn completing_a_recurring_task_cancels_its_reminder_and_creates_the_next_instance() {
        let t = TaskSnapshot {
            status: "complete".into(),
            ..task()
        };
        let steps = plan("task-completed", &t, at("2026-03-28T20:00:00Z"), None).unwrap();
        let next = NextInstance {
            title: "Stand-up".into(),
            description: None,
            // 09:00 CET on the 28th -> 09:00 CEST on the 29th (DST began that night).
            due_date: at("2026-03-29T07:00:00Z"),
            reminder_time: Some(at("2026-03-29T06:45:00Z")),
            recurrence_schedule: Frequency::Daily,
            timezone: "Europe/Berlin".into(),
            parent_task_id: "t1".into(),
        };
        assert_eq!(
            steps,
            vec![
                Step::CancelReminder {
                    task_id: "t1".into()
                },
                Step::CreateNext(next)
            ]
        );
    }

    #[test]
    fn completing_a_one_off_task_only_cancels_its_reminder() {
        let t = TaskSnapshot {
            status: "complete".into(),
            is_recurring: false,
            recurrence_schedule: None,
            ..task()
        };
        assert_eq!(
            plan("task-completed", &t, at(BEFORE), None).unwrap(),
            vec![Step::CancelReminder {
                task_id: "t1".into()
            }]
        );
    }

    #[test]
    fn deleting_a_recurring_task_ends_its_series() {
        let steps = plan("task-deleted", &task(), at(BEFORE), None).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::CancelReminder {
                    task_id: "t1".into()
                },
                Step::EndSeries {
                    task_id: "t1".into()
                }
            ]
        );
    }

    #[test]
    fn the_series_anchor_wins_over_the_instance_due_date() {
        // The 28 Feb instance of a series anchored on the 31st is followed by 31 Mar.
        let t = TaskSnapshot {
            status: "complete".into(),
            due_date: Some(at("2026-02-28T10:00:00Z")),
            reminder_time: None,
            recurrence_schedule: Some(Frequency::Monthly),
            timezone: "UTC".into(),
            ..task()
        };
        let anchor = Anchor::of(at("2026-01-31T10:00:00Z"), chrono_tz::UTC);
        let next = next_instance(&t, Some(anchor)).unwrap().unwrap();
        assert_eq!(next.due_date, at("2026-03-31T10:00:00Z"));
    }

    #[test]
    fn snapshots_parse_from_the_todo_services_payload() {
        let payload = serde_json::json!({
            "id": "6f9619ff-8b86-4011-b42d-00c04fc964ff", "title": "Pay rent", "description": null,
            "status": "complete", "due_date": "2026-03-31T09:00:00+00:00", "reminder_time": null,
            "is_recurring": true, "recurrence_schedule": "monthly", "timezone": "Europe/Berlin",
            "parent_task_id": null, "created_at": "2026-03-01T08:30:00.123+00:00",
            "updated_at": "2026-03-02T10:00:00.456+00:00", "version": 3
        });
        let t: TaskSnapshot = serde_json::from_value(payload).unwrap();
        assert_eq!(t.recurrence_schedule, Some(Frequency::Monthly));
        assert_eq!(
            reminder_job_name(&t.id),
            "reminder-6f9619ff-8b86-4011-b42d-00c04fc964ff"
        );
    }
}
