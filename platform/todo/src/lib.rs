//! The Todo service: task CRUD in PostgreSQL; every change is written with its
//! event to an outbox in one transaction and published by [`relay`] through the
//! Dapr sidecar to `task-events` and `task-updates` before the request is
//! answered.

pub mod api;
pub mod config;
pub mod db;
pub mod domain;
pub mod relay;
pub mod service;
pub mod view;

use std::net::SocketAddr;

use anyhow::Context;
use poem_openapi::OpenApiService;
use todo_core::{
    database,
    server::{self, AppParts, HealthApi, Readiness},
    settings::DaprSettings,
    sidecar::Sidecar,
};
use tokio_util::sync::CancellationToken;

use crate::{api::TasksApi, config::TodoConfig, relay::Relay, service::TaskService};

/// The app id and default port of this service.
pub const APP_ID: &str = "todo-service";
pub const DEFAULT_PORT: u16 = 8001;

/// The OpenAPI service of this app (also what `openapi/todo.json` holds).
pub fn openapi() -> OpenApiService<(TasksApi, HealthApi), ()> {
    OpenApiService::new((TasksApi, HealthApi), "Todo service", env!("CARGO_PKG_VERSION"))
        .description(
            "Task CRUD. Every change is published to `task-events` and `task-updates` through Dapr \
             before it is answered; 503 `dependency_unavailable` means the change is not confirmed.",
        )
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: tokio::net::TcpListener,
    app: poem::endpoint::BoxEndpoint<'static>,
    relay: Relay,
}

impl Application {
    /// Waits for the sidecar, reads the database credentials through it,
    /// migrates, and binds the port (`APP_PORT`; 0 picks a free one).
    pub async fn build(settings: DaprSettings, config: TodoConfig) -> anyhow::Result<Self> {
        let sidecar = Sidecar::new(&settings, config.publish_call_timeout())?;
        sidecar
            .wait_until_outbound_ready(settings.sidecar_wait())
            .await
            .context("waiting for the Dapr sidecar")?;
        let pool = database::connect(
            &sidecar,
            &settings.secret_store,
            &config.db_secret,
            config.db_max_connections,
        )
        .await?;
        sqlx::migrate!("../../db/todo")
            .run(&pool)
            .await
            .context("applying migrations from db/todo")?;

        let relay = Relay::new(pool.clone(), sidecar.clone());
        let service = TaskService::new(pool.clone(), relay.clone(), config.publish_wait());
        let readiness = Readiness::default()
            .with("database", {
                let pool = pool.clone();
                move || database::ping(pool.clone())
            })
            .with("sidecar", {
                let sidecar = sidecar.clone();
                move || {
                    let sidecar = sidecar.clone();
                    async move { sidecar.check_health().await.map_err(|e| e.to_string()) }
                }
            });
        let app = server::build_app(AppParts {
            api: openapi(),
            metrics: todo_core::telemetry::init_metrics(),
            readiness,
            max_body_bytes: config.max_body_bytes,
        });
        let app = poem::EndpointExt::boxed(poem::EndpointExt::data(app, service));
        let port = settings.app_port.unwrap_or(DEFAULT_PORT);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        Ok(Application {
            listener,
            app,
            relay,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs the relay and serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "todo-service listening");
        let relay = tokio::spawn(self.relay.run(shutdown.clone()));
        server::serve(self.listener, self.app, shutdown).await?;
        relay.await.ok();
        Ok(())
    }
}
