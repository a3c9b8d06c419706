//! Start-up steps every service shares: its common settings, wait for the
//! sidecar, read the database credentials through it, open the pool, migrate,
//! build the HTTP app with readiness, bind.

use std::time::Duration;

use anyhow::Context;
use poem::{EndpointExt, endpoint::BoxEndpoint};
use poem_openapi::{OpenApi, OpenApiService};
use sqlx::{PgPool, migrate::Migrator};

pub use crate::consumer::InboxRetention;
use crate::{
    auth::{AuthSettings, Authenticator},
    database,
    server::{AppParts, Listeners, Readiness},
    settings::{AppToken, DaprSettings},
    sidecar::Sidecar,
};

/// A service's connections, ready to build its app on.
pub struct Connected {
    pub settings: DaprSettings,
    /// What the sidecar's calls to the app must carry (`APP_API_TOKEN`).
    pub app_token: AppToken,
    pub sidecar: Sidecar,
    pub pool: PgPool,
    /// Checks the callers' tokens (see [`crate::auth`]).
    pub auth: Authenticator,
}

/// The settings every service has, read with its prefix:
/// `<PREFIX>MAX_BODY_BYTES`, `<PREFIX>DB_MAX_CONNECTIONS`, `<PREFIX>DB_SECRET`,
/// `<PREFIX>SIDECAR_TIMEOUT_MS`, and for consuming services
/// `<PREFIX>INBOX_RETENTION_HOURS` and `<PREFIX>INBOX_PRUNE_INTERVAL_SECS`
/// (all optional; the defaults are the service's, see [`Service`], and
/// [`InboxRetention::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// The service's Dapr app id.
    pub app_id: &'static str,
    /// Largest request body, including bulk deliveries.
    pub max_body_bytes: usize,
    /// Database pool size.
    pub db_max_connections: u32,
    /// Secret holding the database URL under key `url`.
    pub db_secret: String,
    /// Upper bound of one call to the sidecar (publish, secrets, jobs,
    /// workflow starts, service invocation).
    pub sidecar_timeout: Duration,
    /// How long a consumer's inbox remembers an event id, and how often it
    /// forgets older ones (unused by a service without a consumer).
    pub inbox: InboxRetention,
    /// How callers' tokens are checked (`AUTH_*`, the same for every service).
    pub auth: AuthSettings,
}

#[derive(Debug, Default, serde::Deserialize)]
struct CommonEnv {
    max_body_bytes: Option<usize>,
    db_max_connections: Option<u32>,
    db_secret: Option<String>,
    sidecar_timeout_ms: Option<u64>,
    inbox_retention_hours: Option<u64>,
    inbox_prune_interval_secs: Option<u64>,
}

impl Common {
    /// The common settings of `S` from the environment.
    pub fn from_env<S: Service>() -> anyhow::Result<Common> {
        let env: CommonEnv = crate::settings::from_env(S::CONFIG_PREFIX)?;
        Self::from_parts::<S>(env, AuthSettings::from_env()?)
    }

    fn from_parts<S: Service>(env: CommonEnv, auth: AuthSettings) -> anyhow::Result<Common> {
        let prefix = S::CONFIG_PREFIX;
        let default = InboxRetention::default();
        let inbox = InboxRetention {
            keep: match env.inbox_retention_hours {
                Some(0) => anyhow::bail!("{prefix}INBOX_RETENTION_HOURS must be at least 1"),
                Some(h) => Duration::from_secs(h * 3600),
                None => default.keep,
            },
            prune_every: match env.inbox_prune_interval_secs {
                Some(0) => anyhow::bail!("{prefix}INBOX_PRUNE_INTERVAL_SECS must be at least 1"),
                Some(s) => Duration::from_secs(s),
                None => default.prune_every,
            },
        };
        Ok(Common {
            app_id: S::APP_ID,
            max_body_bytes: env.max_body_bytes.unwrap_or(S::DEFAULT_MAX_BODY_BYTES),
            db_max_connections: env
                .db_max_connections
                .unwrap_or(S::DEFAULT_DB_MAX_CONNECTIONS),
            db_secret: env.db_secret.unwrap_or_else(|| format!("{}-db", S::SCHEMA)),
            sidecar_timeout: env
                .sidecar_timeout_ms
                .map_or(S::DEFAULT_SIDECAR_TIMEOUT, Duration::from_millis),
            inbox,
            auth,
        })
    }
}

/// The own settings of a service that has none beyond [`Common`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct NoConfig {}

/// Waits for the sidecar's API, reads the database URL (secret
/// `common.db_secret`, key `url`) and the token keys through it, opens a pool
/// and applies the service's `migrations`. `common.sidecar_timeout` bounds
/// each sidecar call.
pub async fn connect(
    settings: DaprSettings,
    common: &Common,
    migrations: &'static Migrator,
) -> anyhow::Result<Connected> {
    let app_token = settings.callback_token(common.app_id)?;
    let sidecar = Sidecar::new(&settings, common.sidecar_timeout)?;
    sidecar
        .wait_until_outbound_ready(settings.sidecar_wait())
        .await
        .context("waiting for the Dapr sidecar")?;
    let pool = database::connect(
        &sidecar,
        &settings.secret_store,
        &common.db_secret,
        common.db_max_connections,
    )
    .await?;
    migrations
        .run(&pool)
        .await
        .context("applying the service's migrations (db/<service>/)")?;
    let auth = Authenticator::connect(&common.auth, &sidecar, &settings.secret_store)
        .await
        .context("loading the keys that verify callers' tokens (AUTH_*)")?;
    Ok(Connected {
        settings,
        app_token,
        sidecar,
        pool,
        auth,
    })
}

impl Connected {
    /// Readiness = the database answers and the sidecar reports healthy
    /// (and, with a JWKS, its keys are loaded).
    pub fn readiness(&self) -> Readiness {
        let pool = self.pool.clone();
        let sidecar = self.sidecar.clone();
        let readiness = Readiness::default()
            .with("database", move || database::ping(pool.clone()))
            .with("sidecar", move || {
                let sidecar = sidecar.clone();
                async move { sidecar.check_health().await.map_err(|e| e.to_string()) }
            });
        if !self.auth.uses_jwks() {
            return readiness;
        }
        let auth = self.auth.clone();
        readiness.with("identity", move || {
            let auth = auth.clone();
            async move { auth.check_keys().await }
        })
    }

    /// The service's whole HTTP app (see [`crate::server::build_app`]) with
    /// this connection's readiness checks and the Prometheus recorder.
    pub fn app<T: OpenApi + 'static>(
        &self,
        api: OpenApiService<T, ()>,
        max_body_bytes: usize,
        callbacks: Vec<(&'static str, BoxEndpoint<'static>)>,
    ) -> BoxEndpoint<'static> {
        crate::server::build_app(AppParts {
            api,
            metrics: crate::telemetry::init_metrics(),
            readiness: self.readiness(),
            max_body_bytes,
            callbacks,
        })
        .data(self.auth.clone())
        .boxed()
    }

    /// Binds the public API on `APP_LISTEN_ADDRESS` (default 127.0.0.1) and
    /// `APP_PORT`, or `default_port` (0 picks a free port), and the sidecar's
    /// port on loopback (`APP_INTERNAL_PORT`, see
    /// [`DaprSettings::internal_address`]).
    pub async fn bind(&self, default_port: u16) -> anyhow::Result<Listeners> {
        let public = self.settings.listen_address(default_port);
        let internal = self.settings.internal_address(default_port);
        Ok(Listeners {
            public: tokio::net::TcpListener::bind(public)
                .await
                .with_context(|| format!("binding {public} (APP_LISTEN_ADDRESS, APP_PORT)"))?,
            internal: tokio::net::TcpListener::bind(internal)
                .await
                .with_context(|| format!("binding {internal} (APP_INTERNAL_PORT)"))?,
        })
    }
}

/// A service binary: how to build and run it, and its OpenAPI document.
pub trait Service: Sized {
    /// The Dapr app id.
    const APP_ID: &'static str;
    /// Prefix of the service's own environment variables, e.g. `TODO_`.
    const CONFIG_PREFIX: &'static str;
    /// The schema (and login role) it owns; its database secret defaults to `<schema>-db`.
    const SCHEMA: &'static str;
    /// The port it listens on without `APP_PORT`.
    const DEFAULT_PORT: u16;
    /// Default of `<PREFIX>MAX_BODY_BYTES`.
    const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
    /// Default of `<PREFIX>DB_MAX_CONNECTIONS`.
    const DEFAULT_DB_MAX_CONNECTIONS: u32 = 10;
    /// Default of `<PREFIX>SIDECAR_TIMEOUT_MS`.
    const DEFAULT_SIDECAR_TIMEOUT: Duration = Duration::from_secs(10);
    /// The service's own settings beyond [`Common`] ([`NoConfig`] if none).
    type Config: serde::de::DeserializeOwned;

    /// The OpenAPI document (what `openapi/<name>.json` holds).
    fn openapi_spec() -> String;

    /// Connects, migrates and binds.
    fn build(
        settings: DaprSettings,
        common: Common,
        config: Self::Config,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Serves until `shutdown` is cancelled.
    fn run(
        self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The whole `main` of a service: `<binary> openapi` prints the OpenAPI
/// document; `<binary> health` checks a running instance's liveness (the
/// container images' `HEALTHCHECK`); otherwise JSON logs, settings from the
/// environment, build, and serve until SIGINT/SIGTERM.
pub async fn main<S: Service>() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("openapi") => {
            let mut out = std::io::stdout().lock();
            std::io::Write::write_all(&mut out, S::openapi_spec().as_bytes())?;
            return Ok(());
        }
        Some("health") => return check_liveness::<S>().await,
        _ => {}
    }
    crate::telemetry::init_logging(S::APP_ID);
    let settings = crate::settings::from_env("")?;
    let common = Common::from_env::<S>()?;
    let config = crate::settings::from_env(S::CONFIG_PREFIX)?;
    let service = S::build(settings, common, config)
        .await
        .with_context(|| format!("starting {}", S::APP_ID))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::server::stop_on_signal(shutdown.clone()));
    service.run(shutdown).await
}

/// `<binary> health`: `GET /health` of the instance this environment
/// describes (`APP_LISTEN_ADDRESS`, `APP_PORT`), reached from inside its
/// container, within 3 s. Succeeds on 200; fails naming what it got. A
/// subcommand of the binary, so the images need no curl or shell for their
/// `HEALTHCHECK`.
async fn check_liveness<S: Service>() -> anyhow::Result<()> {
    let settings: DaprSettings = crate::settings::from_env("")?;
    let url = format!("http://{}/health", settings.local_address(S::DEFAULT_PORT));
    let response = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        response.status() == reqwest::StatusCode::OK,
        "GET {url}: {}",
        response.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample;
    impl Service for Sample {
        const APP_ID: &'static str = "sample";
        const CONFIG_PREFIX: &'static str = "SAMPLE_";
        const SCHEMA: &'static str = "sample";
        const DEFAULT_PORT: u16 = 8000;
        type Config = NoConfig;
        fn openapi_spec() -> String {
            String::new()
        }
        async fn build(_: DaprSettings, _: Common, _: NoConfig) -> anyhow::Result<Self> {
            Ok(Sample)
        }
        async fn run(self, _: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_inbox_outlives_the_topics_seven_days_by_default() {
        let common =
            Common::from_parts::<Sample>(CommonEnv::default(), AuthSettings::default()).unwrap();
        assert_eq!(common.inbox.keep, Duration::from_secs(14 * 24 * 3600));
        assert_eq!(common.inbox.prune_every, Duration::from_secs(600));
    }

    #[test]
    fn inbox_settings_are_read_and_zero_is_refused_by_name() {
        let env = CommonEnv {
            inbox_retention_hours: Some(200),
            inbox_prune_interval_secs: Some(5),
            ..CommonEnv::default()
        };
        let common = Common::from_parts::<Sample>(env, AuthSettings::default()).unwrap();
        assert_eq!(common.inbox.keep, Duration::from_secs(200 * 3600));
        assert_eq!(common.inbox.prune_every, Duration::from_secs(5));
        let zero = CommonEnv {
            inbox_prune_interval_secs: Some(0),
            ..CommonEnv::default()
        };
        let err = Common::from_parts::<Sample>(zero, AuthSettings::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("SAMPLE_INBOX_PRUNE_INTERVAL_SECS"), "{err}");
    }
}
