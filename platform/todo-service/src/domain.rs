//! The task aggregate: its fields, the rules a change must satisfy, and which
//! event a change produces. Plain functions, no I/O.

use chrono::{DateTime, Utc};
use serde::Serialize;
use todo_contract::{EventType, Frequency, TaskSnapshot, TaskStatus, Timestamp};
use uuid::Uuid;

/// Longest accepted title, in characters.
pub const MAX_TITLE_CHARS: usize = 255;
/// Longest accepted description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

/// Everything a user sets on a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskFields {
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub due_date: Option<DateTime<Utc>>,
    pub reminder_time: Option<DateTime<Utc>>,
    pub is_recurring: bool,
    pub recurrence_schedule: Option<Frequency>,
    pub timezone: String,
    pub parent_task_id: Option<Uuid>,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: Uuid,
    pub user_id: String,
    pub fields: TaskFields,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A partial update: `None` keeps a field, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<TaskStatus>,
    pub due_date: Option<Option<DateTime<Utc>>>,
    pub reminder_time: Option<Option<DateTime<Utc>>>,
    pub is_recurring: Option<bool>,
    pub recurrence_schedule: Option<Option<Frequency>>,
    pub timezone: Option<String>,
}

/// A rule a task change broke; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

fn invalid(msg: impl Into<String>) -> ValidationError {
    ValidationError(msg.into())
}

impl TaskFields {
    /// Normalizes (trims the title, rounds times to milliseconds) and checks
    /// every rule: title 1–255 characters, description at most 10 000, a known
    /// IANA time zone, and a recurring task has a schedule and a due date.
    pub fn validated(mut self) -> Result<Self, ValidationError> {
        self.title = self.title.trim().to_owned();
        let title_chars = self.title.chars().count();
        if title_chars == 0 {
            return Err(invalid("title must not be empty"));
        }
        if title_chars > MAX_TITLE_CHARS {
            return Err(invalid(format!(
                "title must be at most {MAX_TITLE_CHARS} characters (got {title_chars})"
            )));
        }
        if let Some(d) = &self.description {
            let n = d.chars().count();
            if n > MAX_DESCRIPTION_CHARS {
                return Err(invalid(format!(
                    "description must be at most {MAX_DESCRIPTION_CHARS} characters (got {n})"
                )));
            }
        }
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(format!(
                "timezone `{}` is not a known IANA time zone (for example `Europe/Berlin` or `UTC`)",
                self.timezone
            )));
        }
        if self.is_recurring && self.recurrence_schedule.is_none() {
            return Err(invalid(
                "a recurring task needs a recurrence_schedule (daily, weekly or monthly)",
            ));
        }
        if !self.is_recurring && self.recurrence_schedule.is_some() {
            return Err(invalid(
                "recurrence_schedule is set but is_recurring is false",
            ));
        }
        if self.is_recurring && self.due_date.is_none() {
            return Err(invalid(
                "a recurring task needs a due_date: the next instance is due one period after it",
            ));
        }
        self.due_date = self.due_date.map(truncate_to_millis);
        self.reminder_time = self.reminder_time.map(truncate_to_millis);
        Ok(self)
    }

    /// The fields after applying `patch` (not yet validated).
    pub fn patched(&self, patch: TaskPatch) -> TaskFields {
        let mut f = self.clone();
        if let Some(v) = patch.title {
            f.title = v;
        }
        if let Some(v) = patch.description {
            f.description = v;
        }
        if let Some(v) = patch.status {
            f.status = v;
        }
        if let Some(v) = patch.due_date {
            f.due_date = v;
        }
        if let Some(v) = patch.reminder_time {
            f.reminder_time = v;
        }
        if let Some(v) = patch.recurrence_schedule {
            f.recurrence_schedule = v;
            // Setting a schedule makes the task recurring, clearing it ends that,
            // unless the same patch says otherwise explicitly.
            f.is_recurring = f.recurrence_schedule.is_some();
        }
        if let Some(v) = patch.is_recurring {
            f.is_recurring = v;
            if !v {
                f.recurrence_schedule = None;
            }
        }
        if let Some(v) = patch.timezone {
            f.timezone = v;
        }
        f
    }
}

/// `t` truncated to milliseconds, the precision of every timestamp on the wire.
fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    Timestamp::new(t).get()
}

/// What a change does to a task, decided before anything is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Nothing differs: no write, no event.
    Unchanged,
    /// The task changes and this event records it.
    Apply(TaskFields, EventType),
}

impl Task {
    /// A new task owned by `user_id`, created at `now`.
    pub fn create(user_id: &str, fields: TaskFields, now: DateTime<Utc>) -> Task {
        let now = truncate_to_millis(now);
        Task {
            id: Uuid::new_v4(),
            user_id: user_id.to_owned(),
            fields,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    /// Decides what replacing the fields with `next` means: no change, a
    /// `task-completed` (status becomes complete) or a `task-updated`.
    pub fn change_to(&self, next: TaskFields) -> Change {
        if next == self.fields {
            return Change::Unchanged;
        }
        let completes =
            next.status == TaskStatus::Complete && self.fields.status != TaskStatus::Complete;
        let event = if completes {
            EventType::TaskCompleted
        } else {
            EventType::TaskUpdated
        };
        Change::Apply(next, event)
    }

    /// The completion of this task, or `None` when it is already complete.
    pub fn completion(&self) -> Option<TaskFields> {
        (self.fields.status != TaskStatus::Complete).then(|| TaskFields {
            status: TaskStatus::Complete,
            ..self.fields.clone()
        })
    }

    /// The task as the API answers it and its events carry it.
    pub fn snapshot(&self) -> TaskSnapshot {
        let f = &self.fields;
        TaskSnapshot {
            id: self.id,
            title: f.title.clone(),
            description: f.description.clone(),
            status: f.status,
            due_date: f.due_date.map(Timestamp::new),
            reminder_time: f.reminder_time.map(Timestamp::new),
            is_recurring: f.is_recurring,
            recurrence_schedule: f.recurrence_schedule,
            timezone: f.timezone.clone(),
            parent_task_id: f.parent_task_id,
            created_at: Timestamp::new(self.created_at),
            updated_at: Timestamp::new(self.updated_at),
            version: self.version,
        }
    }

    /// This task with `fields` applied at `now`: version + 1.
    pub fn with_fields(&self, fields: TaskFields, now: DateTime<Utc>) -> Task {
        Task {
            fields,
            updated_at: truncate_to_millis(now).max(self.updated_at),
            version: self.version + 1,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> TaskFields {
        TaskFields {
            title: "Water the plants".into(),
            description: None,
            status: TaskStatus::Pending,
            due_date: None,
            reminder_time: None,
            is_recurring: false,
            recurrence_schedule: None,
            timezone: "UTC".into(),
            parent_task_id: None,
        }
    }

    #[test]
    fn a_plain_task_is_valid_and_its_title_is_trimmed() {
        let f = TaskFields {
            title: "  Water the plants  ".into(),
            ..fields()
        };
        assert_eq!(f.validated().unwrap().title, "Water the plants");
    }

    #[test]
    fn titles_must_have_one_to_255_characters() {
        assert!(
            TaskFields {
                title: "   ".into(),
                ..fields()
            }
            .validated()
            .is_err()
        );
        assert!(
            TaskFields {
                title: "é".repeat(255),
                ..fields()
            }
            .validated()
            .is_ok()
        );
        let err = TaskFields {
            title: "a".repeat(256),
            ..fields()
        }
        .validated()
        .unwrap_err();
        assert!(err.0.contains("255"), "{err}");
    }

    #[test]
    fn unknown_time_zones_are_rejected() {
        let err = TaskFields {
            timezone: "Mars/Olympus".into(),
            ..fields()
        }
        .validated()
        .unwrap_err();
        assert!(err.0.contains("Mars/Olympus"));
        assert!(
            TaskFields {
                timezone: "Europe/Berlin".into(),
                ..fields()
            }
            .validated()
            .is_ok()
        );
    }

    #[test]
    fn a_recurring_task_needs_a_schedule_and_a_due_date() {
        let recurring = TaskFields {
            is_recurring: true,
            recurrence_schedule: Some(Frequency::Weekly),
            ..fields()
        };
        assert!(recurring.clone().validated().is_err(), "no due date");
        let due = Some(Utc::now());
        assert!(
            TaskFields {
                due_date: due,
                ..recurring.clone()
            }
            .validated()
            .is_ok()
        );
        assert!(
            TaskFields {
                due_date: due,
                recurrence_schedule: None,
                ..recurring
            }
            .validated()
            .is_err()
        );
        assert!(
            TaskFields {
                recurrence_schedule: Some(Frequency::Daily),
                ..fields()
            }
            .validated()
            .is_err()
        );
    }

    #[test]
    fn completing_produces_task_completed_and_reopening_task_updated() {
        let task = Task::create("alice", fields(), Utc::now());
        let done = task.completion().unwrap();
        assert_eq!(
            task.change_to(done.clone()),
            Change::Apply(done.clone(), EventType::TaskCompleted)
        );
        let completed = task.with_fields(done, Utc::now());
        assert_eq!(completed.version, 2);
        assert!(completed.completion().is_none(), "already complete");
        let reopened = completed.fields.patched(TaskPatch {
            status: Some(TaskStatus::Pending),
            ..Default::default()
        });
        assert!(matches!(
            completed.change_to(reopened),
            Change::Apply(_, EventType::TaskUpdated)
        ));
    }

    #[test]
    fn a_patch_that_changes_nothing_is_no_change() {
        let task = Task::create("alice", fields(), Utc::now());
        let same = task.fields.patched(TaskPatch {
            title: Some("Water the plants".into()),
            ..Default::default()
        });
        assert_eq!(task.change_to(same), Change::Unchanged);
    }

    #[test]
    fn patching_clears_nullable_fields_and_schedule_implies_recurring() {
        let f = TaskFields {
            description: Some("x".into()),
            ..fields()
        };
        let p = f.patched(TaskPatch {
            description: Some(None),
            recurrence_schedule: Some(Some(Frequency::Monthly)),
            ..Default::default()
        });
        assert_eq!(p.description, None);
        assert!(p.is_recurring);
        let q = p.patched(TaskPatch {
            is_recurring: Some(false),
            ..Default::default()
        });
        assert_eq!(q.recurrence_schedule, None);
    }

    #[test]
    fn a_snapshot_carries_every_field_in_wire_precision() {
        let due = DateTime::parse_from_rfc3339("2026-03-31T09:00:00.123456Z")
            .unwrap()
            .to_utc();
        let task = Task::create(
            "alice",
            TaskFields {
                due_date: Some(due),
                description: Some("d".into()),
                ..fields()
            },
            Utc::now(),
        );
        let s = task.snapshot();
        assert_eq!(s.id, task.id);
        assert_eq!(s.title, "Water the plants");
        assert_eq!(s.description.as_deref(), Some("d"));
        assert_eq!(s.due_date.unwrap().to_string(), "2026-03-31T09:00:00.123Z");
        assert_eq!((s.version, s.status), (1, TaskStatus::Pending));
        assert_eq!(s.created_at.get(), task.created_at);
    }
}
