//! The recurring-task service's tables: series (`recurrence_schedule`), which
//! series each task belongs to (`series_task`), the next instance after each
//! completed task (`next_instance`), and reminders (`reminder`); and the
//! pruning of their finished rows ([`prune_finished`]).

use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use sqlx::{PgConnection, PgPool};
use todo_contract::{Frequency, Reminder, Timestamp};
use todo_schedule::schedule::Anchor;
use uuid::Uuid;

/// A series as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub id: Uuid,
    pub user_id: String,
    pub title: String,
    pub frequency: String,
    pub timezone: String,
    pub anchor_day: i16,
    pub anchor_time: NaiveTime,
    pub next_due_date: DateTime<Utc>,
    pub current_task_id: Uuid,
    pub parent_task_id: Option<Uuid>,
    pub instances: i32,
    pub is_active: bool,
    pub ended_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Series {
    /// What the series keeps from its first due date.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            day: u32::try_from(self.anchor_day).unwrap_or(1),
            time: self.anchor_time,
        }
    }
}

/// The fields of a series that follow its newest instance.
#[derive(Debug, Clone)]
pub struct Current {
    pub task_id: Uuid,
    pub title: String,
    pub frequency: Frequency,
    pub timezone: String,
    pub due_date: DateTime<Utc>,
}

/// The series `task_id` belongs to.
pub async fn series_of(
    conn: &mut PgConnection,
    task_id: Uuid,
) -> Result<Option<Series>, sqlx::Error> {
    sqlx::query_as!(
        Series,
        "select s.id, s.user_id, s.title, s.frequency, s.timezone, s.anchor_day, s.anchor_time, s.next_due_date, \
         s.current_task_id, s.parent_task_id, s.instances, s.is_active, s.ended_reason, s.created_at, s.updated_at \
         from recurrence_schedule s join series_task t on t.series_id = s.id where t.task_id = $1",
        task_id,
    )
    .fetch_optional(conn)
    .await
}

/// Starts a series whose first instance is `first` (series id = its task id)
/// and links the task to it.
pub async fn start_series(
    conn: &mut PgConnection,
    user_id: &str,
    first: &Current,
    anchor: Anchor,
) -> Result<Series, sqlx::Error> {
    let series = sqlx::query_as!(
        Series,
        "insert into recurrence_schedule (id, user_id, title, frequency, timezone, anchor_day, anchor_time, next_due_date, current_task_id) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $1) \
         on conflict (id) do update set updated_at = recurrence_schedule.updated_at \
         returning id, user_id, title, frequency, timezone, anchor_day, anchor_time, next_due_date, \
         current_task_id, parent_task_id, instances, is_active, ended_reason, created_at, updated_at",
        first.task_id,
        user_id,
        first.title,
        first.frequency.as_str(),
        first.timezone,
        i16::try_from(anchor.day).unwrap_or(1),
        anchor.time,
        first.due_date,
    )
    .fetch_one(&mut *conn)
    .await?;
    link(conn, first.task_id, series.id).await?;
    Ok(series)
}

/// Records that `task_id` is an instance of `series_id`.
pub async fn link(
    conn: &mut PgConnection,
    task_id: Uuid,
    series_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into series_task (task_id, series_id) values ($1, $2) on conflict (task_id) do nothing",
        task_id,
        series_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Follows a change of the series' newest instance (still recurring):
/// schedule fields, the anchor when its due date moved, and a series paused
/// by [`pause_series`] resumes (one ended by a deletion stays ended).
pub async fn update_current(
    conn: &mut PgConnection,
    series_id: Uuid,
    current: &Current,
    anchor: Option<Anchor>,
) -> Result<Series, sqlx::Error> {
    sqlx::query_as!(
        Series,
        "update recurrence_schedule set title = $2, frequency = $3, timezone = $4, next_due_date = $5, \
         anchor_day = coalesce($6, anchor_day), anchor_time = coalesce($7, anchor_time), \
         is_active = ended_reason is distinct from 'deleted', \
         ended_reason = nullif(ended_reason, 'not_recurring'), updated_at = now() \
         where id = $1 and current_task_id = $8 \
         returning id, user_id, title, frequency, timezone, anchor_day, anchor_time, next_due_date, \
         current_task_id, parent_task_id, instances, is_active, ended_reason, created_at, updated_at",
        series_id,
        current.title,
        current.frequency.as_str(),
        current.timezone,
        current.due_date,
        anchor.map(|a| i16::try_from(a.day).unwrap_or(1)),
        anchor.map(|a| a.time),
        current.task_id,
    )
    .fetch_one(conn)
    .await
}

/// Pauses a series whose newest instance is no longer recurring
/// (`not_recurring`; a deleted series keeps its reason).
pub async fn pause_series(conn: &mut PgConnection, series_id: Uuid) -> Result<Series, sqlx::Error> {
    sqlx::query_as!(
        Series,
        "update recurrence_schedule set is_active = false, \
         ended_reason = coalesce(ended_reason, 'not_recurring'), updated_at = now() \
         where id = $1 \
         returning id, user_id, title, frequency, timezone, anchor_day, anchor_time, next_due_date, \
         current_task_id, parent_task_id, instances, is_active, ended_reason, created_at, updated_at",
        series_id,
    )
    .fetch_one(conn)
    .await
}

/// Ends a series for good (one of its tasks was deleted).
pub async fn end_series(conn: &mut PgConnection, series_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update recurrence_schedule set is_active = false, ended_reason = 'deleted', updated_at = now() where id = $1",
        series_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What [`lock_series`] reads of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLock {
    pub is_active: bool,
    /// Due date of its newest instance.
    pub next_due_date: DateTime<Utc>,
}

/// Locks a series row until the transaction ends; whether it is active and
/// its newest instance's due date (None: not stored).
pub async fn lock_series(
    conn: &mut PgConnection,
    series_id: Uuid,
) -> Result<Option<SeriesLock>, sqlx::Error> {
    sqlx::query_as!(
        SeriesLock,
        "select is_active, next_due_date from recurrence_schedule where id = $1 for no key update",
        series_id,
    )
    .fetch_optional(conn)
    .await
}

/// Records the instance created after `parent_task_id` as the series' newest.
pub async fn record_next(
    conn: &mut PgConnection,
    series_id: Uuid,
    task_id: Uuid,
    parent_task_id: Uuid,
    due_date: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    link(conn, task_id, series_id).await?;
    sqlx::query!(
        "update recurrence_schedule set current_task_id = $2, parent_task_id = $3, next_due_date = $4, \
         instances = instances + 1, updated_at = now() where id = $1 and current_task_id <> $2",
        series_id,
        task_id,
        parent_task_id,
        due_date,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Where the next instance after a completed task stands (`next_instance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    /// Asked for by a completion; its workflow has not decided yet.
    Requested,
    /// Its creation was decided; the Todo service may or may not have it yet.
    Creating,
    /// Created and recorded as the series' newest instance.
    Created(Uuid),
    /// Created after its series ended: being deleted again.
    Withdrawing(Uuid),
    /// Deleted again (or found deleted); `None` when its id was never learnt.
    Withdrawn(Option<Uuid>),
    /// None is made: the series ended or had moved past it, or the Todo
    /// service refused it.
    Skipped,
}

/// The state of the next instance after `parent_task_id`, if its creation
/// was ever decided.
pub async fn next_instance(
    conn: &mut PgConnection,
    parent_task_id: Uuid,
) -> Result<Option<NextState>, sqlx::Error> {
    let row = sqlx::query!(
        "select state, task_id from next_instance where parent_task_id = $1",
        parent_task_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| match (r.state.as_str(), r.task_id) {
        ("created", Some(id)) => NextState::Created(id),
        ("withdrawing", Some(id)) => NextState::Withdrawing(id),
        ("withdrawn", id) => NextState::Withdrawn(id),
        ("requested", _) => NextState::Requested,
        ("skipped", _) => NextState::Skipped,
        _ => NextState::Creating,
    }))
}

/// Records, with the recurrence workflow's `input`, that the completion of
/// `parent_task_id` asks for its next instance (a repeated completion
/// changes nothing).
pub async fn request_next(
    conn: &mut PgConnection,
    parent_task_id: Uuid,
    series_id: Uuid,
    input: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into next_instance (parent_task_id, series_id, state, input) values ($1, $2, 'requested', $3) \
         on conflict (parent_task_id) do nothing",
        parent_task_id,
        series_id,
        input,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A requested next instance whose workflow should have ended by now.
#[derive(Debug, Clone, PartialEq)]
pub struct OverdueNext {
    pub parent_task_id: Uuid,
    pub input: serde_json::Value,
    /// Times its workflow was started again by the watchdog.
    pub rescues: i32,
}

/// Up to `limit` next instances requested but unfinished for more than
/// `stale` since they last changed, oldest first, whose workflow start is not
/// still waiting as an intent.
pub async fn overdue_next(
    db: &PgPool,
    stale: Duration,
    limit: i64,
) -> Result<Vec<OverdueNext>, sqlx::Error> {
    sqlx::query_as!(
        OverdueNext,
        r#"select parent_task_id, input as "input!", rescues from next_instance n
           where state in ('requested', 'creating', 'withdrawing') and input is not null
           and updated_at < now() - make_interval(secs => $1)
           and not exists (select 1 from intent where key like 'recurrence-' || n.parent_task_id || '%')
           order by updated_at limit $2"#,
        stale.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}

/// Counts a new start of the workflow of the next instance after
/// `parent_task_id`, if it is still unfinished after `rescues` of them (so
/// one replica wins); the new count.
pub async fn count_rescue(
    conn: &mut PgConnection,
    parent_task_id: Uuid,
    rescues: i32,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar!(
        "update next_instance set rescues = rescues + 1, updated_at = now() \
         where parent_task_id = $1 and rescues = $2 and state in ('requested', 'creating', 'withdrawing') \
         returning rescues",
        parent_task_id,
        rescues,
    )
    .fetch_optional(conn)
    .await
}

/// Records that the next instance after `parent_task_id` is being created.
pub async fn begin_next(
    conn: &mut PgConnection,
    parent_task_id: Uuid,
    series_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into next_instance (parent_task_id, series_id, state) values ($1, $2, 'creating') \
         on conflict (parent_task_id) do update set state = 'creating', updated_at = now() \
         where next_instance.state = 'requested'",
        parent_task_id,
        series_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves the next instance after `parent_task_id` to `state` (with the
/// created task's id when known), from any state listed in `from`; whether
/// it moved.
pub async fn move_next(
    conn: &mut PgConnection,
    parent_task_id: Uuid,
    from: &[&str],
    state: &str,
    task_id: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
    Ok(sqlx::query!(
        "update next_instance set state = $3, task_id = coalesce($4, task_id), updated_at = now() \
         where parent_task_id = $1 and state = any($2)",
        parent_task_id,
        &from,
        state,
        task_id,
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// A reminder as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ReminderRow {
    pub task_id: Uuid,
    pub user_id: String,
    pub title: String,
    pub due_date: Option<DateTime<Utc>>,
    pub remind_at: DateTime<Utc>,
    pub status: String,
    pub fired_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl ReminderRow {
    /// The reminder as its job carries it.
    pub fn reminder(&self) -> Reminder {
        Reminder {
            task_id: self.task_id,
            user_id: self.user_id.clone(),
            title: self.title.clone(),
            due_date: self.due_date.map(Timestamp::new),
            remind_at: Timestamp::new(self.remind_at),
        }
    }
}

/// Stores `r` as the task's scheduled reminder (replacing any earlier one),
/// unless this very reminder (task and time) has already fired; whether it
/// is now scheduled.
pub async fn schedule_reminder(conn: &mut PgConnection, r: &Reminder) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "insert into reminder (task_id, user_id, title, due_date, remind_at, status) values ($1, $2, $3, $4, $5, 'scheduled') \
         on conflict (task_id) do update set user_id = $2, title = $3, due_date = $4, remind_at = $5, \
         status = 'scheduled', fired_at = null, updated_at = now() \
         where not (reminder.status = 'fired' and reminder.remind_at = $5)",
        r.task_id,
        r.user_id,
        r.title,
        r.due_date.map(|d| d.get()),
        r.remind_at.get(),
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Marks the task's reminder cancelled; whether one was still scheduled.
pub async fn cancel_reminder(conn: &mut PgConnection, task_id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "update reminder set status = 'cancelled', updated_at = now() where task_id = $1 and status = 'scheduled'",
        task_id,
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The tasks of a series whose reminder is still scheduled.
pub async fn scheduled_in_series(
    conn: &mut PgConnection,
    series_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "select r.task_id from reminder r join series_task t on t.task_id = r.task_id \
         where t.series_id = $1 and r.status = 'scheduled' order by r.remind_at",
        series_id,
    )
    .fetch_all(conn)
    .await
}

/// What a job trigger finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerState {
    /// This reminder is due: publish it.
    Due,
    /// It was already published.
    AlreadyFired,
    /// It was cancelled or replaced by another time (or never stored).
    Stale,
}

/// Where the reminder `r` stands, locking the task's reminder row until
/// the transaction ends (so a cancellation waits for the trigger's decision,
/// or the trigger for the cancellation's).
pub async fn lock_trigger_state(
    conn: &mut PgConnection,
    r: &Reminder,
) -> Result<TriggerState, sqlx::Error> {
    let row = sqlx::query!(
        "select status, remind_at from reminder where task_id = $1 for update",
        r.task_id,
    )
    .fetch_optional(conn)
    .await?
    .map(|row| (row.status, row.remind_at));
    Ok(match row {
        Some((status, at)) if at == r.remind_at.get() && status == "scheduled" => TriggerState::Due,
        Some((status, at)) if at == r.remind_at.get() && status == "fired" => {
            TriggerState::AlreadyFired
        }
        _ => TriggerState::Stale,
    })
}

/// Records that `r` fired.
pub async fn mark_fired(conn: &mut PgConnection, r: &Reminder) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update reminder set status = 'fired', fired_at = now(), updated_at = now() \
         where task_id = $1 and remind_at = $2 and status = 'scheduled'",
        r.task_id,
        r.remind_at.get(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The task's reminder.
pub async fn reminder(db: &PgPool, task_id: Uuid) -> Result<Option<ReminderRow>, sqlx::Error> {
    sqlx::query_as!(
        ReminderRow,
        "select r.task_id, r.user_id, r.title, r.due_date, r.remind_at, r.status, r.fired_at, r.updated_at from reminder r where r.task_id = $1",
        task_id,
    )
    .fetch_optional(db)
    .await
}

/// Scheduled reminders whose time passed more than `late_by` ago (their job
/// should have fired them by now), oldest first, at most `limit`.
pub async fn overdue_reminders(
    db: &PgPool,
    late_by: Duration,
    limit: i64,
) -> Result<Vec<ReminderRow>, sqlx::Error> {
    sqlx::query_as!(
        ReminderRow,
        "select r.task_id, r.user_id, r.title, r.due_date, r.remind_at, r.status, r.fired_at, r.updated_at \
         from reminder r where r.status = 'scheduled' and r.remind_at < now() - make_interval(secs => $1) \
         order by r.remind_at limit $2",
        late_by.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}

/// Filters of a series query.
#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    pub is_active: Option<bool>,
    pub user_id: Option<String>,
}

/// A page of series, oldest first, and how many match in all.
pub async fn list_series(
    db: &PgPool,
    f: &SeriesFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Series>, i64), sqlx::Error> {
    let rows = sqlx::query_as!(
        Series,
        "select s.id, s.user_id, s.title, s.frequency, s.timezone, s.anchor_day, s.anchor_time, s.next_due_date, \
         s.current_task_id, s.parent_task_id, s.instances, s.is_active, s.ended_reason, s.created_at, s.updated_at \
         from recurrence_schedule s \
         where ($1::boolean is null or s.is_active = $1) and ($2::text is null or s.user_id = $2) \
         order by s.created_at, s.id limit $3 offset $4",
        f.is_active,
        f.user_id,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"select count(*) as "n!" from recurrence_schedule s
           where ($1::boolean is null or s.is_active = $1) and ($2::text is null or s.user_id = $2)"#,
        f.is_active,
        f.user_id,
    )
    .fetch_one(db)
    .await?;
    Ok((rows, total))
}

/// One series by id.
pub async fn get_series(db: &PgPool, id: Uuid) -> Result<Option<Series>, sqlx::Error> {
    sqlx::query_as!(
        Series,
        "select s.id, s.user_id, s.title, s.frequency, s.timezone, s.anchor_day, s.anchor_time, s.next_due_date, \
         s.current_task_id, s.parent_task_id, s.instances, s.is_active, s.ended_reason, s.created_at, s.updated_at \
         from recurrence_schedule s where s.id = $1",
        id,
    )
    .fetch_optional(db)
    .await
}

/// The scheduled reminders of the given series, with the series of each.
pub async fn pending_reminders_of(
    db: &PgPool,
    series_ids: &[Uuid],
) -> Result<Vec<(Uuid, ReminderRow)>, sqlx::Error> {
    let rows = sqlx::query!(
        "select t.series_id, r.task_id, r.user_id, r.title, r.due_date, r.remind_at, r.status, r.fired_at, r.updated_at \
         from reminder r join series_task t on t.task_id = r.task_id \
         where t.series_id = any($1) and r.status = 'scheduled' order by r.remind_at",
        series_ids,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.series_id,
                ReminderRow {
                    task_id: r.task_id,
                    user_id: r.user_id,
                    title: r.title,
                    due_date: r.due_date,
                    remind_at: r.remind_at,
                    status: r.status,
                    fired_at: r.fired_at,
                    updated_at: r.updated_at,
                },
            )
        })
        .collect())
}

/// Filters of a reminder query.
#[derive(Debug, Clone, Default)]
pub struct ReminderFilter {
    pub status: Option<String>,
    pub user_id: Option<String>,
    pub task_id: Option<Uuid>,
}

/// A page of reminders by due time, and how many match in all.
pub async fn list_reminders(
    db: &PgPool,
    f: &ReminderFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ReminderRow>, i64), sqlx::Error> {
    let rows = sqlx::query_as!(
        ReminderRow,
        "select r.task_id, r.user_id, r.title, r.due_date, r.remind_at, r.status, r.fired_at, r.updated_at \
         from reminder r \
         where ($1::text is null or r.status = $1) and ($2::text is null or r.user_id = $2) and ($3::uuid is null or r.task_id = $3) \
         order by r.remind_at, r.task_id limit $4 offset $5",
        f.status,
        f.user_id,
        f.task_id,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"select count(*) as "n!" from reminder r
           where ($1::text is null or r.status = $1) and ($2::text is null or r.user_id = $2) and ($3::uuid is null or r.task_id = $3)"#,
        f.status,
        f.user_id,
        f.task_id,
    )
    .fetch_one(db)
    .await?;
    Ok((rows, total))
}

/// Rows of each kind that [`prune_finished`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub reminders: u64,
    pub next_instances: u64,
    pub series: u64,
}

/// Deletes the rows finished more than `keep` ago, at most `batch` rows per
/// statement (each its own short transaction, oldest first, skipping rows
/// another pruner holds): reminders that fired or were cancelled, next
/// instances created or withdrawn, and series ended by a deletion, with the
/// rows linking their tasks and next instances to them. An active or paused
/// series and a scheduled reminder never go. `keep` must be longer than
/// [`todo_schedule::plan::late_reminder_grace`], so that a reminder's event
/// seen again cannot schedule a reminder that fired.
pub async fn prune_finished(
    db: &PgPool,
    keep: Duration,
    batch: i64,
) -> Result<Pruned, sqlx::Error> {
    let keep = keep.as_secs_f64();
    let reminders = todo_core::database::delete_in_batches(batch, || async {
        sqlx::query!(
            "delete from reminder where task_id in ( \
                 select task_id from reminder \
                 where status <> 'scheduled' and updated_at < now() - make_interval(secs => $1) \
                 order by updated_at limit $2 for update skip locked)",
            keep,
            batch,
        )
        .execute(db)
        .await
        .map(|done| done.rows_affected())
    })
    .await?;
    let next_instances = todo_core::database::delete_in_batches(batch, || async {
        sqlx::query!(
            "delete from next_instance where parent_task_id in ( \
                 select parent_task_id from next_instance \
                 where state in ('created', 'withdrawn', 'skipped') and updated_at < now() - make_interval(secs => $1) \
                 order by updated_at limit $2 for update skip locked)",
            keep,
            batch,
        )
        .execute(db)
        .await
        .map(|done| done.rows_affected())
    })
    .await?;
    let series = todo_core::database::delete_in_batches(batch, || async {
        sqlx::query_scalar!(
            r#"with ended as (
                   select id from recurrence_schedule
                   where ended_reason = 'deleted' and updated_at < now() - make_interval(secs => $1)
                   order by updated_at limit $2 for update skip locked),
               tasks as (delete from series_task where series_id in (select id from ended)),
               nexts as (delete from next_instance where series_id in (select id from ended)),
               gone as (delete from recurrence_schedule where id in (select id from ended) returning id)
               select count(*) as "n!" from gone"#,
            keep,
            batch,
        )
        .fetch_one(db)
        .await
        .map(|n| u64::try_from(n).unwrap_or(0))
    })
    .await?;
    Ok(Pruned {
        reminders,
        next_instances,
        series,
    })
}
