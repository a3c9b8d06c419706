//! The consumer every service shares (`todo_core::consumer`), with the audit
//! service's handler: Dapr's callbacks are called as daprd calls them (single
//! and bulk), without a socket, and a redelivered event changes nothing.

use anyhow::{Result, ensure};
use poem::{EndpointExt, Route, test::TestClient};
use secrecy::SecretString;
use serde_json::{Value, json};
use todo_contract::{EventEnvelope, EventType, Timestamp, Topic};
use todo_core::consumer::{Consumer, InboxRetention, Subscription};
use todo_core::settings::AppToken;
use uuid::Uuid;

use crate::{AUDIT, Ctx, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![trial!(
        ctx,
        an_event_delivered_again_singly_or_in_a_bulk_is_applied_once
    )]
}

const TOKEN: &str = "app-token";

async fn an_event_delivered_again_singly_or_in_a_bulk_is_applied_once(ctx: &Ctx) -> Result<()> {
    let pool = ctx.fresh_schema(&AUDIT).await?;
    let consumer = Consumer::new(
        "audit-service",
        pool.clone(),
        audit_service::handler::Handler,
        vec![Subscription {
            topic: Topic::TaskEvents,
        }],
        AppToken::Required(SecretString::from(TOKEN)),
        InboxRetention::default(),
    );
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
