//! User story 2 and the audit service's guarantees, against the real stack.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use serde_json::{Value, json};
use todo_local_stack::Stack;

use crate::support::{
    TodoClient, admin_db, eventually, expect_records, get_json, produce, service_metric, text,
};
use crate::{Ctx, exclusive, shared};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        shared!(
            ctx,
            a_published_event_is_recorded_with_its_time_type_task_and_payload
        ),
        shared!(ctx, a_tasks_history_comes_back_in_chronological_order),
        exclusive!(ctx, an_event_delivered_twice_is_recorded_once),
        exclusive!(
            ctx,
            an_event_of_an_unknown_schema_version_is_kept_as_a_dead_letter
        ),
        exclusive!(
            ctx,
            a_poison_event_is_dead_lettered_its_partition_moves_on_and_a_redrive_applies_it_once
        ),
        shared!(
            ctx,
            a_callback_without_the_app_token_is_refused_and_records_nothing
        ),
        shared!(ctx, the_audit_role_cannot_update_or_delete_records),
        shared!(ctx, audit_api_answers_keep_their_shape),
        exclusive!(
            ctx,
            after_downtime_the_audit_service_catches_up_without_loss
        ),
        exclusive!(
            ctx,
            every_consumers_inbox_forgets_events_older_than_its_retention
        ),
    ]
}

fn audit_url(stack: &Stack) -> String {
    stack.app_url("audit-service")
}

/// The task's records, once there are `n` of them.
async fn records_of(stack: &Stack, task_id: &str, n: usize) -> Result<Vec<Value>> {
    let url = format!("{}/api/v1/audit?task_id={task_id}", audit_url(stack));
    let records = eventually(
        Duration::from_secs(20),
        &format!("{n} audit records for {task_id}"),
        || async {
            let page = get_json(&url, &stack.operator_token()).await?.expect(200)?;
            let records = page["records"].as_array().cloned().unwrap_or_default();
            Ok((records.len() >= n).then_some(records))
        },
    )
    .await?;
    ensure!(
        records.len() == n,
        "exactly {n} records for {task_id}, found {}: {records:#?}",
        records.len()
    );
    Ok(records)
}

/// A `task-created` CloudEvent for a new task from a producer that is not the
/// todo service, with the given schema version; returns the task id and event.
fn foreign_event(source: &str, schema_version: &str) -> (String, Value) {
    let task_id = uuid::Uuid::new_v4().to_string();
    let event_id = uuid::Uuid::new_v4().to_string();
    let event = json!({
        "specversion": "1.0", "id": event_id, "source": source, "type": "task-created",
        "datacontenttype": "application/json",
        "data": { "event_id": event_id, "event_type": "task-created", "schema_version": schema_version,
                  "timestamp": "2026-01-01T00:00:00.000Z", "task_id": task_id, "user_id": "someone",
                  "payload": {} }
    });
    (task_id, event)
}

/// How many records the audit trail holds for `task_id` right now.
async fn record_count(stack: &Stack, task_id: &str) -> Result<i64> {
    let url = format!("{}/api/v1/audit?task_id={task_id}", audit_url(stack));
    let page = get_json(&url, &stack.operator_token()).await?.expect(200)?;
    Ok(page["total"].as_i64().unwrap_or(-1))
}

/// Creates a task and waits until the audit trail has it: everything produced
/// to `task-events` before it (same partition) has been consumed by then.
async fn barrier(stack: &Stack) -> Result<()> {
    let marker = TodoClient::new(stack)
        .create(json!({ "title": "marker" }))
        .await?
        .expect(201)?;
    records_of(stack, text(&marker, "/id"), 1).await.map(|_| ())
}

async fn a_published_event_is_recorded_with_its_time_type_task_and_payload(
    stack: &Stack,
) -> Result<()> {
    let alice = TodoClient::new(stack);
    let (task, id) = alice.create_task("Audit me").await?;
    let records = records_of(stack, &id, 1).await?;
    let record = &records[0];
    let event = expect_records(stack, "task-events", &id, 1)
        .await?
        .remove(0);
    let env = event.envelope();
    ensure!(record["event_id"] == env["event_id"], "event id: {record}");
    ensure!(
        text(record, "/event_type") == "task-created",
        "operation type: {record}"
    );
    ensure!(
        record["task_id"] == id.as_str() && text(record, "/user_id") == alice.user,
        "{record}"
    );
    ensure!(
        record["payload"] == task,
        "payload is the task snapshot: {record}"
    );
    let at = |v: &Value, p: &str| {
        chrono::DateTime::parse_from_rfc3339(text(v, p)).map(|t| t.timestamp_millis())
    };
    ensure!(
        at(record, "/timestamp")? == at(env, "/timestamp")?,
        "timestamp is the event's: {record} vs {env}"
    );
    ensure!(
        at(record, "/recorded_at")? >= at(record, "/timestamp")?,
        "recorded after it happened: {record}"
    );
    let one = get_json(
        &format!("{}/api/v1/audit/{}", audit_url(stack), text(record, "/id")),
        &stack.operator_token(),
    )
    .await?
    .expect(200)?;
    ensure!(&one == record, "GET by id returns the same record");
    Ok(())
}

async fn a_tasks_history_comes_back_in_chronological_order(stack: &Stack) -> Result<()> {
    let alice = TodoClient::new(stack);
    let (_, id) = alice.create_task("v1").await?;
    alice
        .patch(&id, json!({ "title": "v2" }))
        .await?
        .expect(200)?;
    alice
        .patch(&id, json!({ "status": "in_progress" }))
        .await?
        .expect(200)?;
    alice.complete(&id, None).await?.expect(200)?;
    alice.delete(&id).await?;
    let records = records_of(stack, &id, 5).await?;
    let types: Vec<&str> = records.iter().map(|r| text(r, "/event_type")).collect();
    ensure!(
        types
            == [
                "task-created",
                "task-updated",
                "task-updated",
                "task-completed",
                "task-deleted"
            ],
        "operations in order: {types:?}"
    );
    let versions: Vec<i64> = records
        .iter()
        .map(|r| r["payload"]["version"].as_i64().unwrap_or(0))
        .collect();
    ensure!(
        versions == [1, 2, 3, 4, 4],
        "snapshots in order: {versions:?}"
    );
    let stamps: Vec<&str> = records.iter().map(|r| text(r, "/timestamp")).collect();
    ensure!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps ascend: {stamps:?}"
    );
    let updated = get_json(
        &format!(
            "{}/api/v1/audit?task_id={id}&event_type=task-updated",
            audit_url(stack)
        ),
        &stack.operator_token(),
    )
    .await?
    .expect(200)?;
    ensure!(updated["total"] == 2, "filter by event type: {updated}");
    Ok(())
}

/// Waits until `sample`, summed over every replica of `app`, has grown past
/// `before`, then returns it: the counter is incremented just after the
/// commit the test observed.
async fn counter_after(stack: &Stack, app: &str, sample: &str, before: f64) -> Result<f64> {
    eventually(
        Duration::from_secs(10),
        &format!("{sample} grows past {before}"),
        || async {
            let now = service_metric(stack, app, sample).await?;
            Ok((now > before).then_some(now))
        },
    )
    .await
}

// The two counter tests below take the stack exclusively: the counters are
// per service, not per event, so only with nothing else running can the
// delta be exactly the one event the test sent.

async fn an_event_delivered_twice_is_recorded_once(stack: &mut Stack) -> Result<()> {
    let stack = &*stack;
    let alice = TodoClient::new(stack);
    let (_, id) = alice.create_task("Say it twice").await?;
    records_of(stack, &id, 1).await?;
    let sample = "events_duplicate_total{topic=\"task-events\"}";
    let before = service_metric(stack, "audit-service", sample).await?;
    let record = expect_records(stack, "task-events", &id, 1)
        .await?
        .remove(0);
    produce(stack, "task-events", &id, &record.cloud_event.to_string()).await?;
    expect_records(stack, "task-events", &id, 2).await?;
    barrier(stack).await?;
    records_of(stack, &id, 1).await?;
    let after = counter_after(stack, "audit-service", sample, before).await?;
    ensure!(
        after == before + 1.0,
        "exactly the one redelivery was counted as a duplicate ({before} -> {after})"
    );
    Ok(())
}

async fn an_event_of_an_unknown_schema_version_is_kept_as_a_dead_letter(
    stack: &mut Stack,
) -> Result<()> {
    let stack = &*stack;
    let sample = "events_dead_lettered_total{topic=\"task-events\"}";
    barrier(stack).await?;
    let before = service_metric(stack, "audit-service", sample).await?;
    let (task_id, future) = foreign_event("a-newer-producer", "99.0");
    produce(stack, "task-events", &task_id, &future.to_string()).await?;
    barrier(stack).await?;
    ensure!(
        record_count(stack, &task_id).await? == 0,
        "no record for an unknown schema version"
    );
    let letter = dead_letter_of(stack, &future["data"]["event_id"]).await?;
    ensure!(
        text(&letter, "/reason").contains("99.0") && letter["event"] == future,
        "kept whole, with the reason: {letter}"
    );
    let after = counter_after(stack, "audit-service", sample, before).await?;
    ensure!(
        after == before + 1.0,
        "exactly the one event of version 99.0 was dead-lettered ({before} -> {after})"
    );
    Ok(())
}

/// The audit service's open dead letter whose event key is `event_key`
/// (polled: the consumer keeps it just after the commit the caller waited
/// for, or soon after).
async fn dead_letter_of(stack: &Stack, event_key: &Value) -> Result<Value> {
    let url = format!(
        "{}/api/v1/dead-letters?topic=task-events&limit=500",
        audit_url(stack)
    );
    eventually(
        Duration::from_secs(20),
        &format!("a dead letter of {event_key}"),
        || async {
            let page = get_json(&url, &stack.operator_token()).await?.expect(200)?;
            Ok(page["dead_letters"]
                .as_array()
                .and_then(|l| l.iter().find(|d| &d["event_key"] == event_key).cloned()))
        },
    )
    .await
}

/// POSTs a redrive as an operator; the status and body.
async fn redrive(stack: &Stack, id: i64) -> Result<(u16, Value)> {
    let res = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/dead-letters/{id}/redrive",
            audit_url(stack)
        ))
        .bearer_auth(stack.operator_token())
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await?))
}

/// A write the audit table refuses (a constraint added behind the service's
/// back, as a bad migration would): the event becomes a dead letter with the
/// reason, and the next event of the same task (same partition) is recorded
/// anyway. While the cause stands a redrive answers 409; once it is removed,
/// the redrive records the event once, in its place in the task's history,
/// and a second redrive changes nothing.
async fn a_poison_event_is_dead_lettered_its_partition_moves_on_and_a_redrive_applies_it_once(
    stack: &mut Stack,
) -> Result<()> {
    let stack = &*stack;
    let db = admin_db(stack).await?;
    sqlx::query(
        "alter table audit.audit_record add constraint test_no_poison \
         check (payload->>'title' is distinct from 'poison pill') not valid",
    )
    .execute(&db)
    .await?;
    let cure = || async {
        sqlx::query("alter table audit.audit_record drop constraint if exists test_no_poison")
            .execute(&db)
            .await
    };
    let checked = async {
        let alice = TodoClient::new(stack);
        let (_, id) = alice.create_task("poison pill").await?;
        let record = expect_records(stack, "task-events", &id, 1)
            .await?
            .remove(0);
        let letter = dead_letter_of(stack, &record.envelope()["event_id"]).await?;
        ensure!(
            letter["consumer"] == "audit-service"
                && letter["task_id"] == id.as_str()
                && text(&letter, "/reason").contains("test_no_poison"),
            "the dead letter names its consumer, task and reason: {letter}"
        );
        // Announced on the topic's dead-letter topic, read with a Kafka
        // client of our own.
        let notice = expect_records(stack, "task-events-dlq", &id, 1)
            .await?
            .remove(0);
        let data = notice.envelope();
        ensure!(
            notice.cloud_event["type"] == "dead-letter"
                && notice.key.as_deref() == Some(id.as_str())
                && data["dead_letter_id"] == letter["id"]
                && data["consumer"] == "audit-service"
                && data["reason"] == letter["reason"]
                && data["attempts"] == 1
                && data["event"]["data"]["event_id"] == record.envelope()["event_id"],
            "the dead-letter topic has the event, its consumer and reason: {:#}",
            notice.cloud_event
        );
        alice
            .patch(&id, json!({ "title": "antidote" }))
            .await?
            .expect(200)?;
        let after = records_of(stack, &id, 1).await?;
        ensure!(
            after[0]["event_type"] == "task-updated",
            "the task's next event is recorded past the poison one: {after:?}"
        );
        let dl = letter["id"].as_i64().unwrap_or_default();
        let (status, body) = redrive(stack, dl).await?;
        ensure!(
            status == 409 && body["error"] == "still_failing",
            "a redrive while the cause stands: {status} {body}"
        );
        let notices = expect_records(stack, "task-events-dlq", &id, 2).await?;
        ensure!(
            notices[1].envelope()["attempts"] == 2,
            "the failed redrive is announced as the second attempt: {:#}",
            notices[1].cloud_event
        );
        cure().await?;
        let (status, body) = redrive(stack, dl).await?;
        ensure!(
            status == 200 && body["outcome"] == "applied",
            "a redrive after the cure: {status} {body}"
        );
        let history = records_of(stack, &id, 2).await?;
        let types: Vec<&Value> = history.iter().map(|r| &r["event_type"]).collect();
        ensure!(
            types == [&json!("task-created"), &json!("task-updated")],
            "the task's history, in order: {types:?}"
        );
        let (status, body) = redrive(stack, dl).await?;
        ensure!(
            status == 200 && body["outcome"] == "already_redriven",
            "a second redrive: {status} {body}"
        );
        ensure!(record_count(stack, &id).await? == 2, "recorded once");
        Ok(())
    }
    .await;
    cure().await?;
    checked
}

async fn a_callback_without_the_app_token_is_refused_and_records_nothing(
    stack: &Stack,
) -> Result<()> {
    let (task_id, forged) = foreign_event("intruder", "1.0");
    let http = reqwest::Client::new();
    // The port the sidecar calls (loopback); the public one has no callbacks.
    let url = format!("{}/events/task-events", stack.internal_url("audit-service"));
    let public = format!("{}/events/task-events", audit_url(stack));
    let post = |token: Option<&str>| {
        let mut req = http
            .post(&url)
            .header("content-type", "application/cloudevents+json")
            .body(forged.to_string());
        if let Some(t) = token {
            req = req.header("dapr-api-token", t);
        }
        req.send()
    };
    ensure!(post(None).await?.status() == 401, "no token: 401");
    ensure!(
        post(Some("guess")).await?.status() == 401,
        "wrong token: 401"
    );
    ensure!(
        record_count(stack, &task_id).await? == 0,
        "nothing recorded"
    );
    // The same call with the sidecar's token is accepted, so the refusal above
    // was the token check and not a broken route.
    let token = stack.app_api_token("audit-service");
    let from_outside = http
        .post(&public)
        .header("content-type", "application/cloudevents+json")
        .header("dapr-api-token", token)
        .body(forged.to_string())
        .send()
        .await?;
    ensure!(
        from_outside.status() == 404,
        "the callback on the public port, even with the token: {}",
        from_outside.status()
    );
    ensure!(
        record_count(stack, &task_id).await? == 0,
        "nothing recorded"
    );
    let accepted = post(Some(token)).await?;
    ensure!(
        accepted.status() == 200,
        "with the token: {}",
        accepted.status()
    );
    records_of(stack, &task_id, 1).await?;
    Ok(())
}

/// Fails unless `result` is PostgreSQL's refusal for lack of privilege
/// (SQLSTATE 42501, insufficient_privilege) — not any other error, such as a
/// misspelt table or a broken connection.
fn refused_for_privilege(
    what: &str,
    result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>,
) -> Result<()> {
    match result {
        Ok(done) => bail!(
            "{what} succeeded ({} rows) where it must be refused",
            done.rows_affected()
        ),
        Err(e) => {
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned());
            ensure!(
                code.as_deref() == Some("42501"),
                "{what} must be refused with SQLSTATE 42501 (insufficient_privilege), got {code:?}: {e}"
            );
            Ok(())
        }
    }
}

async fn the_audit_role_cannot_update_or_delete_records(stack: &Stack) -> Result<()> {
    let task = TodoClient::new(stack)
        .create(json!({ "title": "Immutable" }))
        .await?
        .expect(201)?;
    let id = text(&task, "/id").to_owned();
    records_of(stack, &id, 1).await?;
    let audit_role = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&stack.db_url("audit"))
        .await?;
    let update =
        sqlx::query("update audit_record set user_id = 'mallory' where task_id = $1::uuid")
            .bind(&id)
            .execute(&audit_role)
            .await;
    refused_for_privilege("UPDATE as the audit role", update)?;
    let delete = sqlx::query("delete from audit_record where task_id = $1::uuid")
        .bind(&id)
        .execute(&audit_role)
        .await;
    refused_for_privilege("DELETE as the audit role", delete)?;
    let truncate = sqlx::query("truncate audit_record")
        .execute(&audit_role)
        .await;
    refused_for_privilege("TRUNCATE as the audit role", truncate)?;
    // A superuser has every privilege; the trigger refuses it with the same
    // SQLSTATE. The statements name the test's own row, so a trigger that did
    // not fire would show as a success.
    let admin = admin_db(stack).await?;
    let as_admin =
        sqlx::query("update audit.audit_record set user_id = 'mallory' where task_id = $1::uuid")
            .bind(&id)
            .execute(&admin)
            .await;
    refused_for_privilege("a superuser's UPDATE", as_admin)?;
    let as_admin = sqlx::query("delete from audit.audit_record where task_id = $1::uuid")
        .bind(&id)
        .execute(&admin)
        .await;
    refused_for_privilege("a superuser's DELETE", as_admin)?;
    let records = records_of(stack, &id, 1).await?;
    ensure!(
        text(&records[0], "/user_id") != "mallory",
        "the record is unchanged"
    );
    Ok(())
}

async fn audit_api_answers_keep_their_shape(stack: &Stack) -> Result<()> {
    let alice = TodoClient::for_user(stack, "snapshot-user");
    let task = alice
        .create(json!({ "title": "Snapshot", "due_date": "2026-06-01T09:00:00Z", "timezone": "Europe/Berlin" }))
        .await?
        .expect(201)?;
    let id = text(&task, "/id").to_owned();
    alice.complete(&id, None).await?.expect(200)?;
    records_of(stack, &id, 2).await?;
    let page = get_json(
        &format!("{}/api/v1/audit?task_id={id}", audit_url(stack)),
        &stack.operator_token(),
    )
    .await?
    .expect(200)?;
    let unknown = get_json(
        &format!("{}/api/v1/audit/{}", audit_url(stack), uuid::Uuid::nil()),
        &stack.operator_token(),
    )
    .await?;
    let bad = get_json(
        &format!("{}/api/v1/audit?task_id=not-a-uuid", audit_url(stack)),
        &stack.operator_token(),
    )
    .await?;
    let snapshot = json!({
        "list": page,
        "unknown_record": { "status": unknown.status, "body": unknown.body },
        "bad_task_id": { "status": bad.status, "error": bad.body["error"] },
    });
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!("audit-api", snapshot, {
            ".list.records[].id" => "[id]",
            ".list.records[].event_id" => "[event_id]",
            ".list.records[].task_id" => "[task_id]",
            ".list.records[].timestamp" => "[time]",
            ".list.records[].recorded_at" => "[time]",
            ".list.records[].payload.id" => "[task_id]",
            ".list.records[].payload.created_at" => "[time]",
            ".list.records[].payload.updated_at" => "[time]",
            ".unknown_record.body.message" => "[message]",
        });
    });
    Ok(())
}

async fn after_downtime_the_audit_service_catches_up_without_loss(stack: &mut Stack) -> Result<()> {
    stack.stop_service("audit-service").await?;
    stack.stop_sidecar("audit-service").await?;

    // 200 operations while the audit service is away: 40 tasks, each created,
    // edited twice, completed and deleted.
    let alice = TodoClient::new(stack);
    let mut ids = Vec::new();
    for i in 0..40 {
        let task = alice
            .create(json!({ "title": format!("offline {i}") }))
            .await?
            .expect(201)?;
        let id = text(&task, "/id").to_owned();
        alice
            .patch(&id, json!({ "title": format!("offline {i} edited") }))
            .await?
            .expect(200)?;
        alice
            .patch(&id, json!({ "status": "in_progress" }))
            .await?
            .expect(200)?;
        alice.complete(&id, None).await?.expect(200)?;
        ensure!(alice.delete(&id).await?.status == 204, "delete");
        ids.push(id);
    }

    let back = Instant::now();
    stack.start_sidecar("audit-service").await?;
    stack.start_service("audit-service").await?;
    let stack = &*stack;
    let expected = [
        "task-created",
        "task-updated",
        "task-updated",
        "task-completed",
        "task-deleted",
    ];
    for id in &ids {
        let records = records_of(stack, id, 5).await?;
        let types: Vec<&str> = records.iter().map(|r| text(r, "/event_type")).collect();
        ensure!(
            types == expected,
            "task {id}: every operation once, in order: {types:?}"
        );
    }
    eprintln!(
        "    audit caught up with 200 operations {:.2}s after restart",
        back.elapsed().as_secs_f64()
    );
    let db = admin_db(stack).await?;
    let recorded: i64 =
        sqlx::query_scalar("select count(*) from audit.audit_record where user_id = $1")
            .bind(&alice.user)
            .fetch_one(&db)
            .await?;
    ensure!(
        recorded == 200,
        "exactly 200 records, no duplicates: {recorded}"
    );
    Ok(())
}

/// The consuming services: app id, schema and settings prefix.
const CONSUMERS: [(&str, &str, &str); 4] = [
    ("audit-service", "audit", "AUDIT_"),
    ("websocket-service", "websocket", "WEBSOCKET_"),
    ("notification-service", "notification", "NOTIFICATION_"),
    ("recurring-task-service", "recurring", "RECURRING_"),
];

/// The inbox only has to remember an event while Kafka can still deliver it
/// again: every consumer forgets ids older than its retention (default 14
/// days, twice the topics' 7) and keeps younger ones. Each service is
/// restarted with a 1 s prune interval, then given backdated inbox rows.
async fn every_consumers_inbox_forgets_events_older_than_its_retention(
    stack: &mut Stack,
) -> Result<()> {
    let db = admin_db(stack).await?;
    for (app, schema, prefix) in CONSUMERS {
        let interval = format!("{prefix}INBOX_PRUNE_INTERVAL_SECS");
        stack.set_service_env(app, &[(interval.as_str(), "1")])?;
        stack.stop_service(app).await?;
        stack.start_service(app).await?;
        let result = inbox_is_pruned(stack, &db, app, schema).await;
        // Later restarts run with the defaults again.
        stack.set_service_env(app, &[])?;
        result?;
    }
    Ok(())
}

/// More expired rows than one pruning statement deletes (1000), so the
/// pruner has to go on batch after batch.
const EXPIRED: i64 = 2500;

async fn inbox_is_pruned(stack: &Stack, db: &sqlx::PgPool, app: &str, schema: &str) -> Result<()> {
    let before = service_metric(stack, app, "inbox_pruned_total").await?;
    let kept = uuid::Uuid::new_v4();
    sqlx::query(&format!(
        "insert into {schema}.inbox (event_id, topic, received_at) \
         select gen_random_uuid(), 'pruning-test', now() - interval '15 days' from generate_series(1, $1) \
         union all select $2, 'pruning-test', now() - interval '13 days'"
    ))
    .bind(EXPIRED)
    .bind(kept)
    .execute(db)
    .await?;
    let count = |older: bool| async move {
        let n: i64 = sqlx::query_scalar(&format!(
            "select count(*) from {schema}.inbox where topic = 'pruning-test' \
             and (received_at < now() - interval '14 days') = $1"
        ))
        .bind(older)
        .fetch_one(db)
        .await?;
        anyhow::Ok(n)
    };
    eventually(
        Duration::from_secs(20),
        &format!("{app} forgets {EXPIRED} inbox rows 15 days old"),
        || async { Ok((count(true).await? == 0).then_some(())) },
    )
    .await?;
    ensure!(
        count(false).await? == 1,
        "{app} keeps an inbox row 13 days old (within its retention)"
    );
    let after = counter_after(stack, app, "inbox_pruned_total", before).await?;
    ensure!(
        after == before + EXPIRED as f64,
        "{app} counts the {EXPIRED} rows it pruned ({before} -> {after})"
    );
    Ok(())
}
