//! The recurring-task service's use cases outside the event handler: firing
//! a due reminder (the job trigger) and reading series and reminders (the API).

use std::collections::HashMap;

use sqlx::PgPool;
use todo_contract::{Reminder, Timestamp, Topic};
use todo_core::sidecar::Sidecar;
use uuid::Uuid;

use crate::db::{self, ReminderFilter, ReminderRow, Series, SeriesFilter, TriggerState};

/// What a trigger of a reminder job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// `reminder-fired` is on `reminders` and the reminder is marked fired.
    Fired,
    /// It was published before.
    AlreadyFired,
    /// It was cancelled or replaced by another time: nothing published.
    Stale,
}

impl Fired {
    /// The outcome's name (answer body and metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Fired::Fired => "fired",
            Fired::AlreadyFired => "already_fired",
            Fired::Stale => "stale",
        }
    }
}

/// A series and its instances' reminders that have not fired yet.
pub type SeriesWithReminders = (Series, Vec<ReminderRow>);

/// Series, reminders and reminder firing over one database and sidecar.
#[derive(Debug, Clone)]
pub struct RecurringService {
    pool: PgPool,
    sidecar: Sidecar,
}

impl RecurringService {
    pub fn new(pool: PgPool, sidecar: Sidecar) -> Self {
        RecurringService { pool, sidecar }
    }

    /// Publishes `reminder-fired` for `r` if it is still the task's scheduled
    /// reminder, then marks it fired. An error means neither is certain: the
    /// job's failure policy triggers again, and the derived event id makes a
    /// second publish the same event.
    #[tracing::instrument(skip_all, fields(task_id = %r.task_id))]
    pub async fn fire(&self, r: &Reminder) -> Result<Fired, String> {
        match db::trigger_state(&self.pool, r)
            .await
            .map_err(|e| e.to_string())?
        {
            TriggerState::Stale => {
                tracing::info!("reminder was cancelled or replaced; not published");
                Ok(Fired::Stale)
            }
            TriggerState::AlreadyFired => Ok(Fired::AlreadyFired),
            TriggerState::Due => {
                let event = r.fired(Timestamp::now());
                self.sidecar
                    .publish(Topic::Reminders, &event, crate::APP_ID)
                    .await
                    .map_err(|e| e.to_string())?;
                db::mark_fired(&self.pool, r)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(event_id = %event.event_id, remind_at = %r.remind_at, "reminder fired");
                Ok(Fired::Fired)
            }
        }
    }

    /// A page of series (oldest first) with their pending reminders, and how
    /// many series match in all.
    pub async fn list_schedules(
        &self,
        filter: &SeriesFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<SeriesWithReminders>, i64), sqlx::Error> {
        let (series, total) = db::list_series(&self.pool, filter, limit, offset).await?;
        let ids: Vec<Uuid> = series.iter().map(|s| s.id).collect();
        let mut pending: HashMap<Uuid, Vec<ReminderRow>> = HashMap::new();
        for (series_id, r) in db::pending_reminders_of(&self.pool, &ids).await? {
            pending.entry(series_id).or_default().push(r);
        }
        let page = series
            .into_iter()
            .map(|s| {
                let p = pending.remove(&s.id).unwrap_or_default();
                (s, p)
            })
            .collect();
        Ok((page, total))
    }

    /// One series with its pending reminders.
    pub async fn get_schedule(&self, id: Uuid) -> Result<Option<SeriesWithReminders>, sqlx::Error> {
        let Some(series) = db::get_series(&self.pool, id).await? else {
            return Ok(None);
        };
        let pending = db::pending_reminders_of(&self.pool, &[series.id])
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        Ok(Some((series, pending)))
    }

    /// A page of reminders by due time, and how many match in all.
    pub async fn list_reminders(
        &self,
        filter: &ReminderFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ReminderRow>, i64), sqlx::Error> {
        db::list_reminders(&self.pool, filter, limit, offset).await
    }
}
