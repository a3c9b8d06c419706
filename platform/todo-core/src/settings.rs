//! The environment every service reads once at start-up.
//!
//! Variable names are the ones the Dapr CLI and the local stack set for an app
//! (`APP_PORT`, `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `APP_API_TOKEN`,
//! `DAPR_API_TOKEN`), so a service runs the same under `cargo xtask up`,
//! `dapr run -f deploy/local/dapr.yaml` and Kubernetes; `APP_LISTEN_ADDRESS`
//! is ours (the container images set it to `0.0.0.0`). Service-specific
//! settings live in each service's own config, read with [`from_env`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where the sidecar is and which tokens guard the two directions.
#[derive(Debug, Clone, Deserialize)]
pub struct DaprSettings {
    /// The port the app serves its public API on (`APP_PORT`); each service
    /// has its default.
    #[serde(default)]
    pub app_port: Option<u16>,
    /// The port only its sidecar calls (`APP_INTERNAL_PORT`, default the
    /// public port + [`INTERNAL_PORT_OFFSET`]), always on loopback: the
    /// subscription and job callbacks and service invocation arrive there,
    /// and internal calls (`dapr-api-token`) are accepted nowhere else.
    #[serde(default)]
    pub app_internal_port: Option<u16>,
    /// Development only: serve the sidecar's callbacks without an app API
    /// token when `APP_API_TOKEN` is unset
    /// (`APP_DEV_ALLOW_NO_APP_TOKEN=true`, logged as a warning at start-up).
    /// Without it a service refuses to start with no token.
    #[serde(default)]
    pub app_dev_allow_no_app_token: bool,
    /// The address the app's HTTP server binds (`APP_LISTEN_ADDRESS`):
    /// loopback by default, where only the machine's own processes (the
    /// sidecar) reach it; `0.0.0.0` in a container, where the kubelet's
    /// probes and the Kubernetes Service reach it on the pod's address.
    #[serde(
        default = "default_listen_address",
        deserialize_with = "listen_address"
    )]
    pub app_listen_address: IpAddr,
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

    /// Where the app listens: `APP_LISTEN_ADDRESS` and `APP_PORT`, or
    /// `default_port` (0 picks a free port).
    pub fn listen_address(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(
            self.app_listen_address,
            self.app_port.unwrap_or(default_port),
        )
    }

    /// Where the sidecar reaches the app: loopback (the sidecar shares the
    /// machine, or the pod's network), on `APP_INTERNAL_PORT`, or the public
    /// port + [`INTERNAL_PORT_OFFSET`] (0, a free port, when the public port
    /// is picked freely).
    pub fn internal_address(&self, default_port: u16) -> SocketAddr {
        let public = self.app_port.unwrap_or(default_port);
        let port = self.app_internal_port.unwrap_or(if public == 0 {
            0
        } else {
            public.saturating_add(INTERNAL_PORT_OFFSET)
        });
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    /// The token the sidecar must present on every call to the internal
    /// port: `APP_API_TOKEN`. Without it a service does not start, unless
    /// `APP_DEV_ALLOW_NO_APP_TOKEN=true` says this is a development machine,
    /// and then it warns (every local process may call its callbacks).
    pub fn callback_token(&self, app_id: &str) -> Result<AppToken, SettingsError> {
        match (&self.app_api_token, self.app_dev_allow_no_app_token) {
            (Some(token), _) if !token.expose_secret().is_empty() => {
                Ok(AppToken::Required(token.clone()))
            }
            (_, true) => {
                tracing::warn!(
                    app_id,
                    "APP_API_TOKEN is unset and APP_DEV_ALLOW_NO_APP_TOKEN=true: the sidecar's \
                     callbacks and internal calls are accepted from ANY local process without a \
                     token. Never run like this outside a development machine."
                );
                Ok(AppToken::NotRequired)
            }
            _ => Err(SettingsError(format!(
                "APP_API_TOKEN is unset: {app_id} accepts its sidecar's callbacks only with the \
                 app API token the sidecar presents (set the same value as the sidecar's \
                 APP_API_TOKEN, or APP_DEV_ALLOW_NO_APP_TOKEN=true on a development machine)"
            ))),
        }
    }

    /// Where a process on the same machine (or in the same container)
    /// reaches the app: the listen address, or loopback when the app listens
    /// on every address. What `<binary> health` calls.
    pub fn local_address(&self, default_port: u16) -> SocketAddr {
        let mut addr = self.listen_address(default_port);
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        addr
    }
}

/// How far the internal port is from the public one by default.
pub const INTERNAL_PORT_OFFSET: u16 = 10;

/// What the sidecar's calls to the app must carry.
#[derive(Debug, Clone)]
pub enum AppToken {
    /// `dapr-api-token` must be this (`APP_API_TOKEN`).
    Required(SecretString),
    /// Development only: nothing (`APP_DEV_ALLOW_NO_APP_TOKEN=true`).
    NotRequired,
}

fn default_listen_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// `APP_LISTEN_ADDRESS`, with an error that names it.
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "APP_LISTEN_ADDRESS={text:?} is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)"
        ))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> DaprSettings {
        envy::from_iter(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).unwrap()
    }

    #[test]
    fn the_app_listens_on_loopback_unless_told_otherwise() {
        let s = settings(&[]);
        assert_eq!(s.listen_address(8001).to_string(), "127.0.0.1:8001");
        assert_eq!(s.local_address(8001).to_string(), "127.0.0.1:8001");
    }

    #[test]
    fn a_container_listens_everywhere_and_checks_itself_on_loopback() {
        let s = settings(&[("APP_LISTEN_ADDRESS", "0.0.0.0"), ("APP_PORT", "8101")]);
        assert_eq!(s.listen_address(8001).to_string(), "0.0.0.0:8101");
        assert_eq!(s.local_address(8001).to_string(), "127.0.0.1:8101");
        let v6 = settings(&[("APP_LISTEN_ADDRESS", "::")]);
        assert_eq!(v6.local_address(8002).to_string(), "[::1]:8002");
    }

    #[test]
    fn the_sidecar_calls_a_loopback_port_beside_the_public_one() {
        let s = settings(&[("APP_LISTEN_ADDRESS", "0.0.0.0"), ("APP_PORT", "8101")]);
        assert_eq!(s.internal_address(8001).to_string(), "127.0.0.1:8111");
        assert_eq!(
            settings(&[]).internal_address(8002).to_string(),
            "127.0.0.1:8012"
        );
        let set = settings(&[("APP_INTERNAL_PORT", "9000")]);
        assert_eq!(set.internal_address(8001).to_string(), "127.0.0.1:9000");
        let free = settings(&[("APP_PORT", "0")]);
        assert_eq!(free.internal_address(8001).to_string(), "127.0.0.1:0");
    }

    #[test]
    fn without_an_app_token_a_service_refuses_to_start_unless_told_it_is_development() {
        let err = settings(&[])
            .callback_token("audit-service")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("APP_API_TOKEN") && err.contains("audit-service"),
            "{err}"
        );
        let empty = settings(&[("APP_API_TOKEN", "")]);
        assert!(empty.callback_token("audit-service").is_err());
        let dev = settings(&[("APP_DEV_ALLOW_NO_APP_TOKEN", "true")]);
        assert!(matches!(dev.callback_token("a"), Ok(AppToken::NotRequired)));
        let set = settings(&[("APP_API_TOKEN", "t")]);
        assert!(matches!(set.callback_token("a"), Ok(AppToken::Required(_))));
    }

    #[test]
    fn a_malformed_listen_address_is_refused_by_name() {
        let err = envy::from_iter::<_, DaprSettings>([(
            "APP_LISTEN_ADDRESS".to_owned(),
            "everywhere".to_owned(),
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("APP_LISTEN_ADDRESS"), "{err}");
    }
}
