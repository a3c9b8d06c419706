//! The Dapr sidecar as a service sees it.
//!
//! Publishing and secrets go over the sidecar's gRPC API with the `dapr` crate's
//! generated client (bulk publish is not wrapped by its high-level `Client`);
//! health goes over the HTTP API. The channel connects lazily and reconnects by
//! itself, so a sidecar restart needs no action from the service.

use std::{collections::HashMap, time::Duration};

use dapr::client::ApiTokenInterceptor;
use dapr::dapr::proto::runtime::v1::{
    BulkPublishRequest, BulkPublishRequestEntry, GetSecretRequest, dapr_client::DaprClient,
};
use secrecy::{ExposeSecret, SecretString};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::settings::DaprSettings;
use todo_contract::{EventEnvelope, PUBSUB_NAME, Topic};

type Grpc = DaprClient<InterceptedService<Channel, ApiTokenInterceptor>>;

/// Why a call to the sidecar failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SidecarError {
    /// The sidecar did not answer at all (not running, not listening yet).
    #[error("Dapr sidecar unreachable: {0}")]
    Unreachable(String),
    /// The sidecar answered but could not do it (e.g. the broker is down).
    #[error("Dapr sidecar could not complete the call: {0}")]
    Failed(String),
    /// The sidecar refused the request itself (an unknown component, an
    /// invalid argument): the same request will be refused again.
    #[error("Dapr sidecar refused the call: {0}")]
    Refused(String),
    /// The sidecar did not finish within the deadline.
    #[error("Dapr sidecar call timed out after {0:?}")]
    Timeout(Duration),
    /// The local configuration is unusable (bad address or token).
    #[error("Dapr client misconfigured: {0}")]
    Config(String),
}

impl From<SidecarError> for crate::intent::ActError {
    fn from(e: SidecarError) -> Self {
        match e {
            SidecarError::Refused(_) => Self::Refused(e.to_string()),
            _ => Self::Transient(e.to_string()),
        }
    }
}

impl From<tonic::Status> for SidecarError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::Unavailable => SidecarError::Unreachable(s.message().to_owned()),
            tonic::Code::DeadlineExceeded => {
                SidecarError::Failed(format!("deadline exceeded: {}", s.message()))
            }
            code if crate::intent::refuses_grpc(code) => {
                SidecarError::Refused(format!("{code:?}: {}", s.message()))
            }
            _ => SidecarError::Failed(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

/// One event to publish: its id (reported back on failure), the Kafka record key
/// and the serialized CloudEvent.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    pub entry_id: String,
    pub partition_key: String,
    pub cloud_event: Vec<u8>,
}

/// A cheap-to-clone handle on the app's sidecar.
#[derive(Clone)]
pub struct Sidecar {
    grpc: Grpc,
    http: reqwest::Client,
    http_base: String,
    call_timeout: Duration,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("http_base", &self.http_base)
            .finish()
    }
}

impl Sidecar {
    /// A handle on the sidecar named by `settings`. Connects lazily: this never
    /// fails because the sidecar is down. `call_timeout` bounds every gRPC call.
    pub fn new(settings: &DaprSettings, call_timeout: Duration) -> Result<Self, SidecarError> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!(
            "http://127.0.0.1:{}",
            settings.dapr_grpc_port
        ))
        .map_err(|e| SidecarError::Config(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
        let token = settings
            .dapr_api_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        let interceptor = ApiTokenInterceptor::try_new(token.clone())
            .map_err(|e| SidecarError::Config(e.to_string()))?;
        let grpc = DaprClient::with_interceptor(endpoint.connect_lazy(), interceptor)
            .max_decoding_message_size(16 * 1024 * 1024);
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let value = reqwest::header::HeaderValue::from_str(&token)
                .map_err(|e| SidecarError::Config(format!("DAPR_API_TOKEN: {e}")))?;
            headers.insert("dapr-api-token", value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(call_timeout)
            .build()
            .map_err(|e| SidecarError::Config(e.to_string()))?;
        Ok(Sidecar {
            grpc,
            http,
            http_base: format!("http://127.0.0.1:{}", settings.dapr_http_port),
            call_timeout,
        })
    }

    /// The sidecar's HTTP API base URL, e.g. `http://127.0.0.1:3500`.
    pub fn http_base(&self) -> &str {
        &self.http_base
    }

    /// An HTTP client that carries the app → sidecar token, for calls such as
    /// service invocation (`/v1.0/invoke/<app-id>/method/...`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Waits until the sidecar's API is up and its components are loaded
    /// (`/v1.0/healthz/outbound`), which happens before the sidecar waits for the
    /// app's port — so a service can read its secrets before it listens.
    pub async fn wait_until_outbound_ready(&self, within: Duration) -> Result<(), SidecarError> {
        let deadline = tokio::time::Instant::now() + within;
        let url = format!("{}/v1.0/healthz/outbound", self.http_base);
        loop {
            let last = match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("{url} answered {}", r.status()),
                Err(e) => format!("{url}: {e}"),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(SidecarError::Unreachable(last));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the sidecar reports itself healthy (`/v1.0/healthz` answers 204).
    pub async fn check_health(&self) -> Result<(), SidecarError> {
        let url = format!("{}/v1.0/healthz", self.http_base);
        match self
            .http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(SidecarError::Failed(format!(
                "sidecar not ready ({}): {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ))),
            Err(e) => Err(SidecarError::Unreachable(e.to_string())),
        }
    }

    /// Reads one secret (all its keys) from a Dapr secret store.
    pub async fn secret(
        &self,
        store: &str,
        name: &str,
    ) -> Result<HashMap<String, SecretString>, SidecarError> {
        let mut grpc = self.grpc.clone();
        let request = GetSecretRequest {
            store_name: store.to_owned(),
            key: name.to_owned(),
            metadata: HashMap::new(),
        };
        let response = tokio::time::timeout(self.call_timeout, grpc.get_secret(request))
            .await
            .map_err(|_| SidecarError::Timeout(self.call_timeout))??;
        Ok(response
            .into_inner()
            .data
            .into_iter()
            .map(|(k, v)| (k, SecretString::from(v)))
            .collect())
    }

    /// Publishes CloudEvents to `topic` in one bulk call, in the given order.
    ///
    /// Returns `(entry id, error)` for each entry the broker did not accept
    /// (empty when all were published). An `Err` means none can be assumed
    /// published.
    pub async fn bulk_publish(
        &self,
        topic: Topic,
        events: &[OutgoingEvent],
    ) -> Result<Vec<(String, String)>, SidecarError> {
        self.bulk_publish_to(topic.name(), events).await
    }

    /// [`Sidecar::bulk_publish`] to a topic named outside [`Topic`] (a
    /// dead-letter topic).
    pub async fn bulk_publish_to(
        &self,
        topic: &str,
        events: &[OutgoingEvent],
    ) -> Result<Vec<(String, String)>, SidecarError> {
        let entries = events
            .iter()
            .map(|e| BulkPublishRequestEntry {
                entry_id: e.entry_id.clone(),
                event: e.cloud_event.clone(),
                content_type: "application/cloudevents+json".to_owned(),
                metadata: HashMap::from([("partitionKey".to_owned(), e.partition_key.clone())]),
            })
            .collect();
        let request = BulkPublishRequest {
            pubsub_name: PUBSUB_NAME.to_owned(),
            topic: topic.to_owned(),
            entries,
            metadata: HashMap::new(),
        };
        let mut grpc = self.grpc.clone();
        let response = tokio::time::timeout(self.call_timeout, grpc.bulk_publish_event(request))
            .await
            .map_err(|_| SidecarError::Timeout(self.call_timeout))??;
        Ok(response
            .into_inner()
            .failed_entries
            .into_iter()
            .map(|f| (f.entry_id, f.error))
            .collect())
    }

    /// Publishes one event to `topic` as its CloudEvent (id = `event_id`,
    /// source = `source`), keyed by its task id. `Ok` only once the broker
    /// has it.
    pub async fn publish<P: serde::Serialize>(
        &self,
        topic: Topic,
        event: &EventEnvelope<P>,
        source: &str,
    ) -> Result<(), SidecarError> {
        let cloud_event = serde_json::to_vec(&event.to_cloud_event(source))
            .map_err(|e| SidecarError::Config(format!("serializing the event: {e}")))?;
        let outgoing = OutgoingEvent {
            entry_id: event.event_id.to_string(),
            partition_key: event.task_id.to_string(),
            cloud_event,
        };
        match self
            .bulk_publish(topic, &[outgoing])
            .await?
            .into_iter()
            .next()
        {
            None => Ok(()),
            Some((_, error)) => Err(SidecarError::Failed(error)),
        }
    }
}
