//! The security schemes of the typed APIs, as poem-openapi extractors: an
//! operation that takes a [`Caller`] (or a service's own enum of schemes)
//! documents its requirement, and Swagger UI shows "Authorize".
//!
//! The checkers find the [`Authenticator`] (and, for calls through Dapr, the
//! [`InternalTrust`]) in the request's data; `Connected::app` adds it.

use poem::Request;
use poem_openapi::{
    SecurityScheme,
    auth::{ApiKey, Bearer},
};
use secrecy::ExposeSecret;

use super::{AuthError, Authenticator, Identity, valid_user_id};
use crate::{consumer::constant_time_eq, server::ViaSidecar, settings::AppToken};

/// A JWT bearer token (`Authorization: Bearer <JWT>`).
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_bearer"
)]
pub struct BearerToken(pub Identity);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Identity> {
    Ok(authenticator(req)?.verify(&bearer.token).await?)
}

fn authenticator(req: &Request) -> poem::Result<&Authenticator> {
    req.data::<Authenticator>().ok_or_else(|| {
        tracing::error!("no Authenticator in the request's data");
        poem::Error::from_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
    })
}

/// Development only: `X-User-Id` names the caller, trusted only when the
/// service runs with `AUTH_DEV_TRUST_USER_HEADER=true` and the request
/// carries no `Authorization` header.
#[derive(SecurityScheme)]
#[oai(
    rename = "devUserHeader",
    ty = "api_key",
    key_name = "X-User-Id",
    key_in = "header",
    checker = "check_dev_header"
)]
pub struct DevUserHeader(pub Identity);

async fn check_dev_header(req: &Request, key: ApiKey) -> poem::Result<Identity> {
    // A token, when sent, decides (as on the streams): the header is only
    // for requests that carry none.
    if !authenticator(req)?.trusts_user_header()
        || req
            .headers()
            .contains_key(poem::http::header::AUTHORIZATION)
    {
        return Err(AuthError::Missing.into());
    }
    if !valid_user_id(&key.key) {
        return Err(AuthError::Invalid(
            "`X-User-Id` must be 1–128 visible ASCII characters".to_owned(),
        )
        .into());
    }
    Ok(Identity::user(key.key))
}

/// Who may call in through Dapr service invocation: the app API token the
/// sidecar adds (`dapr-api-token`) and the caller app ids it names
/// (`dapr-caller-app-id`, which the calling sidecar sets). Such calls are
/// accepted only on the internal port ([`ViaSidecar`]).
#[derive(Clone)]
pub struct InternalTrust {
    pub app_token: AppToken,
    pub callers: Vec<String>,
}

/// Header naming the user an internal call acts for.
pub const ON_BEHALF_OF: &str = "X-On-Behalf-Of";

/// A call from another service of the platform through its sidecar:
/// `dapr-api-token` is the app API token, `dapr-caller-app-id` a trusted
/// caller, and `X-On-Behalf-Of` the user it acts for.
#[derive(SecurityScheme)]
#[oai(
    rename = "daprServiceInvocation",
    ty = "api_key",
    key_name = "dapr-api-token",
    key_in = "header",
    checker = "check_internal"
)]
pub struct InternalCall(pub Identity);

async fn check_internal(req: &Request, key: ApiKey) -> poem::Result<Identity> {
    let refused = |why: &str| -> poem::Error {
        tracing::warn!(reason = %why, "internal call refused");
        AuthError::Invalid(format!("internal call refused: {why}")).into()
    };
    let trust = req
        .data::<InternalTrust>()
        .ok_or_else(|| refused("this route accepts no internal calls"))?;
    if req.extensions().get::<ViaSidecar>().is_none() {
        return Err(refused(
            "internal calls are accepted only on the sidecar's port",
        ));
    }
    // A development machine without an app token takes no internal calls.
    let expected = match &trust.app_token {
        AppToken::Required(t) => t.expose_secret().as_bytes(),
        AppToken::NotRequired => &[][..],
    };
    if expected.is_empty() || !constant_time_eq(key.key.as_bytes(), expected) {
        return Err(refused("wrong app API token"));
    }
    let caller = req
        .headers()
        .get("dapr-caller-app-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !trust.callers.iter().any(|c| c == caller) {
        return Err(refused(&format!(
            "caller app id `{caller}` is not one of {:?}",
            trust.callers
        )));
    }
    let user = req
        .headers()
        .get(ON_BEHALF_OF)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !valid_user_id(user) {
        return Err(refused(&format!(
            "`{ON_BEHALF_OF}` must name the user (1–128 visible ASCII characters)"
        )));
    }
    Ok(Identity::user(user))
}

/// The caller of an operation: a bearer token, or (development only) the
/// `X-User-Id` header. When both fail the bearer token's error is answered.
#[derive(SecurityScheme)]
pub enum Caller {
    DevHeader(DevUserHeader),
    Bearer(BearerToken),
}

impl Caller {
    /// Who is calling.
    pub fn identity(&self) -> &Identity {
        match self {
            Caller::DevHeader(DevUserHeader(id)) | Caller::Bearer(BearerToken(id)) => id,
        }
    }
}
