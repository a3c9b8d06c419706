//! The Todo relay against PostgreSQL: a request waits for its events to be on
//! Kafka, told by its own replica's relay or, through PostgreSQL `NOTIFY`, by
//! another replica's; and what a batch takes from the outbox.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use todo_core::settings::DaprSettings;
use todo_core::sidecar::Sidecar;
use todo_service::db::outbox;
use todo_service::relay::Relay;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Ctx, TODO, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        trial!(
            ctx,
            a_request_hears_of_its_events_published_by_another_replicas_relay
        ),
        trial!(
            ctx,
            a_batch_holds_the_oldest_event_of_every_task_however_many_one_busy_task_queued
        ),
    ]
}

/// A sidecar nobody listens for: every publish through it fails at once.
fn unreachable_sidecar() -> Result<Sidecar> {
    let settings: DaprSettings =
        serde_json::from_value(serde_json::json!({ "dapr_grpc_port": 1, "dapr_http_port": 1 }))?;
    Ok(Sidecar::new(&settings, Duration::from_millis(200))?)
}

async fn a_request_hears_of_its_events_published_by_another_replicas_relay(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&TODO).await?;
    // This replica's relay runs but cannot publish (its sidecar is gone).
    let relay = Relay::new(pool.clone(), unreachable_sidecar()?);
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.clone().run(stop.clone()));
    let result = async {
        let id = {
            let mut conn = pool.acquire().await?;
            outbox::enqueue(
                &mut conn,
                Uuid::now_v7(),
                "task-events",
                Uuid::new_v4(),
                b"{}",
            )
            .await?
        };
        let early = relay.watch(vec![id]);
        ensure!(
            !early.published(Duration::from_millis(500)).await,
            "a request was told its event is on Kafka while no relay could publish it"
        );
        let waiting = tokio::spawn(relay.watch(vec![id]).published(Duration::from_secs(10)));

        // Another replica's relay publishes it: takes the publisher lock,
        // stamps the row, commits.
        let mut tx = pool.begin().await?;
        outbox::lock_publisher(&mut tx).await?;
        outbox::mark_published(&mut tx, &[id]).await?;
        tx.commit().await?;
        let stamped = Instant::now();
        ensure!(
            waiting.await?,
            "the request never heard of the publish by the other replica"
        );
        eprintln!(
            "    heard of the other replica's publish after {:.1} ms",
            stamped.elapsed().as_secs_f64() * 1e3
        );
        Ok(())
    }
    .await;
    stop.cancel();
    running.await?;
    result
}

/// Events queued by one busy task before anybody else's.
const HOT_EVENTS: usize = 300;
/// Other tasks, one event each on both topics, queued after them.
const OTHERS: usize = 40;
/// The relay's batch size.
const BATCH: i64 = 256;

async fn a_batch_holds_the_oldest_event_of_every_task_however_many_one_busy_task_queued(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&TODO).await?;
    let topics = ["task-events", "task-updates"];
    let (hot, others) = (Uuid::new_v4(), (0..OTHERS).map(|_| Uuid::new_v4()));
    let mut conn = pool.acquire().await?;
    let mut queued = Vec::new();
    for _ in 0..HOT_EVENTS {
        let event = Uuid::now_v7();
        for topic in topics {
            let id = outbox::enqueue(&mut conn, event, topic, hot, b"{}").await?;
            queued.push((id, topic, hot));
        }
    }
    for task in others {
        let event = Uuid::now_v7();
        for topic in topics {
            let id = outbox::enqueue(&mut conn, event, topic, task, b"{}").await?;
            queued.push((id, topic, task));
        }
    }
    drop(conn);
    // The first batch: the oldest event of every (topic, task), in id order.
    let batch = take_batch(&pool).await?;
    let mut expected: Vec<i64> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (id, topic, task) in &queued {
        if seen.insert((*topic, *task)) {
            expected.push(*id);
        }
    }
    ensure!(
        batch == expected,
        "the first batch holds {} events ({} tasks' worth expected): {:?}…",
        batch.len(),
        OTHERS + 1,
        &batch[..batch.len().min(6)]
    );

    // Part of it fails: the busy task's task-events event is not stamped (as
    // when the broker rejects it). The next batch takes that same event again,
    // never the one queued behind it, and the next of its task-updates.
    let hot_first = queued[0].0;
    let stamped: Vec<i64> = batch
        .iter()
        .copied()
        .filter(|id| *id != hot_first)
        .collect();
    let mut tx = pool.begin().await?;
    outbox::lock_publisher(&mut tx).await?;
    outbox::mark_published(&mut tx, &stamped).await?;
    tx.commit().await?;
    let next = take_batch(&pool).await?;
    let hot_next_update = queued
        .iter()
        .filter(|(_, topic, task)| *topic == "task-updates" && *task == hot)
        .nth(1)
        .context("a second update of the busy task")?
        .0;
    ensure!(
        next == vec![hot_first, hot_next_update],
        "after a partial failure the next batch is {next:?}, expected [{hot_first}, {hot_next_update}]"
    );
    Ok(())
}

/// The ids of the batch a relay takes now.
async fn take_batch(pool: &sqlx::PgPool) -> Result<Vec<i64>> {
    let mut tx = pool.begin().await?;
    outbox::lock_publisher(&mut tx).await?;
    let rows = outbox::pending(&mut tx, BATCH).await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| r.id).collect())
}
