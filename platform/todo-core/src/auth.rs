//! Identity: who is calling, checked the same way by every service.
//!
//! A caller proves who they are with a JWT bearer token (`Authorization:
//! Bearer …`). [`Authenticator::verify`] checks its signature, `exp`/`nbf`
//! (with a small leeway), `iss` and `aud`; the user is `sub`, and an operator
//! is a user whose roles claim holds the operator role. Keys come either from
//! an HS256 secret in the Dapr secret store or from a JWKS (a file or a URL,
//! cached and refreshed; RS/PS/ES algorithms only). A token is checked only
//! with the algorithms its key is for: `alg: none`, an HS256 token against a
//! JWKS and an RS256 token against the HS256 secret are all refused.
//!
//! Requests reach the typed APIs through the poem-openapi security schemes of
//! [`scheme`] (Swagger UI's "Authorize" button); routes outside the document
//! (WebSocket upgrades) call [`Authenticator::verify`] themselves.
//!
//! Access rules are plain functions of [`Identity`]: [`Identity::scope`] says
//! whose data a caller may read, [`Identity::require_operator`] guards
//! operator routes. Another user's resource answers 404 (it is not theirs to
//! know about), an operator route answers a user 403.

pub mod keys;
pub mod scheme;
pub mod token;

use std::time::Duration;

use poem::{IntoResponse, Response, error::ResponseError, http::StatusCode};
use serde::Deserialize;

pub use keys::Authenticator;
pub use scheme::{BearerToken, Caller, DevUserHeader, InternalCall, InternalTrust};
pub use token::{Claims, mint_hs256};

/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "todo-platform";

/// Key of the HS256 signing secret inside its Dapr secret.
pub const SIGNING_SECRET_KEY: &str = "key";

/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// How services check tokens, from `AUTH_*` variables (the same for every
/// service; all optional).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthSettings {
    /// Expected `iss` (`AUTH_ISSUER`, default `todo-platform`).
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Expected `aud` (`AUTH_AUDIENCE`, default `todo-platform`).
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Dapr secret holding the HS256 key under key `key`
    /// (`AUTH_SIGNING_SECRET`, default `auth-signing-key`). Unused with a JWKS.
    #[serde(default = "default_signing_secret")]
    pub signing_secret: String,
    /// Where a JWKS is served (`AUTH_JWKS_URL`); tokens are then RS/PS/ES-signed.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A JWKS file (`AUTH_JWKS_FILE`), re-read when it changes.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// How often a JWKS is fetched again (`AUTH_JWKS_REFRESH_SECS`, default
    /// 300); a token with an unknown `kid` fetches it at once (at most every
    /// 10 s).
    #[serde(default = "default_jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// Clock skew allowed on `exp` and `nbf` (`AUTH_LEEWAY_SECS`, default 30).
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Claim holding the caller's roles, an array of strings or one
    /// space-separated string (`AUTH_ROLES_CLAIM`, default `roles`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The role that makes a caller an operator (`AUTH_OPERATOR_ROLE`,
    /// default `operator`).
    #[serde(default = "default_operator_role")]
    pub operator_role: String,
    /// Development only: trust `X-User-Id` as the caller when it is sent
    /// without a token (`AUTH_DEV_TRUST_USER_HEADER`, default false; logged
    /// as a warning at start-up).
    #[serde(default)]
    pub dev_trust_user_header: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            issuer: default_issuer(),
            audience: default_audience(),
            signing_secret: default_signing_secret(),
            jwks_url: None,
            jwks_file: None,
            jwks_refresh_secs: default_jwks_refresh_secs(),
            leeway_secs: default_leeway_secs(),
            roles_claim: default_roles_claim(),
            operator_role: default_operator_role(),
            dev_trust_user_header: false,
        }
    }
}

impl AuthSettings {
    /// The settings from `AUTH_*` variables.
    pub fn from_env() -> Result<Self, crate::settings::SettingsError> {
        crate::settings::from_env("AUTH_")
    }

    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_secs)
    }
}

fn default_issuer() -> String {
    "todo-platform".to_owned()
}
fn default_audience() -> String {
    "todo-platform".to_owned()
}
fn default_signing_secret() -> String {
    "auth-signing-key".to_owned()
}
fn default_jwks_refresh_secs() -> u64 {
    300
}
fn default_leeway_secs() -> u64 {
    30
}
fn default_roles_claim() -> String {
    "roles".to_owned()
}
fn default_operator_role() -> String {
    "operator".to_owned()
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user: the token's `sub` (1–128 visible ASCII characters).
    pub subject: String,
    /// Whether the token carries the operator role.
    pub operator: bool,
}

/// Whose data a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// An operator: everyone's.
    Everyone,
    /// A user: their own.
    Own(String),
}

impl Identity {
    /// A plain user.
    pub fn user(subject: impl Into<String>) -> Self {
        Identity {
            subject: subject.into(),
            operator: false,
        }
    }

    /// An operator.
    pub fn operator(subject: impl Into<String>) -> Self {
        Identity {
            subject: subject.into(),
            operator: true,
        }
    }

    /// 403 unless the caller is an operator.
    pub fn require_operator(&self) -> Result<(), AuthError> {
        if self.operator {
            Ok(())
        } else {
            Err(AuthError::Forbidden(
                "this route is for operators (a token whose roles include the operator role)"
                    .to_owned(),
            ))
        }
    }

    /// Whose data this caller may read.
    pub fn scope(&self) -> Scope {
        if self.operator {
            Scope::Everyone
        } else {
            Scope::Own(self.subject.clone())
        }
    }

    /// Whether this caller may read something owned by `owner`.
    pub fn may_read(&self, owner: &str) -> bool {
        self.operator || self.subject == owner
    }
}

impl Scope {
    /// The user filter of a list: an operator's as asked; a user's is always
    /// themselves, and asking for someone else is refused (403).
    pub fn user_filter(&self, asked: Option<String>) -> Result<Option<String>, AuthError> {
        match self {
            Scope::Everyone => Ok(asked),
            Scope::Own(me) => match asked {
                Some(other) if other != *me => Err(AuthError::Forbidden(format!(
                    "a user may list only their own; `user_id={other}` is someone else \
                     (operators may name any user)"
                ))),
                _ => Ok(Some(me.clone())),
            },
        }
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all (401 without an error code, RFC 6750 §3.1).
    #[error(
        "this route needs a token: send `Authorization: Bearer <JWT>` (`cargo xtask token` mints one on the local stack)"
    )]
    Missing,
    /// Credentials were sent but are not acceptable (401 `invalid_token`).
    #[error("{0}")]
    Invalid(String),
    /// A valid caller who may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The keys to check tokens with cannot be had right now (503).
    #[error("the keys that verify tokens are unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3).
    pub fn challenge(&self) -> String {
        match self {
            AuthError::Invalid(reason) => format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                reason.replace(['"', '\\'], "'")
            ),
            _ => format!("Bearer realm=\"{REALM}\""),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Invalid(_) => "unauthorized",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::KeysUnavailable(_) => "dependency_unavailable",
        }
    }
}

impl ResponseError for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn as_response(&self) -> Response {
        let problem = crate::problem::Problem {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        let mut response = Response::builder()
            .status(self.status())
            .content_type("application/json")
            .body(serde_json::to_vec(&problem).unwrap_or_default());
        if self.status() == StatusCode::UNAUTHORIZED
            && let Ok(value) = poem::http::HeaderValue::from_str(&self.challenge())
        {
            response
                .headers_mut()
                .insert(poem::http::header::WWW_AUTHENTICATE, value);
        }
        response.into_response()
    }
}

/// Whether `id` is a usable user id: 1–128 visible ASCII characters.
pub fn valid_user_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_lists_only_their_own_and_an_operator_anyone() {
        let alice = Identity::user("alice");
        assert_eq!(
            alice.scope().user_filter(None).unwrap(),
            Some("alice".into())
        );
        assert_eq!(
            alice.scope().user_filter(Some("alice".into())).unwrap(),
            Some("alice".into())
        );
        assert!(matches!(
            alice.scope().user_filter(Some("bob".into())),
            Err(AuthError::Forbidden(_))
        ));
        let op = Identity::operator("ops");
        assert_eq!(op.scope().user_filter(None).unwrap(), None);
        assert_eq!(
            op.scope().user_filter(Some("bob".into())).unwrap(),
            Some("bob".into())
        );
        assert!(alice.may_read("alice") && !alice.may_read("bob") && op.may_read("bob"));
        assert!(alice.require_operator().is_err() && op.require_operator().is_ok());
    }

    #[test]
    fn a_401_challenges_with_bearer_and_says_why_only_when_a_token_was_sent() {
        assert_eq!(
            AuthError::Missing.challenge(),
            "Bearer realm=\"todo-platform\""
        );
        let invalid = AuthError::Invalid("the token has \"expired\"".into());
        assert_eq!(
            invalid.challenge(),
            "Bearer realm=\"todo-platform\", error=\"invalid_token\", error_description=\"the token has 'expired'\""
        );
        let response = invalid.as_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
        let forbidden = AuthError::Forbidden("no".into()).as_response();
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(!forbidden.headers().contains_key("www-authenticate"));
    }

    #[test]
    fn user_ids_are_short_visible_ascii() {
        assert!(valid_user_id("alice") && valid_user_id(&"a".repeat(128)));
        assert!(!valid_user_id("") && !valid_user_id(&"a".repeat(129)));
        assert!(!valid_user_id("al ice") && !valid_user_id("alicé"));
    }
}
