//! The routes outside the OpenAPI document: the WebSocket upgrades (`/ws` for
//! one user, `/ws/operator` for everyone, behind the operator token) and the
//! live page (`/live`). Handlers only parse and check; [`service`] streams.
//!
//! [`service`]: crate::service

use poem::{
    IntoResponse, Request, Response, handler,
    http::HeaderMap,
    web::{
        Data, Html, Query,
        websocket::{WebSocket, WebSocketConfig},
    },
};
use serde::Deserialize;
use todo_core::{
    auth::{AuthError, Authenticator, Identity, valid_user_id},
    problem::{ApiError, Problem},
};

use crate::hub::{ConnectionGuard, StreamKind};
use crate::service::{self, Streams};

/// The live page (static; it builds its list from `/ws`).
const LIVE_PAGE: &str = include_str!("live.html");

/// The subprotocol the streams speak; the server answers with it.
pub const PROTOCOL: &str = "todo-updates";

/// A `Sec-WebSocket-Protocol` element carrying the token: `bearer.<JWT>`
/// (browsers cannot set `Authorization` on a WebSocket, and a token in the
/// URL would end up in access logs).
pub const TOKEN_PROTOCOL_PREFIX: &str = "bearer.";

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
    #[error("`user_id` must be 1–128 visible ASCII characters")]
    BadUser,
    #[error("`since` must be a non-negative integer (a `seq` you received), got {0:?}")]
    BadCursor(String),
}

impl From<StreamRequestError> for ApiError {
    fn from(e: StreamRequestError) -> Self {
        ApiError::bad_request("invalid_request", e.to_string())
    }
}

fn reject(e: StreamRequestError) -> poem::Error {
    poem::Error::from_response(ApiError::from(e).into_response())
}

/// How a stream request says who it is.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamCredentials<'a> {
    /// A JWT, from `Authorization: Bearer` or `Sec-WebSocket-Protocol`.
    Bearer(&'a str),
    /// `X-User-Id` (trusted only with the development switch).
    UserHeader(&'a str),
}

/// The credentials of a stream request; a token in the URL is refused.
pub fn stream_credentials(
    headers: &HeaderMap,
    token_in_url: bool,
) -> Result<StreamCredentials<'_>, AuthError> {
    if token_in_url {
        return Err(AuthError::Invalid(format!(
            "a token is never accepted in the URL (it would end up in access logs): send \
             `Sec-WebSocket-Protocol: {PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}<JWT>` or \
             `Authorization: Bearer <JWT>`"
        )));
    }
    let text = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
    };
    if let Some(token) = text("authorization")
        .into_iter()
        .find_map(|v| v.strip_prefix("Bearer "))
    {
        return Ok(StreamCredentials::Bearer(token.trim()));
    }
    if let Some(token) = text("sec-websocket-protocol")
        .into_iter()
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(TOKEN_PROTOCOL_PREFIX))
    {
        return Ok(StreamCredentials::Bearer(token));
    }
    match text("x-user-id").first() {
        Some(user) => Ok(StreamCredentials::UserHeader(user)),
        None => Err(AuthError::Missing),
    }
}

/// Who opens a stream, and until when (the token's expiry; none for the
/// development header).
async fn identify(
    req: &Request,
    query: &StreamQuery,
    auth: &Authenticator,
) -> Result<(Identity, Option<tokio::time::Instant>), AuthError> {
    match stream_credentials(req.headers(), query.token.is_some())? {
        StreamCredentials::Bearer(token) => {
            let (who, expires) = auth.verify_until(token).await?;
            let left = expires
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            Ok((who, Some(tokio::time::Instant::now() + left)))
        }
        StreamCredentials::UserHeader(user) if auth.trusts_user_header() => {
            if valid_user_id(user) {
                Ok((Identity::user(user), None))
            } else {
                Err(AuthError::Invalid(
                    "`X-User-Id` must be 1–128 visible ASCII characters".to_owned(),
                ))
            }
        }
        StreamCredentials::UserHeader(_) => Err(AuthError::Missing),
    }
}

/// Whose updates a `/ws` stream carries: the caller's own; `user_id`, if
/// given, must name them, unless the caller is an operator.
pub fn stream_user(who: &Identity, asked: Option<&str>) -> Result<String, poem::Error> {
    match asked {
        None => Ok(who.subject.clone()),
        Some(user) if !valid_user_id(user) => Err(reject(StreamRequestError::BadUser)),
        Some(user) if who.may_read(user) => Ok(user.to_owned()),
        Some(user) => Err(AuthError::Forbidden(format!(
            "a user streams only their own updates; `user_id={user}` is someone else"
        ))
        .into()),
    }
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

/// Small buffers: an idle connection should cost a few KiB, not the
/// 128 KiB tungstenite reserves by default.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// A place for `who`'s stream within the replica's limits, or 429.
fn admit(
    streams: &Streams,
    kind: StreamKind,
    who: &Identity,
) -> Result<ConnectionGuard, poem::Error> {
    streams.hub.admit(kind, &who.subject).map_err(|e| {
        tracing::info!(holder = %who.subject, reason = %e, "stream refused");
        let problem = Problem {
            error: "too_many_streams".to_owned(),
            message: e.to_string(),
        };
        poem::Error::from_response(
            (
                poem::http::StatusCode::TOO_MANY_REQUESTS,
                poem::web::Json(problem),
            )
                .into_response(),
        )
    })
}

/// `GET /ws?since=…`: the caller's own updates (an operator may add
/// `user_id=` to follow one user).
#[handler]
pub async fn user_stream(
    req: &Request,
    Query(query): Query<StreamQuery>,
    auth: Data<&Authenticator>,
    streams: Data<&Streams>,
    ws: poem::Result<WebSocket>,
) -> poem::Result<Response> {
    let (who, until) = identify(req, &query, &auth).await?;
    let user = stream_user(&who, query.user_id.as_deref())?;
    let since = parse_cursor(query.since.as_deref()).map_err(reject)?;
    let ws = ws?;
    let admitted = admit(&streams, StreamKind::User, &who)?;
    let streams = streams.clone();
    Ok(ws
        .protocols([PROTOCOL])
        .config(socket_config())
        .on_upgrade(move |socket| {
            service::serve(socket, streams, admitted, Some(user), since, until)
        })
        .into_response())
}

/// `GET /ws/operator?since=…`: every user's updates, for operators.
#[handler]
pub async fn operator_stream(
    req: &Request,
    Query(query): Query<StreamQuery>,
    auth: Data<&Authenticator>,
    streams: Data<&Streams>,
    ws: poem::Result<WebSocket>,
) -> poem::Result<Response> {
    let (who, until) = identify(req, &query, &auth).await?;
    who.require_operator()?;
    let since = parse_cursor(query.since.as_deref()).map_err(reject)?;
    let ws = ws?;
    let admitted = admit(&streams, StreamKind::Operator, &who)?;
    let streams = streams.clone();
    Ok(ws
        .protocols([PROTOCOL])
        .config(socket_config())
        .on_upgrade(move |socket| service::serve(socket, streams, admitted, None, since, until))
        .into_response())
}

/// `GET /live#token=<JWT>`: the live page (the token stays in the fragment,
/// which browsers never send).
#[handler]
pub fn live_page() -> Html<&'static str> {
    Html(LIVE_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn the_token_comes_from_the_protocol_header_or_authorization_never_the_url() {
        let browser = headers(&[("sec-websocket-protocol", "todo-updates, bearer.a.b.c")]);
        assert_eq!(
            stream_credentials(&browser, false).unwrap(),
            StreamCredentials::Bearer("a.b.c")
        );
        let cli = headers(&[("authorization", "Bearer x.y.z")]);
        assert_eq!(
            stream_credentials(&cli, false).unwrap(),
            StreamCredentials::Bearer("x.y.z")
        );
        assert!(matches!(
            stream_credentials(&cli, true),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            stream_credentials(&headers(&[]), false),
            Err(AuthError::Missing)
        );
        let dev = headers(&[("x-user-id", "alice")]);
        assert_eq!(
            stream_credentials(&dev, false).unwrap(),
            StreamCredentials::UserHeader("alice")
        );
    }

    #[test]
    fn a_user_streams_their_own_and_an_operator_anyones() {
        let alice = Identity::user("alice");
        assert_eq!(stream_user(&alice, None).unwrap(), "alice");
        assert_eq!(stream_user(&alice, Some("alice")).unwrap(), "alice");
        assert_eq!(
            stream_user(&alice, Some("bob")).unwrap_err().status(),
            poem::http::StatusCode::FORBIDDEN
        );
        let ops = Identity::operator("ops");
        assert_eq!(stream_user(&ops, Some("bob")).unwrap(), "bob");
        assert_eq!(
            stream_user(&ops, Some("b o b")).unwrap_err().status(),
            poem::http::StatusCode::BAD_REQUEST
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
}
