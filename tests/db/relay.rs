//! The Todo relay's waiters: a request waits for its events to be on Kafka,
//! told by its own replica's relay or, through PostgreSQL `NOTIFY`, by
//! another replica's.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use todo_core::settings::DaprSettings;
use todo_core::sidecar::Sidecar;
use todo_service::db::outbox;
use todo_service::relay::Relay;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Ctx, TODO, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![trial!(
        ctx,
        a_request_hears_of_its_events_published_by_another_replicas_relay
    )]
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
