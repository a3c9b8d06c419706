//! PostgreSQL alone, for the database-level tests and the offline query
//! data: a cluster of its own on [`DATABASE_PG_PORT`] (so it runs beside a
//! stack), or the server named by `TODO_PLATFORM_PG_ADMIN_URL`, provisioned
//! like the stack's, without Kafka, Dapr or the services. Starts in seconds.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let db = todo_local_stack::Database::up("db-tests").await?;
//! let url = db.admin_url();
//! db.shutdown().await?;
//! # let _ = url; Ok(()) }
//! ```

use std::fs::File;
use std::time::Instant;

use anyhow::Result;

use crate::creds::Credentials;
use crate::options::StackOptions;
use crate::postgres::{self, PgTarget};
use crate::proc::{self, Managed};
use crate::spec::DATABASE_PG_PORT;
use crate::{cmd, install};

/// A running PostgreSQL with the platform's database. Dropping it kills the
/// server (SIGKILL); call [`Database::shutdown`] for a clean stop.
pub struct Database {
    target: PgTarget,
    creds: Credentials,
    server: Option<Managed>,
    _lock: nix::fcntl::Flock<File>,
}

impl Database {
    /// Starts PostgreSQL in a fresh `<repo>/.state/<name>` (installing the
    /// Debian package first if missing) and provisions every service's role.
    pub async fn up(name: &str) -> Result<Database> {
        let started = Instant::now();
        let state = std::path::absolute(StackOptions::for_tests(name).state_dir)?;
        cmd::step(format!("state folder {}", state.display()));
        let lock = proc::lock_state(&state)?;
        proc::kill_leftovers(&state).await?;
        crate::start::wipe_state(&state)?;
        std::fs::create_dir_all(proc::logs_dir(&state))?;
        let external = PgTarget::from_env()?;
        let installed = install::ensure_packages(&install::Needs {
            pg_server: external.is_none(),
            kafka_jars: false,
            browser: false,
        })
        .await?;
        let target = match external {
            Some(t) => t,
            None => PgTarget::own(&state, DATABASE_PG_PORT)?,
        };
        let roles = crate::start::db_roles();
        let creds = Credentials::load_or_create(&state, &roles)?;
        let server = match &target {
            PgTarget::Own { .. } => {
                postgres::check_port(DATABASE_PG_PORT, installed).await?;
                Some(postgres::start_own(&state, &target, &creds, installed).await?)
            }
            PgTarget::External { .. } => None,
        };
        let mut db = Database {
            target,
            creds,
            server,
            _lock: lock,
        };
        if let Err(e) = postgres::provision(&db.target, &db.creds, &roles).await {
            if let Some(mut m) = db.server.take() {
                let _ = m.stop().await;
            }
            return Err(e);
        }
        cmd::done("postgres is up", started);
        Ok(db)
    }

    /// Superuser URL on the platform database.
    pub fn admin_url(&self) -> String {
        self.target.admin_url(&self.creds)
    }

    /// URL of the login role that owns `schema` (its search path is that
    /// schema), as the service gets it.
    pub fn role_url(&self, schema: &str) -> String {
        self.target.endpoint().role_url(&self.creds, schema)
    }

    /// Clean stop.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(mut m) = self.server.take() {
            m.stop().await?;
        }
        Ok(())
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(mut m) = self.server.take() {
            m.kill_now();
        }
    }
}
