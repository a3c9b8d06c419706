//! The HTTP API (`/api/v1/audit`): read-only queries of the audit trail.

use poem::web::Data;
use poem_openapi::{
    Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use todo_contract::{EventType, Timestamp};
use todo_core::{auth::Caller, problem::ApiError};
use uuid::Uuid;

use crate::db::{AuditRecord, Filter};
use crate::service::AuditService;

#[derive(Tags)]
enum ApiTags {
    /// The immutable history of every task event, in chronological order.
    Audit,
}

/// The kinds of task event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "AuditEventType", rename_all = "kebab-case")]
pub enum EventTypeFilter {
    TaskCreated,
    TaskUpdated,
    TaskCompleted,
    TaskDeleted,
}

impl From<EventTypeFilter> for EventType {
    fn from(t: EventTypeFilter) -> Self {
        match t {
            EventTypeFilter::TaskCreated => EventType::TaskCreated,
            EventTypeFilter::TaskUpdated => EventType::TaskUpdated,
            EventTypeFilter::TaskCompleted => EventType::TaskCompleted,
            EventTypeFilter::TaskDeleted => EventType::TaskDeleted,
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AuditRecord")]
pub struct AuditRecordView {
    pub id: Uuid,
    /// The event's id (unique: each event is recorded once).
    pub event_id: Uuid,
    /// `task-created`, `task-updated`, `task-completed` or `task-deleted`.
    pub event_type: String,
    pub schema_version: String,
    pub task_id: Uuid,
    /// Who made the change.
    pub user_id: String,
    /// The task snapshot the event carried.
    pub payload: serde_json::Value,
    /// When the change happened (the event's timestamp).
    pub timestamp: Timestamp,
    /// When the audit service stored it.
    pub recorded_at: Timestamp,
}

impl From<AuditRecord> for AuditRecordView {
    fn from(r: AuditRecord) -> Self {
        AuditRecordView {
            id: r.id,
            event_id: r.event_id,
            event_type: r.event_type,
            schema_version: r.schema_version,
            task_id: r.task_id,
            user_id: r.user_id,
            payload: r.payload,
            timestamp: r.timestamp.into(),
            recorded_at: r.recorded_at.into(),
        }
    }
}

/// One page of records.
#[derive(Debug, Object)]
pub struct AuditPage {
    pub records: Vec<AuditRecordView>,
    /// How many records match the filter in all.
    pub total: i64,
}

/// The audit API.
pub struct AuditApi;

#[OpenApi(prefix_path = "/api/v1/audit", tag = "ApiTags::Audit")]
impl AuditApi {
    /// Query the audit trail, oldest first. An operator reads everyone's
    /// (optionally one user's); a user reads the records of their own tasks.
    #[oai(path = "/", method = "get")]
    // One argument per documented query parameter.
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        audit: Data<&AuditService>,
        caller: Caller,
        /// Only this task's events.
        task_id: Query<Option<Uuid>>,
        /// Only events of this type.
        event_type: Query<Option<EventTypeFilter>>,
        /// Only this user's tasks (a user may name only themselves).
        #[oai(validator(min_length = 1, max_length = 128, pattern = "^[!-~]+$"))]
        user_id: Query<Option<String>>,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u32>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        let filter = Filter {
            task_id: task_id.0,
            event_type: event_type.0.map(|t| EventType::from(t).as_str().to_owned()),
            user_id: caller.identity().scope().user_filter(user_id.0)?,
        };
        let (records, total) = audit
            .list(
                &filter,
                i64::from(limit.0.unwrap_or(100)),
                i64::from(offset.0.unwrap_or(0)),
            )
            .await?;
        Ok(Json(AuditPage {
            records: records.into_iter().map(Into::into).collect(),
            total,
        }))
    }

    /// One record (a user's own tasks' only; another's is a 404).
    #[oai(path = "/:record_id", method = "get")]
    async fn get(
        &self,
        audit: Data<&AuditService>,
        caller: Caller,
        record_id: Path<Uuid>,
    ) -> Result<Json<AuditRecordView>, ApiError> {
        let record = audit.get(record_id.0).await?;
        match record.filter(|r| caller.identity().may_read(&r.user_id)) {
            Some(r) => Ok(Json(r.into())),
            None => Err(ApiError::not_found(format!(
                "audit record {} not found",
                record_id.0
            ))),
        }
    }
}
