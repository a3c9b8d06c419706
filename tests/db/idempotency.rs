//! Idempotency keys of the Todo service: one answer per (user, key), and a
//! concurrent request with the same key waits for the first's.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use todo_service::db::idempotency;

use crate::{Ctx, TODO, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![trial!(
        ctx,
        a_concurrent_request_with_the_same_key_waits_and_gets_the_first_answer
    )]
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
