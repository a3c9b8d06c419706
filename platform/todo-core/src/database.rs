//! The service's PostgreSQL pool, built from credentials read through the Dapr
//! secrets API (never from the environment): secret `<name>` in the configured store, key `url`.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::sidecar::Sidecar;

/// Reads the database URL from the secret store and opens a pool.
pub async fn connect(
    sidecar: &Sidecar,
    store: &str,
    secret: &str,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    let values = sidecar
        .secret(store, secret)
        .await
        .with_context(|| format!("reading secret `{secret}` from Dapr secret store `{store}`"))?;
    let url = values
        .get("url")
        .with_context(|| format!("secret `{secret}` has no key `url`"))?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url.expose_secret())
        .await
        .with_context(|| format!("connecting to the database named by secret `{secret}`"))
}

/// The readiness check of a pool: one round trip.
pub async fn ping(pool: PgPool) -> Result<(), String> {
    sqlx::query!("select 1 as one")
        .fetch_one(&pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
