//! Reading the audit trail: the use cases behind the API.

use sqlx::PgPool;
use uuid::Uuid;

use crate::db::{self, AuditRecord, Filter};

/// Queries of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditService {
    pool: PgPool,
}

impl AuditService {
    pub fn new(pool: PgPool) -> Self {
        AuditService { pool }
    }

    /// A page of records in chronological order, and how many match in all.
    #[tracing::instrument(skip_all, fields(task_id = ?filter.task_id))]
    pub async fn list(
        &self,
        filter: &Filter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<AuditRecord>, i64), sqlx::Error> {
        db::list(&self.pool, filter, limit, offset).await
    }

    /// One record.
    pub async fn get(&self, id: Uuid) -> Result<Option<AuditRecord>, sqlx::Error> {
        db::get(&self.pool, id).await
    }
}
