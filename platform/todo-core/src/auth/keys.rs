//! Checking a token: its algorithm against the configured keys, its
//! signature, its time window, issuer and audience, then its subject and roles.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind, jwk::Jwk};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::{AuthError, AuthSettings, Identity, MIN_SECRET_BYTES, SIGNING_SECRET_KEY};
use crate::sidecar::Sidecar;

/// Checks tokens; cheap to clone (shared keys).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field(
                "keys",
                &match self.inner.keys {
                    Keys::Secret(_) => "HS256 secret",
                    Keys::Jwks(_) => "JWKS",
                },
            )
            .finish()
    }
}

struct Inner {
    keys: Keys,
    issuer: String,
    audience: String,
    leeway: u64,
    roles_claim: String,
    operator_role: String,
    dev_user_header: bool,
}

enum Keys {
    /// The shared HS256 secret: only HS256 tokens.
    Secret(DecodingKey),
    /// Public keys: only the asymmetric algorithm of the key a token names.
    Jwks(Jwks),
}

/// Where a JWKS comes from.
#[derive(Debug, Clone)]
enum Source {
    Url(String, reqwest::Client),
    File(PathBuf),
}

struct Jwks {
    source: Source,
    refresh_every: Duration,
    loaded: RwLock<Loaded>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Loaded {
    keys: Arc<Vec<PublicKey>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    error: Option<String>,
}

struct PublicKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// A token naming an unknown `kid` fetches the JWKS again at most this often
/// (or every refresh period, if that is shorter).
const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(10);

impl Authenticator {
    /// The authenticator the settings describe: a JWKS when `AUTH_JWKS_URL`
    /// or `AUTH_JWKS_FILE` is set, otherwise the HS256 secret read through
    /// the sidecar from `store`.
    pub async fn connect(
        settings: &AuthSettings,
        sidecar: &Sidecar,
        store: &str,
    ) -> anyhow::Result<Self> {
        if settings.dev_trust_user_header {
            tracing::warn!(
                "AUTH_DEV_TRUST_USER_HEADER is on: any request with `X-User-Id` and no token is \
                 trusted as that user. Development only; never deploy with it."
            );
        }
        if settings.jwks_url.is_some() || settings.jwks_file.is_some() {
            return Self::with_jwks(settings).await;
        }
        let name = &settings.signing_secret;
        let secret = sidecar
            .secret(store, name)
            .await
            .with_context(|| format!("reading secret `{name}` from Dapr secret store `{store}`"))?
            .remove(SIGNING_SECRET_KEY)
            .with_context(|| format!("secret `{name}` has no key `{SIGNING_SECRET_KEY}`"))?;
        Self::with_secret(secret.expose_secret().as_bytes(), settings)
    }

    /// Checks HS256 tokens signed with `secret` (at least 32 bytes).
    pub fn with_secret(secret: &[u8], settings: &AuthSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "the HS256 signing secret `{}` must be at least {MIN_SECRET_BYTES} bytes, it has {}",
            settings.signing_secret,
            secret.len()
        );
        Ok(Self::new(
            Keys::Secret(DecodingKey::from_secret(secret)),
            settings,
        ))
    }

    /// Checks tokens against the JWKS of `AUTH_JWKS_URL` or `AUTH_JWKS_FILE`.
    /// A URL that cannot be fetched yet is fetched again on use (and
    /// readiness fails until it is); an unreadable file fails start-up.
    pub async fn with_jwks(settings: &AuthSettings) -> anyhow::Result<Self> {
        let source = match (&settings.jwks_url, &settings.jwks_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set AUTH_JWKS_URL or AUTH_JWKS_FILE, not both")
            }
            (Some(url), None) => Source::Url(
                url.clone(),
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()?,
            ),
            (None, Some(file)) => Source::File(PathBuf::from(file)),
            (None, None) => anyhow::bail!("no JWKS configured"),
        };
        let auth = Self::new(
            Keys::Jwks(Jwks {
                source: source.clone(),
                refresh_every: Duration::from_secs(settings.jwks_refresh_secs.max(1)),
                loaded: RwLock::new(Loaded::default()),
                fetching: tokio::sync::Mutex::new(()),
            }),
            settings,
        );
        let Keys::Jwks(jwks) = &auth.inner.keys else {
            unreachable!("built just above")
        };
        if let Err(e) = jwks.fetch().await {
            match source {
                Source::File(_) => return Err(anyhow::anyhow!(e)),
                Source::Url(url, _) => {
                    tracing::warn!(url = %url, error = %e, "JWKS not loaded yet; tokens are refused until it is");
                }
            }
        }
        Ok(auth)
    }

    fn new(keys: Keys, settings: &AuthSettings) -> Self {
        Authenticator {
            inner: Arc::new(Inner {
                keys,
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                leeway: settings.leeway_secs,
                roles_claim: settings.roles_claim.clone(),
                operator_role: settings.operator_role.clone(),
                dev_user_header: settings.dev_trust_user_header,
            }),
        }
    }

    /// Whether the development switch trusts `X-User-Id`.
    pub fn trusts_user_header(&self) -> bool {
        self.inner.dev_user_header
    }

    /// Whether keys come from a JWKS (which readiness then checks).
    pub fn uses_jwks(&self) -> bool {
        matches!(self.inner.keys, Keys::Jwks(_))
    }

    /// For readiness: the keys are there (always, with a secret).
    pub async fn check_keys(&self) -> Result<(), String> {
        match &self.inner.keys {
            Keys::Secret(_) => Ok(()),
            Keys::Jwks(jwks) => {
                if jwks.current().is_empty() {
                    jwks.fetch().await
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The identity `token` proves, or why it proves none.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_until(token).await.map(|(identity, _)| identity)
    }

    /// The identity `token` proves and when it stops being accepted (the
    /// second after its `exp` plus the leeway), for a connection that
    /// outlives the request.
    pub async fn verify_until(
        &self,
        token: &str,
    ) -> Result<(Identity, std::time::SystemTime), AuthError> {
        let named = header_alg(token)?;
        let inner = &self.inner;
        let (alg, key) = match &inner.keys {
            Keys::Secret(key) => {
                if named != "HS256" {
                    return Err(AuthError::Invalid(format!(
                        "algorithm `{named}` is not accepted here: tokens are HS256-signed"
                    )));
                }
                (Algorithm::HS256, key.clone())
            }
            Keys::Jwks(jwks) => {
                let alg = asymmetric(&named)?;
                (alg, jwks.key_for(token, alg).await?)
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = inner.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&inner.issuer]);
        validation.set_audience(&[&inner.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| self.describe(e))?;
        let claims = data.claims;
        let subject = claims["sub"].as_str().unwrap_or_default();
        if !super::valid_user_id(subject) {
            return Err(AuthError::Invalid(
                "the token's `sub` must be 1–128 visible ASCII characters".to_owned(),
            ));
        }
        let operator = match &claims[&inner.roles_claim] {
            serde_json::Value::Array(roles) => roles
                .iter()
                .any(|r| r.as_str() == Some(&inner.operator_role)),
            serde_json::Value::String(roles) => {
                roles.split_whitespace().any(|r| r == inner.operator_role)
            }
            _ => false,
        };
        // Accepted through the whole second `exp + leeway` (the check is
        // `exp < now - leeway`, in whole seconds): it ends at the next one.
        let expires = claims["exp"].as_u64().unwrap_or_default() + inner.leeway + 1;
        Ok((
            Identity {
                subject: subject.to_owned(),
                operator,
            },
            std::time::UNIX_EPOCH + Duration::from_secs(expires),
        ))
    }

    fn describe(&self, e: jsonwebtoken::errors::Error) -> AuthError {
        let inner = &self.inner;
        AuthError::Invalid(match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
            ErrorKind::ImmatureSignature => {
                "the token is not valid yet (its `nbf` is in the future)".to_owned()
            }
            ErrorKind::InvalidIssuer => {
                format!("the token's issuer (`iss`) is not `{}`", inner.issuer)
            }
            ErrorKind::InvalidAudience => {
                format!("the token's audience (`aud`) is not `{}`", inner.audience)
            }
            ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
            ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                "the token's algorithm does not match its key".to_owned()
            }
            _ => format!("the token is malformed: {e}"),
        })
    }
}

/// The `alg` a token's header names, read before anything is trusted.
fn header_alg(token: &str) -> Result<String, AuthError> {
    let malformed = |why: &str| {
        AuthError::Invalid(format!(
            "the token is malformed ({why}); expected a compact JWS `header.payload.signature`"
        ))
    };
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("the header is not base64url"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("the header is not JSON"))?;
    header["alg"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| malformed("the header names no `alg`"))
}

/// The asymmetric algorithm `named`, or why a JWKS never accepts it.
fn asymmetric(named: &str) -> Result<Algorithm, AuthError> {
    match named.parse::<Algorithm>() {
        Ok(alg) if alg.family() != jsonwebtoken::AlgorithmFamily::Hmac => Ok(alg),
        _ => Err(AuthError::Invalid(format!(
            "algorithm `{named}` is not accepted here: tokens are signed with the keys of the \
             configured JWKS (RS256, PS256, ES256 and the like)"
        ))),
    }
}

impl Jwks {
    fn current(&self) -> Arc<Vec<PublicKey>> {
        self.loaded
            .read()
            .map(|l| l.keys.clone())
            .unwrap_or_default()
    }

    /// When the set was last attempted (`None`: never).
    fn attempted_at(&self) -> Option<Instant> {
        self.loaded.read().ok().and_then(|l| l.attempted_at)
    }

    /// The key that checks `token`, fetching the set again when it is stale
    /// or the token names a `kid` it lacks (at most once per
    /// [`UNKNOWN_KID_REFETCH`], however many such tokens arrive together).
    async fn key_for(&self, token: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let (stale, may_refetch, seen) = {
            let loaded = self.loaded.read().map_err(|_| keys_lost())?;
            let now = Instant::now();
            (
                loaded
                    .fetched_at
                    .is_none_or(|t| now - t >= self.refresh_every),
                loaded
                    .attempted_at
                    .is_none_or(|t| now - t >= UNKNOWN_KID_REFETCH.min(self.refresh_every)),
                loaded.attempted_at,
            )
        };
        if stale && may_refetch {
            let _ = self.fetch_unless_done_since(seen).await;
        }
        if self.current().is_empty() {
            let why = self.loaded.read().ok().and_then(|l| l.error.clone());
            return Err(AuthError::KeysUnavailable(
                why.unwrap_or_else(|| "the JWKS is not loaded yet".to_owned()),
            ));
        }
        match pick(&self.current(), kid.as_deref(), alg) {
            Ok(key) => Ok(key),
            Err(_) if may_refetch && !stale => {
                let _ = self.fetch_unless_done_since(seen).await;
                pick(&self.current(), kid.as_deref(), alg)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the set again, one fetch at a time, unless another caller's
    /// fetch was attempted after `seen` (what this caller saw when it
    /// decided to fetch): a burst of tokens shares one fetch, and whoever
    /// waited for it reads its outcome. A failure keeps the old keys.
    async fn fetch_unless_done_since(&self, seen: Option<Instant>) -> Result<(), String> {
        let _one = self.fetching.lock().await;
        if self.attempted_at() != seen {
            return match self.loaded.read().ok().and_then(|l| l.error.clone()) {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        let result = match &self.source {
            Source::Url(url, client) => match client.get(url).send().await {
                Ok(r) if r.status().is_success() => read_capped(r, url).await,
                Ok(r) => Err(format!("{url} answered {}", r.status())),
                Err(e) => Err(format!("{url}: {e}")),
            },
            Source::File(path) => match tokio::fs::metadata(path).await {
                Ok(m) if m.len() > MAX_JWKS_BYTES as u64 => Err(too_large(&path.display())),
                _ => tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display())),
            },
        }
        .and_then(|bytes| parse_jwks(&bytes));
        let mut loaded = self.loaded.write().map_err(|_| "poisoned".to_owned())?;
        let now = Instant::now();
        loaded.attempted_at = Some(now);
        match result {
            Ok(keys) => {
                loaded.keys = Arc::new(keys);
                loaded.fetched_at = Some(now);
                loaded.error = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS could not be loaded; the keys loaded before stay in use");
                loaded.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Reads the set again now (one fetch at a time).
    async fn fetch(&self) -> Result<(), String> {
        self.fetch_unless_done_since(self.attempted_at()).await
    }
}

/// The largest JWKS read: a real set is a few KiB; anything near this is a
/// provider gone wrong or a URL serving something else, and is not read whole.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

fn too_large(source: &dyn std::fmt::Display) -> String {
    format!("{source}: the JWKS is larger than 1 MiB; refused")
}

/// The body of `response`, refused once it passes [`MAX_JWKS_BYTES`].
async fn read_capped(mut response: reqwest::Response, url: &str) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(too_large(&url));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large(&url));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn keys_lost() -> AuthError {
    AuthError::KeysUnavailable("the key set's lock was poisoned".to_owned())
}

/// The usable public keys of a JWKS document (symmetric and unreadable keys
/// are skipped; a document with none is an error).
fn parse_jwks(bytes: &[u8]) -> Result<Vec<PublicKey>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let keys: Vec<PublicKey> = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            (key.family() != jsonwebtoken::AlgorithmFamily::Hmac).then(|| PublicKey {
                kid: jwk.common.key_id.clone(),
                alg: jwk
                    .common
                    .key_algorithm
                    .and_then(|a| a.to_string().parse().ok()),
                key,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no usable public key".to_owned());
    }
    Ok(keys)
}

/// The key for a token with `kid` and `alg`: the key's type must be of the
/// algorithm's family, and its own `alg`, if it names one, that algorithm.
fn pick(keys: &[PublicKey], kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, AuthError> {
    let fits = |k: &&&PublicKey| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
    let candidates: Vec<&PublicKey> = match kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect(),
        None => keys.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(AuthError::Invalid(match kid {
            Some(kid) => format!("no key `{kid}` in the JWKS"),
            None => "the JWKS holds no keys yet".to_owned(),
        }));
    }
    let fitting: Vec<&PublicKey> = candidates.iter().filter(fits).copied().collect();
    match fitting.as_slice() {
        [one] => Ok(one.key.clone()),
        [] => Err(AuthError::Invalid(format!(
            "the token's algorithm `{alg:?}` does not match its key"
        ))),
        _ => Err(AuthError::Invalid(
            "the token names no `kid` and the JWKS holds several keys for its algorithm".to_owned(),
        )),
    }
}
