//! The recurring-task service's handler of `task-events` against a real
//! PostgreSQL: which series a task joins. A task joins the series of its
//! parent only when both belong to the same user, so another user's task
//! can never end or rewrite someone's series.

use anyhow::{Context, Result, ensure};
use chrono::{Duration as Span, Utc};
use recurring_task_service::handler::Handler;
use serde_json::{Value, json};
use sqlx::PgPool;
use todo_contract::{EventEnvelope, EventType, Timestamp, Topic};
use todo_core::consumer::EventHandler;
use todo_core::intent::Waker;
use uuid::Uuid;

use crate::{Ctx, RECURRING, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![trial!(
        ctx,
        a_task_naming_another_users_task_as_parent_starts_its_own_series_and_never_touches_theirs
    )]
}

/// A recurring daily task's snapshot, as the Todo service publishes it.
fn recurring(id: Uuid, title: &str, parent: Option<Uuid>) -> Value {
    let now = Timestamp::now();
    json!({
        "id": id, "title": title, "description": null, "status": "pending",
        "due_date": Timestamp::new(Utc::now() + Span::days(1)),
        "reminder_time": Timestamp::new(Utc::now() + Span::hours(2)),
        "is_recurring": true, "recurrence_schedule": "daily", "timezone": "UTC",
        "parent_task_id": parent, "created_at": now, "updated_at": now, "version": 1,
    })
}

/// Applies one event as the consumer does: in a transaction of its own.
async fn apply(
    pool: &PgPool,
    handler: &Handler,
    event_type: EventType,
    user: &str,
    task: &Value,
) -> Result<()> {
    let task_id: Uuid = serde_json::from_value(task["id"].clone())?;
    let event = EventEnvelope::new(event_type, Timestamp::now(), task_id, user, task.clone());
    let mut tx = pool.begin().await?;
    handler
        .handle(&mut tx, Topic::TaskEvents, &event)
        .await
        .map_err(|e| anyhow::anyhow!("{event_type} of {task_id} by {user}: {e:?}"))?;
    tx.commit().await?;
    Ok(())
}

async fn a_task_naming_another_users_task_as_parent_starts_its_own_series_and_never_touches_theirs(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&RECURRING).await?;
    let handler = Handler {
        waker: Waker::default(),
    };
    let (alices, bobs) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_task = recurring(alices, "water plants", None);
    apply(
        &pool,
        &handler,
        EventType::TaskCreated,
        "alice",
        &alice_task,
    )
    .await?;

    // Bob names Alice's task as the parent of his own recurring task, then
    // completes it and deletes it.
    let mut bob_task = recurring(bobs, "hijack", Some(alices));
    apply(&pool, &handler, EventType::TaskCreated, "bob", &bob_task).await?;
    bob_task["status"] = json!("complete");
    bob_task["version"] = json!(2);
    apply(&pool, &handler, EventType::TaskCompleted, "bob", &bob_task).await?;
    apply(&pool, &handler, EventType::TaskDeleted, "bob", &bob_task).await?;

    let (active, ended, current, title): (bool, Option<String>, Uuid, String) = sqlx::query_as(
        "select is_active, ended_reason, current_task_id, title from recurrence_schedule where id = $1",
    )
    .bind(alices)
    .fetch_one(&pool)
    .await?;
    ensure!(
        active && ended.is_none(),
        "Alice's series was ended by Bob's task (is_active {active}, ended_reason {ended:?})"
    );
    ensure!(
        current == alices && title == "water plants",
        "Alice's series was rewritten: current task {current}, title {title:?}"
    );
    let reminder: String = sqlx::query_scalar("select status from reminder where task_id = $1")
        .bind(alices)
        .fetch_one(&pool)
        .await?;
    ensure!(
        reminder == "scheduled",
        "Alice's reminder was {reminder} by Bob's task"
    );

    // Bob's task recurs for Bob: a series of his own, which his deletion ends,
    // and his completion's next instance belongs to it.
    let (series, owner, bob_active): (Uuid, String, bool) = sqlx::query_as(
        "select s.id, s.user_id, s.is_active from series_task t \
         join recurrence_schedule s on s.id = t.series_id where t.task_id = $1",
    )
    .bind(bobs)
    .fetch_one(&pool)
    .await
    .context("Bob's task belongs to no series")?;
    ensure!(
        series == bobs && owner == "bob" && !bob_active,
        "Bob's task is in series {series} of {owner} (active {bob_active})"
    );
    let started: Vec<Value> =
        sqlx::query_scalar("select payload from intent where kind = 'workflow'")
            .fetch_all(&pool)
            .await?;
    ensure!(
        started.len() == 1
            && started
                .iter()
                .all(|input| input["series_id"] == json!(bobs) && input["user_id"] == "bob"),
        "a next instance was started in another user's series: {started:?}"
    );
    Ok(())
}
