//! The operator's bearer token: given (flag or environment) or, on a machine
//! running the local stack, minted from its state folder the way `cargo
//! xtask token --operator` does, and minted again before it expires. The
//! console reads the token's own claims (unverified: the services verify)
//! only to say whose it is and when it expires.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::state::TokenInfo;

/// Lifetime of a token the console mints itself.
#[cfg(feature = "local-stack")]
const MINTED_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 60 * 60);

/// A minted token is replaced when it has less than this left.
const RENEW_BEFORE: TimeDelta = TimeDelta::minutes(10);

#[derive(Debug, Clone)]
enum Origin {
    /// A token the operator gave; used as is, even once expired (the
    /// services then refuse it and the status line says so).
    Given { from: String },
    /// Minted from the local stack's state folder as `subject`.
    LocalStack { state_dir: PathBuf, subject: String },
}

/// Where the console's token comes from; cheap to clone, shared by every
/// task that calls a service.
#[derive(Debug, Clone)]
pub struct TokenSource {
    origin: Origin,
    current: Arc<Mutex<Option<String>>>,
}

/// Claims read from a JWT's payload without checking its signature.
fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What `token` says of itself (subject, expiry, operator role).
pub fn describe(token: &str, source: &str) -> TokenInfo {
    let claims = claims(token).unwrap_or(Value::Null);
    let roles_have_operator = match claims.get("roles") {
        Some(Value::Array(roles)) => roles.iter().any(|r| r == "operator"),
        Some(Value::String(roles)) => roles.split_whitespace().any(|r| r == "operator"),
        _ => false,
    };
    TokenInfo {
        subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        expires_at: claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|exp| DateTime::from_timestamp(exp, 0)),
        operator: roles_have_operator,
        source: source.to_owned(),
    }
}

impl TokenSource {
    /// A token the operator gave (`from` names where, for the status line).
    pub fn given(token: String, from: &str) -> Self {
        TokenSource {
            origin: Origin::Given {
                from: from.to_owned(),
            },
            current: Arc::new(Mutex::new(Some(token))),
        }
    }

    /// Tokens minted as `subject` with the key in the local stack's
    /// `state_dir` (the stack need not run).
    pub fn local_stack(state_dir: PathBuf, subject: &str) -> Self {
        TokenSource {
            origin: Origin::LocalStack {
                state_dir,
                subject: subject.to_owned(),
            },
            current: Arc::new(Mutex::new(None)),
        }
    }

    fn source_label(&self) -> String {
        match &self.origin {
            Origin::Given { from } => from.clone(),
            Origin::LocalStack { state_dir, .. } => {
                format!("minted from {}", state_dir.display())
            }
        }
    }

    /// The token to send now, minting a fresh one when the local stack's is
    /// missing or about to expire.
    ///
    /// # Errors
    /// When a token must be minted and cannot be (no state folder, no key),
    /// with the reason.
    pub fn bearer(&self) -> Result<String, String> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh_enough = |t: &String| {
            describe(t, "")
                .expires_at
                .is_some_and(|exp| exp - Utc::now() > RENEW_BEFORE)
        };
        match (&self.origin, current.as_ref()) {
            (Origin::Given { .. }, Some(token)) => Ok(token.clone()),
            (Origin::LocalStack { .. }, Some(token)) if fresh_enough(token) => Ok(token.clone()),
            (Origin::LocalStack { state_dir, subject }, _) => {
                let token = mint(state_dir, subject)?;
                *current = Some(token.clone());
                Ok(token)
            }
            (Origin::Given { from }, None) => Err(format!("no token in {from}")),
        }
    }

    /// What the current token says of itself (minting one if needed).
    pub fn info(&self) -> TokenInfo {
        match self.bearer() {
            Ok(token) => describe(&token, &self.source_label()),
            Err(_) => TokenInfo {
                source: self.source_label(),
                ..TokenInfo::default()
            },
        }
    }
}

#[cfg(feature = "local-stack")]
fn mint(state_dir: &std::path::Path, subject: &str) -> Result<String, String> {
    todo_local_stack::mint_token(state_dir, subject, true, MINTED_TTL).map_err(|e| format!("{e:#}"))
}

#[cfg(not(feature = "local-stack"))]
fn mint(_state_dir: &std::path::Path, _subject: &str) -> Result<String, String> {
    Err("this build cannot mint tokens: give one with --token or TODO_ADMIN_TOKEN".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> String {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            enc.encode(br#"{"alg":"HS256"}"#),
            enc.encode(claims.to_string())
        )
    }

    #[test]
    fn a_token_says_whose_it_is_and_when_it_expires() {
        let token =
            jwt(&serde_json::json!({"sub": "ops", "exp": 1_900_000_000, "roles": ["operator"]}));
        let info = describe(&token, "TODO_ADMIN_TOKEN");
        assert_eq!(info.subject.as_deref(), Some("ops"));
        assert_eq!(info.expires_at.map(|t| t.timestamp()), Some(1_900_000_000));
        assert!(info.operator);
        let user = describe(
            &jwt(&serde_json::json!({"sub": "alice", "roles": "reader"})),
            "x",
        );
        assert!(!user.operator);
        assert_eq!(describe("garbage", "x").subject, None);
    }

    #[test]
    fn a_given_token_is_sent_as_given() {
        let source = TokenSource::given("abc".into(), "--token");
        assert_eq!(source.bearer().as_deref(), Ok("abc"));
        assert_eq!(source.info().source, "--token");
    }
}
