//! The consumer every service shares (`todo_core::consumer`), with the audit
//! service's handler: Dapr's callbacks are called as daprd calls them (single
//! and bulk), without a socket, and a redelivered event changes nothing.

use anyhow::{Result, ensure};
use poem::{EndpointExt, Route, test::TestClient};
use secrecy::SecretString;
use serde_json::{Value, json};
use todo_contract::{EventEnvelope, EventType, Timestamp, Topic};
use todo_core::consumer::dead_letters::{RedriveAll, RedriveError, Redriven, Which};
use todo_core::consumer::{Consumer, InboxRetention, Subscription};
use todo_core::settings::AppToken;
use uuid::Uuid;

use crate::{AUDIT, Ctx, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        trial!(
            ctx,
            an_event_delivered_again_singly_or_in_a_bulk_is_applied_once
        ),
        trial!(
            ctx,
            an_event_that_can_never_be_applied_is_kept_as_a_dead_letter_and_redriven_once
        ),
    ]
}

const TOKEN: &str = "app-token";

/// The audit service's consumer of `task-events` on `pool`.
fn audit_consumer(pool: &sqlx::PgPool) -> Consumer<audit_service::handler::Handler> {
    Consumer::new(
        "audit-service",
        pool.clone(),
        audit_service::handler::Handler,
        vec![Subscription {
            topic: Topic::TaskEvents,
        }],
        AppToken::Required(SecretString::from(TOKEN)),
        InboxRetention::default(),
    )
}

async fn an_event_delivered_again_singly_or_in_a_bulk_is_applied_once(ctx: &Ctx) -> Result<()> {
    let pool = ctx.fresh_schema(&AUDIT).await?;
    let consumer = audit_consumer(&pool);
    let mut route = Route::new();
    for (path, ep) in consumer.endpoints() {
        route = route.at(path, ep);
    }
    let client = TestClient::new(route.boxed());

    let envelope = EventEnvelope::new(
        EventType::TaskCreated,
        Timestamp::now(),
        Uuid::new_v4(),
        "alice",
        json!({ "title": "once" }),
    );
    let event = serde_json::to_value(envelope.to_cloud_event("todo-service"))?;

    let refused = client
        .post("/events/task-events")
        .body_json(&event)
        .send()
        .await;
    refused.assert_status(poem::http::StatusCode::UNAUTHORIZED);

    let mut statuses = Vec::new();
    for _ in 0..2 {
        let res = client
            .post("/events/task-events")
            .header("dapr-api-token", TOKEN)
            .body_json(&event)
            .send()
            .await;
        res.assert_status_is_ok();
        let body: Value = res.0.into_body().into_json().await?;
        statuses.push(body["status"].clone());
    }
    let bulk = json!({ "entries": [
        { "entryId": "a", "event": event },
        { "entryId": "b", "event": event },
    ]});
    let res = client
        .post("/events/task-events")
        .header("dapr-api-token", TOKEN)
        .body_json(&bulk)
        .send()
        .await;
    res.assert_status_is_ok();
    let body: Value = res.0.into_body().into_json().await?;
    ensure!(
        statuses == [json!("SUCCESS"), json!("SUCCESS")]
            && body["statuses"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["status"] == "SUCCESS")),
        "every delivery is acknowledged: {statuses:?} {body}"
    );
    let recorded: i64 = sqlx::query_scalar("select count(*) from audit_record where event_id = $1")
        .bind(envelope.event_id)
        .fetch_one(&pool)
        .await?;
    ensure!(recorded == 1, "recorded {recorded} times");
    let inbox: i64 = sqlx::query_scalar("select count(*) from inbox where event_id = $1")
        .bind(envelope.event_id)
        .fetch_one(&pool)
        .await?;
    ensure!(inbox == 1, "in the inbox {inbox} times");
    Ok(())
}

fn task_event(task_id: Uuid, event_type: EventType, title: &str) -> Result<(EventEnvelope, Value)> {
    let envelope = EventEnvelope::new(
        event_type,
        Timestamp::now(),
        task_id,
        "alice",
        json!({ "title": title }),
    );
    let event = serde_json::to_value(envelope.to_cloud_event("todo-service"))?;
    Ok((envelope, event))
}

/// A poison event (the audit table refuses it: a constraint an operator
/// added, SQLSTATE 23514) in a bulk between two good ones of the same task:
/// the bulk is acknowledged whole, the good ones are recorded (the partition
/// moves on), the poison one is a dead letter with its reason. A malformed
/// event is one too; a redelivery counts an attempt on the same row. A
/// redrive before the cause is fixed fails and counts again; after it, the
/// event is recorded once, and redriving again (one or all) changes nothing.
async fn an_event_that_can_never_be_applied_is_kept_as_a_dead_letter_and_redriven_once(
    ctx: &Ctx,
) -> Result<()> {
    let pool = ctx.fresh_schema(&AUDIT).await?;
    sqlx::query(
        "alter table audit_record add constraint no_poison \
         check (payload->>'title' is distinct from 'poison')",
    )
    .execute(&pool)
    .await?;
    let consumer = audit_consumer(&pool);
    let letters = consumer.dead_letters();
    let mut route = Route::new();
    for (path, ep) in consumer.endpoints() {
        route = route.at(path, ep);
    }
    let client = TestClient::new(route.boxed());
    let deliver = |body: Value| {
        let client = &client;
        async move {
            let res = client
                .post("/events/task-events")
                .header("dapr-api-token", TOKEN)
                .body_json(&body)
                .send()
                .await;
            res.assert_status_is_ok();
            anyhow::Ok(res.0.into_body().into_json::<Value>().await?)
        }
    };
    let recorded = |event_id: Uuid| {
        let pool = &pool;
        async move {
            anyhow::Ok(
                sqlx::query_scalar::<_, i64>(
                    "select count(*) from audit_record where event_id = $1",
                )
                .bind(event_id)
                .fetch_one(pool)
                .await?,
            )
        }
    };

    let task = Uuid::new_v4();
    let (first, first_event) = task_event(task, EventType::TaskCreated, "fine")?;
    let (poison, poison_event) = task_event(task, EventType::TaskUpdated, "poison")?;
    let (after, after_event) = task_event(task, EventType::TaskUpdated, "fine again")?;
    let answer = deliver(json!({ "entries": [
        { "entryId": "1", "event": first_event },
        { "entryId": "2", "event": poison_event },
        { "entryId": "3", "event": after_event },
    ]}))
    .await?;
    ensure!(
        answer["statuses"]
            .as_array()
            .is_some_and(|s| s.len() == 3 && s.iter().all(|s| s["status"] == "SUCCESS")),
        "the whole bulk is acknowledged, poison included: {answer}"
    );
    ensure!(
        recorded(first.event_id).await? == 1 && recorded(after.event_id).await? == 1,
        "the events around the poison one are recorded"
    );
    ensure!(
        recorded(poison.event_id).await? == 0,
        "the poison one is not"
    );

    // Delivered again (Dapr redelivers, a consumer group rewinds): one row.
    deliver(poison_event.clone()).await?;
    let malformed =
        json!({ "specversion": "1.0", "id": "ce-1", "type": "x", "data": { "what": 1 } });
    deliver(malformed).await?;
    let (open, total) = letters.list(Which::Open, None, 100, 0).await?;
    ensure!(total == 2, "two dead letters: {open:?}");
    let letter = open
        .iter()
        .find(|l| l.event_key == poison.event_id.to_string())
        .ok_or_else(|| anyhow::anyhow!("the poison event is listed: {open:?}"))?;
    ensure!(
        letter.topic == "task-events"
            && letter.consumer == "audit-service"
            && letter.task_id == Some(task)
            && letter.attempts == 2
            && letter.reason.contains("no_poison"),
        "the dead letter says what, who, how often and why: {letter:?}"
    );
    let unreadable = open
        .iter()
        .find(|l| l.event_key == "cloudevent:ce-1")
        .ok_or_else(|| anyhow::anyhow!("the malformed event is listed: {open:?}"))?;
    ensure!(
        unreadable.reason.contains("malformed") && unreadable.task_id.is_none(),
        "{unreadable:?}"
    );

    // Redriven before the cause is fixed: still failing, one more attempt.
    match letters.redrive(letter.id).await {
        Err(RedriveError::StillFailing(reason)) => {
            ensure!(reason.contains("no_poison"), "{reason}")
        }
        other => anyhow::bail!("a redrive of an unfixed cause must fail: {other:?}"),
    }
    let (open, _) = letters
        .list(Which::Open, Some("task-events"), 100, 0)
        .await?;
    ensure!(
        open.iter().any(|l| l.id == letter.id && l.attempts == 3),
        "the failed redrive counted: {open:?}"
    );

    // Fixed: applied once; again, nothing.
    sqlx::query("alter table audit_record drop constraint no_poison")
        .execute(&pool)
        .await?;
    ensure!(
        matches!(letters.redrive(letter.id).await, Ok(Redriven::Applied)),
        "applied"
    );
    ensure!(
        matches!(
            letters.redrive(letter.id).await,
            Ok(Redriven::AlreadyRedriven)
        ),
        "a second redrive does nothing"
    );
    ensure!(recorded(poison.event_id).await? == 1, "recorded once");
    // Redelivered after the redrive: the inbox has it.
    deliver(poison_event).await?;
    ensure!(recorded(poison.event_id).await? == 1, "still once");
    let all = letters
        .redrive_all(None)
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(
        all == RedriveAll {
            applied: 0,
            already_applied: 0,
            still_failing: 1
        },
        "only the malformed one is left, and it still fails: {all:?}"
    );
    let (redriven, n) = letters.list(Which::Redriven, None, 100, 0).await?;
    ensure!(
        n == 1 && redriven[0].id == letter.id && redriven[0].redriven_at.is_some(),
        "{redriven:?}"
    );
    ensure!(
        matches!(
            letters.redrive(999_999).await,
            Err(RedriveError::NotFound(_))
        ),
        "an unknown id"
    );
    Ok(())
}
