//! The Recurring Task service: consumes `task-events` through Dapr (its own
//! consumer group) and
//! - keeps a series (RecurrenceSchedule) per recurring task, and on each
//!   completion starts the durable `recurrence_v1` workflow that creates the
//!   next instance through the Todo service ([`handler`], [`workflow`]);
//! - keeps each task's reminder as a Dapr job `reminder-<task_id>` whose
//!   trigger publishes `reminder-fired` to `reminders` ([`jobs`], [`trigger`],
//!   [`service`]);
//! - serves `/api/v1/schedules` and `/api/v1/reminders` ([`api`]).
//!
//! No remote call is made inside a transaction: Jobs API calls, workflow
//! starts and the publishing of fired reminders are recorded as intents and
//! carried out after the commit by a dispatcher ([`dispatch`]). Finished rows
//! are pruned after `RECURRING_RETENTION_HOURS` ([`service::prune`]). A
//! reconciler fires reminders whose jobs did not ([`service::reconcile`]), so
//! no reminder is lost when a job gives up during an outage.

pub mod api;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod handler;
pub mod jobs;
pub mod service;
pub mod trigger;
pub mod workflow;

use std::sync::Arc;

use poem::EndpointExt;
use poem_openapi::OpenApiService;
use todo_contract::Topic;
use todo_core::{
    bootstrap,
    consumer::{Consumer, Subscription, dead_letters::api::DeadLettersApi, require_app_token},
    database::{self, Retention},
    intent::api::{IntentStore, IntentsApi},
    intent::{self, DispatcherSettings, Waker},
    server::{self, HealthApi},
    settings::DaprSettings,
    workflow::{Watching, Workflows},
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::RecurringApi,
    config::{Reconciling, RecurringConfig},
    dispatch::Actions,
    handler::Handler,
    jobs::Jobs,
    service::RecurringService,
};

/// The app id and default port of this service.
pub const APP_ID: &str = "recurring-task-service";
pub const DEFAULT_PORT: u16 = 8005;

/// The OpenAPI service of this app (also what `openapi/recurring.json` holds).
pub fn openapi() -> OpenApiService<(RecurringApi, IntentsApi, DeadLettersApi, HealthApi), ()> {
    OpenApiService::new(
        (RecurringApi, IntentsApi, DeadLettersApi, HealthApi),
        "Recurring Task service",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Series of recurring tasks (the next instance is created by a durable Dapr Workflow when one \
         is completed) and task reminders (Dapr jobs that publish `reminder-fired` to `reminders`). \
         Sidecar callbacks (`/events/task-events`, `/job/reminder-<task_id>`) need the app API token.",
    )
}

/// A built, bound, not yet serving application.
pub struct Application {
    listeners: server::Listeners,
    app: poem::endpoint::BoxEndpoint<'static>,
    workflows: Workflows,
    actions: Actions,
    waker: Waker,
    dispatcher: DispatcherSettings,
    retention: Retention,
    service: RecurringService,
    reconciling: Reconciling,
    watching: Watching,
}

impl bootstrap::Service for Application {
    const APP_ID: &'static str = APP_ID;
    const CONFIG_PREFIX: &'static str = "RECURRING_";
    const SCHEMA: &'static str = "recurring";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    type Config = RecurringConfig;

    fn openapi_spec() -> String {
        todo_core::server::document(&openapi())
    }

    async fn build(
        settings: DaprSettings,
        common: bootstrap::Common,
        config: RecurringConfig,
    ) -> anyhow::Result<Self> {
        static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../db/recurring");
        let retention = config.retention();
        let connected = bootstrap::connect(settings, &common, &MIGRATIONS).await?;
        let pool = connected.pool.clone();
        let deps = Arc::new(workflow::Deps {
            pool: pool.clone(),
            sidecar: connected.sidecar.clone(),
            todo_app_id: config.todo_app_id.clone(),
        });
        let workflows = Workflows::start(&connected.settings, common.sidecar_timeout, move |r| {
            workflow::register(r, deps.clone())
        })
        .await?;
        let waker = Waker::default();
        let actions = Actions {
            pool: pool.clone(),
            jobs: Jobs::new(connected.sidecar.clone()),
            workflows: workflows.starter(),
            sidecar: connected.sidecar.clone(),
        };
        let consumer = Consumer::new(
            APP_ID,
            pool.clone(),
            Handler {
                waker: waker.clone(),
            },
            vec![Subscription {
                topic: Topic::TaskEvents,
            }],
            connected.app_token.clone(),
            common.inbox,
        )
        .announcing_dead_letters(connected.sidecar.clone());
        let service = RecurringService::new(pool.clone(), waker.clone());
        let dead_letters = consumer.dead_letters();
        let mut callbacks = consumer.endpoints();
        callbacks.push((
            "/job/:name",
            require_app_token(
                poem::post(trigger::trigger).boxed(),
                connected.app_token.clone(),
            ),
        ));
        let app = connected.app(openapi(), common.max_body_bytes, callbacks);
        let app = app
            .data(service.clone())
            .data(IntentStore(pool.clone()))
            .data(dead_letters)
            .boxed();
        let listeners = connected.bind(Self::DEFAULT_PORT).await?;
        Ok(Application {
            listeners,
            app,
            workflows,
            actions,
            waker,
            dispatcher: DispatcherSettings::for_calls(common.sidecar_timeout),
            retention,
            service,
            reconciling: config.reconciling(),
            watching: config.watching(),
        })
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.listeners.public_addr()?,
            sidecar_port = %self.listeners.internal_addr()?,
            "recurring-task-service listening"
        );
        let actions = self.actions;
        let pool = actions.pool.clone();
        let watchdog = {
            let (pool, starter, waker) =
                (pool.clone(), actions.workflows.clone(), self.waker.clone());
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
            actions.pool.clone(),
            self.waker,
            self.dispatcher,
            move |i| {
                let actions = actions.clone();
                async move { actions.act(i).await }
            },
            shutdown.clone(),
        ));
        let pruner = {
            let keep = self.retention.keep;
            tokio::spawn(database::run_periodically(
                self.retention.every,
                shutdown.clone(),
                move || {
                    let pool = pool.clone();
                    async move { service::prune(&pool, keep).await }
                },
            ))
        };
        let reconciler = {
            let (service, late_by) = (self.service, self.reconciling.late_by);
            tokio::spawn(database::run_periodically(
                self.reconciling.every,
                shutdown.clone(),
                move || {
                    let service = service.clone();
                    async move { service::reconcile(&service, late_by).await }
                },
            ))
        };
        server::serve(self.listeners, self.app, shutdown).await?;
        let _ = dispatcher.await;
        let _ = pruner.await;
        let _ = reconciler.await;
        let _ = watchdog.await;
        self.workflows.shutdown().await;
        Ok(())
    }
}
