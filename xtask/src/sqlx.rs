//! `cargo xtask sqlx [--check]`: the offline data of the compile-checked
//! queries (`sqlx::query!` and friends), one `.sqlx/` folder per crate, so
//! that a build needs no database. Brings up PostgreSQL alone, applies every
//! service's migrations in its own schema as its own role, and runs sqlx-cli
//! (`cargo sqlx prepare`, installed from PyPI) in each crate with the URL of
//! the role whose schema its queries read. `--check` (run by the test
//! command) fails if the committed data no longer matches the queries and
//! the migrations.

use anyhow::{Result, bail};
use sqlx::migrate::Migrator;
use todo_local_stack::{Database, workspace_root};

/// Each crate with compile-checked queries, and the schema they run in
/// (the shared consumer's `inbox` is in every schema; the audit one serves).
const CRATES: &[(&str, &str)] = &[
    ("platform/todo-core", "audit"),
    ("platform/todo-service", "todo"),
    ("platform/audit-service", "audit"),
    ("platform/websocket-service", "websocket"),
    ("platform/notification-service", "notification"),
    ("platform/recurring-task-service", "recurring"),
];

static TODO: Migrator = sqlx::migrate!("../db/todo");
static AUDIT: Migrator = sqlx::migrate!("../db/audit");
static WEBSOCKET: Migrator = sqlx::migrate!("../db/websocket");
static NOTIFICATION: Migrator = sqlx::migrate!("../db/notification");
static RECURRING: Migrator = sqlx::migrate!("../db/recurring");

/// Options of `cargo xtask sqlx`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Check the committed data instead of writing it.
    #[arg(long)]
    pub check: bool,
}

pub async fn run(options: Options) -> Result<()> {
    let cargo_sqlx = todo_local_stack::cargo_sqlx().await?;
    let db = Database::up("sqlx").await?;
    let result = async {
        for (schema, migrator) in [
            ("todo", &TODO),
            ("audit", &AUDIT),
            ("websocket", &WEBSOCKET),
            ("notification", &NOTIFICATION),
            ("recurring", &RECURRING),
        ] {
            let pool = sqlx::PgPool::connect(&db.role_url(schema)).await?;
            migrator.run(&pool).await?;
            pool.close().await;
        }
        let root = workspace_root();
        let mut stale = Vec::new();
        for (dir, schema) in CRATES {
            let crate_dir = root.join(dir);
            if !crate_dir.join(".sqlx").is_dir() && !options.check {
                std::fs::create_dir_all(crate_dir.join(".sqlx"))?;
            }
            if !crate_dir.join(".sqlx").is_dir() {
                continue;
            }
            let mut c = tokio::process::Command::new(&cargo_sqlx);
            todo_local_stack::without_package_env(&mut c);
            c.current_dir(&crate_dir)
                .args(["sqlx", "prepare"])
                .args(options.check.then_some("--check"))
                .args(["--", "--all-targets"])
                .env("DATABASE_URL", db.role_url(schema));
            eprintln!(
                "[xtask] {dir}: cargo sqlx prepare{}",
                if options.check { " --check" } else { "" }
            );
            if !c.status().await?.success() {
                stale.push(*dir);
            }
        }
        if !stale.is_empty() {
            bail!(
                "the offline query data of {} is out of date: run `cargo xtask sqlx` and commit the .sqlx folders",
                stale.join(", ")
            );
        }
        Ok(())
    }
    .await;
    db.shutdown().await?;
    result
}
