//! The routes outside the OpenAPI document: the WebSocket upgrades (`/ws` for
//! one user, `/ws/operator` for everyone, behind the operator token) and the
//! live page (`/live`). Handlers only parse and check; [`service`] streams.
//!
//! [`service`]: crate::service

use poem::{
    IntoResponse, Request, Response, handler,
    web::{
        Data, Html, Query,
        websocket::{WebSocket, WebSocketConfig},
    },
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use todo_core::{consumer::constant_time_eq, problem::ApiError};

use crate::hub::StreamKind;
use crate::service::{self, Streams};

/// The live page (static; it builds its list from `/ws`).
const LIVE_PAGE: &str = include_str!("live.html");

/// Longest accepted `user_id`.
const MAX_USER_ID: usize = 255;

/// Query parameters of the stream routes, as given.
#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    pub user_id: Option<String>,
    pub since: Option<String>,
    pub token: Option<String>,
}

/// A bad stream request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamRequestError {
    #[error("query parameter `user_id` is required")]
    MissingUser,
    #[error("`user_id` must be 1–{MAX_USER_ID} characters")]
    BadUser,
    #[error("`since` must be a non-negative integer (a `seq` you received), got {0:?}")]
    BadCursor(String),
    #[error("the operator stream needs the operator token (`Authorization: Bearer …` or `token=`)")]
    Unauthorized,
}

impl From<StreamRequestError> for ApiError {
    fn from(e: StreamRequestError) -> Self {
        match e {
            StreamRequestError::Unauthorized => ApiError::unauthorized(e.to_string()),
            _ => ApiError::bad_request("invalid_request", e.to_string()),
        }
    }
}

fn reject(e: StreamRequestError) -> poem::Error {
    poem::Error::from_response(ApiError::from(e).into_response())
}

/// The user a `/ws` stream is for.
pub fn parse_user(user: Option<&str>) -> Result<String, StreamRequestError> {
    let user = user.ok_or(StreamRequestError::MissingUser)?;
    if user.is_empty() || user.chars().count() > MAX_USER_ID {
        return Err(StreamRequestError::BadUser);
    }
    Ok(user.to_owned())
}

/// The cursor a stream resumes after, if any.
pub fn parse_cursor(since: Option<&str>) -> Result<Option<i64>, StreamRequestError> {
    match since {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(StreamRequestError::BadCursor(s.chars().take(40).collect())),
        },
    }
}

/// Whether `given` is the operator token (compared in constant time).
pub fn token_matches(given: Option<&str>, expected: &str) -> bool {
    !expected.is_empty()
        && constant_time_eq(given.unwrap_or_default().as_bytes(), expected.as_bytes())
}

/// Small buffers: an idle connection should cost a few KiB, not the
/// 128 KiB tungstenite reserves by default.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// The operator token, as the service read it from the secret store.
#[derive(Clone)]
pub struct OperatorToken(pub SecretString);

/// `GET /ws?user_id=…&since=…`: one user's updates.
#[handler]
pub async fn user_stream(
    Query(query): Query<StreamQuery>,
    ws: WebSocket,
    streams: Data<&Streams>,
) -> poem::Result<Response> {
    let user = parse_user(query.user_id.as_deref()).map_err(reject)?;
    let since = parse_cursor(query.since.as_deref()).map_err(reject)?;
    let streams = streams.clone();
    Ok(ws
        .config(socket_config())
        .on_upgrade(move |socket| {
            service::serve(socket, streams, StreamKind::User, Some(user), since)
        })
        .into_response())
}

/// `GET /ws/operator?since=…`: every user's updates, for the admin console.
#[handler]
pub async fn operator_stream(
    req: &Request,
    Query(query): Query<StreamQuery>,
    ws: WebSocket,
    streams: Data<&Streams>,
    token: Data<&OperatorToken>,
) -> poem::Result<Response> {
    let bearer = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(query.token.as_deref());
    if !token_matches(given, token.0.0.expose_secret()) {
        return Err(reject(StreamRequestError::Unauthorized));
    }
    let since = parse_cursor(query.since.as_deref()).map_err(reject)?;
    let streams = streams.clone();
    Ok(ws
        .config(socket_config())
        .on_upgrade(move |socket| {
            service::serve(socket, streams, StreamKind::Operator, None, since)
        })
        .into_response())
}

/// `GET /live?user_id=…`: the live page.
#[handler]
pub fn live_page() -> Html<&'static str> {
    Html(LIVE_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_needs_a_reasonable_user() {
        assert_eq!(parse_user(Some("alice")).unwrap(), "alice");
        assert_eq!(parse_user(None), Err(StreamRequestError::MissingUser));
        assert_eq!(parse_user(Some("")), Err(StreamRequestError::BadUser));
        assert_eq!(
            parse_user(Some(&"x".repeat(256))),
            Err(StreamRequestError::BadUser)
        );
    }

    #[test]
    fn cursors_are_non_negative_integers() {
        assert_eq!(parse_cursor(None).unwrap(), None);
        assert_eq!(parse_cursor(Some("0")).unwrap(), Some(0));
        assert_eq!(parse_cursor(Some("42")).unwrap(), Some(42));
        assert!(parse_cursor(Some("-1")).is_err());
        assert!(parse_cursor(Some("abc")).is_err());
        assert!(parse_cursor(Some("99999999999999999999")).is_err());
    }

    #[test]
    fn the_operator_token_must_match_whole() {
        assert!(token_matches(Some("s3cret"), "s3cret"));
        assert!(!token_matches(Some("s3cre"), "s3cret"));
        assert!(!token_matches(None, "s3cret"));
        assert!(!token_matches(Some(""), ""));
    }
}
