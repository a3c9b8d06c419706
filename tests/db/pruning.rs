//! Nothing grows without bound: the Todo service's published events and
//! expired idempotency keys, every consumer's inbox, the WebSocket update
//! log, the recurring service's finished reminders, next instances and
//! deleted series, and sent notifications are pruned in batches, and nothing
//! still needed goes.

use std::time::Duration;

use anyhow::{Result, ensure};
use poem::{EndpointExt, Route};
use todo_contract::Topic;
use todo_core::consumer::{Consumer, InboxRetention, Subscription};
use todo_core::settings::AppToken;
use todo_service::db::{idempotency, outbox};
use uuid::Uuid;

use crate::{AUDIT, Ctx, NOTIFICATION, RECURRING, TODO, WEBSOCKET, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        trial!(
            ctx,
            old_published_events_and_expired_keys_go_in_batches_and_pending_events_stay
        ),
        trial!(
            ctx,
            a_consumers_inbox_forgets_only_what_is_past_its_retention
        ),
        trial!(
            ctx,
            the_update_log_prune_never_waits_for_rows_another_pruner_holds
        ),
        trial!(
            ctx,
            finished_reminders_next_instances_and_deleted_series_go_and_live_ones_stay
        ),
        trial!(
            ctx,
            sent_notifications_go_after_their_retention_and_pending_or_failed_ones_stay
        ),
    ]
}

async fn old_published_events_and_expired_keys_go_in_batches_and_pending_events_stay(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&TODO).await?;
    let task = Uuid::new_v4();
    let mut conn = pool.acquire().await?;
    let mut ids = Vec::new();
    for _ in 0..25 {
        ids.push(outbox::enqueue(&mut conn, Uuid::now_v7(), "task-events", task, b"{}").await?);
    }
    let mut key = |i: usize| format!("key-{i}");
    for i in 0..12 {
        let mut tx = pool.begin().await?;
        idempotency::claim(&mut tx, "alice", &key(i), "create", "h").await?;
        tx.commit().await?;
    }
    drop(conn);
    // 20 published two hours ago, 2 published just now, 3 still pending (one
    // of them two hours old); 10 keys two days old, 2 fresh.
    sqlx::query(
        "update outbox set published_at = now() - interval '2 hours', created_at = now() - interval '2 hours' \
         where id = any($1)",
    )
    .bind(&ids[..20])
    .execute(&pool)
    .await?;
    sqlx::query("update outbox set published_at = now() where id = any($1)")
        .bind(&ids[20..22])
        .execute(&pool)
        .await?;
    sqlx::query("update outbox set created_at = now() - interval '2 hours' where id = $1")
        .bind(ids[22])
        .execute(&pool)
        .await?;
    sqlx::query(
        "update idempotency_key set created_at = now() - interval '2 days' where key = any($1)",
    )
    .bind((0..10).map(&mut key).collect::<Vec<_>>())
    .execute(&pool)
    .await?;

    let hour = Duration::from_secs(3600);
    let pruned = outbox::prune(&pool, hour, 7).await?;
    ensure!(
        pruned == 20,
        "published events past the hour pruned: {pruned}"
    );
    let left: Vec<i64> = sqlx::query_scalar("select id from outbox order by id")
        .fetch_all(&pool)
        .await?;
    ensure!(
        left == ids[20..],
        "the recent published and every pending event stay: {left:?}"
    );
    let pruned = idempotency::prune(&pool, 24 * hour, 3).await?;
    ensure!(pruned == 10, "keys past a day pruned: {pruned}");
    let keys: Vec<String> = sqlx::query_scalar("select key from idempotency_key order by key")
        .fetch_all(&pool)
        .await?;
    ensure!(
        keys == ["key-10", "key-11"],
        "the fresh keys stay: {keys:?}"
    );
    Ok(())
}

async fn a_consumers_inbox_forgets_only_what_is_past_its_retention(ctx: &Ctx) -> Result<()> {
    let pool = ctx.fresh_schema(&AUDIT).await?;
    sqlx::query(
        "insert into inbox (event_id, topic, received_at) \
         select gen_random_uuid(), 'task-events', now() - interval '15 days' from generate_series(1, 2500)",
    )
    .execute(&pool)
    .await?;
    let recent = Uuid::new_v4();
    sqlx::query(
        "insert into inbox (event_id, topic, received_at) values ($1, 'task-events', now() - interval '13 days')",
    )
    .bind(recent)
    .execute(&pool)
    .await?;
    // The consumer prunes from the moment its routes exist.
    let consumer = Consumer::new(
        "audit-service",
        pool.clone(),
        audit_service::handler::Handler,
        vec![Subscription {
            topic: Topic::TaskEvents,
        }],
        AppToken::Required("app-token".to_owned().into()),
        InboxRetention {
            keep: Duration::from_secs(14 * 24 * 3600),
            prune_every: Duration::from_secs(600),
        },
    );
    let mut route = Route::new();
    for (path, ep) in consumer.endpoints() {
        route = route.at(path, ep);
    }
    let _app = route.boxed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let left: Vec<Uuid> = loop {
        let left: Vec<Uuid> = sqlx::query_scalar("select event_id from inbox")
            .fetch_all(&pool)
            .await?;
        if left.len() == 1 || tokio::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(
        left == [recent],
        "only the 13-day-old id is kept ({} rows left)",
        left.len()
    );
    Ok(())
}

/// The update log is pruned in short batches that skip rows another
/// replica's pruner holds, instead of one statement that waits for them
/// (and holds every row it deletes until the end); the horizon covers every
/// row that went.
async fn the_update_log_prune_never_waits_for_rows_another_pruner_holds(ctx: &Ctx) -> Result<()> {
    let pool = ctx.fresh_schema(&WEBSOCKET).await?;
    sqlx::query(
        "insert into update_log (event_id, user_id, envelope, received_at) \
         select gen_random_uuid(), 'alice', '{}'::jsonb, now() - interval '2 days' from generate_series(1, 2500)",
    )
    .execute(&pool)
    .await?;
    let fresh: i64 = sqlx::query_scalar(
        "insert into update_log (event_id, user_id, envelope) values (gen_random_uuid(), 'alice', '{}') returning seq",
    )
    .fetch_one(&pool)
    .await?;
    // Another pruner is deleting the oldest row right now.
    let mut other = pool.begin().await?;
    let held: i64 =
        sqlx::query_scalar("select seq from update_log order by seq limit 1 for update")
            .fetch_one(&mut *other)
            .await?;
    let cutoff = chrono::Utc::now() - chrono::Duration::days(1);
    let pruned = tokio::time::timeout(
        Duration::from_secs(10),
        websocket_service::db::prune(&pool, cutoff),
    )
    .await
    .map_err(|_| anyhow::anyhow!("pruning waited for the row another pruner holds"))??;
    ensure!(pruned == 2499, "every other old update went: {pruned}");
    let horizon = websocket_service::db::pruned_through(&pool).await?;
    ensure!(
        horizon == fresh - 1,
        "the horizon covers the highest seq pruned: {horizon}, expected {}",
        fresh - 1
    );
    other.rollback().await?;
    let pruned = websocket_service::db::prune(&pool, cutoff).await?;
    ensure!(pruned == 1, "the row once held goes next time: {pruned}");
    let left: Vec<i64> = sqlx::query_scalar("select seq from update_log")
        .fetch_all(&pool)
        .await?;
    ensure!(
        left == [fresh],
        "only the fresh update stays: {left:?} (held {held})"
    );
    Ok(())
}

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// Inserts a series (its first task's id is its id) updated `age` ago.
async fn series(
    pool: &sqlx::PgPool,
    active: bool,
    reason: Option<&str>,
    age: &str,
) -> Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into recurrence_schedule (id, user_id, title, frequency, timezone, anchor_day, anchor_time, \
         next_due_date, current_task_id, is_active, ended_reason, updated_at) \
         values ($1, 'alice', 'stand-up', 'daily', 'UTC', 1, '08:00', now(), $1, $2, $3, now() - $4::interval)",
    )
    .bind(id)
    .bind(active)
    .bind(reason)
    .bind(age)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into series_task (task_id, series_id) values ($1, $1), (gen_random_uuid(), $1)",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(id)
}

/// Inserts the next instance after a fresh parent task in `series`.
async fn next(pool: &sqlx::PgPool, series: Uuid, state: &str, age: &str) -> Result<Uuid> {
    let parent = Uuid::new_v4();
    sqlx::query(
        "insert into next_instance (parent_task_id, series_id, state, task_id, updated_at) \
         values ($1, $2, $3, case when $3 <> 'creating' then gen_random_uuid() end, now() - $4::interval)",
    )
    .bind(parent)
    .bind(series)
    .bind(state)
    .bind(age)
    .execute(pool)
    .await?;
    Ok(parent)
}

/// Inserts a reminder in `status`, last changed `age` ago.
async fn reminder(pool: &sqlx::PgPool, status: &str, age: &str) -> Result<Uuid> {
    let task = Uuid::new_v4();
    sqlx::query(
        "insert into reminder (task_id, user_id, title, remind_at, status, updated_at) \
         values ($1, 'alice', 'call', now() - $3::interval, $2, now() - $3::interval)",
    )
    .bind(task)
    .bind(status)
    .bind(age)
    .execute(pool)
    .await?;
    Ok(task)
}

async fn ids(pool: &sqlx::PgPool, sql: &str) -> Result<Vec<Uuid>> {
    let mut ids: Vec<Uuid> = sqlx::query_scalar(sql).fetch_all(pool).await?;
    ids.sort();
    Ok(ids)
}

fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

/// Past the retention, reminders that fired or were cancelled, next
/// instances created or withdrawn, and series ended by a deletion (with
/// their task links and next instances) go, in batches; an active or paused
/// series, a scheduled reminder, a next instance being created, and anything
/// recent stay.
async fn finished_reminders_next_instances_and_deleted_series_go_and_live_ones_stay(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&RECURRING).await?;
    let active = series(&pool, true, None, "30 days").await?;
    let paused = series(&pool, false, Some("not_recurring"), "30 days").await?;
    let deleted_old = series(&pool, false, Some("deleted"), "8 days").await?;
    let deleted_new = series(&pool, false, Some("deleted"), "6 days").await?;
    let mut nexts_kept = vec![
        next(&pool, active, "creating", "30 days").await?,
        next(&pool, active, "created", "6 days").await?,
        next(&pool, deleted_new, "withdrawn", "6 days").await?,
    ];
    for _ in 0..3 {
        next(&pool, active, "created", "8 days").await?;
        next(&pool, paused, "withdrawn", "8 days").await?;
    }
    next(&pool, deleted_old, "created", "1 hour").await?;
    let mut reminders_kept = vec![
        reminder(&pool, "scheduled", "30 days").await?,
        reminder(&pool, "fired", "6 days").await?,
        reminder(&pool, "cancelled", "6 days").await?,
    ];
    for _ in 0..3 {
        reminder(&pool, "fired", "8 days").await?;
        reminder(&pool, "cancelled", "8 days").await?;
    }

    let pruned = recurring_task_service::db::prune_finished(&pool, WEEK, 2).await?;
    ensure!(
        pruned
            == recurring_task_service::db::Pruned {
                reminders: 6,
                next_instances: 6,
                series: 1,
            },
        "{pruned:?}"
    );
    ensure!(
        ids(&pool, "select id from recurrence_schedule").await?
            == sorted(vec![active, paused, deleted_new]),
        "the active, paused and recently deleted series stay"
    );
    let linked: i64 = sqlx::query_scalar("select count(*) from series_task where series_id = $1")
        .bind(deleted_old)
        .fetch_one(&pool)
        .await?;
    ensure!(linked == 0, "the pruned series' task links go with it");
    nexts_kept.sort();
    ensure!(
        ids(&pool, "select parent_task_id from next_instance").await? == nexts_kept,
        "only the finished next instances past the retention go"
    );
    reminders_kept.sort();
    ensure!(
        ids(&pool, "select task_id from reminder").await? == reminders_kept,
        "scheduled and recent reminders stay"
    );
    let again = recurring_task_service::db::prune_finished(&pool, WEEK, 2).await?;
    ensure!(again == Default::default(), "nothing more: {again:?}");
    Ok(())
}

/// Past the retention, sent notifications go in batches; pending and failed
/// ones stay however old, and recent sent ones stay.
async fn sent_notifications_go_after_their_retention_and_pending_or_failed_ones_stay(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&NOTIFICATION).await?;
    let insert = |status: &'static str, age: &'static str| {
        let pool = pool.clone();
        async move {
            let id = Uuid::new_v4();
            sqlx::query(
                "insert into notification (id, reminder_event_id, task_id, user_id, channel, title, remind_at, \
                 status, created_at, sent_at) \
                 values ($1, gen_random_uuid(), gen_random_uuid(), 'alice', 'in_app', 'call', now() - $3::interval, \
                 $2, now() - $3::interval, case when $2 = 'sent' then now() - $3::interval end)",
            )
            .bind(id)
            .bind(status)
            .bind(age)
            .execute(&pool)
            .await?;
            anyhow::Ok(id)
        }
    };
    let kept = sorted(vec![
        insert("pending", "30 days").await?,
        insert("failed", "30 days").await?,
        insert("sent", "6 days").await?,
    ]);
    for _ in 0..5 {
        insert("sent", "8 days").await?;
    }
    let pruned = notification_service::db::prune_sent(&pool, WEEK, 2).await?;
    ensure!(pruned == 5, "the five sent over a week ago: {pruned}");
    ensure!(
        ids(&pool, "select id from notification").await? == kept,
        "pending, failed and recent sent notifications stay"
    );
    Ok(())
}
