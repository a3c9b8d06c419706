//! Minting tokens with the HS256 secret: for the local stack (`cargo xtask
//! token`, the tokens `cargo xtask up` prints), the tests and the console. A
//! deployment with a real identity provider mints nothing here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// The claims this platform reads (a provider's token may carry more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not valid before, seconds since the epoch.
    pub nbf: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// `["operator"]` for an operator, empty for a user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Claims {
    /// Claims for `subject`, valid from now for `ttl`.
    pub fn new(subject: &str, operator: bool, ttl: Duration, issuer: &str, audience: &str) -> Self {
        let now = now_secs();
        Claims {
            sub: subject.to_owned(),
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: now,
            roles: if operator {
                vec!["operator".to_owned()]
            } else {
                Vec::new()
            },
        }
    }
}

/// A compact JWS of `claims` signed with HS256 and `secret`.
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> String {
    let header = Header {
        typ: Some("JWT".to_owned()),
        ..Header::new(Algorithm::HS256)
    };
    // Encoding serialisable claims with an HMAC key cannot fail.
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap_or_default()
}
