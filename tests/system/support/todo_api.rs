//! A user of the Todo API (with their bearer token), with one method per call
//! the stories make, plus raw sends for requests a well-behaved client would
//! never make.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use todo_local_stack::Stack;

use super::http::Answer;
use super::text;

/// A user of the Todo API. With several replicas of the Todo service each
/// request goes to the next one, as behind a load balancer, so that one
/// user's requests (and a retry of one) land on different replicas.
#[derive(Clone)]
pub struct TodoClient {
    http: reqwest::Client,
    bases: Arc<[String]>,
    turn: Arc<AtomicUsize>,
    pub user: String,
    /// The user's JWT, minted with the stack's signing key.
    pub token: String,
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
            bases: stack.app_urls("todo-service").into(),
            turn: Arc::default(),
            user: user.to_owned(),
            token: stack.user_token(user),
        }
    }

    /// The replica the next request goes to.
    fn base(&self) -> &str {
        &self.bases[self.turn.fetch_add(1, Ordering::Relaxed) % self.bases.len()]
    }

    /// Sends a request with this user's bearer token.
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
            .request(method, format!("{}{path}", self.base()))
            .bearer_auth(&self.token);
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
        Answer::read(res).await
    }

    /// Sends `body` byte for byte with `headers`. With a body, `content-type`
    /// is `application/json` unless `headers` name one; an `Authorization`
    /// in `headers` replaces this user's token.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut req = self.http.request(method, format!("{}{path}", self.base()));
        if !has("authorization") {
            req = req.bearer_auth(&self.token);
        }
        if body.is_some() && !has("content-type") {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        Answer::read(res).await
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
