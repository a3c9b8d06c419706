//! The HTTP API (`/api/v1/tasks`): parse, call [`TaskService`], convert.

use chrono::{DateTime, FixedOffset, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi, SecurityScheme, Tags,
    param::{Header, Path, Query},
    payload::Json,
    types::MaybeUndefined,
};
use todo_contract::{Frequency, TaskSnapshot, TaskStatus};
use todo_core::{
    auth::{BearerToken, DevUserHeader, InternalCall},
    problem::ApiError,
    text::Text,
};
use uuid::Uuid;

use crate::domain::{TaskFields, TaskPatch};
use crate::service::{TaskError, TaskService, Update};

/// Largest page a list returns.
pub const MAX_LIMIT: u32 = 200;

#[derive(Tags)]
enum ApiTags {
    /// Create, read, change, complete and delete tasks. Every change is
    /// published to `task-events` and `task-updates` before it is answered.
    Tasks,
}

/// A new task, or the full replacement of one (PUT). An optional field that
/// is absent or `null` takes its default.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct TaskInput {
    /// 1–255 characters, at least one of them not white space (Unicode
    /// `White_Space`), none of them NUL (stored trimmed).
    #[oai(validator(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00]*[^\x00\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00]*$"
    ))]
    pub title: Text,
    /// Up to 10 000 characters, none of them NUL.
    #[oai(nullable, validator(max_length = 10000, pattern = r"^[^\x00]*$"))]
    pub description: Option<Text>,
    /// Default `pending`.
    #[oai(nullable)]
    pub status: Option<TaskStatus>,
    /// RFC 3339 date-time; stored in UTC.
    #[oai(nullable)]
    pub due_date: Option<DateTime<FixedOffset>>,
    /// RFC 3339 date-time at which a reminder fires.
    #[oai(nullable)]
    pub reminder_time: Option<DateTime<FixedOffset>>,
    /// Default: true when `recurrence_schedule` is given. Needs a due date.
    #[oai(nullable)]
    pub is_recurring: Option<bool>,
    #[oai(nullable)]
    pub recurrence_schedule: Option<Frequency>,
    /// IANA time zone, default `UTC`.
    #[oai(nullable)]
    pub timezone: Option<TimeZone>,
    /// The task this one continues (set by the recurring-task service): one
    /// of your own tasks, else 404. Set or changed only then; an unchanged
    /// parent deleted since is kept.
    #[oai(nullable)]
    pub parent_task_id: Option<Uuid>,
}

/// A partial change: an absent field is kept; `null` clears a field that can
/// be empty (description, due date, reminder time, recurrence schedule) and
/// keeps one that cannot (title, status, is_recurring, timezone).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct TaskPatchInput {
    /// 1–255 characters, at least one of them not white space (Unicode
    /// `White_Space`), none of them NUL (stored trimmed).
    #[oai(
        nullable,
        validator(
            min_length = 1,
            max_length = 255,
            pattern = r"^[^\x00]*[^\x00\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00]*$"
        )
    )]
    pub title: Option<Text>,
    /// Up to 10 000 characters, none of them NUL; `null` clears it.
    #[oai(nullable, validator(max_length = 10000, pattern = r"^[^\x00]*$"))]
    pub description: MaybeUndefined<Text>,
    #[oai(nullable)]
    pub status: Option<TaskStatus>,
    #[oai(nullable)]
    pub due_date: MaybeUndefined<DateTime<FixedOffset>>,
    #[oai(nullable)]
    pub reminder_time: MaybeUndefined<DateTime<FixedOffset>>,
    #[oai(nullable)]
    pub is_recurring: Option<bool>,
    #[oai(nullable)]
    pub recurrence_schedule: MaybeUndefined<Frequency>,
    #[oai(nullable)]
    pub timezone: Option<TimeZone>,
}

/// An IANA time zone name, e.g. `Europe/Berlin` (the document lists them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone(pub String);

impl poem_openapi::types::Type for TimeZone {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> std::borrow::Cow<'static, str> {
        "TimeZone".into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        poem_openapi::registry::MetaSchemaRef::Reference("TimeZone".to_owned())
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        registry.create_schema::<Self, _>("TimeZone".to_owned(), |_| {
            let mut schema = poem_openapi::registry::MetaSchema::new("string");
            schema.description = Some("An IANA time zone name.");
            schema.enum_items = chrono_tz::TZ_VARIANTS
                .iter()
                .map(|tz| serde_json::Value::from(tz.name()))
                .collect();
            schema
        });
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl poem_openapi::types::ParseFromJSON for TimeZone {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(s) if s.parse::<chrono_tz::Tz>().is_ok() => Ok(TimeZone(s)),
            serde_json::Value::String(s) => Err(poem_openapi::types::ParseError::custom(format!(
                "`{s}` is not a known IANA time zone (for example `Europe/Berlin` or `UTC`)"
            ))),
            other => Err(poem_openapi::types::ParseError::expected_type(other)),
        }
    }
}

impl poem_openapi::types::ToJSON for TimeZone {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

/// One page of tasks.
#[derive(Debug, Object)]
pub struct TaskList {
    pub tasks: Vec<TaskSnapshot>,
    /// How many tasks match the filter in all.
    pub total: i64,
}

#[derive(ApiResponse)]
enum Created {
    /// Created, and `task-created` is on Kafka.
    #[oai(status = 201)]
    Created(Json<TaskSnapshot>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted, and `task-deleted` is on Kafka.
    #[oai(status = 204)]
    Deleted,
}

/// The Todo API.
pub struct TasksApi;

type Answer<T> = Result<T, ApiError>;

#[OpenApi(prefix_path = "/api/v1/tasks", tag = "ApiTags::Tasks")]
impl TasksApi {
    /// Create a task.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        service: Data<&TaskService>,
        caller: TaskCaller,
        /// Retrying with the same key returns the first answer and never creates a second task.
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        key: Header<Option<String>>,
        body: Json<TaskInput>,
    ) -> Answer<Created> {
        let user = caller.user();
        let key = key.0.as_deref();
        let task = service.create(&user, key, fields_from(body.0)).await?;
        Ok(Created::Created(Json(task)))
    }

    /// List your tasks, oldest first.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        service: Data<&TaskService>,
        caller: TaskCaller,
        status: Query<Option<TaskStatus>>,
        /// 1–200, default 50.
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u32>>,
        /// Default 0.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u32>>,
    ) -> Answer<Json<TaskList>> {
        let user = caller.user();
        let (tasks, total) = service
            .list(
                &user,
                status.0,
                i64::from(limit.0.unwrap_or(50)),
                i64::from(offset.0.unwrap_or(0)),
            )
            .await?;
        Ok(Json(TaskList { tasks, total }))
    }

    /// Get one of your tasks.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        service: Data<&TaskService>,
        caller: TaskCaller,
        id: Path<Uuid>,
    ) -> Answer<Json<TaskSnapshot>> {
        let user = caller.user();
        Ok(Json(service.get(&user, id.0).await?))
    }

    /// Replace a task's fields.
    #[oai(path = "/:id", method = "put")]
    async fn replace(
        &self,
        service: Data<&TaskService>,
        caller: TaskCaller,
        id: Path<Uuid>,
        body: Json<TaskInput>,
    ) -> Answer<Json<TaskSnapshot>> {
        let user = caller.user();
        let change = Update::Replace(fields_from(body.0));
        Ok(Json(service.update(&user, id.0, change).await?))
    }

    /// Change some of a task's fields.
    #[oai(path = "/:id", method = "patch")]
    async fn patch(
        &self,
        service: Data<&TaskService>,
        caller: TaskCaller,
        id: Path<Uuid>,
        body: Json<TaskPatchInput>,
    ) -> Answer<Json<TaskSnapshot>> {
        let user = caller.user();
        let change = Update::Patch(patch_from(body.0));
        Ok(Json(service.update(&user, id.0, change).await?))
    }

    /// Mark a task complete (409 when it already is).
    #[oai(path = "/:id/complete", method = "post")]
    async fn complete(
        &self,
        service: Data<&TaskService>,
        caller: TaskCaller,
        /// Retrying with the same key returns the first answer instead of 409.
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        key: Header<Option<String>>,
        id: Path<Uuid>,
    ) -> Answer<Json<TaskSnapshot>> {
        let user = caller.user();
        let key = key.0.as_deref();
        Ok(Json(service.complete(&user, key, id.0).await?))
    }

    /// Delete a task.
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        service: Data<&TaskService>,
        caller: TaskCaller,
        id: Path<Uuid>,
    ) -> Answer<Deleted> {
        let user = caller.user();
        service.delete(&user, id.0).await?;
        Ok(Deleted::Deleted)
    }
}

/// Refuses a request whose `Idempotency-Key`, `X-On-Behalf-Of` or
/// `X-User-Id` is not text (poem-openapi would read such a header as absent,
/// so a caller's mistake would silently act without its key).
pub async fn refuse_unreadable_headers<E: poem::Endpoint>(
    ep: std::sync::Arc<E>,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    for name in ["Idempotency-Key", "X-On-Behalf-Of", "X-User-Id"] {
        if req
            .headers()
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_err())
        {
            let e = ApiError::bad_request(
                "invalid_request",
                format!("header `{name}` must be visible ASCII text"),
            );
            return Ok(e.into_response());
        }
    }
    Ok(ep.call(req).await?.into_response())
}

/// Who calls the Todo API: a user with a bearer token, the recurring-task
/// service through Dapr acting for a user (`X-On-Behalf-Of`), or, with the
/// development switch on, `X-User-Id`. Everyone reads and changes only their
/// own tasks (operators too); another user's task is a 404.
#[derive(SecurityScheme)]
pub enum TaskCaller {
    Internal(InternalCall),
    DevHeader(DevUserHeader),
    Bearer(BearerToken),
}

impl TaskCaller {
    /// The user whose tasks this call reads and changes.
    fn user(&self) -> String {
        match self {
            TaskCaller::Internal(InternalCall(id))
            | TaskCaller::DevHeader(DevUserHeader(id))
            | TaskCaller::Bearer(BearerToken(id)) => id.subject.clone(),
        }
    }
}

fn utc(t: DateTime<FixedOffset>) -> DateTime<Utc> {
    t.with_timezone(&Utc)
}

fn fields_from(input: TaskInput) -> TaskFields {
    TaskFields {
        is_recurring: input
            .is_recurring
            .unwrap_or(input.recurrence_schedule.is_some()),
        title: input.title.into_inner(),
        description: input.description.map(Text::into_inner),
        status: input.status.unwrap_or(TaskStatus::Pending),
        due_date: input.due_date.map(utc),
        reminder_time: input.reminder_time.map(utc),
        recurrence_schedule: input.recurrence_schedule,
        timezone: input.timezone.map_or_else(|| "UTC".to_owned(), |tz| tz.0),
        parent_task_id: input.parent_task_id,
    }
}

fn maybe<T, U>(m: MaybeUndefined<T>, f: impl FnOnce(T) -> U) -> Option<Option<U>> {
    match m {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(f(v))),
    }
}

fn patch_from(input: TaskPatchInput) -> TaskPatch {
    TaskPatch {
        title: input.title.map(Text::into_inner),
        description: maybe(input.description, Text::into_inner),
        status: input.status,
        due_date: maybe(input.due_date, utc),
        reminder_time: maybe(input.reminder_time, utc),
        is_recurring: input.is_recurring,
        recurrence_schedule: maybe(input.recurrence_schedule, |f| f),
        timezone: input.timezone.map(|tz| tz.0),
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Invalid(v) => ApiError::unprocessable("validation_failed", v.0),
            TaskError::NotFound(_) | TaskError::ParentNotFound(_) => {
                ApiError::not_found(e.to_string())
            }
            TaskError::AlreadyComplete(_) => ApiError::conflict("already_complete", e.to_string()),
            TaskError::KeyReused(_) => {
                ApiError::unprocessable("idempotency_key_reused", e.to_string())
            }
            TaskError::DeletedSince { .. } => ApiError::conflict("deleted_since", e.to_string()),
            TaskError::BusUnavailable(_) | TaskError::Unconfirmed(_) => {
                ApiError::unavailable(e.to_string())
            }
            TaskError::Database(db) => ApiError::from(db),
            TaskError::Unreadable(reason) => {
                tracing::error!(reason = %reason, "a stored answer or an event does not (de)serialize");
                ApiError::internal()
            }
        }
    }
}
