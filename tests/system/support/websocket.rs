//! A client of the WebSocket service's streams (`tokio-tungstenite`): opens a
//! user's or the operator's stream, keeps the replay and the control messages
//! it saw up to `ready`, and reads updates with deadlines.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::Value;
use todo_local_stack::Stack;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `ws://127.0.0.1:<port><path_and_query>` on the WebSocket service (the
/// next replica, when it runs several).
pub fn ws_url(stack: &Stack, path_and_query: &str) -> String {
    ws_url_at(&stack.app_url("websocket-service"), path_and_query)
}

/// The same on one replica, given its `http://` address.
pub fn ws_url_at(base: &str, path_and_query: &str) -> String {
    format!("{}{path_and_query}", base.replacen("http://", "ws://", 1))
}

/// A WebSocket client of the service that has seen `ready`.
pub struct WsClient {
    pub socket: Socket,
    /// Updates that came before `ready` (the replay).
    pub replayed: Vec<Value>,
    /// The `ready` message's cursor.
    pub ready_seq: i64,
    /// Control messages seen (`resync-required`, `ready`).
    pub controls: Vec<Value>,
}

impl WsClient {
    /// Connects to `path_and_query` and reads until `ready`.
    pub async fn open(stack: &Stack, path_and_query: &str) -> Result<WsClient> {
        Self::open_url(&ws_url(stack, path_and_query)).await
    }

    /// Connects to `url` (`ws://…`) and reads until `ready`.
    pub async fn open_url(url: &str) -> Result<WsClient> {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let mut client = WsClient {
            socket,
            replayed: Vec::new(),
            ready_seq: -1,
            controls: Vec::new(),
        };
        loop {
            let msg = client.next_json(Duration::from_secs(10)).await?;
            if msg["type"] == "ready" {
                client.ready_seq = msg["seq"].as_i64().unwrap_or(-1);
                client.controls.push(msg);
                return Ok(client);
            }
            if msg.get("type").is_some() {
                client.controls.push(msg);
            } else {
                client.replayed.push(msg);
            }
        }
    }

    /// A user's stream, live only or after `since`.
    pub async fn user(stack: &Stack, user: &str, since: Option<i64>) -> Result<WsClient> {
        let q = match since {
            Some(s) => format!("/ws?user_id={user}&since={s}"),
            None => format!("/ws?user_id={user}"),
        };
        Self::open(stack, &q).await
    }

    /// The next JSON text message, within `within`.
    async fn next_json(&mut self, within: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| anyhow::anyhow!("no message within {within:?}"))?
                .context("the stream ended")??;
            match msg {
                Message::Text(t) => return Ok(serde_json::from_str(t.as_str())?),
                Message::Close(frame) => bail!("closed by the server: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next update (not a control message).
    pub async fn next_update(&mut self, within: Duration) -> Result<Value> {
        loop {
            let msg = self.next_json(within).await?;
            if msg.get("type").is_none() {
                return Ok(msg);
            }
        }
    }

    /// Updates until one about `task_id` of type `event_type`; returns it.
    pub async fn until(
        &mut self,
        task_id: &str,
        event_type: &str,
        within: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let u = self
                .next_update(left)
                .await
                .with_context(|| format!("waiting for {event_type} of {task_id}"))?;
            if u["task_id"] == task_id && u["event_type"] == event_type {
                return Ok(u);
            }
        }
    }
}
