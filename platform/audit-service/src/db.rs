//! Rows of `audit_record`: insert and read, nothing else (the role cannot
//! update or delete them).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use todo_contract::EventEnvelope;
use uuid::Uuid;

/// A stored event: the envelope's fields, and when it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: String,
    pub task_id: Uuid,
    pub user_id: String,
    pub payload: serde_json::Value,
    pub timestamp: DateTime<Utc>,
    /// Set by the database when the record was stored.
    pub recorded_at: DateTime<Utc>,
}

/// A row as `query_as!` reads it (columns by name, checked at compile time).
struct Row {
    id: Uuid,
    event_id: Uuid,
    event_type: String,
    schema_version: String,
    task_id: Uuid,
    user_id: String,
    payload: serde_json::Value,
    event_timestamp: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

impl From<Row> for AuditRecord {
    fn from(r: Row) -> Self {
        AuditRecord {
            id: r.id,
            event_id: r.event_id,
            event_type: r.event_type,
            schema_version: r.schema_version,
            task_id: r.task_id,
            user_id: r.user_id,
            payload: r.payload,
            timestamp: r.event_timestamp,
            recorded_at: r.recorded_at,
        }
    }
}

/// Stores the record of `e` (a new id; `recorded_at` is the database's
/// clock); a second record of the same event is ignored.
pub async fn insert(conn: &mut PgConnection, e: &EventEnvelope) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into audit_record (id, event_id, event_type, schema_version, task_id, user_id, payload, event_timestamp) \
         values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (event_id) do nothing",
        Uuid::now_v7(),
        e.event_id,
        e.event_type.as_str(),
        e.schema_version,
        e.task_id,
        e.user_id,
        e.payload,
        e.timestamp.get(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Filters of a record query.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub task_id: Option<Uuid>,
    pub event_type: Option<String>,
    /// Only records of this user's tasks.
    pub user_id: Option<String>,
}

/// A page of records in chronological order, and how many match in all.
pub async fn list(
    db: &PgPool,
    f: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AuditRecord>, i64), sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        "select id, event_id, event_type, schema_version, task_id, user_id, payload, event_timestamp, recorded_at \
         from audit_record \
         where ($1::uuid is null or task_id = $1) and ($2::text is null or event_type = $2) \
           and ($5::text is null or user_id = $5) \
         order by event_timestamp, seq limit $3 offset $4",
        f.task_id,
        f.event_type,
        limit,
        offset,
        f.user_id,
    )
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"select count(*) as "total!" from audit_record
           where ($1::uuid is null or task_id = $1) and ($2::text is null or event_type = $2)
             and ($3::text is null or user_id = $3)"#,
        f.task_id,
        f.event_type,
        f.user_id,
    )
    .fetch_one(db)
    .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}

/// One record by id.
pub async fn get(db: &PgPool, id: Uuid) -> Result<Option<AuditRecord>, sqlx::Error> {
    Ok(sqlx::query_as!(
        Row,
        "select id, event_id, event_type, schema_version, task_id, user_id, payload, event_timestamp, recorded_at \
         from audit_record where id = $1",
        id,
    )
    .fetch_optional(db)
    .await?
    .map(Into::into))
}
