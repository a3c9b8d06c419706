//! Identity and access, as a caller meets it: every route of every service
//! asked by every kind of caller, with the status each must get (the
//! README's access table), and calls between services forged or made for
//! real through Dapr.
//!
//! Callers: no token, a malformed one, one signed with another key, expired,
//! not yet valid, for another issuer, for another audience, `alg: none`, an
//! RS256 token against the HS256 key; then valid tokens of the owner (alice),
//! another user (bob) and an operator. A refusal is always a JSON problem; a
//! 401 carries `WWW-Authenticate: Bearer realm="todo-platform"`, with
//! `error="invalid_token"` when a token was sent.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use chrono::{TimeDelta, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use todo_local_stack::Stack;

use crate::support::{TodoClient, claims, eventually, get_json, hs256, now, text, with};
use crate::{Ctx, shared};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        shared!(
            ctx,
            every_route_answers_every_kind_of_caller_as_the_access_table_says
        ),
        shared!(
            ctx,
            a_forged_internal_call_is_refused_and_a_real_one_through_dapr_accepted
        ),
    ]
}

/// A test-only RSA key (also used by todo-core's own token tests).
const RSA_KEY: &[u8] = include_bytes!("../../platform/todo-core/tests/fixtures/rsa-a.pem");

/// Who calls: a bad credential (always refused on a guarded route) or a
/// valid one (whose outcome the route's row says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoToken,
    Malformed,
    WrongSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    AlgNone,
    Rs256AgainstHs256,
    Owner,
    OtherUser,
    Operator,
}

const BAD: [Who; 9] = [
    Who::NoToken,
    Who::Malformed,
    Who::WrongSignature,
    Who::Expired,
    Who::NotYetValid,
    Who::WrongIssuer,
    Who::WrongAudience,
    Who::AlgNone,
    Who::Rs256AgainstHs256,
];

/// The `Authorization` header of each caller.
fn authorization(stack: &Stack, who: Who) -> Result<Option<String>> {
    let key = stack.signing_key().as_bytes();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let token = match who {
        Who::NoToken => return Ok(None),
        Who::Malformed => "not-a-jwt".to_owned(),
        Who::WrongSignature => hs256(b"another-key-another-key-another-key!", &claims("alice")),
        Who::Expired => hs256(key, &with(claims("alice"), "exp", json!(now() - 600))),
        Who::NotYetValid => hs256(key, &with(claims("alice"), "nbf", json!(now() + 600))),
        Who::WrongIssuer => hs256(key, &with(claims("alice"), "iss", json!("someone-else"))),
        Who::WrongAudience => hs256(key, &with(claims("alice"), "aud", json!("another-api"))),
        Who::AlgNone => format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims("alice").to_string().as_bytes())
        ),
        Who::Rs256AgainstHs256 => jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims("alice"),
            &EncodingKey::from_rsa_pem(RSA_KEY)?,
        )?,
        Who::Owner | Who::OtherUser | Who::Operator => unreachable!("valid callers come below"),
    };
    Ok(Some(format!("Bearer {token}")))
}

/// What a valid caller gets from a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// This status.
    Status(u16),
    /// 200 with a page that lists the fixture's item (at this JSON pointer).
    Lists(&'static str),
    /// 200 with a page that does not.
    ListsNot(&'static str),
    /// The WebSocket upgrade (101).
    Upgrade,
}

/// One row of the access table.
struct Route {
    service: &'static str,
    method: &'static str,
    /// With `{task}`, `{record}`, `{notification}`, `{other}` (another user's
    /// name) filled in from the fixture.
    path: &'static str,
    body: Option<Value>,
    /// A WebSocket upgrade request.
    upgrade: bool,
    /// The owner acts on a task of their own made for this row (a change
    /// would spoil the fixture).
    fresh_task: bool,
    owner: Outcome,
    other_user: Outcome,
    operator: Outcome,
}

const fn route(service: &'static str, method: &'static str, path: &'static str) -> Route {
    Route {
        service,
        method,
        path,
        body: None,
        upgrade: false,
        fresh_task: false,
        owner: Outcome::Status(200),
        other_user: Outcome::Status(200),
        operator: Outcome::Status(200),
    }
}

use Outcome::{Lists, ListsNot, Status, Upgrade};

const TODO: &str = "todo-service";
const AUDIT: &str = "audit-service";
const WEBSOCKET: &str = "websocket-service";
const NOTIFICATION: &str = "notification-service";
const RECURRING: &str = "recurring-task-service";

/// Every guarded route and what the owner of the fixture (alice), another
/// user (bob) and an operator get.
fn table() -> Vec<Route> {
    let own_only = |r: Route| Route {
        other_user: Status(404),
        operator: Status(404),
        ..r
    };
    let read_own = |r: Route| Route {
        other_user: Status(404),
        ..r
    };
    let names_owner = |r: Route| Route {
        other_user: Status(403),
        ..r
    };
    // A list: the owner's and an operator's show the fixture's item, another
    // user's does not.
    let scoped_list = |pointer: &'static str, r: Route| Route {
        owner: Lists(pointer),
        other_user: ListsNot(pointer),
        operator: Lists(pointer),
        ..r
    };
    let operators = |r: Route| Route {
        owner: Status(403),
        other_user: Status(403),
        ..r
    };
    vec![
        // Todo API: everyone's own tasks, operators included.
        Route {
            owner: Lists("/tasks"),
            other_user: ListsNot("/tasks"),
            operator: ListsNot("/tasks"),
            ..route(TODO, "GET", "/api/v1/tasks")
        },
        Route {
            body: Some(json!({"title": "access probe"})),
            owner: Status(201),
            other_user: Status(201),
            operator: Status(201),
            ..route(TODO, "POST", "/api/v1/tasks")
        },
        own_only(route(TODO, "GET", "/api/v1/tasks/{task}")),
        own_only(Route {
            body: Some(json!({"title": "replaced"})),
            fresh_task: true,
            ..route(TODO, "PUT", "/api/v1/tasks/{task}")
        }),
        own_only(Route {
            body: Some(json!({"title": "patched"})),
            fresh_task: true,
            ..route(TODO, "PATCH", "/api/v1/tasks/{task}")
        }),
        own_only(Route {
            fresh_task: true,
            ..route(TODO, "POST", "/api/v1/tasks/{task}/complete")
        }),
        own_only(Route {
            fresh_task: true,
            owner: Status(204),
            ..route(TODO, "DELETE", "/api/v1/tasks/{task}")
        }),
        // Audit: a user reads their own tasks' records, an operator all.
        scoped_list(
            "/records",
            route(AUDIT, "GET", "/api/v1/audit?task_id={task}"),
        ),
        names_owner(route(AUDIT, "GET", "/api/v1/audit?user_id={owner}")),
        read_own(route(AUDIT, "GET", "/api/v1/audit/{record}")),
        // Notifications: a user's in-app inbox; retry is for operators.
        scoped_list(
            "/notifications",
            route(NOTIFICATION, "GET", "/api/v1/notifications?task_id={task}"),
        ),
        names_owner(route(
            NOTIFICATION,
            "GET",
            "/api/v1/notifications?user_id={owner}",
        )),
        read_own(route(
            NOTIFICATION,
            "GET",
            "/api/v1/notifications/{notification}",
        )),
        // Sent, not failed: an operator passes the check and gets 409.
        operators(Route {
            operator: Status(409),
            ..route(
                NOTIFICATION,
                "POST",
                "/api/v1/notifications/{notification}/retry",
            )
        }),
        // Schedules and reminders: a user's own, an operator's all.
        scoped_list(
            "/schedules",
            route(RECURRING, "GET", "/api/v1/schedules?limit=500"),
        ),
        names_owner(route(RECURRING, "GET", "/api/v1/schedules?user_id={owner}")),
        read_own(route(RECURRING, "GET", "/api/v1/schedules/{task}")),
        scoped_list(
            "/reminders",
            route(RECURRING, "GET", "/api/v1/reminders?task_id={task}"),
        ),
        names_owner(route(RECURRING, "GET", "/api/v1/reminders?user_id={owner}")),
        // Intents given up on: operators only, on both dispatching services;
        // the fixture's are all carried out, so a retry finds nothing (404).
        operators(route(NOTIFICATION, "GET", "/api/v1/intents/failed")),
        operators(route(RECURRING, "GET", "/api/v1/intents/failed")),
        operators(Route {
            operator: Status(404),
            ..route(
                NOTIFICATION,
                "POST",
                "/api/v1/intents/failed/delivery-{notification}/retry",
            )
        }),
        operators(Route {
            operator: Status(404),
            ..route(
                RECURRING,
                "POST",
                "/api/v1/intents/failed/reminder-{task}/retry",
            )
        }),
        // Dead letters: operators only, on every consuming service. A redrive
        // of an unknown id is a 404; "redrive all" is asked for a topic the
        // service does not consume, so it touches no other test's letters.
        operators(route(AUDIT, "GET", "/api/v1/dead-letters")),
        operators(route(WEBSOCKET, "GET", "/api/v1/dead-letters?state=all")),
        operators(route(
            NOTIFICATION,
            "GET",
            "/api/v1/dead-letters?topic=reminders",
        )),
        operators(route(
            RECURRING,
            "GET",
            "/api/v1/dead-letters?state=redriven",
        )),
        operators(Route {
            operator: Status(404),
            ..route(AUDIT, "POST", "/api/v1/dead-letters/999999999/redrive")
        }),
        operators(Route {
            operator: Status(404),
            ..route(WEBSOCKET, "POST", "/api/v1/dead-letters/999999999/redrive")
        }),
        operators(Route {
            operator: Status(404),
            ..route(
                NOTIFICATION,
                "POST",
                "/api/v1/dead-letters/999999999/redrive",
            )
        }),
        operators(Route {
            operator: Status(404),
            ..route(RECURRING, "POST", "/api/v1/dead-letters/999999999/redrive")
        }),
        operators(route(
            AUDIT,
            "POST",
            "/api/v1/dead-letters/redrive?topic=reminders",
        )),
        operators(route(
            WEBSOCKET,
            "POST",
            "/api/v1/dead-letters/redrive?topic=reminders",
        )),
        operators(route(
            NOTIFICATION,
            "POST",
            "/api/v1/dead-letters/redrive?topic=task-events",
        )),
        operators(route(
            RECURRING,
            "POST",
            "/api/v1/dead-letters/redrive?topic=reminders",
        )),
        // WebSocket service: streams of one's own, the operator stream and
        // the connection count for operators.
        operators(route(WEBSOCKET, "GET", "/api/v1/connections")),
        Route {
            upgrade: true,
            owner: Upgrade,
            other_user: Upgrade,
            operator: Upgrade,
            ..route(WEBSOCKET, "GET", "/ws")
        },
        Route {
            upgrade: true,
            owner: Upgrade,
            other_user: Status(403),
            operator: Upgrade,
            ..route(WEBSOCKET, "GET", "/ws?user_id={owner}")
        },
        Route {
            upgrade: true,
            owner: Status(403),
            other_user: Status(403),
            operator: Upgrade,
            ..route(WEBSOCKET, "GET", "/ws/operator")
        },
    ]
}

/// Routes open to anyone on every service.
const OPEN: [&str; 5] = [
    "/health",
    "/health/ready",
    "/metrics",
    "/docs",
    "/openapi.json",
];

/// Alice's things every row reads: a recurring task with a reminder that
/// has fired and been delivered, so it has audit records, a series, a
/// reminder job and a notification.
struct Fixture {
    alice: TodoClient,
    bob: TodoClient,
    task: String,
    record: String,
    notification: String,
}

async fn fixture(stack: &Stack) -> Result<Fixture> {
    let alice = TodoClient::new(stack);
    let bob = TodoClient::new(stack);
    let remind_at = Utc::now() + TimeDelta::seconds(2);
    let task = alice
        .create(json!({
            "title": "guarded",
            "due_date": (Utc::now() + TimeDelta::days(1)).to_rfc3339(),
            "reminder_time": remind_at.to_rfc3339(),
            "recurrence_schedule": "daily",
        }))
        .await?
        .expect(201)?;
    let task = text(&task, "/id").to_owned();
    let operator = stack.operator_token();
    let audit = stack.app_url(AUDIT);
    let record = eventually(
        Duration::from_secs(15),
        "the task's audit record",
        || async {
            let page = get_json(&format!("{audit}/api/v1/audit?task_id={task}"), &operator).await?;
            Ok(page
                .body
                .pointer("/records/0/id")
                .and_then(Value::as_str)
                .map(str::to_owned))
        },
    )
    .await?;
    let notifications = stack.app_url(NOTIFICATION);
    let notification = eventually(Duration::from_secs(30), "the reminder sent", || async {
        let page = get_json(
            &format!("{notifications}/api/v1/notifications?task_id={task}&status=sent"),
            &operator,
        )
        .await?;
        Ok(page
            .body
            .pointer("/notifications/0/id")
            .and_then(Value::as_str)
            .map(str::to_owned))
    })
    .await?;
    let recurring = stack.app_url(RECURRING);
    eventually(Duration::from_secs(15), "the task's series", || async {
        let got = get_json(&format!("{recurring}/api/v1/schedules/{task}"), &operator).await?;
        Ok((got.status == 200).then_some(()))
    })
    .await?;
    Ok(Fixture {
        alice,
        bob,
        task,
        record,
        notification,
    })
}

/// An answer as the table judges it.
struct Got {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

async fn call(
    stack: &Stack,
    route: &Route,
    path: &str,
    authorization: Option<&str>,
) -> Result<Got> {
    let url = format!("{}{path}", stack.app_url(route.service));
    let method = reqwest::Method::from_bytes(route.method.as_bytes())?;
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .timeout(Duration::from_secs(30));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    if let Some(body) = &route.body {
        req = req.json(body);
    }
    if route.upgrade {
        req = req
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    let res = req
        .send()
        .await
        .with_context(|| format!("{} {url}", route.method))?;
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = if status == 101 {
        Value::Null
    } else {
        let bytes = res.bytes().await?;
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Ok(Got {
        status,
        challenge,
        body,
    })
}

/// Why `got` is not `expected` for `who`, if it is not.
fn judge(who: Who, expected: Outcome, got: &Got, item: &str) -> Option<String> {
    let problem = got.body["error"].is_string() && got.body["message"].is_string();
    let status = match expected {
        Status(s) => s,
        Lists(_) | ListsNot(_) => 200,
        Upgrade => 101,
    };
    if got.status != status {
        return Some(format!(
            "expected {status}, got {} {}",
            got.status, got.body
        ));
    }
    if status >= 400 && !problem {
        return Some(format!("{status} without a JSON problem: {}", got.body));
    }
    if status == 401 {
        let challenge = got.challenge.as_deref().unwrap_or_default();
        if !challenge.starts_with("Bearer realm=\"todo-platform\"") {
            return Some(format!("401 without a bearer challenge: {challenge:?}"));
        }
        let token_sent = who != Who::NoToken;
        if token_sent != challenge.contains("error=\"invalid_token\"") {
            return Some(format!("the challenge misjudges the token: {challenge}"));
        }
    }
    let listed = |pointer: &str| {
        got.body
            .pointer(pointer)
            .and_then(Value::as_array)
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|i| [i["id"].as_str(), i["task_id"].as_str()].contains(&Some(item)))
            })
    };
    match expected {
        Lists(pointer) if !listed(pointer) => Some(format!("{item} not listed: {}", got.body)),
        ListsNot(pointer) if got.body.pointer(pointer).is_none() => {
            Some(format!("no page: {}", got.body))
        }
        ListsNot(pointer) if listed(pointer) => Some(format!("{item} leaked: {}", got.body)),
        _ => None,
    }
}

async fn every_route_answers_every_kind_of_caller_as_the_access_table_says(
    stack: &Stack,
) -> Result<()> {
    let f = fixture(stack).await?;
    let fill = |path: &str, task: &str| {
        path.replace("{task}", task)
            .replace("{record}", &f.record)
            .replace("{notification}", &f.notification)
            .replace("{owner}", &f.alice.user)
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in table() {
        let path = fill(row.path, &f.task);
        let name = format!("{} {} {}", row.service, row.method, row.path);
        for who in BAD {
            let got = call(stack, &row, &path, authorization(stack, who)?.as_deref()).await?;
            if let Some(why) = judge(who, Status(401), &got, &f.task) {
                failures.push(format!("{name} as {who:?}: {why}"));
            }
            checked += 1;
        }
        let valid = [
            (Who::Owner, f.alice.token.clone(), row.owner),
            (Who::OtherUser, f.bob.token.clone(), row.other_user),
            (Who::Operator, stack.operator_token(), row.operator),
        ];
        for (who, token, expected) in valid {
            let path = if row.fresh_task && who == Who::Owner {
                let (_, own) = f.alice.create_task("the owner's to change").await?;
                fill(row.path, &own)
            } else {
                path.clone()
            };
            let got = call(stack, &row, &path, Some(&format!("Bearer {token}"))).await?;
            if let Some(why) = judge(who, expected, &got, &f.task) {
                failures.push(format!("{name} as {who:?}: {why}"));
            }
            checked += 1;
        }
    }
    for spec in stack.services() {
        for path in OPEN {
            let row = route(spec.app_id, "GET", path);
            for who in [Who::NoToken, Who::Malformed] {
                let got = call(stack, &row, path, authorization(stack, who)?.as_deref()).await?;
                if got.status != 200 {
                    failures.push(format!("{} {path} as {who:?}: {}", spec.app_id, got.status));
                }
                checked += 1;
            }
        }
    }
    // The task the other callers tried to change is untouched.
    let task = f.alice.get(&f.task).await?.expect(200)?;
    ensure!(text(&task, "/title") == "guarded", "{task}");
    eprintln!("    {checked} calls checked against the access table");
    if !failures.is_empty() {
        bail!(
            "{} of {checked} calls broke the access table:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

async fn a_forged_internal_call_is_refused_and_a_real_one_through_dapr_accepted(
    stack: &Stack,
) -> Result<()> {
    let owner = format!("user-{}", uuid::Uuid::new_v4());
    let todo = stack.app_url(TODO);
    // The port only the sidecar should call (loopback): there internal calls
    // are checked; the public port takes none at all.
    let internal = stack.internal_url(TODO);
    let app_token = stack.app_api_token(TODO).to_owned();
    let recurring_token = stack.app_api_token(RECURRING).to_owned();
    let body = json!({"title": "made on someone's behalf"});
    let http = reqwest::Client::new();
    let forged: [(&str, Vec<(&str, &str)>); 7] = [
        (
            "the user named without a token",
            vec![("X-On-Behalf-Of", &owner)],
        ),
        (
            "X-User-Id without the development switch",
            vec![("X-User-Id", &owner)],
        ),
        (
            "a wrong app token",
            vec![
                ("dapr-api-token", "not-the-token"),
                ("dapr-caller-app-id", RECURRING),
                ("X-On-Behalf-Of", &owner),
            ],
        ),
        (
            "the right app token without a caller id",
            vec![("dapr-api-token", &app_token), ("X-On-Behalf-Of", &owner)],
        ),
        (
            "another app's own token (each app has its own)",
            vec![
                ("dapr-api-token", &recurring_token),
                ("dapr-caller-app-id", RECURRING),
                ("X-On-Behalf-Of", &owner),
            ],
        ),
        (
            "the right app token from an untrusted app",
            vec![
                ("dapr-api-token", &app_token),
                ("dapr-caller-app-id", AUDIT),
                ("X-On-Behalf-Of", &owner),
            ],
        ),
        // Whoever learns the token (it sits in every sidecar's environment)
        // must still not get in from outside: the public port takes no
        // internal calls at all, only the loopback one the sidecar calls.
        (
            "every header a sidecar sends, from outside on the public port",
            vec![
                ("dapr-api-token", &app_token),
                ("dapr-caller-app-id", RECURRING),
                ("X-On-Behalf-Of", &owner),
            ],
        ),
    ];
    for (what, headers) in &forged {
        let base = if what.contains("public port") {
            &todo
        } else {
            &internal
        };
        let mut req = http.post(format!("{base}/api/v1/tasks")).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await?;
        ensure!(res.status() == 401, "{what}: {}", res.status());
        let problem: Value = res.json().await?;
        ensure!(problem["error"] == "unauthorized", "{what}: {problem}");
    }
    // Through Dapr: the recurring-task service's sidecar adds the app token
    // and names its app; the audit service's sidecar names another app.
    let invoke = |app: &str| {
        format!(
            "{}/v1.0/invoke/{TODO}/method/api/v1/tasks",
            stack.dapr_http_url(app)
        )
    };
    let refused = http
        .post(invoke(AUDIT))
        .header("X-On-Behalf-Of", &owner)
        .json(&body)
        .send()
        .await?;
    ensure!(
        refused.status() == 401,
        "through the audit service's sidecar: {}",
        refused.status()
    );
    let made = http
        .post(invoke(RECURRING))
        .header("X-On-Behalf-Of", &owner)
        .json(&body)
        .send()
        .await?;
    ensure!(
        made.status() == 201,
        "through the recurring-task service's sidecar: {} {}",
        made.status(),
        made.text().await?
    );
    let listed = TodoClient::for_user(stack, &owner)
        .send("GET", "/api/v1/tasks", None, &[])
        .await?
        .expect(200)?;
    ensure!(
        listed["total"] == 1 && text(&listed, "/tasks/0/title") == "made on someone's behalf",
        "the task is the named user's: {listed}"
    );
    Ok(())
}
