//! Start-up steps every service shares: wait for the sidecar, read the
//! database credentials through it, open the pool, declare readiness, bind.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use crate::{database, server::Readiness, settings::DaprSettings, sidecar::Sidecar};

/// A service's connections, ready to build its app on.
pub struct Connected {
    pub settings: DaprSettings,
    pub sidecar: Sidecar,
    pub pool: PgPool,
}

/// Waits for the sidecar's API, reads secret `db_secret` (key `url`) through
/// it and opens a pool of `max_connections`. `call_timeout` bounds each gRPC
/// call to the sidecar.
pub async fn connect(
    settings: DaprSettings,
    db_secret: &str,
    max_connections: u32,
    call_timeout: Duration,
) -> anyhow::Result<Connected> {
    let sidecar = Sidecar::new(&settings, call_timeout)?;
    sidecar
        .wait_until_outbound_ready(settings.sidecar_wait())
        .await
        .context("waiting for the Dapr sidecar")?;
    let pool =
        database::connect(&sidecar, &settings.secret_store, db_secret, max_connections).await?;
    Ok(Connected {
        settings,
        sidecar,
        pool,
    })
}

impl Connected {
    /// Readiness = the database answers and the sidecar reports healthy.
    pub fn readiness(&self) -> Readiness {
        let pool = self.pool.clone();
        let sidecar = self.sidecar.clone();
        Readiness::default()
            .with("database", move || database::ping(pool.clone()))
            .with("sidecar", move || {
                let sidecar = sidecar.clone();
                async move { sidecar.check_health().await.map_err(|e| e.to_string()) }
            })
    }

    /// Binds 127.0.0.1 on `APP_PORT`, or `default_port` (0 picks a free port).
    pub async fn bind(&self, default_port: u16) -> anyhow::Result<tokio::net::TcpListener> {
        let port = self.settings.app_port.unwrap_or(default_port);
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))
    }
}

/// A service binary: how to build and run it, and its OpenAPI document.
pub trait Service: Sized {
    /// The Dapr app id.
    const APP_ID: &'static str;
    /// Prefix of the service's own environment variables, e.g. `TODO_`.
    const CONFIG_PREFIX: &'static str;
    /// The service's own settings.
    type Config: serde::de::DeserializeOwned;

    /// The OpenAPI document (what `openapi/<name>.json` holds).
    fn openapi_spec() -> String;

    /// Connects, migrates and binds.
    fn build(
        settings: DaprSettings,
        config: Self::Config,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Serves until `shutdown` is cancelled.
    fn run(
        self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The whole `main` of a service: `<binary> openapi` prints the OpenAPI
/// document; otherwise JSON logs, settings from the environment, build, and
/// serve until SIGINT/SIGTERM.
pub async fn main<S: Service>() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        let mut out = std::io::stdout().lock();
        std::io::Write::write_all(&mut out, S::openapi_spec().as_bytes())?;
        return Ok(());
    }
    crate::telemetry::init_logging(S::APP_ID);
    let settings = crate::settings::from_env("")?;
    let config = crate::settings::from_env(S::CONFIG_PREFIX)?;
    let service = S::build(settings, config)
        .await
        .with_context(|| format!("starting {}", S::APP_ID))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::server::stop_on_signal(shutdown.clone()));
    service.run(shutdown).await
}
