//! The one error shape of every HTTP API: `{ "error": "<stable_code>", "message": "..." }`.
//!
//! Each service maps its own typed errors into [`ApiError`] once (a `From` impl);
//! handlers return `Result<_, ApiError>` so every status appears in the OpenAPI
//! document. Request-parsing failures (malformed JSON, wrong types, bad path or
//! query parameters, wrong content type) are turned into the same shape by the
//! `bad_request_handler`, and anything that escapes the typed API (unknown route,
//! wrong method, oversized body) by [`problem_response`].

use poem::http::StatusCode;

use crate::auth::AuthError;
use poem_openapi::{ApiResponse, Object, payload::Json};

/// A machine-readable error code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// Stable, snake_case error code, e.g. `validation_failed`.
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// Every error status an API of this platform can answer with.
#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "from_request_error")]
pub enum ApiError {
    /// The request could not be parsed (malformed JSON, wrong types, bad parameters).
    #[oai(status = 400)]
    BadRequest(Json<Problem>),
    /// No valid credentials: the token is missing, malformed, expired, not
    /// yet valid, wrongly signed, or for another issuer or audience.
    #[oai(status = 401)]
    Unauthorized(
        Json<Problem>,
        /// The bearer challenge (RFC 6750), with `error="invalid_token"` when a
        /// token was sent.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The caller is known but may not do this (an operator route).
    #[oai(status = 403)]
    Forbidden(Json<Problem>),
    /// No such resource for this caller.
    #[oai(status = 404)]
    NotFound(Json<Problem>),
    /// The resource is in a state that forbids the operation.
    #[oai(status = 409)]
    Conflict(Json<Problem>),
    /// The request body is larger than the service accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<Problem>),
    /// The request body is not JSON.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<Problem>),
    /// The request is well-formed but violates a rule.
    #[oai(status = 422)]
    Unprocessable(Json<Problem>),
    /// An unexpected failure; the cause is logged, never returned.
    #[oai(status = 500)]
    Internal(Json<Problem>),
    /// A dependency (database, Dapr sidecar, Kafka) is unavailable.
    #[oai(status = 503)]
    Unavailable(Json<Problem>),
}

fn body(code: &str, message: impl Into<String>) -> Json<Problem> {
    Json(Problem {
        error: code.to_owned(),
        message: message.into(),
    })
}

impl ApiError {
    /// 400 with the given code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest(body(code, message))
    }
    /// 401 `unauthorized` for credentials that were sent but are not valid.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::from(AuthError::Invalid(message.into()))
    }
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(body("not_found", message))
    }
    /// 409 with the given code.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict(body(code, message))
    }
    /// 422 with the given code.
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable(body(code, message))
    }
    /// 503 `dependency_unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::Unavailable(body("dependency_unavailable", message))
    }
    /// 500 `internal_error`; log the cause before calling this.
    pub fn internal() -> Self {
        ApiError::Internal(body(
            "internal_error",
            "an unexpected error occurred; it has been logged",
        ))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Maps a request-parsing failure of the typed API to a JSON problem.
fn from_request_error(err: poem::Error) -> ApiError {
    if let Some(auth) = err.downcast_ref::<AuthError>() {
        return ApiError::from(auth.clone());
    }
    let message = err.to_string();
    match err.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(body("payload_too_large", message))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType(body("unsupported_media_type", message))
        }
        // poem-openapi's own refusal: no (or no bearer) `Authorization` header.
        StatusCode::UNAUTHORIZED => ApiError::from(AuthError::Missing),
        _ => ApiError::bad_request("invalid_request", message),
    }
}

/// The stable code used for a bare HTTP status outside the typed API.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "dependency_unavailable",
        s if s.is_client_error() => "invalid_request",
        _ => "internal_error",
    }
}

/// Turns any error that escaped the typed API into a JSON problem response.
/// 5xx causes are logged here and answered opaquely.
pub fn problem_response(err: poem::Error) -> poem::Response {
    if err.is_from_response() {
        // A typed API answer (an `ApiError`) travelling as an error: keep it.
        return err.into_response();
    }
    if let Some(auth) = err.downcast_ref::<AuthError>() {
        return poem::error::ResponseError::as_response(auth);
    }
    let status = err.status();
    if status == StatusCode::UNAUTHORIZED {
        // poem-openapi's refusal of a request without credentials.
        return poem::error::ResponseError::as_response(&AuthError::Missing);
    }
    let message = if status.is_server_error() {
        tracing::error!(error = %err, "request failed");
        "an unexpected error occurred; it has been logged".to_owned()
    } else {
        err.to_string()
    };
    let problem = Problem {
        error: code_for_status(status).to_owned(),
        message,
    };
    poem::Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::to_vec(&problem).unwrap_or_default())
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::Missing | AuthError::Invalid(_) => {
                ApiError::Unauthorized(body("unauthorized", message), e.challenge())
            }
            AuthError::Forbidden(_) => ApiError::Forbidden(body("forbidden", message)),
            AuthError::KeysUnavailable(_) => ApiError::unavailable(message),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// A database failure: 503 when the database is unreachable, otherwise 500;
    /// the cause is logged here, never returned.
    fn from(e: sqlx::Error) -> Self {
        if matches!(
            e,
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
        ) {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::unavailable("the database is unavailable; retry later")
        } else {
            tracing::error!(error = %e, "database error");
            ApiError::internal()
        }
    }
}
