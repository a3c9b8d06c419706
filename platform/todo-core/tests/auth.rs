//! Token checks of `todo_core::auth`, with real signatures: the HS256 secret
//! the local stack uses, and JWKS public keys (RSA and P-256) from a file and
//! from a real HTTP server, rotated while in use; then the security scheme as
//! an API answers each refusal.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use poem::{EndpointExt, http::StatusCode, test::TestClient};
use poem_openapi::{OpenApi, OpenApiService, payload::PlainText};
use serde_json::{Value, json};
use todo_core::{
    auth::{AuthError, AuthSettings, Authenticator, Caller, Claims, Identity, mint_hs256},
    problem::ApiError,
};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-local-test";
const RSA_A: &[u8] = include_bytes!("fixtures/rsa-a.pem");
const RSA_A_PUBLIC: &[u8] = include_bytes!("fixtures/rsa-a.pub.pem");
const RSA_B: &[u8] = include_bytes!("fixtures/rsa-b.pem");
const EC: &[u8] = include_bytes!("fixtures/ec-p256.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "todo-platform", "aud": "todo-platform",
           "iat": now(), "nbf": now(), "exp": now() + 600})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn hs(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token whose header says `alg: none`, with an empty signature.
fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

fn hs_auth() -> Authenticator {
    Authenticator::with_secret(SECRET, &AuthSettings::default()).unwrap()
}

async fn refused(auth: &Authenticator, token: &str) -> String {
    match auth.verify(token).await {
        Err(AuthError::Invalid(why)) => why,
        other => panic!("expected the token to be refused as invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_hs256_token_names_its_user_and_roles_make_an_operator() {
    let auth = hs_auth();
    assert_eq!(
        auth.verify(&hs(&claims("alice"))).await.unwrap(),
        Identity::user("alice")
    );
    let array = with(claims("ops"), "roles", json!(["reader", "operator"]));
    assert_eq!(
        auth.verify(&hs(&array)).await.unwrap(),
        Identity::operator("ops")
    );
    let spaced = with(claims("ops"), "roles", json!("reader operator"));
    assert!(auth.verify(&hs(&spaced)).await.unwrap().operator);
    let other_role = with(claims("bob"), "roles", json!(["operators", "admin"]));
    assert!(!auth.verify(&hs(&other_role)).await.unwrap().operator);
    // What `cargo xtask token` mints.
    let minted = mint_hs256(
        SECRET,
        &Claims::new(
            "carol",
            true,
            Duration::from_secs(60),
            "todo-platform",
            "todo-platform",
        ),
    );
    assert_eq!(
        auth.verify(&minted).await.unwrap(),
        Identity::operator("carol")
    );
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_its_reason() {
    let auth = hs_auth();
    let wrong_key = sign(
        Header::new(Algorithm::HS256),
        &claims("alice"),
        &EncodingKey::from_secret(b"another-secret-another-secret-0123"),
    );
    assert!(refused(&auth, &wrong_key).await.contains("signature"));
    let expired = with(claims("alice"), "exp", json!(now() - 120));
    assert!(refused(&auth, &hs(&expired)).await.contains("expired"));
    let early = with(claims("alice"), "nbf", json!(now() + 120));
    assert!(refused(&auth, &hs(&early)).await.contains("not valid yet"));
    let issuer = with(claims("alice"), "iss", json!("someone-else"));
    assert!(refused(&auth, &hs(&issuer)).await.contains("issuer"));
    let audience = with(claims("alice"), "aud", json!("another-api"));
    assert!(refused(&auth, &hs(&audience)).await.contains("audience"));
    assert!(
        refused(&auth, &unsigned(&claims("alice")))
            .await
            .contains("`none`")
    );
    let rs = sign(
        Header::new(Algorithm::RS256),
        &claims("alice"),
        &EncodingKey::from_rsa_pem(RSA_A).unwrap(),
    );
    assert!(
        refused(&auth, &rs)
            .await
            .contains("`RS256` is not accepted")
    );
    let mut no_exp = claims("alice");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(refused(&auth, &hs(&no_exp)).await.contains("`exp`"));
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    assert!(refused(&auth, &hs(&no_sub)).await.contains("`sub`"));
    let spaced_sub = with(claims("alice"), "sub", json!("al ice"));
    assert!(refused(&auth, &hs(&spaced_sub)).await.contains("`sub`"));
    for garbage in ["", "abc", "a.b.c", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9..x"] {
        assert!(
            refused(&auth, garbage).await.contains("malformed"),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn clock_skew_within_the_leeway_is_forgiven() {
    let auth = hs_auth();
    let just_expired = with(claims("alice"), "exp", json!(now() - 5));
    assert!(auth.verify(&hs(&just_expired)).await.is_ok());
    let almost_valid = with(claims("alice"), "nbf", json!(now() + 5));
    assert!(auth.verify(&hs(&almost_valid)).await.is_ok());
}

#[tokio::test]
async fn a_connection_ends_exactly_when_its_token_stops_being_accepted() {
    let auth = hs_auth();
    let exp = now() + 100;
    let token = hs(&with(claims("alice"), "exp", json!(exp)));
    let (_, until) = auth.verify_until(&token).await.unwrap();
    let until = until.duration_since(UNIX_EPOCH).unwrap().as_secs();
    // The leeway is 30 s: accepted through second exp + 30, refused from the next.
    assert_eq!(until, exp + 31);
    let last_second = hs(&with(claims("alice"), "exp", json!(now() - 29)));
    assert!(auth.verify(&last_second).await.is_ok());
    let one_more = hs(&with(claims("alice"), "exp", json!(now() - 32)));
    assert!(auth.verify(&one_more).await.is_err());
}

#[test]
fn a_short_secret_is_refused_at_start_up() {
    let err = Authenticator::with_secret(b"short", &AuthSettings::default()).unwrap_err();
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
}

fn jwk(pem: &[u8], alg: Algorithm, kid: &str) -> Value {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    };
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk
}

fn signed(pem: &[u8], alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    sign(header, claims, &key)
}

fn jwks_settings(refresh_secs: u64) -> AuthSettings {
    AuthSettings {
        jwks_refresh_secs: refresh_secs,
        ..AuthSettings::default()
    }
}

/// Polls `check` until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not true within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_jwks_file_checks_rsa_and_ec_tokens_refuses_confusion_and_follows_rotation() {
    let dir = std::env::temp_dir().join(format!("todo-core-jwks-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwks.json");
    let set = |keys: Vec<Value>| std::fs::write(&file, json!({ "keys": keys }).to_string());
    set(vec![
        jwk(RSA_A, Algorithm::RS256, "a"),
        jwk(EC, Algorithm::ES256, "ec"),
    ])
    .unwrap();
    let settings = AuthSettings {
        jwks_file: Some(file.display().to_string()),
        ..jwks_settings(1)
    };
    let auth = Authenticator::with_jwks(&settings).await.unwrap();

    let rs = signed(RSA_A, Algorithm::RS256, Some("a"), &claims("alice"));
    assert_eq!(auth.verify(&rs).await.unwrap(), Identity::user("alice"));
    let es = signed(EC, Algorithm::ES256, Some("ec"), &claims("bob"));
    assert_eq!(auth.verify(&es).await.unwrap(), Identity::user("bob"));

    // HS/RS confusion: HS256 "signed" with the public key, as an attacker who
    // read the JWKS would; and the RSA key used under the EC key's id.
    let confused = sign(
        Header {
            kid: Some("a".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("mallory"),
        &EncodingKey::from_secret(RSA_A_PUBLIC),
    );
    assert!(
        refused(&auth, &confused)
            .await
            .contains("`HS256` is not accepted")
    );
    let wrong_family = signed(RSA_A, Algorithm::RS256, Some("ec"), &claims("mallory"));
    assert!(
        refused(&auth, &wrong_family)
            .await
            .contains("does not match its key")
    );
    assert!(
        refused(&auth, &unsigned(&claims("mallory")))
            .await
            .contains("`none`")
    );
    let forged = signed(RSA_B, Algorithm::RS256, Some("a"), &claims("mallory"));
    assert!(refused(&auth, &forged).await.contains("signature"));

    // Rotation: a token of a new key is accepted once the file has it.
    let rotated = signed(RSA_B, Algorithm::RS256, Some("b"), &claims("carol"));
    assert!(refused(&auth, &rotated).await.contains("no key `b`"));
    set(vec![jwk(RSA_B, Algorithm::RS256, "b")]).unwrap();
    eventually(
        Duration::from_secs(10),
        "the rotated key is accepted",
        || {
            let auth = auth.clone();
            let rotated = rotated.clone();
            async move { auth.verify(&rotated).await.is_ok() }
        },
    )
    .await;
    // ...and the retired key's tokens are refused after the next refresh.
    eventually(
        Duration::from_secs(10),
        "the retired key is refused",
        || {
            let auth = auth.clone();
            let rs = rs.clone();
            async move { auth.verify(&rs).await.is_err() }
        },
    )
    .await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_jwks_url_is_fetched_cached_and_fetched_again_for_a_new_key() {
    let served = Arc::new(Mutex::new(
        json!({ "keys": [jwk(RSA_A, Algorithm::RS256, "a")] }),
    ));
    let fetches = Arc::new(Mutex::new(0u32));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = {
        let served = served.clone();
        let fetches = fetches.clone();
        poem::endpoint::make_sync(move |_| {
            *fetches.lock().unwrap() += 1;
            poem::web::Json(served.lock().unwrap().clone())
        })
    };
    let server = tokio::spawn(async move {
        poem::Server::new_with_acceptor(poem::listener::TcpAcceptor::from_tokio(listener).unwrap())
            .run(app)
            .await
    });
    let settings = AuthSettings {
        jwks_url: Some(format!("http://{addr}/jwks.json")),
        ..jwks_settings(1)
    };
    let auth = Authenticator::with_jwks(&settings).await.unwrap();
    let alice = signed(RSA_A, Algorithm::RS256, Some("a"), &claims("alice"));
    for _ in 0..50 {
        assert_eq!(auth.verify(&alice).await.unwrap(), Identity::user("alice"));
    }
    let fetched = *fetches.lock().unwrap();
    assert!(
        fetched <= 3,
        "50 checks within a second fetched the JWKS {fetched} times"
    );

    *served.lock().unwrap() = json!({ "keys": [
        jwk(RSA_A, Algorithm::RS256, "a"), jwk(RSA_B, Algorithm::RS256, "b") ] });
    let bob = signed(RSA_B, Algorithm::RS256, Some("b"), &claims("bob"));
    eventually(Duration::from_secs(10), "the new key is fetched", || {
        let auth = auth.clone();
        let bob = bob.clone();
        async move { auth.verify(&bob).await.is_ok() }
    })
    .await;
    server.abort();
}

/// A JWKS served over real HTTP on loopback: every answer is `body()`,
/// given after `delay` (a slow identity provider), and counted.
struct JwksServer {
    url: String,
    fetches: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl JwksServer {
    async fn start(delay: Duration, body: impl Fn() -> Vec<u8> + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let fetches = Arc::new(Mutex::new(0u32));
        let body = Arc::new(body);
        let app = {
            let fetches = fetches.clone();
            poem::endpoint::make(move |_| {
                let fetches = fetches.clone();
                let body = body.clone();
                async move {
                    *fetches.lock().unwrap() += 1;
                    tokio::time::sleep(delay).await;
                    poem::Response::builder()
                        .content_type("application/json")
                        .body(body())
                }
            })
        };
        let task = tokio::spawn(async move {
            poem::Server::new_with_acceptor(
                poem::listener::TcpAcceptor::from_tokio(listener).unwrap(),
            )
            .run(app)
            .await
        });
        JwksServer { url, fetches, task }
    }

    fn fetches(&self) -> u32 {
        *self.fetches.lock().unwrap()
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_burst_of_tokens_with_unknown_kids_fetches_the_jwks_once_per_interval() {
    let set = json!({ "keys": [jwk(RSA_A, Algorithm::RS256, "a")] }).to_string();
    // A slow provider: each fetch takes 100 ms, so fetches in series show.
    let server =
        JwksServer::start(Duration::from_millis(100), move || set.clone().into_bytes()).await;
    let settings = AuthSettings {
        jwks_url: Some(server.url.clone()),
        ..jwks_settings(2)
    };
    let auth = Authenticator::with_jwks(&settings).await.unwrap();
    assert_eq!(server.fetches(), 1, "the set is read once at start-up");
    // Past the refetch interval (2 s here), an unknown kid may fetch the set
    // again: once, however many such tokens arrive together.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let forged: Vec<String> = (0..20)
        .map(|n| {
            signed(
                RSA_B,
                Algorithm::RS256,
                Some(&format!("forged-{n}")),
                &claims("mallory"),
            )
        })
        .collect();
    let alice = signed(RSA_A, Algorithm::RS256, Some("a"), &claims("alice"));
    let started = tokio::time::Instant::now();
    let (refused, real) = tokio::join!(
        futures::future::join_all(forged.iter().map(|t| {
            let auth = auth.clone();
            async move { auth.verify(t).await }
        })),
        async {
            let answer = auth.verify(&alice).await;
            (answer, started.elapsed())
        }
    );
    let burst = started.elapsed();
    for r in &refused {
        assert!(matches!(r, Err(AuthError::Invalid(_))), "{r:?}");
    }
    assert_eq!(real.0.unwrap(), Identity::user("alice"));
    let fetched = server.fetches() - 1;
    assert!(
        fetched <= 1,
        "20 tokens with unknown kids fetched the JWKS {fetched} more times within {burst:?}; \
         a real token waited {:?}",
        real.1
    );
}

#[tokio::test]
async fn an_oversized_jwks_is_refused_with_a_clear_error() {
    // A valid set padded past 1 MiB (a provider gone wrong, or a URL that
    // serves something else): it is not read whole, and not trusted.
    let mut set = json!({ "keys": [jwk(RSA_A, Algorithm::RS256, "a")] });
    set["padding"] = json!("x".repeat(2 * 1024 * 1024));
    let body = set.to_string().into_bytes();
    let server = JwksServer::start(Duration::ZERO, move || body.clone()).await;
    let settings = AuthSettings {
        jwks_url: Some(server.url.clone()),
        ..jwks_settings(1)
    };
    let auth = Authenticator::with_jwks(&settings).await.unwrap();
    let token = signed(RSA_A, Algorithm::RS256, Some("a"), &claims("alice"));
    match auth.verify(&token).await {
        Err(AuthError::KeysUnavailable(why)) => assert!(why.contains("1 MiB"), "{why}"),
        other => panic!("an oversized JWKS must not be used: {other:?}"),
    }
    let readiness = auth.check_keys().await.unwrap_err();
    assert!(readiness.contains("1 MiB"), "{readiness}");
}

#[tokio::test]
async fn an_unreachable_jwks_url_answers_unavailable_not_invalid() {
    let settings = AuthSettings {
        // Port 9 (discard) on loopback: nothing listens.
        jwks_url: Some("http://127.0.0.1:9/jwks.json".to_owned()),
        ..jwks_settings(1)
    };
    let auth = Authenticator::with_jwks(&settings).await.unwrap();
    let token = signed(RSA_A, Algorithm::RS256, Some("a"), &claims("alice"));
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    assert!(auth.check_keys().await.is_err());
}

struct Probe;

#[OpenApi]
impl Probe {
    /// Anyone with a valid token.
    #[oai(path = "/me", method = "get")]
    async fn me(&self, caller: Caller) -> Result<PlainText<String>, ApiError> {
        Ok(PlainText(caller.identity().subject.clone()))
    }

    /// Operators only.
    #[oai(path = "/ops", method = "get")]
    async fn ops(&self, caller: Caller) -> Result<PlainText<String>, ApiError> {
        caller.identity().require_operator()?;
        Ok(PlainText("ok".to_owned()))
    }
}

fn probe(auth: Authenticator) -> impl poem::Endpoint {
    let api = OpenApiService::new(Probe, "probe", "1");
    // As `server::build_app` does: errors outside the typed answers become
    // JSON problems there.
    poem::Route::new()
        .nest("/", api)
        .data(auth)
        .catch_all_error(|e| async move { todo_core::problem::problem_response(e) })
}

#[tokio::test]
async fn the_scheme_answers_401_with_a_challenge_403_for_a_user_and_documents_itself() {
    let client = TestClient::new(probe(hs_auth()));
    let none = client.get("/me").send().await;
    none.assert_status(StatusCode::UNAUTHORIZED);
    none.assert_header("www-authenticate", "Bearer realm=\"todo-platform\"");
    let body: Value = none.0.into_body().into_json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");

    let expired = hs(&with(claims("alice"), "exp", json!(now() - 120)));
    let answer = client
        .get("/me")
        .header("Authorization", format!("Bearer {expired}"))
        .send()
        .await;
    answer.assert_status(StatusCode::UNAUTHORIZED);
    let challenge = answer.0.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\"") && challenge.contains("expired"));

    let alice = format!("Bearer {}", hs(&claims("alice")));
    let me = client
        .get("/me")
        .header("Authorization", &alice)
        .send()
        .await;
    me.assert_status_is_ok();
    me.assert_text("alice").await;
    let forbidden = client
        .get("/ops")
        .header("Authorization", &alice)
        .send()
        .await;
    forbidden.assert_status(StatusCode::FORBIDDEN);
    let body: Value = forbidden.0.into_body().into_json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    let operator = hs(&with(claims("ops"), "roles", json!(["operator"])));
    client
        .get("/ops")
        .header("Authorization", format!("Bearer {operator}"))
        .send()
        .await
        .assert_status_is_ok();

    // Without the development switch `X-User-Id` proves nothing.
    client
        .get("/me")
        .header("X-User-Id", "alice")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED);

    let doc: Value =
        serde_json::from_str(&OpenApiService::new(Probe, "probe", "1").spec()).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/me"]["get"]["security"][1]["bearerAuth"],
        json!([])
    );
}

#[tokio::test]
async fn the_development_switch_trusts_x_user_id_and_nothing_more() {
    let settings = AuthSettings {
        dev_trust_user_header: true,
        ..AuthSettings::default()
    };
    let client = TestClient::new(probe(
        Authenticator::with_secret(SECRET, &settings).unwrap(),
    ));
    let me = client.get("/me").header("X-User-Id", "dave").send().await;
    me.assert_status_is_ok();
    me.assert_text("dave").await;
    // A user named by the header is never an operator.
    client
        .get("/ops")
        .header("X-User-Id", "dave")
        .send()
        .await
        .assert_status(StatusCode::FORBIDDEN);
    client
        .get("/me")
        .header("X-User-Id", "da ve")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    // A token, when sent, decides: the header does not override it.
    let both = client
        .get("/me")
        .header("X-User-Id", "dave")
        .header("Authorization", format!("Bearer {}", hs(&claims("erin"))))
        .send()
        .await;
    both.assert_status_is_ok();
    both.assert_text("erin").await;
    client
        .get("/me")
        .header("X-User-Id", "dave")
        .header("Authorization", "Bearer not-a-jwt")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
}
