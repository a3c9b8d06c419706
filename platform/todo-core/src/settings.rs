//! The environment every service reads once at start-up.
//!
//! Variable names are the ones the Dapr CLI and the local stack set for an app
//! (`APP_PORT`, `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `APP_API_TOKEN`,
//! `DAPR_API_TOKEN`), so a service runs the same under `cargo xtask up`,
//! `dapr run -f deploy/local/dapr.yaml` and Kubernetes. Service-specific
//! settings live in each service's own config, read with [`from_env`].

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// Where the sidecar is and which tokens guard the two directions.
#[derive(Debug, Clone, Deserialize)]
pub struct DaprSettings {
    /// The port the app listens on (`APP_PORT`); each service has its default.
    #[serde(default)]
    pub app_port: Option<u16>,
    /// The address the app listens on (`APP_LISTEN_ADDRESS`): loopback by
    /// default, where its own sidecar reaches it; `0.0.0.0` in a Kubernetes
    /// pod, so the kubelet's probes, the Service and the ingress reach it too.
    #[serde(default = "default_listen_address")]
    pub app_listen_address: std::net::IpAddr,
    /// The sidecar's HTTP API port (health, service invocation).
    #[serde(default = "default_http_port")]
    pub dapr_http_port: u16,
    /// The sidecar's gRPC API port (publish, secrets, jobs, workflows).
    #[serde(default = "default_grpc_port")]
    pub dapr_grpc_port: u16,
    /// Token the sidecar must present on callbacks to the app (subscriptions, jobs).
    #[serde(default)]
    pub app_api_token: Option<SecretString>,
    /// Token the app presents to the sidecar, when the sidecar requires one.
    #[serde(default)]
    pub dapr_api_token: Option<SecretString>,
    /// Name of the Dapr secret store holding database credentials.
    #[serde(default = "default_secret_store")]
    pub secret_store: String,
    /// How long start-up waits for the sidecar to come up.
    #[serde(default = "default_sidecar_wait_secs")]
    pub sidecar_wait_secs: u64,
}

impl DaprSettings {
    /// The start-up wait for the sidecar as a duration.
    pub fn sidecar_wait(&self) -> Duration {
        Duration::from_secs(self.sidecar_wait_secs)
    }
}

fn default_listen_address() -> std::net::IpAddr {
    std::net::Ipv4Addr::LOCALHOST.into()
}
fn default_http_port() -> u16 {
    3500
}
fn default_grpc_port() -> u16 {
    50001
}
fn default_secret_store() -> String {
    "localsecrets".to_owned()
}
fn default_sidecar_wait_secs() -> u64 {
    60
}

/// An environment variable was missing or malformed; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct SettingsError(String);

/// Reads a settings struct from the environment; field `foo_bar` comes from
/// `<PREFIX>FOO_BAR` (prefix may be empty).
pub fn from_env<T: serde::de::DeserializeOwned>(prefix: &str) -> Result<T, SettingsError> {
    envy::prefixed(prefix)
        .from_env::<T>()
        .map_err(|e| SettingsError(format!("{e} (variables are read with prefix `{prefix}`)")))
}
