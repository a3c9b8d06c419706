//! What a `task-events` event does here: keep each recurring task's series
//! (its RecurrenceSchedule) current, start the recurrence workflow on a
//! completion, end the series on a deletion, and keep each task's reminder
//! job in step with its `reminder_time`.
//!
//! The decisions are [`todo_schedule::plan`]'s; this module applies them
//! inside the consumer's transaction (the inbox dedupes redeliveries). It
//! makes no remote call: Jobs API calls and workflow starts are recorded as
//! intents in the same transaction ([`crate::dispatch`]) and carried out
//! after the commit, so a batch of 200 events never waits on the sidecar.

use chrono::Utc;
use sqlx::PgConnection;
use todo_contract::{EventEnvelope, EventType, Reminder, TaskSnapshot, Topic};
use todo_core::consumer::{EventHandler, HandleError};
use todo_core::intent::Waker;
use todo_schedule::plan::{self, Step};
use todo_schedule::schedule::{self, Anchor};
use uuid::Uuid;

use crate::db::{self, Current, Series};
use crate::dispatch;
use crate::workflow::{self, RecurrenceInput};

/// Applies task events to series and reminders.
pub struct Handler {
    /// Wakes this replica's dispatcher once a batch has committed.
    pub waker: Waker,
}

fn permanent(e: impl std::fmt::Display) -> HandleError {
    HandleError::Permanent(e.to_string())
}

/// The schedule fields of a recurring task snapshot (None: not recurring).
fn current_of(task_id: Uuid, task: &TaskSnapshot) -> Option<Current> {
    match (task.is_recurring, task.recurrence_schedule, task.due_date) {
        (true, Some(frequency), Some(due_date)) => Some(Current {
            task_id,
            title: task.title.clone(),
            frequency,
            timezone: task.timezone.clone(),
            due_date: due_date.get(),
        }),
        _ => None,
    }
}

/// The series `task_id` belongs to, if it is `user_id`'s: another user's
/// series is never followed, ended or changed by this user's events.
async fn own_series_of(
    conn: &mut PgConnection,
    task_id: Uuid,
    user_id: &str,
) -> Result<Option<Series>, HandleError> {
    Ok(db::series_of(conn, task_id)
        .await?
        .filter(|series| series.user_id == user_id))
}

impl Handler {
    /// The series of the task, after following this event: an instance of a
    /// known series of the same user is linked to it; a recurring task outside
    /// any series starts one; a change of the newest instance updates it.
    ///
    /// A task whose parent is in another user's series starts a series of its
    /// own, as any recurring task of its owner does: it must never end or
    /// rewrite the other's series, and ignoring it would silently drop its
    /// owner's recurrence and reminders. (The Todo service refuses such a
    /// parent; this holds for events that still carry one.)
    async fn track(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
        task: &TaskSnapshot,
    ) -> Result<Option<Series>, HandleError> {
        let task_id = event.task_id;
        let current = current_of(task_id, task);
        if let Some(series) = own_series_of(conn, task_id, &event.user_id).await? {
            if event.event_type != EventType::TaskUpdated || series.current_task_id != task_id {
                return Ok(Some(series));
            }
            let Some(current) = current else {
                // Recurrence switched off on the newest instance.
                return Ok(Some(db::pause_series(conn, series.id).await?));
            };
            // A moved due date re-anchors the series; the anchor survives
            // every other change (28 Feb of a series on the 31st stays so).
            let anchor = if current.due_date != series.next_due_date {
                let tz = schedule::time_zone(&current.timezone).map_err(permanent)?;
                Some(Anchor::of(current.due_date, tz))
            } else {
                None
            };
            return Ok(Some(
                db::update_current(conn, series.id, &current, anchor).await?,
            ));
        }
        let Some(current) = current else {
            return Ok(None);
        };
        if event.event_type == EventType::TaskDeleted {
            return Ok(None);
        }
        if let Some(parent) = task.parent_task_id
            && let Some(series) = db::series_of(conn, parent).await?
        {
            if series.user_id == event.user_id {
                db::link(conn, task_id, series.id).await?;
                return Ok(Some(series));
            }
            tracing::warn!(
                parent_task_id = %parent,
                "the parent task is in another user's series; this task starts its own"
            );
        }
        let tz = schedule::time_zone(&current.timezone).map_err(permanent)?;
        let anchor = Anchor::of(current.due_date, tz);
        let series = db::start_series(conn, &event.user_id, &current, anchor).await?;
        tracing::info!(series_id = %series.id, "series started");
        Ok(Some(series))
    }

    async fn schedule_reminder(
        &self,
        conn: &mut PgConnection,
        reminder: Reminder,
    ) -> Result<(), HandleError> {
        if !db::schedule_reminder(conn, &reminder).await? {
            tracing::debug!("reminder already fired");
            return Ok(());
        }
        dispatch::sync_job(conn, reminder.task_id).await?;
        tracing::info!(remind_at = %reminder.remind_at, job = %reminder.job_name(), "reminder scheduled");
        Ok(())
    }

    async fn cancel_reminder(
        &self,
        conn: &mut PgConnection,
        task_id: Uuid,
    ) -> Result<(), HandleError> {
        if db::cancel_reminder(conn, task_id).await? {
            dispatch::sync_job(conn, task_id).await?;
            tracing::info!(task_id = %task_id, "reminder cancelled");
        }
        Ok(())
    }

    async fn end_series(
        &self,
        conn: &mut PgConnection,
        series: &Series,
    ) -> Result<(), HandleError> {
        db::end_series(conn, series.id).await?;
        for task_id in db::scheduled_in_series(conn, series.id).await? {
            self.cancel_reminder(conn, task_id).await?;
        }
        tracing::info!(series_id = %series.id, "series ended");
        Ok(())
    }

    async fn create_next(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope,
        series: Option<&Series>,
        next: plan::NextInstance,
    ) -> Result<(), HandleError> {
        let Some(series) = series.filter(|s| s.is_active) else {
            tracing::info!("series has ended; no next instance");
            return Ok(());
        };
        let instance_id = workflow::instance_id(event.task_id);
        let input = RecurrenceInput {
            series_id: series.id,
            user_id: event.user_id.clone(),
            next,
        };
        let recorded =
            serde_json::to_value(&input).map_err(|e| HandleError::Permanent(e.to_string()))?;
        db::request_next(conn, event.task_id, series.id, &recorded).await?;
        dispatch::start_recurrence(conn, &instance_id, &input).await?;
        tracing::info!(workflow = %instance_id, due_date = %input.next.due_date, "recurrence workflow to start");
        Ok(())
    }
}

impl EventHandler for Handler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        _topic: Topic,
        event: &EventEnvelope,
    ) -> Result<(), HandleError> {
        let task: TaskSnapshot = event.payload_as().map_err(permanent)?;
        let series = self.track(conn, event, &task).await?;
        let steps = plan::plan(
            event.event_type,
            &task,
            Utc::now(),
            series.as_ref().map(Series::anchor),
        )
        .map_err(permanent)?;
        for step in steps {
            match step {
                Step::ScheduleReminder { at, .. } => {
                    let reminder = Reminder {
                        task_id: event.task_id,
                        user_id: event.user_id.clone(),
                        title: task.title.clone(),
                        due_date: task.due_date,
                        remind_at: at,
                    };
                    self.schedule_reminder(conn, reminder).await?;
                }
                Step::CancelReminder { .. } => self.cancel_reminder(conn, event.task_id).await?,
                Step::CreateNext(next) => {
                    self.create_next(conn, event, series.as_ref(), next).await?
                }
                Step::EndSeries { .. } => {
                    if let Some(series) = &series {
                        self.end_series(conn, series).await?;
                    }
                }
            }
        }
        Ok(())
    }

    fn after_commit(&self, _topic: Topic, _applied: &[&EventEnvelope]) {
        self.waker.wake();
    }
}
