//! The operator stream (`/ws/operator`): connects with the operator's token,
//! turns each message into a [`Frame`] and reports everything that happens
//! as [`StreamEvent`]s. When the connection drops it reconnects with
//! `since=<the last seq seen>`, with backoff, so nothing is missed and
//! nothing is shown twice; the update accounts for the gap it filled.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::action::{Action, StreamEvent};
use crate::client::FetchError;
use crate::config::Endpoints;
use crate::model::Frame;
use crate::token::TokenSource;

/// Waits between attempts: 200 ms doubling to 5 s, with jitter.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Why a handshake failed, in the console's terms.
fn handshake_error(e: WsError) -> FetchError {
    match e {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(200).collect());
            match status {
                401 => FetchError::Unauthorized(message),
                403 => FetchError::Forbidden(message),
                _ => FetchError::Status { status, message },
            }
        }
        WsError::Io(io) => FetchError::Down(io.to_string()),
        other => FetchError::Down(other.to_string()),
    }
}

/// Follows the operator stream until `actions` is closed (the console quit).
/// Starts live, or after `since` when given.
pub async fn follow(
    endpoints: Endpoints,
    token: TokenSource,
    mut since: Option<i64>,
    actions: mpsc::Sender<Action>,
) {
    let send = |event: StreamEvent| {
        let actions = actions.clone();
        async move { actions.send(Action::Stream(event)).await.is_ok() }
    };
    let mut delays = backoff();
    let mut attempt = 1;
    loop {
        if !send(StreamEvent::Connecting { attempt, since }).await {
            return;
        }
        let opened = match token.bearer() {
            Err(e) => Err(FetchError::NoToken(e)),
            Ok(bearer) => {
                let mut request = match endpoints.operator_stream(since).into_client_request() {
                    Ok(r) => r,
                    Err(e) => {
                        let retry_at = Utc::now() + chrono::TimeDelta::days(1);
                        send(StreamEvent::Failed {
                            error: FetchError::Down(format!("bad WebSocket URL: {e}")),
                            retry_at,
                        })
                        .await;
                        return;
                    }
                };
                if let Ok(value) = HeaderValue::from_str(&format!("Bearer {bearer}")) {
                    request.headers_mut().insert(header::AUTHORIZATION, value);
                }
                tokio_tungstenite::connect_async(request)
                    .await
                    .map_err(handshake_error)
            }
        };
        let mut ws = match opened {
            Ok((ws, _)) => ws,
            Err(error) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                let retry_at = Utc::now()
                    + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::seconds(5));
                if !send(StreamEvent::Failed { error, retry_at }).await {
                    return;
                }
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
        };
        attempt = 1;
        delays = backoff();
        if !send(StreamEvent::Opened { since }).await {
            return;
        }
        let (code, reason) = loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame = Frame::parse(text.as_str());
                    match &frame {
                        Frame::Update(event) => {
                            since = Some(since.map_or(event.seq, |s| s.max(event.seq)))
                        }
                        Frame::Ready { seq } => since = Some(since.map_or(*seq, |s| s.max(*seq))),
                        _ => {}
                    }
                    if !send(StreamEvent::Frame(frame)).await {
                        return;
                    }
                }
                Some(Ok(Message::Close(close))) => {
                    break match close {
                        Some(c) => (Some(u16::from(c.code)), c.reason.to_string()),
                        None => (None, String::new()),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break (None, e.to_string()),
                None => break (None, String::new()),
            }
        };
        if !send(StreamEvent::Closed {
            code,
            reason,
            at: Utc::now(),
        })
        .await
        {
            return;
        }
        let delay = delays.next().unwrap_or(Duration::from_millis(200));
        tokio::time::sleep(delay).await;
    }
}
