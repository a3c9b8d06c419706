//! Operators' view of a consuming service's dead letters
//! (`/api/v1/dead-letters`): list them with their reason, and redrive one or
//! all once the cause is fixed. Served by every service that consumes a
//! topic; the app carries its consumer's [`DeadLetters`] as data.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use serde_json::Value;
use todo_contract::{Timestamp, Topic};
use uuid::Uuid;

use super::{DeadLetter, DeadLetters, RedriveAll, RedriveError, Redriven, Which};
use crate::{auth::Caller, problem::ApiError};

#[derive(Tags)]
enum ApiTags {
    /// Events this service's consumer could never apply, kept instead of
    /// dropped (operators only).
    DeadLetters,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DeadLetterState {
    /// Not redriven yet (the default).
    Open,
    /// Applied by a redrive.
    Redriven,
    All,
}

/// An event the consumer could never apply.
#[derive(Debug, Clone, Object)]
pub struct DeadLetterView {
    /// What the redrive route takes.
    pub id: i64,
    pub topic: String,
    /// The event's `event_id`, or `cloudevent:<id>` for one without a
    /// readable envelope.
    pub event_key: String,
    #[oai(nullable)]
    pub task_id: Option<Uuid>,
    /// The app whose consumer gave up on it.
    pub consumer: String,
    /// Why it could not be applied the last time it was tried.
    pub reason: String,
    /// Deliveries and redrives that failed.
    pub attempts: i32,
    /// The CloudEvent as delivered.
    pub event: Value,
    pub first_failed_at: Timestamp,
    pub failed_at: Timestamp,
    /// When a redrive applied it.
    #[oai(nullable)]
    pub redriven_at: Option<Timestamp>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        DeadLetterView {
            id: d.id,
            topic: d.topic,
            event_key: d.event_key,
            task_id: d.task_id,
            consumer: d.consumer,
            reason: d.reason,
            attempts: d.attempts,
            event: d.cloud_event,
            first_failed_at: d.first_failed_at.into(),
            failed_at: d.failed_at.into(),
            redriven_at: d.redriven_at.map(Into::into),
        }
    }
}

/// A page of dead letters, newest failure first.
#[derive(Debug, Clone, Object)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetterView>,
    /// How many match in all.
    pub total: i64,
}

/// How a redrive ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum RedriveOutcome {
    /// Applied now.
    Applied,
    /// The consumer had applied it already (a redelivery got through).
    AlreadyApplied,
    /// An earlier redrive applied it; nothing was done.
    AlreadyRedriven,
}

/// The answer to a redrive of one dead letter.
#[derive(Debug, Clone, Object)]
pub struct RedriveAnswer {
    pub id: i64,
    pub outcome: RedriveOutcome,
}

/// The answer to a redrive of every open dead letter.
#[derive(Debug, Clone, Object)]
pub struct RedriveAllAnswer {
    pub applied: u64,
    pub already_applied: u64,
    /// Failed again; still open, one more attempt counted.
    pub still_failing: u64,
}

#[derive(ApiResponse)]
enum RedriveAnswered {
    /// Done (or done before: redriving again changes nothing).
    #[oai(status = 200)]
    Done(Json<RedriveAnswer>),
}

fn problem(e: RedriveError) -> ApiError {
    match e {
        RedriveError::NotFound(id) => ApiError::not_found(format!("no dead letter {id}")),
        RedriveError::StillFailing(reason) => {
            ApiError::conflict("still_failing", format!("the event failed again: {reason}"))
        }
        RedriveError::Unavailable(m) => ApiError::unavailable(m),
    }
}

/// A topic a dead letter can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "kebab-case")]
pub enum TopicParam {
    TaskEvents,
    TaskUpdates,
    Reminders,
}

fn topic_name(topic: Option<TopicParam>) -> Option<&'static str> {
    topic.map(|t| {
        match t {
            TopicParam::TaskEvents => Topic::TaskEvents,
            TopicParam::TaskUpdates => Topic::TaskUpdates,
            TopicParam::Reminders => Topic::Reminders,
        }
        .name()
    })
}

/// The dead-letters API.
pub struct DeadLettersApi;

#[OpenApi(prefix_path = "/api/v1/dead-letters", tag = "ApiTags::DeadLetters")]
impl DeadLettersApi {
    /// List dead letters, newest failure first. Operators only.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        letters: Data<&DeadLetters>,
        caller: Caller,
        /// `open` (default), `redriven` or `all`.
        state: Query<Option<DeadLetterState>>,
        /// Only this topic's.
        topic: Query<Option<TopicParam>>,
        /// 1–500, default 100.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u32>>,
    ) -> Result<Json<DeadLetterPage>, ApiError> {
        caller.identity().require_operator()?;
        let topic = topic_name(topic.0);
        let which = match state.0.unwrap_or(DeadLetterState::Open) {
            DeadLetterState::Open => Which::Open,
            DeadLetterState::Redriven => Which::Redriven,
            DeadLetterState::All => Which::All,
        };
        let (items, total) = letters
            .list(
                which,
                topic,
                i64::from(limit.0.unwrap_or(100)),
                i64::from(offset.0.unwrap_or(0)),
            )
            .await?;
        Ok(Json(DeadLetterPage {
            dead_letters: items.into_iter().map(Into::into).collect(),
            total,
        }))
    }

    /// Redrive one dead letter: apply its event now, once (after its cause is
    /// fixed). 409 `still_failing` if it fails again (one more attempt is
    /// counted); redriving one already redriven changes nothing. Operators
    /// only.
    #[oai(path = "/:id/redrive", method = "post")]
    async fn redrive(
        &self,
        letters: Data<&DeadLetters>,
        caller: Caller,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<RedriveAnswered, ApiError> {
        caller.identity().require_operator()?;
        let outcome = match letters.redrive(id.0).await.map_err(problem)? {
            Redriven::Applied => RedriveOutcome::Applied,
            Redriven::AlreadyApplied => RedriveOutcome::AlreadyApplied,
            Redriven::AlreadyRedriven => RedriveOutcome::AlreadyRedriven,
        };
        Ok(RedriveAnswered::Done(Json(RedriveAnswer {
            id: id.0,
            outcome,
        })))
    }

    /// Redrive every open dead letter (of `topic`, or all), oldest failure
    /// first, at most 1 000 per call. Operators only.
    #[oai(path = "/redrive", method = "post")]
    async fn redrive_all(
        &self,
        letters: Data<&DeadLetters>,
        caller: Caller,
        /// Only this topic's.
        topic: Query<Option<TopicParam>>,
    ) -> Result<Json<RedriveAllAnswer>, ApiError> {
        caller.identity().require_operator()?;
        let topic = topic_name(topic.0);
        let RedriveAll {
            applied,
            already_applied,
            still_failing,
        } = letters.redrive_all(topic).await.map_err(problem)?;
        Ok(Json(RedriveAllAnswer {
            applied,
            already_applied,
            still_failing,
        }))
    }
}
