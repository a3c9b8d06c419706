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

use std::net::SocketAddr;

use poem_openapi::OpenApiService;
use todo_core::{
    auth::InternalTrust,
    bootstrap,
    server::{self, HealthApi},
    settings::DaprSettings,
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
             before it is answered; 503 `dependency_unavailable` means the change is not confirmed. \
             Every call needs a bearer token (`Authorization: Bearer <JWT>`); a user reads and \
             changes only their own tasks, and another user's task is a 404.",
        )
}

/// A built, bound, not yet serving application.
pub struct Application {
    listeners: server::Listeners,
    app: poem::endpoint::BoxEndpoint<'static>,
    relay: Relay,
    pool: sqlx::PgPool,
    pruning: config::Pruning,
}

impl bootstrap::Service for Application {
    const APP_ID: &'static str = APP_ID;
    const CONFIG_PREFIX: &'static str = "TODO_";
    const SCHEMA: &'static str = "todo";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
    const DEFAULT_DB_MAX_CONNECTIONS: u32 = 20;
    /// Longer than the sidecar's own bounded publish retries, so the relay
    /// never gives up on a call whose message may still be delivered.
    const DEFAULT_SIDECAR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
    type Config = TodoConfig;

    fn openapi_spec() -> String {
        todo_core::server::document(&openapi())
    }

    /// Waits for the sidecar, reads the database credentials through it,
    /// migrates, and binds the port (`APP_PORT`; 0 picks a free one).
    async fn build(
        settings: DaprSettings,
        common: bootstrap::Common,
        config: TodoConfig,
    ) -> anyhow::Result<Self> {
        static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../db/todo");
        let connected = bootstrap::connect(settings, &common, &MIGRATIONS).await?;
        let pool = connected.pool.clone();

        let relay = Relay::new(pool.clone(), connected.sidecar.clone());
        let service = TaskService::new(pool.clone(), relay.clone(), config.publish_wait());
        let trust = InternalTrust {
            app_token: connected.app_token.clone(),
            callers: config.trusted_callers(),
        };
        let app = connected.app(openapi(), common.max_body_bytes, Vec::new());
        let app = poem::EndpointExt::data(poem::EndpointExt::data(app, service), trust);
        let app = poem::EndpointExt::boxed(poem::EndpointExt::around(
            app,
            api::refuse_unreadable_headers,
        ));
        let listeners = connected.bind(Self::DEFAULT_PORT).await?;
        Ok(Application {
            listeners,
            app,
            relay,
            pool,
            pruning: config.pruning(),
        })
    }

    /// Runs the relay and its pruner and serves until `shutdown` is
    /// cancelled. The relay outlives the server: requests still draining
    /// after the signal wait for their events, so it stops only once the
    /// server has finished them, after a last flush of what they saved.
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.local_addr()?,
            sidecar_port = %self.listeners.internal_addr()?,
            "todo-service listening"
        );
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let pruner = tokio::spawn(relay::prune_periodically(
            self.pool,
            self.pruning,
            shutdown.clone(),
        ));
        let served = server::serve(self.listeners, self.app, shutdown).await;
        relay_stop.cancel();
        relay.await.ok();
        pruner.await.ok();
        Ok(served?)
    }
}

impl Application {
    /// The public address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners.public_addr()
    }
}
