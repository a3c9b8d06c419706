//! Task operations: each one validates, writes the task and its events in one
//! transaction, and answers only once the events are on Kafka.

use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use todo_contract::{EventEnvelope, EventType, TaskSnapshot, TaskStatus, Topic};
use tracing::Span;
use uuid::Uuid;

use crate::db::{idempotency, outbox, task as task_db};
use crate::domain::{Change, Task, TaskFields, TaskPatch, ValidationError};
use crate::relay::Relay;

/// The app id events name as their source.
pub const SOURCE: &str = "todo-service";

/// Why an operation did not happen (or is not confirmed).
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("task {0} not found")]
    NotFound(Uuid),
    /// `parent_task_id` names no task of the caller's (another user's task
    /// is not told apart from none, as everywhere).
    #[error("parent task {0} not found: parent_task_id must name one of your own tasks")]
    ParentNotFound(Uuid),
    #[error("task {0} is already complete")]
    AlreadyComplete(Uuid),
    #[error("Idempotency-Key `{0}` was already used for a different request")]
    KeyReused(String),
    /// The task a keyed request created (or completed) has been deleted since:
    /// its first answer would describe a task that no longer exists.
    #[error(
        "the request with Idempotency-Key `{key}` was answered with task {task_id}, which has been deleted since"
    )]
    DeletedSince { key: String, task_id: Uuid },
    /// Nothing was written: publishing is failing right now.
    #[error("events cannot be published right now ({0}); nothing was changed, retry later")]
    BusUnavailable(String),
    /// The change is saved but its events are not on Kafka yet; they will be
    /// published when the bus recovers.
    #[error(
        "the change was saved but its events are not confirmed on Kafka yet ({0}); they will be \
         published when it recovers — retry with the same Idempotency-Key to get the result"
    )]
    Unconfirmed(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored answer or an event does not (de)serialize: a defect, not bad input.
    #[error("unreadable: {0}")]
    Unreadable(String),
}

/// The caller's idempotency key, if any.
pub type IdempotencyKey<'a> = Option<&'a str>;

/// The HTTP status a create is answered with (and recorded under its key).
const CREATED: u16 = 201;
/// The HTTP status of every other answer with a body.
const OK: u16 = 200;

/// Task operations over one database and one relay.
#[derive(Clone)]
pub struct TaskService {
    pool: PgPool,
    relay: Relay,
    publish_wait: Duration,
}

enum Begun {
    Fresh(Transaction<'static, Postgres>),
    Replayed(TaskSnapshot),
}

struct Written {
    view: TaskSnapshot,
    outbox_ids: Vec<i64>,
}

impl TaskService {
    /// Operations answering once events are published, or after `publish_wait`.
    pub fn new(pool: PgPool, relay: Relay, publish_wait: Duration) -> Self {
        TaskService {
            pool,
            relay,
            publish_wait,
        }
    }

    /// Creates a task; publishes `task-created`. A `parent_task_id` must name
    /// one of the user's own tasks ([`TaskError::ParentNotFound`]).
    #[tracing::instrument(skip_all, fields(user_id = %user_id, task_id = tracing::field::Empty))]
    pub async fn create(
        &self,
        user_id: &str,
        key: IdempotencyKey<'_>,
        fields: TaskFields,
    ) -> Result<TaskSnapshot, TaskError> {
        let fields = fields.validated()?;
        let hash = request_hash("create", &fields);
        let mut tx = match self.begin_keyed(user_id, key, "create", &hash).await? {
            Begun::Fresh(tx) => tx,
            Begun::Replayed(view) => return Ok(view),
        };
        check_parent(&mut tx, user_id, fields.parent_task_id).await?;
        let task = Task::create(user_id, fields, Utc::now());
        Span::current().record("task_id", tracing::field::display(task.id));
        task_db::insert(&mut tx, &task).await?;
        let written = write_events(&mut tx, EventType::TaskCreated, &task).await?;
        self.finish(tx, user_id, key.map(|k| (k, CREATED)), written)
            .await
    }

    /// Replaces a task's fields (PUT) or applies a partial change (PATCH);
    /// publishes `task-updated`, or `task-completed` when it becomes complete.
    /// A change that changes nothing publishes nothing. A `parent_task_id`
    /// set or changed must name one of the user's own tasks.
    #[tracing::instrument(skip_all, fields(user_id = %user_id, task_id = %id))]
    pub async fn update(
        &self,
        user_id: &str,
        id: Uuid,
        change: Update,
    ) -> Result<TaskSnapshot, TaskError> {
        let mut tx = self.begin().await?;
        let task = task_db::get_for_update(&mut tx, user_id, id)
            .await?
            .ok_or(TaskError::NotFound(id))?;
        let next = match change {
            Update::Replace(fields) => fields,
            Update::Patch(patch) => task.fields.patched(patch),
        }
        .validated()?;
        // Only a parent being set or changed is checked: an instance whose
        // (unchanged) parent was deleted since stays editable.
        if next.parent_task_id != task.fields.parent_task_id {
            check_parent(&mut tx, user_id, next.parent_task_id).await?;
        }
        let written = match task.change_to(next) {
            Change::Unchanged => Written {
                view: task.snapshot(),
                outbox_ids: Vec::new(),
            },
            Change::Apply(fields, event) => {
                let task = task.with_fields(fields, Utc::now());
                task_db::update(&mut tx, &task).await?;
                write_events(&mut tx, event, &task).await?
            }
        };
        self.finish(tx, user_id, None, written).await
    }

    /// Marks a task complete; publishes `task-completed`. 409 when it already is.
    #[tracing::instrument(skip_all, fields(user_id = %user_id, task_id = %id))]
    pub async fn complete(
        &self,
        user_id: &str,
        key: IdempotencyKey<'_>,
        id: Uuid,
    ) -> Result<TaskSnapshot, TaskError> {
        let hash = request_hash("complete", &id);
        let mut tx = match self.begin_keyed(user_id, key, "complete", &hash).await? {
            Begun::Fresh(tx) => tx,
            Begun::Replayed(view) => return Ok(view),
        };
        let task = task_db::get_for_update(&mut tx, user_id, id)
            .await?
            .ok_or(TaskError::NotFound(id))?;
        let fields = task.completion().ok_or(TaskError::AlreadyComplete(id))?;
        let task = task.with_fields(fields, Utc::now());
        task_db::update(&mut tx, &task).await?;
        let written = write_events(&mut tx, EventType::TaskCompleted, &task).await?;
        self.finish(tx, user_id, key.map(|k| (k, OK)), written)
            .await
    }

    /// Deletes a task; publishes `task-deleted` carrying its last snapshot.
    #[tracing::instrument(skip_all, fields(user_id = %user_id, task_id = %id))]
    pub async fn delete(&self, user_id: &str, id: Uuid) -> Result<(), TaskError> {
        let mut tx = self.begin().await?;
        let task = task_db::get_for_update(&mut tx, user_id, id)
            .await?
            .ok_or(TaskError::NotFound(id))?;
        task_db::delete(&mut tx, user_id, id).await?;
        let written = write_events(&mut tx, EventType::TaskDeleted, &task).await?;
        self.finish(tx, user_id, None, written).await.map(|_| ())
    }

    /// The user's task.
    #[tracing::instrument(skip_all, fields(user_id = %user_id, task_id = %id))]
    pub async fn get(&self, user_id: &str, id: Uuid) -> Result<TaskSnapshot, TaskError> {
        let task = task_db::get(&self.pool, user_id, id)
            .await?
            .ok_or(TaskError::NotFound(id))?;
        Ok(task.snapshot())
    }

    /// A page of the user's tasks and the total that match.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn list(
        &self,
        user_id: &str,
        status: Option<TaskStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<TaskSnapshot>, i64), TaskError> {
        let (tasks, total) = task_db::list(&self.pool, user_id, status, limit, offset).await?;
        Ok((tasks.iter().map(Task::snapshot).collect(), total))
    }

    /// Refuses at once while publishing fails; otherwise opens the transaction.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, TaskError> {
        if let Some(reason) = self.relay.unavailable() {
            return Err(TaskError::BusUnavailable(reason));
        }
        Ok(self.pool.begin().await?)
    }

    /// [`Self::begin`], then claims the idempotency key (if any), or replays
    /// the earlier answer given under it.
    async fn begin_keyed(
        &self,
        user_id: &str,
        key: IdempotencyKey<'_>,
        operation: &str,
        hash: &str,
    ) -> Result<Begun, TaskError> {
        let mut tx = self.begin().await?;
        let Some(key) = key else {
            return Ok(Begun::Fresh(tx));
        };
        match idempotency::claim(&mut tx, user_id, key, operation, hash).await? {
            None => Ok(Begun::Fresh(tx)),
            Some(earlier) => {
                tx.rollback().await?;
                let view = self.replay(user_id, key, operation, hash, earlier).await?;
                Ok(Begun::Replayed(view))
            }
        }
    }

    /// Records the answer under the key, commits, and waits until the events
    /// are on Kafka (or answers `Unconfirmed` after the publish wait).
    async fn finish(
        &self,
        mut tx: Transaction<'static, Postgres>,
        user_id: &str,
        keyed: Option<(&str, u16)>,
        written: Written,
    ) -> Result<TaskSnapshot, TaskError> {
        if let Some((key, status)) = keyed {
            let answer = serde_json::to_value(&written.view)
                .map_err(|e| TaskError::Unreadable(format!("the answer: {e}")))?;
            idempotency::record(&mut tx, user_id, key, status, &answer, &written.outbox_ids)
                .await?;
        }
        let pending = self.relay.watch(written.outbox_ids.clone());
        tx.commit().await?;
        if written.outbox_ids.is_empty() {
            return Ok(written.view);
        }
        self.relay.wake();
        if pending.published(self.publish_wait).await {
            Ok(written.view)
        } else {
            Err(TaskError::Unconfirmed(self.unconfirmed_reason()))
        }
    }

    /// The first answer given under `key` (a retry of the same request),
    /// once its events are on Kafka: at once when none is pending any more,
    /// else after waiting for them as the original did.
    async fn replay(
        &self,
        user_id: &str,
        key: &str,
        operation: &str,
        hash: &str,
        earlier: idempotency::Recorded,
    ) -> Result<TaskSnapshot, TaskError> {
        if earlier.operation != operation || earlier.request_hash != hash {
            return Err(TaskError::KeyReused(key.to_owned()));
        }
        let view: TaskSnapshot = earlier
            .response
            .ok_or_else(|| TaskError::Unreadable("the stored answer is missing".to_owned()))
            .and_then(|r| {
                serde_json::from_value(r)
                    .map_err(|e| TaskError::Unreadable(format!("the stored answer: {e}")))
            })?;
        if task_db::get(&self.pool, user_id, view.id).await?.is_none() {
            return Err(TaskError::DeletedSince {
                key: key.to_owned(),
                task_id: view.id,
            });
        }
        if earlier.outbox_ids.is_empty() {
            return Ok(view);
        }
        // Watch first, then ask: a publish between the two cannot go unheard.
        // The original committed before its key could be read here, so an
        // event no longer in the outbox was published and pruned since (it
        // may be long after the original, keys outlive published events).
        let pending = self.relay.watch(earlier.outbox_ids.clone());
        if !outbox::any_pending(&self.pool, &earlier.outbox_ids).await?
            || pending.published(self.publish_wait).await
        {
            Ok(view)
        } else {
            Err(TaskError::Unconfirmed(self.unconfirmed_reason()))
        }
    }

    fn unconfirmed_reason(&self) -> String {
        self.relay
            .unavailable()
            .unwrap_or_else(|| format!("not published within {:?}", self.publish_wait))
    }
}

/// A full replacement or a partial change.
#[derive(Debug, Clone)]
pub enum Update {
    Replace(TaskFields),
    Patch(TaskPatch),
}

/// Refuses a `parent_task_id` that is not one of the user's own tasks: a
/// task names its parent to join the parent's recurring series, and a series
/// is its owner's alone.
async fn check_parent(
    conn: &mut PgConnection,
    user_id: &str,
    parent: Option<Uuid>,
) -> Result<(), TaskError> {
    match parent {
        Some(parent) if !task_db::owns(&mut *conn, user_id, parent).await? => {
            Err(TaskError::ParentNotFound(parent))
        }
        _ => Ok(()),
    }
}

/// Writes the event for `task` to both topics' outbox; same event id on both.
async fn write_events(
    conn: &mut PgConnection,
    event_type: EventType,
    task: &Task,
) -> Result<Written, TaskError> {
    let envelope = EventEnvelope::new(
        event_type,
        Utc::now(),
        task.id,
        &task.user_id,
        task.snapshot(),
    );
    let body = serde_json::to_vec(&envelope.to_cloud_event(SOURCE))
        .map_err(|e| TaskError::Unreadable(format!("the event: {e}")))?;
    let mut outbox_ids = Vec::with_capacity(2);
    for topic in [Topic::TaskEvents, Topic::TaskUpdates] {
        outbox_ids
            .push(outbox::enqueue(conn, envelope.event_id, topic.name(), task.id, &body).await?);
    }
    tracing::info!(event_id = %envelope.event_id, event_type = %event_type, version = task.version, "task changed");
    Ok(Written {
        view: envelope.payload,
        outbox_ids,
    })
}

/// A digest of what a keyed request asks for, so a reused key with another
/// request is refused.
fn request_hash(operation: &str, request: &impl serde::Serialize) -> String {
    let mut h = Sha256::new();
    h.update(operation.as_bytes());
    h.update(serde_json::to_vec(request).unwrap_or_default());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
