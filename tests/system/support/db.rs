//! PostgreSQL seen from outside the services: a superuser pool on the
//! platform database, to check what each service stored (or seed a state).

use anyhow::{Context, Result};
use todo_local_stack::Stack;

/// A connection to PostgreSQL as the superuser, to check what is stored.
pub async fn admin_db(stack: &Stack) -> Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.pg_admin_url())
        .await
        .context("connecting to PostgreSQL as admin")
}
