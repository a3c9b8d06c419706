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

/// Each crate with compile-checked queries, and the schema they run in.
/// todo-core's tables (the shared consumer's `inbox`, the dispatcher's
/// `intent`) have the same shape in every schema that has them; the
/// notification schema has both and serves, for todo-core itself and for its
/// queries compiled as a dependency of a crate whose schema lacks them.
const CRATES: &[(&str, &str)] = &[
    ("platform/todo-core", SHARED),
    ("platform/todo-service", "todo"),
    ("platform/audit-service", "audit"),
    ("platform/websocket-service", "websocket"),
    ("platform/notification-service", "notification"),
    ("platform/recurring-task-service", "recurring"),
];

/// The schema that has every table todo-core's queries use.
const SHARED: &str = "notification";

static TODO: Migrator = sqlx::migrate!("../db/todo");
static AUDIT: Migrator = sqlx::migrate!("../db/audit");
static WEBSOCKET: Migrator = sqlx::migrate!("../db/websocket");
static NOTIFICATION: Migrator = sqlx::migrate!("../db/notification");
static RECURRING: Migrator = sqlx::migrate!("../db/recurring");

/// The superuser's URL with `schema` first on the search path, then
/// [`SHARED`].
fn url_for(db: &Database, schema: &str) -> String {
    let mut url = db.admin_url();
    url.push_str(if url.contains('?') { "&" } else { "?" });
    url.push_str(&format!("options=-csearch_path%3D{schema}%2C{SHARED}"));
    url
}

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
                .env("DATABASE_URL", url_for(&db, schema));
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
