//! What the system tests use to act as a user and to look at Kafka and the
//! database from outside: an HTTP client, `kcat`, and polling with a deadline.

use std::{future::Future, time::Duration};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use todo_local_stack::Stack;

/// Polls `check` every 100 ms until it returns `Some`, or fails after `within`
/// with the last observation.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not true within {within:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP answer: status and JSON body (Null when empty).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    /// The answer's body, after checking the status.
    pub fn expect(self, status: u16) -> Result<Value> {
        if self.status != status {
            bail!(
                "expected HTTP {status}, got {} with {}",
                self.status,
                self.body
            );
        }
        Ok(self.body)
    }
}

/// A user of the Todo API.
#[derive(Clone)]
pub struct TodoClient {
    http: reqwest::Client,
    base: String,
    pub user: String,
}

impl TodoClient {
    /// A client for a fresh, unique user.
    pub fn new(stack: &Stack) -> Self {
        Self::for_user(stack, &format!("user-{}", uuid::Uuid::new_v4()))
    }

    /// A client acting as `user`.
    pub fn for_user(stack: &Stack, user: &str) -> Self {
        TodoClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base: stack.app_url("todo-service"),
            user: user.to_owned(),
        }
    }

    /// Sends a request with this user's `X-User-Id`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-User-Id", &self.user);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        answer(res).await
    }

    /// Sends a raw body with a content type.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-User-Id", &self.user)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        answer(res).await
    }

    pub async fn create(&self, body: Value) -> Result<Answer> {
        self.send("POST", "/api/v1/tasks", Some(body), &[]).await
    }

    /// Creates a task titled `title` (expecting 201); returns it and its id.
    pub async fn create_task(&self, title: &str) -> Result<(Value, String)> {
        let task = self
            .create(serde_json::json!({ "title": title }))
            .await?
            .expect(201)?;
        let id = text(&task, "/id").to_owned();
        Ok((task, id))
    }

    pub async fn create_keyed(&self, body: Value, key: &str) -> Result<Answer> {
        self.send(
            "POST",
            "/api/v1/tasks",
            Some(body),
            &[("Idempotency-Key", key)],
        )
        .await
    }

    pub async fn get(&self, id: &str) -> Result<Answer> {
        self.send("GET", &format!("/api/v1/tasks/{id}"), None, &[])
            .await
    }

    pub async fn patch(&self, id: &str, body: Value) -> Result<Answer> {
        self.send("PATCH", &format!("/api/v1/tasks/{id}"), Some(body), &[])
            .await
    }

    pub async fn complete(&self, id: &str, key: Option<&str>) -> Result<Answer> {
        let headers: Vec<(&str, &str)> = key
            .map(|k| vec![("Idempotency-Key", k)])
            .unwrap_or_default();
        self.send(
            "POST",
            &format!("/api/v1/tasks/{id}/complete"),
            None,
            &headers,
        )
        .await
    }

    pub async fn delete(&self, id: &str) -> Result<Answer> {
        self.send("DELETE", &format!("/api/v1/tasks/{id}"), None, &[])
            .await
    }

    pub async fn ready(&self) -> Result<Answer> {
        self.send("GET", "/health/ready", None, &[]).await
    }
}

async fn answer(res: reqwest::Response) -> Result<Answer> {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = res.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// One Kafka record as `kcat -J` shows it, with the CloudEvent parsed.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub cloud_event: Value,
}

impl Record {
    /// The envelope (the CloudEvent's `data`).
    pub fn envelope(&self) -> &Value {
        &self.cloud_event["data"]
    }
}

/// Everything on `topic`, read from the beginning with kcat.
pub async fn read_topic(stack: &Stack, topic: &str) -> Result<Vec<Record>> {
    Ok(todo_local_stack::read_topic(&stack.kafka_brokers(), topic)
        .await?
        .into_iter()
        .map(|r| Record {
            key: r.key,
            cloud_event: serde_json::from_str(&r.value).unwrap_or(Value::String(r.value)),
        })
        .collect())
}

/// The records on `topic` about `task_id`, in offset order.
pub async fn task_records(stack: &Stack, topic: &str, task_id: &str) -> Result<Vec<Record>> {
    Ok(read_topic(stack, topic)
        .await?
        .into_iter()
        .filter(|r| r.envelope()["task_id"] == task_id)
        .collect())
}

/// Waits until `topic` holds exactly `n` records about `task_id` and returns them.
/// Writes answer only after their events are on Kafka, so this normally
/// succeeds on the first read; the deadline absorbs kcat's own start-up.
pub async fn expect_records(
    stack: &Stack,
    topic: &str,
    task_id: &str,
    n: usize,
) -> Result<Vec<Record>> {
    let records = eventually(
        Duration::from_secs(10),
        &format!("{n} records for {task_id} on {topic}"),
        || async {
            let r = task_records(stack, topic, task_id).await?;
            Ok((r.len() >= n).then_some(r))
        },
    )
    .await?;
    if records.len() != n {
        bail!(
            "expected {n} records for {task_id} on {topic}, found {}: {records:#?}",
            records.len()
        );
    }
    Ok(records)
}

/// A connection to PostgreSQL as the superuser, to check what is stored.
pub async fn admin_db(stack: &Stack) -> Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.pg_admin_url())
        .await
        .context("connecting to PostgreSQL as admin")
}

/// The string at `pointer` in `v`.
pub fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// GETs a JSON document from any service.
pub async fn get_json(url: &str) -> Result<Answer> {
    let res = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    answer(res).await
}

/// The value of one Prometheus sample (0 when absent), e.g.
/// `events_skipped_total{reason="unknown_schema_version"}`.
pub async fn metric(base_url: &str, sample: &str) -> Result<f64> {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0))
}

/// Produces one record onto `topic` with kcat, as a producer that is not Dapr.
pub async fn produce(stack: &Stack, topic: &str, key: &str, value: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kcat")
        .args(["-b", &stack.kafka_brokers(), "-P", "-t", topic, "-k", key])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running kcat -P")?;
    let mut stdin = child.stdin.take().context("kcat stdin")?;
    stdin.write_all(value.as_bytes()).await?;
    stdin.write_all(b"\n").await?;
    drop(stdin);
    let status = child.wait().await?;
    ensure_ok(status.success(), "kcat -P failed")
}

fn ensure_ok(ok: bool, what: &str) -> Result<()> {
    if ok { Ok(()) } else { bail!("{what}") }
}
