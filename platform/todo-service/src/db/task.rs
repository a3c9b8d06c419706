//! Rows of `task`. Every query is scoped to the owning user.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use todo_contract::{Frequency, TaskStatus};

use crate::domain::{Task, TaskFields};

/// A row as `query_as!` reads it (columns by name, checked at compile time).
struct TaskRow {
    id: Uuid,
    user_id: String,
    title: String,
    description: Option<String>,
    status: String,
    due_date: Option<DateTime<Utc>>,
    reminder_time: Option<DateTime<Utc>>,
    is_recurring: bool,
    recurrence_schedule: Option<String>,
    timezone: String,
    parent_task_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl TaskRow {
    fn into_task(self) -> Result<Task, sqlx::Error> {
        let corrupt =
            |what: &str| sqlx::Error::Decode(format!("task {}: unknown {what}", self.id).into());
        Ok(Task {
            id: self.id,
            fields: TaskFields {
                status: TaskStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
                recurrence_schedule: match &self.recurrence_schedule {
                    Some(s) => {
                        Some(Frequency::parse(s).ok_or_else(|| corrupt("recurrence_schedule"))?)
                    }
                    None => None,
                },
                title: self.title,
                description: self.description,
                due_date: self.due_date,
                reminder_time: self.reminder_time,
                is_recurring: self.is_recurring,
                timezone: self.timezone,
                parent_task_id: self.parent_task_id,
            },
            user_id: self.user_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// Inserts a new task.
pub async fn insert(conn: &mut PgConnection, t: &Task) -> Result<(), sqlx::Error> {
    let f = &t.fields;
    sqlx::query!(
        "insert into task (id, user_id, title, description, status, due_date, reminder_time, \
         is_recurring, recurrence_schedule, timezone, parent_task_id, created_at, updated_at, version) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        t.id,
        t.user_id,
        f.title,
        f.description,
        f.status.as_str(),
        f.due_date,
        f.reminder_time,
        f.is_recurring,
        f.recurrence_schedule.map(Frequency::as_str),
        f.timezone,
        f.parent_task_id,
        t.created_at,
        t.updated_at,
        t.version,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes a changed task (fields, updated_at, version).
pub async fn update(conn: &mut PgConnection, t: &Task) -> Result<(), sqlx::Error> {
    let f = &t.fields;
    sqlx::query!(
        "update task set title = $3, description = $4, status = $5, due_date = $6, reminder_time = $7, \
         is_recurring = $8, recurrence_schedule = $9, timezone = $10, parent_task_id = $11, \
         updated_at = $12, version = $13 where id = $1 and user_id = $2",
        t.id,
        t.user_id,
        f.title,
        f.description,
        f.status.as_str(),
        f.due_date,
        f.reminder_time,
        f.is_recurring,
        f.recurrence_schedule.map(Frequency::as_str),
        f.timezone,
        f.parent_task_id,
        t.updated_at,
        t.version,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The user's task, locked for the rest of the transaction so concurrent
/// changes of one task are serialized (and so are their events).
pub async fn get_for_update(
    conn: &mut PgConnection,
    user_id: &str,
    id: Uuid,
) -> Result<Option<Task>, sqlx::Error> {
    sqlx::query_as!(
        TaskRow,
        "select id, user_id, title, description, status, due_date, reminder_time, is_recurring, \
         recurrence_schedule, timezone, parent_task_id, created_at, updated_at, version \
         from task where id = $1 and user_id = $2 for update",
        id,
        user_id,
    )
    .fetch_optional(conn)
    .await?
    .map(TaskRow::into_task)
    .transpose()
}

/// The user's task.
pub async fn get(
    db: impl PgExecutor<'_>,
    user_id: &str,
    id: Uuid,
) -> Result<Option<Task>, sqlx::Error> {
    sqlx::query_as!(
        TaskRow,
        "select id, user_id, title, description, status, due_date, reminder_time, is_recurring, \
         recurrence_schedule, timezone, parent_task_id, created_at, updated_at, version \
         from task where id = $1 and user_id = $2",
        id,
        user_id,
    )
    .fetch_optional(db)
    .await?
    .map(TaskRow::into_task)
    .transpose()
}

/// Whether `id` is one of the user's tasks.
pub async fn owns(db: impl PgExecutor<'_>, user_id: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists(select 1 from task where id = $1 and user_id = $2) as "owns!""#,
        id,
        user_id,
    )
    .fetch_one(db)
    .await
}

/// Deletes the user's task.
pub async fn delete(conn: &mut PgConnection, user_id: &str, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "delete from task where id = $1 and user_id = $2",
        id,
        user_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One page of the user's tasks in creation order, and how many match in all.
pub async fn list(
    db: &sqlx::PgPool,
    user_id: &str,
    status: Option<TaskStatus>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Task>, i64), sqlx::Error> {
    let status = status.map(TaskStatus::as_str);
    let rows = sqlx::query_as!(
        TaskRow,
        "select id, user_id, title, description, status, due_date, reminder_time, is_recurring, \
         recurrence_schedule, timezone, parent_task_id, created_at, updated_at, version \
         from task where user_id = $1 and ($2::text is null or status = $2) \
         order by created_at, id limit $3 offset $4",
        user_id,
        status,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"select count(*) as "total!" from task where user_id = $1 and ($2::text is null or status = $2)"#,
        user_id,
        status,
    )
    .fetch_one(db)
    .await?;
    let tasks = rows
        .into_iter()
        .map(TaskRow::into_task)
        .collect::<Result<_, _>>()?;
    Ok((tasks, total))
}
