//! Idempotency keys of the Todo service: one answer per (user, key), a
//! concurrent request with the same key waits for the first's, and a retry
//! whose events were published (and since pruned) is answered at once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use todo_contract::TaskStatus;
use todo_core::settings::DaprSettings;
use todo_core::sidecar::Sidecar;
use todo_service::db::{idempotency, outbox};
use todo_service::domain::TaskFields;
use todo_service::relay::Relay;
use todo_service::service::{TaskError, TaskService};
use uuid::Uuid;

use crate::{Ctx, TODO, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        trial!(
            ctx,
            a_concurrent_request_with_the_same_key_waits_and_gets_the_first_answer
        ),
        trial!(
            ctx,
            a_retry_after_its_events_were_published_and_pruned_answers_the_first_answer_at_once
        ),
    ]
}

async fn a_concurrent_request_with_the_same_key_waits_and_gets_the_first_answer(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&TODO).await?;
    let mut first = pool.begin().await?;
    ensure!(
        idempotency::claim(&mut first, "alice", "k1", "create", "hash")
            .await?
            .is_none(),
        "the first request claims the key"
    );
    let second = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            let seen = idempotency::claim(&mut tx, "alice", "k1", "create", "hash").await?;
            tx.commit().await?;
            anyhow::Ok(seen)
        }
    });
    // The second is blocked on the first's uncommitted row, as PostgreSQL
    // itself reports (no sleeping).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
        )
        .fetch_one(&pool)
        .await?;
        if waiting > 0 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline && !second.is_finished(),
            "the second request did not wait for the first"
        );
        tokio::task::yield_now().await;
    }
    let mut bobs = pool.begin().await?;
    ensure!(
        idempotency::claim(&mut bobs, "bob", "k1", "create", "hash")
            .await?
            .is_none(),
        "another user's key of the same name is another key"
    );
    bobs.commit().await?;
    let answer = json!({ "id": "t1" });
    idempotency::record(&mut first, "alice", "k1", 201, &answer, &[7, 8]).await?;
    first.commit().await?;
    let seen = second
        .await??
        .context("the second request saw no earlier answer")?;
    ensure!(
        seen.status_code == Some(201)
            && seen.response == Some(answer)
            && seen.outbox_ids == vec![7, 8]
            && seen.request_hash == "hash",
        "the second request gets the first's answer: {seen:?}"
    );
    Ok(())
}

/// A sidecar nobody listens for: the relay is never started here, so nothing
/// is published through it; only a test's own stamps publish events.
fn unreachable_sidecar() -> Result<Sidecar> {
    let settings: DaprSettings =
        serde_json::from_value(json!({ "dapr_grpc_port": 1, "dapr_http_port": 1 }))?;
    Ok(Sidecar::new(&settings, Duration::from_millis(200))?)
}

fn plain_task(title: &str) -> TaskFields {
    TaskFields {
        title: title.to_owned(),
        description: None,
        status: TaskStatus::Pending,
        due_date: None,
        reminder_time: None,
        is_recurring: false,
        recurrence_schedule: None,
        timezone: "UTC".to_owned(),
        parent_task_id: None,
    }
}

/// The wait a replay gives its events before answering 503.
const PUBLISH_WAIT: Duration = Duration::from_secs(2);

async fn a_retry_after_its_events_were_published_and_pruned_answers_the_first_answer_at_once(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&TODO).await?;
    // No relay runs: an event is published only when this test stamps it.
    let relay = Relay::new(pool.clone(), unreachable_sidecar()?);
    let service = TaskService::new(pool.clone(), relay, PUBLISH_WAIT);
    let key = Some("retry-me");
    let first = service.create("alice", key, plain_task("pay rent")).await;
    ensure!(
        matches!(first, Err(TaskError::Unconfirmed(_))),
        "saved but not on Kafka (no relay): {first:?}"
    );
    // While its events are pending a retry still waits for them.
    let pending = service.create("alice", key, plain_task("pay rent")).await;
    ensure!(
        matches!(pending, Err(TaskError::Unconfirmed(_))),
        "a retry whose events are still pending is not confirmed: {pending:?}"
    );

    let stored: Vec<Uuid> = sqlx::query_scalar("select id from task")
        .fetch_all(&pool)
        .await?;
    let ids: Vec<i64> = sqlx::query_scalar("select id from outbox order by id")
        .fetch_all(&pool)
        .await?;
    ensure!(
        stored.len() == 1 && ids.len() == 2,
        "one task, two events: {stored:?} {ids:?}"
    );
    // Published (as a relay stamps it), then pruned with a retention of zero,
    // as the pruner does an hour later.
    let mut tx = pool.begin().await?;
    outbox::lock_publisher(&mut tx).await?;
    outbox::mark_published(&mut tx, &ids).await?;
    tx.commit().await?;
    let pruned = outbox::prune(&pool, Duration::ZERO, 100).await?;
    ensure!(pruned == 2, "both events pruned: {pruned}");

    let started = Instant::now();
    let retried = service.create("alice", key, plain_task("pay rent")).await;
    let took = started.elapsed();
    let view = retried.map_err(|e| anyhow::anyhow!("the retry answered {e:?} after {took:?}"))?;
    ensure!(
        view.id == stored[0],
        "the first answer: {} (stored {})",
        view.id,
        stored[0]
    );
    ensure!(
        took < PUBLISH_WAIT / 2,
        "answered at once, not after the publish wait: {took:?}"
    );
    Ok(())
}
