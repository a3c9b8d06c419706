//! The WebSocket service: consumes `task-updates` through Dapr (its own
//! consumer group), keeps a durable, bounded log of them in PostgreSQL shared
//! by its replicas, and pushes each to the open WebSocket streams of every
//! replica once it is committed.
//!
//! - `GET /ws?since=…`: the caller's updates; with `since`, everything after
//!   that cursor first, then live (see [`service`] for the seam). The token
//!   travels in `Sec-WebSocket-Protocol` (`todo-updates, bearer.<JWT>`) or
//!   `Authorization: Bearer` ([`routes`]).
//! - `GET /ws/operator?since=…`: everyone's, for operators.
//! - `GET /live#token=<JWT>`: a page that shows the user's tasks live.
//! - `GET /api/v1/connections`: how many streams are open (operators).

pub mod api;
pub mod config;
pub mod db;
pub mod handler;
pub mod hub;
pub mod routes;
pub mod service;
pub mod update;

use std::time::Duration;

use poem::{EndpointExt, get};
use poem_openapi::OpenApiService;
use sqlx::PgPool;
use todo_contract::Topic;
use todo_core::{
    bootstrap,
    consumer::{Consumer, Subscription, dead_letters::api::DeadLettersApi},
    server::{self, HealthApi},
    settings::DaprSettings,
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::ConnectionsApi, config::WebsocketConfig, handler::Handler, hub::Hub, service::Streams,
};

/// The app id and default port of this service.
pub const APP_ID: &str = "websocket-service";
pub const DEFAULT_PORT: u16 = 8003;

/// The OpenAPI service of this app (also what `openapi/websocket.json` holds).
pub fn openapi() -> OpenApiService<(ConnectionsApi, DeadLettersApi, HealthApi), ()> {
    OpenApiService::new(
        (ConnectionsApi, DeadLettersApi, HealthApi),
        "WebSocket service",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Real-time task updates. Streams (WebSocket upgrades, outside this document): \
         `GET /ws?since=<seq>` — the caller's updates, each the event envelope \
         plus `seq`; with `since`, everything after that cursor first, then `{\"type\":\"ready\"}`, \
         then live updates; a cursor older than the retention window gets \
         `{\"type\":\"resync-required\"}` first. The token travels in the handshake as \
         `Sec-WebSocket-Protocol: todo-updates, bearer.<JWT>` (browsers) or \
         `Authorization: Bearer <JWT>`, never in the URL; the server answers with protocol \
         `todo-updates`. An operator may add `user_id=<user>`. `GET /ws/operator?since=<seq>` — \
         every user's updates, operators only. A client that falls too far behind is closed \
         with code 4008, and a stream whose token expires with 4401; either resumes with \
         `since`. `GET /live#token=<JWT>` — a live page of the user's tasks.",
    )
}

/// A built, bound, not yet serving application.
pub struct Application {
    listeners: server::Listeners,
    app: poem::endpoint::BoxEndpoint<'static>,
    pool: PgPool,
    hub: std::sync::Arc<Hub>,
    config: WebsocketConfig,
    streams_stop: CancellationToken,
}

impl bootstrap::Service for Application {
    const APP_ID: &'static str = APP_ID;
    const CONFIG_PREFIX: &'static str = "WEBSOCKET_";
    const SCHEMA: &'static str = "websocket";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    const DEFAULT_SIDECAR_TIMEOUT: Duration = Duration::from_secs(5);
    type Config = WebsocketConfig;

    fn openapi_spec() -> String {
        todo_core::server::document(&openapi())
    }

    async fn build(
        settings: DaprSettings,
        common: bootstrap::Common,
        config: WebsocketConfig,
    ) -> anyhow::Result<Self> {
        static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../db/websocket");
        let connected = bootstrap::connect(settings, &common, &MIGRATIONS).await?;
        let pool = connected.pool.clone();
        let hub = Hub::new(config.queue_capacity, config.limits());
        let consumer = Consumer::new(
            APP_ID,
            pool.clone(),
            Handler,
            vec![Subscription {
                topic: Topic::TaskUpdates,
            }],
            connected.app_token.clone(),
            common.inbox,
        )
        .announcing_dead_letters(connected.sidecar.clone());
        let streams_stop = CancellationToken::new();
        let streams = Streams {
            hub: hub.clone(),
            pool: pool.clone(),
            stop: streams_stop.clone(),
        };
        let dead_letters = consumer.dead_letters();
        let mut callbacks = consumer.endpoints();
        callbacks.push(("/ws", get(routes::user_stream).boxed()));
        callbacks.push(("/ws/operator", get(routes::operator_stream).boxed()));
        callbacks.push(("/live", get(routes::live_page).boxed()));
        let app = connected.app(openapi(), common.max_body_bytes, callbacks);
        let app = app
            .data(hub)
            .data(streams.clone())
            .data(dead_letters)
            .boxed();
        let listeners = connected.bind(Self::DEFAULT_PORT).await?;
        Ok(Application {
            listeners,
            app,
            pool,
            hub: streams.hub.clone(),
            config,
            streams_stop,
        })
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.listeners.public_addr()?,
            sidecar_port = %self.listeners.internal_addr()?,
            "websocket-service listening"
        );
        let pruner = tokio::spawn(service::prune_periodically(
            self.pool.clone(),
            self.config.clone(),
            shutdown.clone(),
        ));
        let follower = tokio::spawn(service::follow_log(
            self.pool.clone(),
            self.hub.clone(),
            shutdown.clone(),
        ));
        // Open streams are told to go (close 1001) as soon as shutdown begins.
        let streams_stop = self.streams_stop.clone();
        let stop_streams = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                streams_stop.cancel();
            }
        });
        let served = server::serve(self.listeners, self.app, shutdown).await;
        pruner.abort();
        follower.abort();
        stop_streams.abort();
        served?;
        Ok(())
    }
}
