//! Operators' view of the intents a service gave up on
//! (`/api/v1/intents/failed`): list them with their reason, and run one
//! again once its cause is fixed. Served by every service that dispatches
//! intents; the app carries its pool as [`IntentStore`].

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use serde_json::Value;
use sqlx::PgPool;
use todo_contract::Timestamp;
use uuid::Uuid;

use super::FailedIntent;
use crate::{auth::Caller, problem::ApiError};

#[derive(Tags)]
enum ApiTags {
    /// Calls to the sidecar decided after a commit that it refused for good
    /// (operators only).
    Intents,
}

/// The database whose `intent` table the API reads (app data).
#[derive(Clone)]
pub struct IntentStore(pub PgPool);

/// An intent given up on after the sidecar refused it again and again.
#[derive(Debug, Clone, Object)]
#[oai(rename = "FailedIntent")]
pub struct FailedIntentView {
    /// What it brings about: a job name, a workflow instance id, an event id.
    pub key: String,
    /// The action that carries it out.
    pub kind: String,
    /// The task it is about, if any.
    #[oai(nullable)]
    pub task_id: Option<Uuid>,
    /// What the action was given.
    pub payload: Value,
    /// Attempts since it was last decided or retried.
    pub attempts: i32,
    /// Why the last attempt was refused.
    pub reason: String,
    pub failed_at: Timestamp,
}

impl From<FailedIntent> for FailedIntentView {
    fn from(i: FailedIntent) -> Self {
        FailedIntentView {
            key: i.key,
            kind: i.kind,
            task_id: i.task_id,
            payload: i.payload,
            attempts: i.attempts,
            reason: i.reason,
            failed_at: i.failed_at.into(),
        }
    }
}

/// A page of failed intents, newest first.
#[derive(Debug, Clone, Object)]
pub struct FailedIntentPage {
    pub intents: Vec<FailedIntentView>,
    /// How many failed intents there are in all.
    pub total: i64,
}

#[derive(ApiResponse)]
enum RetryAnswer {
    /// It runs again now (its refusals forgotten).
    #[oai(status = 202)]
    Accepted,
}

/// The failed-intents API.
pub struct IntentsApi;

#[OpenApi(prefix_path = "/api/v1/intents", tag = "ApiTags::Intents")]
impl IntentsApi {
    /// List the intents given up on, newest first. Operators only.
    #[oai(path = "/failed", method = "get")]
    async fn failed(
        &self,
        store: Data<&IntentStore>,
        caller: Caller,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u32>>,
    ) -> Result<Json<FailedIntentPage>, ApiError> {
        caller.identity().require_operator()?;
        let (items, total) = super::failed(
            &store.0.0,
            i64::from(limit.0.unwrap_or(100)),
            i64::from(offset.0.unwrap_or(0)),
        )
        .await?;
        Ok(Json(FailedIntentPage {
            intents: items.into_iter().map(Into::into).collect(),
            total,
        }))
    }

    /// Run a failed intent again, with its refusals forgotten (after its
    /// cause is fixed). 404 unless `key` names a failed intent. Operators
    /// only.
    #[oai(path = "/failed/:key/retry", method = "post")]
    async fn retry(
        &self,
        store: Data<&IntentStore>,
        caller: Caller,
        #[oai(validator(min_length = 1, max_length = 512))] key: Path<String>,
    ) -> Result<RetryAnswer, ApiError> {
        caller.identity().require_operator()?;
        if super::retry(&store.0.0, &key.0).await? {
            tracing::info!(key = %key.0, "failed intent retried by an operator");
            Ok(RetryAnswer::Accepted)
        } else {
            Err(ApiError::not_found(format!("no failed intent {}", key.0)))
        }
    }
}
