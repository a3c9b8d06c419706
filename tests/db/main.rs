//! Database-level tests: the services' own code (relay waiters, idempotency,
//! the consumer's inbox, intents and their leases, pruning, the indexes of
//! user-scoped lists, the recurring-task service's handler) against a real
//! PostgreSQL, without Kafka, Dapr or a
//! running service. PostgreSQL comes up once for this binary
//! (`todo_local_stack::Database`, state in `.state/db-tests`), and every trial
//! gets a fresh schema with its service's migrations, so trials run in
//! parallel and in seconds.

mod consumer;
mod idempotency;
mod intent;
mod listing;
mod pruning;
mod relay;
mod series;

use std::sync::Arc;

use anyhow::Result;
use libtest_mimic::{Arguments, Failed, Trial};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use todo_local_stack::Database;

type BoxFut = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// The Todo service's migrations.
pub static TODO: Migrator = sqlx::migrate!("../../db/todo");
/// The audit service's migrations.
pub static AUDIT: Migrator = sqlx::migrate!("../../db/audit");
/// The WebSocket service's migrations.
pub static WEBSOCKET: Migrator = sqlx::migrate!("../../db/websocket");
/// The notification service's migrations.
pub static NOTIFICATION: Migrator = sqlx::migrate!("../../db/notification");
/// The recurring-task service's migrations.
pub static RECURRING: Migrator = sqlx::migrate!("../../db/recurring");

/// What every trial gets: where PostgreSQL is.
#[derive(Clone)]
pub struct Ctx {
    runtime: Arc<tokio::runtime::Runtime>,
    admin_url: Arc<Option<String>>,
}

impl Ctx {
    /// A trial named `name` running `test`.
    pub fn trial(&self, name: &str, test: fn(Ctx) -> BoxFut) -> Trial {
        let ctx = self.clone();
        Trial::test(name, move || {
            ctx.runtime
                .block_on(test(ctx.clone()))
                .map_err(|e| Failed::from(format!("{e:#}")))
        })
    }

    /// A pool on a new, empty schema (its search path) with `migrations`
    /// applied, as a service's role sees its own schema.
    pub async fn fresh_schema(&self, migrations: &Migrator) -> Result<PgPool> {
        let admin_url = self
            .admin_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("PostgreSQL did not come up"))?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(admin_url).await?;
        sqlx::query(&format!("create schema {schema}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let options: PgConnectOptions = admin_url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options.options([("search_path", schema.as_str())]))
            .await?;
        migrations.run(&pool).await?;
        Ok(pool)
    }
}

/// `ctx.trial("name", name)` for an async fn taking the context.
#[macro_export]
macro_rules! trial {
    ($ctx:expr, $f:path) => {{
        fn boxed(ctx: $crate::Ctx) -> $crate::BoxFut {
            Box::pin(async move { $f(&ctx).await })
        }
        $ctx.trial(stringify!($f), boxed)
    }};
}

fn main() {
    let args = Arguments::from_args();
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
    );
    let mut database = None;
    if !args.list {
        match runtime.block_on(Database::up("db-tests")) {
            Ok(db) => database = Some(db),
            Err(e) => eprintln!("PostgreSQL did not come up: {e:#}"),
        }
    }
    let ctx = Ctx {
        runtime: runtime.clone(),
        admin_url: Arc::new(database.as_ref().map(Database::admin_url)),
    };
    let trials: Vec<Trial> = relay::trials(&ctx)
        .into_iter()
        .chain(idempotency::trials(&ctx))
        .chain(consumer::trials(&ctx))
        .chain(pruning::trials(&ctx))
        .chain(intent::trials(&ctx))
        .chain(listing::trials(&ctx))
        .chain(series::trials(&ctx))
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(Err(e)) = database.map(|db| runtime.block_on(db.shutdown())) {
        eprintln!("PostgreSQL shutdown: {e:#}");
    }
    conclusion.exit();
}
