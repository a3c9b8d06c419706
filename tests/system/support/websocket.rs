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

/// The handshake request of `url` carrying `token` the way a browser can:
/// `Sec-WebSocket-Protocol: todo-updates, bearer.<JWT>`.
pub fn handshake(
    url: &str,
    token: &str,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("todo-updates, bearer.{token}").parse()?,
    );
    Ok(request)
}

/// Reads `socket` until the server's close frame, within `within`; what
/// came before it is dropped. Errors if it ends without one or not in time.
pub async fn close_frame<S>(
    socket: &mut S,
    within: Duration,
) -> Result<tokio_tungstenite::tungstenite::protocol::CloseFrame>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(within, async {
        while let Some(msg) = socket.next().await {
            if let Message::Close(frame) = msg? {
                return Ok::<_, anyhow::Error>(frame);
            }
        }
        Ok(None)
    })
    .await
    .map_err(|_| anyhow::anyhow!("not closed within {within:?}"))??
    .context("closed without a close frame")
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
    /// Connects to `path_and_query` with `token` and reads until `ready`.
    pub async fn open(stack: &Stack, path_and_query: &str, token: &str) -> Result<WsClient> {
        Self::open_url(&ws_url(stack, path_and_query), token).await
    }

    /// Connects to `url` (`ws://…`) with `token` (as a browser sends it, in
    /// `Sec-WebSocket-Protocol`) and reads until `ready`.
    pub async fn open_url(url: &str, token: &str) -> Result<WsClient> {
        let (socket, response) = tokio_tungstenite::connect_async(handshake(url, token)?)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        anyhow::ensure!(
            protocol == Some("todo-updates"),
            "the server answered protocol {protocol:?}, not todo-updates"
        );
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

    /// The stream of the holder of `token`, live only or after `since`.
    pub async fn user(stack: &Stack, token: &str, since: Option<i64>) -> Result<WsClient> {
        let q = match since {
            Some(s) => format!("/ws?since={s}"),
            None => "/ws".to_owned(),
        };
        Self::open(stack, &q, token).await
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
