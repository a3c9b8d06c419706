//! The Audit service: consumes `task-events` through Dapr (its own consumer
//! group) and stores every event once as an immutable [`db::AuditRecord`]
//! ([`handler`]); serves the trail at `/api/v1/audit` ([`api`], [`service`]).

pub mod api;
pub mod config;
pub mod db;
pub mod handler;
pub mod service;

use poem_openapi::OpenApiService;
use todo_contract::Topic;
use todo_core::{
    bootstrap,
    consumer::{Consumer, Subscription, dead_letters::api::DeadLettersApi},
    server::{self, HealthApi},
    settings::DaprSettings,
};
use tokio_util::sync::CancellationToken;

use crate::{api::AuditApi, config::AuditConfig, handler::Handler, service::AuditService};

/// The app id and default port of this service.
pub const APP_ID: &str = "audit-service";
pub const DEFAULT_PORT: u16 = 8002;

/// The OpenAPI service of this app (also what `openapi/audit.json` holds).
pub fn openapi() -> OpenApiService<(AuditApi, DeadLettersApi, HealthApi), ()> {
    OpenApiService::new(
        (AuditApi, DeadLettersApi, HealthApi),
        "Audit service",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "The immutable, chronological record of every task event published to `task-events`.",
    )
}

/// A built, bound, not yet serving application.
pub struct Application {
    listeners: server::Listeners,
    app: poem::endpoint::BoxEndpoint<'static>,
}

impl bootstrap::Service for Application {
    const APP_ID: &'static str = APP_ID;
    const CONFIG_PREFIX: &'static str = "AUDIT_";
    const SCHEMA: &'static str = "audit";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    const DEFAULT_SIDECAR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
    type Config = AuditConfig;

    fn openapi_spec() -> String {
        todo_core::server::document(&openapi())
    }

    async fn build(
        settings: DaprSettings,
        common: bootstrap::Common,
        _config: AuditConfig,
    ) -> anyhow::Result<Self> {
        static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../db/audit");
        let connected = bootstrap::connect(settings, &common, &MIGRATIONS).await?;
        let pool = connected.pool.clone();
        let consumer = Consumer::new(
            APP_ID,
            pool.clone(),
            Handler,
            vec![Subscription {
                topic: Topic::TaskEvents,
            }],
            connected.app_token.clone(),
            common.inbox,
        )
        .announcing_dead_letters(connected.sidecar.clone());
        let dead_letters = consumer.dead_letters();
        let app = connected.app(openapi(), common.max_body_bytes, consumer.endpoints());
        let app = poem::EndpointExt::boxed(poem::EndpointExt::data(
            poem::EndpointExt::data(app, AuditService::new(pool)),
            dead_letters,
        ));
        let listeners = connected.bind(Self::DEFAULT_PORT).await?;
        Ok(Application { listeners, app })
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.listeners.public_addr()?,
            sidecar_port = %self.listeners.internal_addr()?,
            "audit-service listening"
        );
        server::serve(self.listeners, self.app, shutdown).await?;
        Ok(())
    }
}
