//! Rows of `notification`, and the pruning of sent ones ([`prune_sent`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use todo_contract::{Channel, Reminder, Timestamp};
use uuid::Uuid;

/// A notification as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: Uuid,
    pub reminder_event_id: Uuid,
    pub task_id: Uuid,
    pub user_id: String,
    pub notification_type: String,
    pub channel: String,
    pub title: String,
    pub due_date: Option<DateTime<Utc>>,
    pub remind_at: DateTime<Utc>,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Notification {
    /// The reminder it delivers.
    pub fn reminder(&self) -> Reminder {
        reminder_of(
            self.task_id,
            &self.user_id,
            &self.title,
            self.due_date,
            self.remind_at,
        )
    }
}

/// The reminder a notification row delivers, from its columns.
fn reminder_of(
    task_id: Uuid,
    user_id: &str,
    title: &str,
    due_date: Option<DateTime<Utc>>,
    remind_at: DateTime<Utc>,
) -> Reminder {
    Reminder {
        task_id,
        user_id: user_id.to_owned(),
        title: title.to_owned(),
        due_date: due_date.map(Timestamp::new),
        remind_at: Timestamp::new(remind_at),
    }
}

/// Stores a pending notification of `r`; whether it is new.
pub async fn insert_pending(
    conn: &mut PgConnection,
    id: Uuid,
    channel: Channel,
    r: &Reminder,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "insert into notification (id, reminder_event_id, task_id, user_id, channel, title, due_date, remind_at, status, sent_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', null) on conflict do nothing",
        id,
        r.event_id(),
        r.task_id,
        r.user_id,
        channel.as_str(),
        r.title,
        r.due_date.map(|d| d.get()),
        r.remind_at.get(),
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Whether the notification was already sent.
pub async fn is_sent(db: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query_scalar!("select status from notification where id = $1", id)
            .fetch_optional(db)
            .await?
            .is_some_and(|s| s == "sent"),
    )
}

/// Records that the notification was delivered (its row may not be committed
/// by the consumer yet: the upsert then waits for it and updates it).
pub async fn mark_sent(
    db: &PgPool,
    id: Uuid,
    channel: Channel,
    r: &Reminder,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into notification (id, reminder_event_id, task_id, user_id, channel, title, due_date, remind_at, status, sent_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, 'sent', now()) \
         on conflict (id) do update set status = 'sent', \
         sent_at = coalesce(notification.sent_at, now()), last_error = null, updated_at = now()",
        id,
        r.event_id(),
        r.task_id,
        r.user_id,
        channel.as_str(),
        r.title,
        r.due_date.map(|d| d.get()),
        r.remind_at.get(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records that an attempt failed for good (a sent notification stays sent).
pub async fn mark_failed(db: &PgPool, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update notification set status = 'failed', last_error = $2, updated_at = now() where id = $1 and status <> 'sent'",
        id,
        error,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Locks a notification until the transaction ends.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Notification>, sqlx::Error> {
    sqlx::query_as!(
        Notification,
        "select id, reminder_event_id, task_id, user_id, notification_type, channel, title, due_date, \
         remind_at, status, attempts, last_error, created_at, sent_at, updated_at \
         from notification where id = $1 for update",
        id,
    )
    .fetch_optional(conn)
    .await
}

/// Starts the next attempt of a failed notification; the updated row.
pub async fn begin_retry(conn: &mut PgConnection, id: Uuid) -> Result<Notification, sqlx::Error> {
    sqlx::query_as!(
        Notification,
        "update notification set status = 'pending', attempts = attempts + 1, last_error = null, sent_at = null, updated_at = now() \
         where id = $1 returning id, reminder_event_id, task_id, user_id, notification_type, channel, title, due_date, \
         remind_at, status, attempts, last_error, created_at, sent_at, updated_at",
        id,
    )
    .fetch_one(conn)
    .await
}

/// A pending notification whose delivery should have ended by now.
#[derive(Debug, Clone, PartialEq)]
pub struct Overdue {
    pub id: Uuid,
    pub task_id: Uuid,
    pub user_id: String,
    pub title: String,
    pub due_date: Option<DateTime<Utc>>,
    pub remind_at: DateTime<Utc>,
    /// The delivery attempt under way.
    pub attempts: i32,
    /// Times its delivery was started again by the watchdog.
    pub rescues: i32,
}

impl Overdue {
    /// The reminder it delivers.
    pub fn reminder(&self) -> Reminder {
        reminder_of(
            self.task_id,
            &self.user_id,
            &self.title,
            self.due_date,
            self.remind_at,
        )
    }
}

/// Up to `limit` notifications pending for more than `stale` since they last
/// changed, oldest first, whose delivery start is not still waiting as an
/// intent.
pub async fn overdue(
    db: &PgPool,
    stale: Duration,
    limit: i64,
) -> Result<Vec<Overdue>, sqlx::Error> {
    sqlx::query_as!(
        Overdue,
        "select id, task_id, user_id, title, due_date, remind_at, attempts, rescues from notification n \
         where status = 'pending' and updated_at < now() - make_interval(secs => $1) \
         and not exists (select 1 from intent where key like 'delivery-' || n.id || '-%') \
         order by updated_at limit $2",
        stale.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}

/// Counts a new start of a pending notification's delivery, if it is still
/// pending after `rescues` of them (so one replica wins); the new count.
pub async fn count_rescue(
    conn: &mut PgConnection,
    id: Uuid,
    rescues: i32,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar!(
        "update notification set rescues = rescues + 1, updated_at = now() \
         where id = $1 and rescues = $2 and status = 'pending' returning rescues",
        id,
        rescues,
    )
    .fetch_optional(conn)
    .await
}

/// Filters of a notification query.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<String>,
    pub task_id: Option<Uuid>,
    pub user_id: Option<String>,
}

/// A page of notifications, newest first, and how many match in all.
pub async fn list(
    db: &PgPool,
    f: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Notification>, i64), sqlx::Error> {
    let rows = sqlx::query_as!(
        Notification,
        "select id, reminder_event_id, task_id, user_id, notification_type, channel, title, due_date, \
         remind_at, status, attempts, last_error, created_at, sent_at, updated_at \
         from notification \
         where ($1::text is null or status = $1) and ($2::uuid is null or task_id = $2) and ($3::text is null or user_id = $3) \
         order by created_at desc, id limit $4 offset $5",
        f.status,
        f.task_id,
        f.user_id,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"select count(*) as "n!" from notification
           where ($1::text is null or status = $1) and ($2::uuid is null or task_id = $2) and ($3::text is null or user_id = $3)"#,
        f.status,
        f.task_id,
        f.user_id,
    )
    .fetch_one(db)
    .await?;
    Ok((rows, total))
}

/// One notification by id.
pub async fn get(db: &PgPool, id: Uuid) -> Result<Option<Notification>, sqlx::Error> {
    sqlx::query_as!(
        Notification,
        "select id, reminder_event_id, task_id, user_id, notification_type, channel, title, due_date, \
         remind_at, status, attempts, last_error, created_at, sent_at, updated_at \
         from notification where id = $1",
        id,
    )
    .fetch_optional(db)
    .await
}

/// Deletes notifications sent more than `keep` ago, at most `batch` per
/// statement (each its own short transaction, oldest first, skipping rows
/// another pruner holds); pending and failed ones never go. Returns how
/// many went. (A reminder delivered again after its notification was pruned
/// is still recognised by the consumer's inbox, kept longer.)
pub async fn prune_sent(db: &PgPool, keep: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    todo_core::database::delete_in_batches(batch, || async {
        sqlx::query!(
            "delete from notification where id in ( \
                 select id from notification \
                 where status = 'sent' and sent_at < now() - make_interval(secs => $1) \
                 order by sent_at limit $2 for update skip locked)",
            keep.as_secs_f64(),
            batch,
        )
        .execute(db)
        .await
        .map(|done| done.rows_affected())
    })
    .await
}
