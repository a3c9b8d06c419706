//! Tokens as a client could forge them: signed with the stack's key (or
//! another), with claims of the test's choosing (`Stack::token` only mints
//! valid ones).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The claims of a valid token of `sub`, for an hour.
pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "todo-platform", "aud": "todo-platform",
           "iat": now(), "nbf": now(), "exp": now() + 3600})
}

/// `claims` with `key` set to `value`.
pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// `claims` signed with HS256 and `secret`.
pub fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing")
}
