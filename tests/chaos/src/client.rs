//! Lean clients of the platform as a real client uses it: the Todo API over
//! HTTP, spread over the replicas as a load balancer would, retrying with
//! the same Idempotency-Key; and a user's WebSocket stream that keeps a log
//! of every update it received and reconnects with `since` when the stream
//! ends or stops answering pings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// An HTTP answer: status (0: no answer, the request failed in transport or
/// timed out) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// One user of the Todo API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    bases: Arc<[String]>,
    turn: Arc<AtomicUsize>,
    pub user: String,
    token: String,
}

impl Api {
    pub fn new(bases: Vec<String>, user: &str, token: String) -> Api {
        Api {
            http: reqwest::Client::builder()
                // Past the service's own 3 s wait for Kafka, so a slow
                // answer is still read rather than abandoned.
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            bases: bases.into(),
            turn: Arc::default(),
            user: user.to_owned(),
            token,
        }
    }

    /// One request to the next replica. A transport error or timeout is
    /// status 0, never an `Err`: to the workload it is an unknown outcome.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Answer {
        let base = &self.bases[self.turn.fetch_add(1, Ordering::Relaxed) % self.bases.len()];
        let mut req = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.token);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let body = match res.bytes().await {
                    Ok(b) if b.is_empty() => Value::Null,
                    Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
                    Err(_) => {
                        return Answer {
                            status: 0,
                            body: Value::Null,
                        };
                    }
                };
                Answer { status, body }
            }
            Err(_) => Answer {
                status: 0,
                body: Value::Null,
            },
        }
    }
}

/// One update as the WebSocket client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub seq: i64,
    pub event_id: String,
    pub task_id: String,
    pub event_type: String,
    /// Which connection of the client (0 = the first) it came on.
    pub connection: u32,
}

/// What a user's WebSocket client saw: its updates, in the order received,
/// and how often it (re)connected.
#[derive(Debug, Default, Clone)]
pub struct StreamLog {
    pub received: Vec<Received>,
    pub connections: u32,
    pub failed_connects: u32,
}

/// A user's WebSocket client: connects to the replicas in turn, pings every
/// 2 s and reconnects with `since=<last seq>` when the stream ends, errs,
/// or nothing (not even a pong) comes for 6 s; also reconnects on its own
/// every `reconnect_every`, as a page reload would. Runs until `stop`.
pub async fn follow_stream(
    ws_bases: Vec<String>,
    token: String,
    log: Arc<Mutex<StreamLog>>,
    reconnect_every: Duration,
    stop: CancellationToken,
) {
    let mut turn = 0usize;
    while !stop.is_cancelled() {
        let last = log
            .lock()
            .expect("stream log")
            .received
            .last()
            .map(|r| r.seq);
        let base = &ws_bases[turn % ws_bases.len()];
        turn += 1;
        // Since the beginning of the (fresh) user's log on the first connect:
        // nothing written before the stream opened is lost either.
        let url = format!("{base}/ws?since={}", last.unwrap_or(0));
        if let Err(_e) = one_connection(&url, &token, &log, reconnect_every, &stop).await {
            log.lock().expect("stream log").failed_connects += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn one_connection(
    url: &str,
    token: &str,
    log: &Arc<Mutex<StreamLog>>,
    reconnect_every: Duration,
    stop: &CancellationToken,
) -> Result<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("todo-updates, bearer.{token}").parse()?,
    );
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("connect timed out")??;
    let connection = {
        let mut l = log.lock().expect("stream log");
        l.connections += 1;
        l.connections - 1
    };
    let until = tokio::time::Instant::now() + reconnect_every;
    let mut ping = tokio::time::interval(Duration::from_secs(2));
    let mut heard = tokio::time::Instant::now();
    loop {
        if stop.is_cancelled() || tokio::time::Instant::now() >= until {
            let _ = socket.close(None).await;
            return Ok(());
        }
        if heard.elapsed() > Duration::from_secs(6) {
            // A frozen replica: the socket stays open, nothing answers.
            return Ok(());
        }
        tokio::select! {
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return Ok(());
                }
            }
            msg = socket.next() => {
                let Some(Ok(msg)) = msg else { return Ok(()) };
                heard = tokio::time::Instant::now();
                if let Message::Text(t) = msg {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    // Control messages (`ready`, `resync-required`) carry a type.
                    if v.get("type").is_none()
                        && let Some(seq) = v["seq"].as_i64()
                    {
                        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                        log.lock().expect("stream log").received.push(Received {
                            seq,
                            event_id: field("event_id"),
                            task_id: field("task_id"),
                            event_type: field("event_type"),
                            connection,
                        });
                    }
                }
            }
        }
    }
}
