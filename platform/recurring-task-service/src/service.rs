//! The recurring-task service's use cases outside the event handler: firing
//! a due reminder (the job trigger), reading series and reminders (the API),
//! and pruning finished rows ([`prune`]).

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use todo_contract::{Reminder, Timestamp};
use todo_core::intent::Waker;
use todo_core::workflow::{Starter, restart_late};
use uuid::Uuid;

use crate::db::{self, ReminderFilter, ReminderRow, Series, SeriesFilter, TriggerState};
use crate::dispatch::{self, Firing};
use crate::workflow::{self, RecurrenceInput};

/// What a trigger of a reminder job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// The reminder is marked fired and its `reminder-fired` is on its way
    /// to `reminders` (published right after the commit).
    Fired,
    /// It fired before.
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

/// Why a trigger could not be handled (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Series, reminders and reminder firing over one database.
#[derive(Debug, Clone)]
pub struct RecurringService {
    pool: PgPool,
    waker: Waker,
}

impl RecurringService {
    /// `waker` wakes the dispatcher that publishes fired reminders.
    pub fn new(pool: PgPool, waker: Waker) -> Self {
        RecurringService { pool, waker }
    }

    /// Fires `r` if it is still the task's scheduled reminder: marks it fired
    /// and records its `reminder-fired` event for publishing, in one
    /// transaction that holds the reminder row, so a cancellation either
    /// commits first (the trigger is stale) or finds it fired; never both.
    /// The event is published right after the commit by the dispatcher
    /// (retried until Kafka takes it; the derived event id makes a repeat the
    /// same event). An error means nothing changed: the job's failure policy
    /// triggers again.
    #[tracing::instrument(skip_all, fields(task_id = %r.task_id))]
    pub async fn fire(&self, r: &Reminder) -> Result<Fired, FireError> {
        let mut tx = self.pool.begin().await?;
        let outcome = match db::lock_trigger_state(&mut tx, r).await? {
            TriggerState::Stale => {
                tracing::info!("reminder was cancelled or replaced; not published");
                Fired::Stale
            }
            TriggerState::AlreadyFired => Fired::AlreadyFired,
            TriggerState::Due => {
                db::mark_fired(&mut tx, r).await?;
                let firing = Firing {
                    reminder: r.clone(),
                    fired_at: Timestamp::now(),
                };
                let event_id = dispatch::publish_fired(&mut tx, &firing).await?;
                tracing::info!(event_id = %event_id, remind_at = %r.remind_at, "reminder fired");
                Fired::Fired
            }
        };
        tx.commit().await?;
        if outcome == Fired::Fired {
            self.waker.wake();
        }
        Ok(outcome)
    }

    /// Fires the scheduled reminders whose time passed more than `late_by`
    /// ago (at most [`OVERDUE_BATCH`] a run): their job should have fired
    /// them and did not (its failure policy gave up during an outage, the
    /// scheduler lost it). Each goes through [`RecurringService::fire`], so
    /// a job that fires it as well changes nothing, and none fires before
    /// its time. Returns how many fired now.
    pub async fn fire_overdue(&self, late_by: Duration) -> Result<u64, FireError> {
        let mut fired = 0;
        for row in db::overdue_reminders(&self.pool, late_by, OVERDUE_BATCH).await? {
            let reminder = row.reminder();
            if self.fire(&reminder).await? == Fired::Fired {
                fired += 1;
                tracing::warn!(task_id = %reminder.task_id, remind_at = %reminder.remind_at,
                    "reminder overdue and not fired by its job; fired by the reconciler");
            }
        }
        Ok(fired)
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

/// Most overdue reminders one reconciler run fires; the next run takes more.
pub const OVERDUE_BATCH: i64 = 500;

/// One run of the reconciler ([`RecurringService::fire_overdue`]): logs and
/// counts what it fired (`reminders_reconciled_total`); a failed run is
/// logged and tried again at the next interval.
pub async fn reconcile(service: &RecurringService, late_by: Duration) {
    match service.fire_overdue(late_by).await {
        Ok(0) => {}
        Ok(n) => {
            metrics::counter!("reminders_reconciled_total").increment(n);
            tracing::warn!(
                reminders = n,
                "fired overdue reminders their jobs had not fired"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "looking for overdue reminders failed; trying again later")
        }
    }
}

/// Most late next instances one watchdog round looks at.
const WATCH_BATCH: i64 = 100;

/// One round of the recurrence watchdog: each next instance requested but
/// unfinished for more than `stale` since it last changed, whose workflow
/// start is not still waiting, has its instance asked how it is doing; one
/// the engine lost, finished without the step done, or that stalled
/// (terminated first) is started again as a new instance
/// (`recurrence-<task>-r<n>`) with the recorded input, on one replica
/// (`todo_core::workflow::restart_late`). The step is idempotent (its
/// recorded state and the Todo Idempotency-Key), so an old instance that
/// comes back to life creates nothing twice.
pub async fn watch(pool: &PgPool, starter: &Starter, waker: &Waker, stale: Duration) {
    let late = match db::overdue_next(pool, stale, WATCH_BATCH).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "looking for late next instances failed; trying again later");
            return;
        }
    };
    let restarted = restart_late(
        starter,
        workflow::RECURRENCE_WORKFLOW,
        stale,
        late,
        |n| {
            (
                workflow::rescue_instance_id(n.parent_task_id, n.rescues),
                n.parent_task_id,
            )
        },
        |n| restart(pool, n),
    )
    .await;
    if restarted {
        waker.wake();
    }
}

/// Records the next start of `n`'s workflow, unless another replica did or
/// it finished meanwhile; its instance id.
async fn restart(pool: &PgPool, n: db::OverdueNext) -> Result<Option<String>, sqlx::Error> {
    let input: RecurrenceInput = match serde_json::from_value(n.input.clone()) {
        Ok(input) => input,
        Err(e) => {
            tracing::error!(task_id = %n.parent_task_id, error = %e, "a requested next instance has an unreadable input; left alone");
            return Ok(None);
        }
    };
    let mut tx = pool.begin().await?;
    let Some(rescue) = db::count_rescue(&mut tx, n.parent_task_id, n.rescues).await? else {
        return Ok(None);
    };
    let instance = workflow::rescue_instance_id(n.parent_task_id, rescue);
    dispatch::start_recurrence(&mut tx, &instance, &input).await?;
    tx.commit().await?;
    Ok(Some(instance))
}

/// Most rows one pruning statement deletes: short transactions, few locks.
const PRUNE_BATCH: i64 = 2000;

/// Deletes the rows finished more than `keep` ago ([`db::prune_finished`]);
/// logs and counts what went (`reminders_pruned_total`,
/// `next_instances_pruned_total`, `series_pruned_total`). A failed run is
/// logged and tried again at the next interval.
pub async fn prune(pool: &PgPool, keep: Duration) {
    match db::prune_finished(pool, keep, PRUNE_BATCH).await {
        Ok(p) if p == db::Pruned::default() => {}
        Ok(p) => {
            metrics::counter!("reminders_pruned_total").increment(p.reminders);
            metrics::counter!("next_instances_pruned_total").increment(p.next_instances);
            metrics::counter!("series_pruned_total").increment(p.series);
            tracing::info!(
                reminders = p.reminders,
                next_instances = p.next_instances,
                series = p.series,
                retention_hours = keep.as_secs() / 3600,
                "pruned finished rows"
            );
        }
        Err(e) => tracing::warn!(error = %e, "pruning finished rows failed; trying again later"),
    }
}
