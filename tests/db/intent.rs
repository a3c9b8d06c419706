//! Intents (`todo_core::intent`) against a real PostgreSQL, with the
//! recurring-task service's schema: a dispatcher whose lease ran out never
//! deletes or rewrites a decision it does not hold, and one whose call runs
//! long keeps its lease for as long as the call runs.
//!
//! Leases are made to run out without waiting: a dispatcher with a zero lease
//! holds every claim only for the instant it is made.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use sqlx::PgPool;
use todo_core::intent::{self, ActError, DispatcherSettings, Intent, Waker};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::{Ctx, RECURRING, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        trial!(
            ctx,
            a_holder_whose_lease_ran_out_never_deletes_a_newer_decision_of_its_key
        ),
        trial!(ctx, a_call_that_outlasts_its_lease_keeps_it_while_it_runs),
        trial!(
            ctx,
            a_refused_intent_fails_for_operators_and_runs_again_when_retried
        ),
    ]
}

const KEY: &str = "reminder-00000000-0000-0000-0000-000000000001";

async fn record(pool: &PgPool, payload: Value) -> Result<()> {
    let mut conn = pool.acquire().await?;
    intent::record(&mut conn, KEY, "job", None, &payload).await?;
    Ok(())
}

/// Refusals after which the tests' dispatchers fail an intent.
const REFUSALS: i32 = 3;

fn settings(lease: Duration) -> DispatcherSettings {
    DispatcherSettings {
        lease,
        concurrency: 1,
        poll: Duration::from_millis(20),
        refusals: REFUSALS,
    }
}

/// Polls `check` every 20 ms until it holds, for at most `within`.
async fn until<F, Fut>(within: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The payloads whose calls finished, in order.
#[derive(Clone, Default)]
struct Done(Arc<Mutex<Vec<Value>>>);

impl Done {
    fn push(&self, v: Value) {
        self.0.lock().expect("done").push(v);
    }
    fn count(&self, v: &Value) -> usize {
        self.0
            .lock()
            .expect("done")
            .iter()
            .filter(|d| *d == v)
            .count()
    }
}

/// A holder (dispatcher A) claims the decision `v1` and its call hangs; its
/// lease runs out and dispatcher B carries `v1` out and deletes the row. The
/// key is then decided anew (`v2`, a new row). When A's call finally returns,
/// A must leave `v2` alone: `v2` is carried out afterwards. (On a key that
/// restarts at generation 1, a generation check alone lets A delete `v2`.)
async fn a_holder_whose_lease_ran_out_never_deletes_a_newer_decision_of_its_key(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&RECURRING).await?;
    let (v1, v2) = (json!({"decision": 1}), json!({"decision": 2}));
    record(&pool, v1.clone()).await?;

    // A: a zero lease; its first call waits for `release`, the others finish.
    let release = Arc::new(Notify::new());
    let (a_started_tx, mut a_started) = watch::channel(false);
    let a_done = Done::default();
    let a_stop = CancellationToken::new();
    let a = {
        let (release, done) = (release.clone(), a_done.clone());
        let first = Arc::new(Mutex::new(true));
        tokio::spawn(intent::dispatch(
            pool.clone(),
            Waker::default(),
            settings(Duration::ZERO),
            move |i: Intent| {
                let (release, done, first) = (release.clone(), done.clone(), first.clone());
                let a_started_tx = a_started_tx.clone();
                async move {
                    let hang = std::mem::replace(&mut *first.lock().expect("first"), false);
                    if hang {
                        let _ = a_started_tx.send(true);
                        release.notified().await;
                    }
                    done.push(i.payload);
                    Ok(())
                }
            },
            a_stop.clone(),
        ))
    };
    a_started.wait_for(|s| *s).await?;

    // B: claims the row whose lease ran out, carries v1 out, deletes the row.
    let b_done = Done::default();
    let b_stop = CancellationToken::new();
    let b = {
        let done = b_done.clone();
        tokio::spawn(intent::dispatch(
            pool.clone(),
            Waker::default(),
            settings(Duration::from_secs(60)),
            move |i: Intent| {
                let done = done.clone();
                async move {
                    done.push(i.payload);
                    Ok(())
                }
            },
            b_stop.clone(),
        ))
    };
    until(Duration::from_secs(10), "B carries v1 out", || async {
        Ok(b_done.count(&v1) == 1 && intent::pending(&pool).await? == 0)
    })
    .await?;
    b_stop.cancel();
    b.await?;

    // A new decision of the same key; then A's hung call returns.
    record(&pool, v2.clone()).await?;
    release.notify_one();
    until(Duration::from_secs(10), "v2 is carried out", || async {
        Ok(a_done.count(&v2) == 1)
    })
    .await?;
    until(
        Duration::from_secs(10),
        "the row of v2 goes once done",
        || async { Ok(intent::pending(&pool).await? == 0) },
    )
    .await?;
    a_stop.cancel();
    a.await?;
    Ok(())
}

/// A call that runs for many lease lengths: its dispatcher keeps renewing the
/// lease, so a second dispatcher polling all along never claims the row and
/// the action runs once.
async fn a_call_that_outlasts_its_lease_keeps_it_while_it_runs(ctx: &Ctx) -> Result<()> {
    let pool = ctx.fresh_schema(&RECURRING).await?;
    let payload = json!({"decision": 1});
    record(&pool, payload.clone()).await?;
    let lease = Duration::from_millis(300);
    let release = Arc::new(Notify::new());
    let calls = Done::default();
    let stop = CancellationToken::new();
    let mut dispatchers = Vec::new();
    for _ in 0..2 {
        let (release, calls) = (release.clone(), calls.clone());
        dispatchers.push(tokio::spawn(intent::dispatch(
            pool.clone(),
            Waker::default(),
            settings(lease),
            move |i: Intent| {
                let (release, calls) = (release.clone(), calls.clone());
                async move {
                    calls.push(i.payload);
                    release.notified().await;
                    Ok(())
                }
            },
            stop.clone(),
        )));
    }
    until(
        Duration::from_secs(10),
        "one dispatcher claims it",
        || async { Ok(calls.count(&payload) == 1) },
    )
    .await?;
    let claimed_until = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "select claimed_until from intent where key = $1",
        )
        .bind(KEY)
        .fetch_one(&pool)
        .await
        .map_err(anyhow::Error::from)
    };
    let first = claimed_until()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the claimed row has no lease"))?;
    // Renewed past four lease lengths after the first claim ended.
    let past = first + chrono::Duration::from_std(lease * 4)?;
    until(
        Duration::from_secs(10),
        "the lease is renewed while the call runs",
        || async { Ok(claimed_until().await?.is_some_and(|c| c > past)) },
    )
    .await?;
    ensure!(
        calls.count(&payload) == 1,
        "the second dispatcher took the row while the first still held it: {} calls",
        calls.count(&payload)
    );
    release.notify_waiters();
    until(
        Duration::from_secs(10),
        "the row goes once done",
        || async { Ok(intent::pending(&pool).await? == 0) },
    )
    .await?;
    ensure!(calls.count(&payload) == 1, "one call in all");
    stop.cancel();
    for d in dispatchers {
        d.await?;
    }
    Ok(())
}

/// A poison intent: its request is refused every time. After [`REFUSALS`]
/// tries it is failed, listed with its reason, and never claimed again
/// (a later intent is carried out while it stays untouched). An operator's
/// retry runs it again once the cause is fixed; a new decision of a failed
/// key runs too. An intent whose calls fail for want of a dependency is
/// retried past that count and never failed.
async fn a_refused_intent_fails_for_operators_and_runs_again_when_retried(ctx: &Ctx) -> Result<()> {
    let pool = ctx.fresh_schema(&RECURRING).await?;
    const FLAKY: &str = "reminder-00000000-0000-0000-0000-000000000002";
    const MARKER: &str = "reminder-00000000-0000-0000-0000-000000000003";
    let fixed = Arc::new(Mutex::new(false));
    let calls = Done::default();
    let done = Done::default();
    let stop = CancellationToken::new();
    let flaky_failures = Arc::new(Mutex::new(0));
    let dispatcher = {
        let (fixed, calls, done, flaky_failures) = (
            fixed.clone(),
            calls.clone(),
            done.clone(),
            flaky_failures.clone(),
        );
        tokio::spawn(intent::dispatch(
            pool.clone(),
            Waker::default(),
            settings(Duration::from_secs(60)),
            move |i: Intent| {
                let (fixed, calls, done, flaky_failures) = (
                    fixed.clone(),
                    calls.clone(),
                    done.clone(),
                    flaky_failures.clone(),
                );
                async move {
                    calls.push(json!(i.key));
                    let outcome = if i.key == FLAKY {
                        let mut failures = flaky_failures.lock().expect("failures");
                        *failures += 1;
                        if *failures <= REFUSALS + 2 {
                            Err(ActError::Transient("the sidecar is away".into()))
                        } else {
                            Ok(())
                        }
                    } else if i.key == KEY && !*fixed.lock().expect("fixed") {
                        Err(ActError::Refused(
                            "400 Bad Request: invalid due time".into(),
                        ))
                    } else {
                        Ok(())
                    };
                    if outcome.is_ok() {
                        done.push(i.payload);
                    }
                    outcome
                }
            },
            stop.clone(),
        ))
    };
    let key = json!(KEY);
    let payload = json!({"decision": 1});
    record(&pool, payload.clone()).await?;
    let mut conn = pool.acquire().await?;
    intent::record(&mut conn, FLAKY, "job", None, &json!({"flaky": true})).await?;

    let listed = || async {
        let (failed, total) = intent::failed(&pool, 100, 0).await?;
        anyhow::Ok((failed, total))
    };
    until(
        Duration::from_secs(20),
        "the refused intent is failed",
        || async { Ok(listed().await?.1 == 1) },
    )
    .await?;
    let (failed, _) = listed().await?;
    ensure!(
        failed[0].key == KEY
            && failed[0].attempts == REFUSALS
            && failed[0].reason.contains("invalid due time"),
        "the failed intent with its reason: {failed:?}"
    );
    ensure!(
        calls.count(&key) == REFUSALS as usize,
        "tried {REFUSALS} times"
    );

    // Claimed no more: an intent recorded after it is carried out, it is not.
    intent::record(&mut conn, MARKER, "job", None, &json!({"marker": 1})).await?;
    until(Duration::from_secs(10), "a later intent runs", || async {
        Ok(done.count(&json!({"marker": 1})) == 1)
    })
    .await?;
    ensure!(
        calls.count(&key) == REFUSALS as usize,
        "a failed intent was claimed again: {} calls",
        calls.count(&key)
    );

    // Transient failures past the refusal count: retried, never failed.
    until(
        Duration::from_secs(20),
        "the flaky intent is carried out",
        || async { Ok(done.count(&json!({"flaky": true})) == 1) },
    )
    .await?;
    ensure!(listed().await?.1 == 1, "only the refused intent is failed");

    // The cause fixed, an operator's retry runs it once; an unknown key or
    // one that is not failed is no retry.
    ensure!(
        !intent::retry(&pool, MARKER).await?,
        "no such failed intent"
    );
    *fixed.lock().expect("fixed") = true;
    ensure!(
        intent::retry(&pool, KEY).await?,
        "the failed intent is retried"
    );
    until(
        Duration::from_secs(10),
        "the retried intent runs",
        || async { Ok(done.count(&payload) == 1 && intent::pending(&pool).await? == 0) },
    )
    .await?;
    ensure!(listed().await?.1 == 0, "nothing is failed any more");

    // A key failed again is run by a new decision of it, too.
    *fixed.lock().expect("fixed") = false;
    record(&pool, json!({"decision": 2})).await?;
    until(Duration::from_secs(20), "failed again", || async {
        Ok(listed().await?.1 == 1)
    })
    .await?;
    *fixed.lock().expect("fixed") = true;
    record(&pool, json!({"decision": 3})).await?;
    until(Duration::from_secs(10), "the new decision runs", || async {
        Ok(done.count(&json!({"decision": 3})) == 1 && intent::pending(&pool).await? == 0)
    })
    .await?;
    stop.cancel();
    dispatcher.await?;
    Ok(())
}
