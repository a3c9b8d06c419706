//! The Notification service: consumes `reminders` through Dapr (its own
//! consumer group); each `reminder-fired` becomes one in-app notification,
//! delivered by the durable `notification_delivery_v1` workflow, which pushes
//! `notification-delivered` on `task-updates` for the user's live clients
//! ([`handler`], [`workflow`]). Serves `/api/v1/notifications` ([`api`],
//! [`service`]). Workflow starts are recorded as intents in the transaction
//! that decides them and made after its commit (`todo_core::intent`). Sent
//! notifications are pruned after `NOTIFICATION_RETENTION_HOURS`
//! ([`service::prune`]).

pub mod api;
pub mod config;
pub mod db;
pub mod handler;
pub mod service;
pub mod workflow;

use std::sync::Arc;

use poem::EndpointExt;
use poem_openapi::OpenApiService;
use todo_contract::Topic;
use todo_core::{
    bootstrap,
    consumer::{Consumer, Subscription, dead_letters::api::DeadLettersApi},
    database::{self, Retention},
    intent::api::{IntentStore, IntentsApi},
    intent::{self, DispatcherSettings, Waker},
    server::{self, HealthApi},
    settings::DaprSettings,
    workflow::{Starter, Watching, Workflows},
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::NotificationApi, config::NotificationConfig, handler::Handler,
    service::NotificationService,
};

/// The app id and default port of this service.
pub const APP_ID: &str = "notification-service";
pub const DEFAULT_PORT: u16 = 8004;

/// The OpenAPI service of this app (also what `openapi/notification.json` holds).
pub fn openapi() -> OpenApiService<(NotificationApi, IntentsApi, DeadLettersApi, HealthApi), ()> {
    OpenApiService::new(
        (NotificationApi, IntentsApi, DeadLettersApi, HealthApi),
        "Notification service",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "In-app notifications of task reminders: one per reminder, delivered by a durable Dapr \
         Workflow that pushes `notification-delivered` on `task-updates` to the user's WebSocket \
         clients. Failed ones can be retried. The sidecar callback `/events/reminders` needs the \
         app API token.",
    )
}

/// A built, bound, not yet serving application.
pub struct Application {
    listeners: server::Listeners,
    app: poem::endpoint::BoxEndpoint<'static>,
    workflows: Workflows,
    pool: sqlx::PgPool,
    waker: Waker,
    dispatcher: DispatcherSettings,
    retention: Retention,
    delivery_patience: std::time::Duration,
    watching: Watching,
}

impl bootstrap::Service for Application {
    const APP_ID: &'static str = APP_ID;
    const CONFIG_PREFIX: &'static str = "NOTIFICATION_";
    const SCHEMA: &'static str = "notification";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Config = NotificationConfig;

    fn openapi_spec() -> String {
        todo_core::server::document(&openapi())
    }

    async fn build(
        settings: DaprSettings,
        common: bootstrap::Common,
        config: NotificationConfig,
    ) -> anyhow::Result<Self> {
        static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../db/notification");
        let connected = bootstrap::connect(settings, &common, &MIGRATIONS).await?;
        let pool = connected.pool.clone();
        let deps = Arc::new(workflow::Deps {
            pool: pool.clone(),
            sidecar: connected.sidecar.clone(),
        });
        let workflows = Workflows::start(&connected.settings, common.sidecar_timeout, move |r| {
            workflow::register(r, deps.clone())
        })
        .await?;
        let waker = Waker::default();
        let consumer = Consumer::new(
            APP_ID,
            pool.clone(),
            Handler {
                waker: waker.clone(),
            },
            vec![Subscription {
                topic: Topic::Reminders,
            }],
            connected.app_token.clone(),
            common.inbox,
        )
        .announcing_dead_letters(connected.sidecar.clone());
        let dead_letters = consumer.dead_letters();
        let callbacks = consumer.endpoints();
        let app = connected.app(openapi(), common.max_body_bytes, callbacks);
        let service = NotificationService::new(pool.clone(), waker.clone());
        let app = app
            .data(service)
            .data(IntentStore(pool.clone()))
            .data(dead_letters)
            .boxed();
        let listeners = connected.bind(Self::DEFAULT_PORT).await?;
        Ok(Application {
            listeners,
            app,
            workflows,
            pool,
            waker,
            dispatcher: DispatcherSettings::for_calls(common.sidecar_timeout),
            retention: config.retention(),
            delivery_patience: config.delivery_patience(),
            watching: config.watching(),
        })
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.listeners.public_addr()?,
            sidecar_port = %self.listeners.internal_addr()?,
            "notification-service listening"
        );
        let starter: Starter = self.workflows.starter();
        let patience = self.delivery_patience;
        let pruner = {
            let (pool, keep) = (self.pool.clone(), self.retention.keep);
            tokio::spawn(database::run_periodically(
                self.retention.every,
                shutdown.clone(),
                move || {
                    let pool = pool.clone();
                    async move { service::prune(&pool, keep).await }
                },
            ))
        };
        let watchdog = {
            let (pool, starter, waker) = (self.pool.clone(), starter.clone(), self.waker.clone());
            let stale = self.watching.stale;
            tokio::spawn(database::run_periodically(
                self.watching.every,
                shutdown.clone(),
                move || {
                    let (pool, starter, waker) = (pool.clone(), starter.clone(), waker.clone());
                    async move { service::watch(&pool, &starter, &waker, stale).await }
                },
            ))
        };
        let dispatcher = tokio::spawn(intent::dispatch(
            self.pool,
            self.waker,
            self.dispatcher,
            move |i| {
                let starter = starter.clone();
                async move { workflow::start_recorded(&starter, i, patience).await }
            },
            shutdown.clone(),
        ));
        server::serve(self.listeners, self.app, shutdown).await?;
        let _ = dispatcher.await;
        let _ = pruner.await;
        let _ = watchdog.await;
        self.workflows.shutdown().await;
        Ok(())
    }
}
