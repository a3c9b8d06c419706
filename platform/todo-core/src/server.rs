//! The HTTP surface every service shares: `/health`, `/health/ready`,
//! `/metrics`, Swagger UI at `/docs`, the document at `/openapi.json`; request
//! metrics; a body-size limit; JSON problems for anything outside the typed API;
//! and serving with graceful shutdown.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use metrics_exporter_prometheus::PrometheusHandle;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler,
    http::StatusCode,
    listener::{AcceptorExt, TcpAcceptor},
    web::Data,
};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService, Tags, payload::Json};
use tokio_util::sync::CancellationToken;

use crate::problem::problem_response;

/// Tags shared by every service's OpenAPI document.
#[derive(Tags)]
pub enum SharedTags {
    /// Liveness and readiness probes.
    Health,
}

/// A dependency the service needs to be ready (its database, its sidecar).
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The named checks `/health/ready` runs, in order.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, ReadinessCheck)>,
}

impl Readiness {
    /// Adds a named check.
    pub fn with<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()))));
        self
    }
}

/// One readiness check's outcome.
#[derive(Debug, Object)]
pub struct CheckResult {
    /// What was checked, e.g. `database`.
    pub name: String,
    /// `ok`, or `failing`.
    pub status: String,
    /// Why it is failing.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
}

/// The readiness report.
#[derive(Debug, Object)]
pub struct ReadyReport {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Each dependency's outcome.
    pub checks: Vec<CheckResult>,
}

/// Liveness answer.
#[derive(Debug, Object)]
pub struct LiveReport {
    /// Always `ok` while the process serves requests.
    pub status: String,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Every dependency is reachable.
    #[oai(status = 200)]
    Ready(Json<ReadyReport>),
    /// At least one dependency is unreachable.
    #[oai(status = 503)]
    NotReady(Json<ReadyReport>),
}

/// `/health` and `/health/ready`, part of every service's OpenAPI document.
pub struct HealthApi;

#[OpenApi(tag = "SharedTags::Health")]
impl HealthApi {
    /// Liveness: the process is up and serving.
    #[oai(path = "/health", method = "get")]
    async fn live(&self) -> Json<LiveReport> {
        Json(LiveReport {
            status: "ok".to_owned(),
        })
    }

    /// Readiness: the service's database and Dapr sidecar are reachable.
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(&self, readiness: Data<&Readiness>) -> ReadyResponse {
        let mut checks = Vec::with_capacity(readiness.checks.len());
        for (name, check) in &readiness.checks {
            let outcome = tokio::time::timeout(Duration::from_secs(3), check())
                .await
                .unwrap_or_else(|_| Err("timed out after 3s".to_owned()));
            checks.push(CheckResult {
                name: (*name).to_owned(),
                status: if outcome.is_ok() { "ok" } else { "failing" }.to_owned(),
                detail: outcome.err(),
            });
        }
        let ready = checks.iter().all(|c| c.status == "ok");
        let report = ReadyReport {
            status: if ready { "ready" } else { "not_ready" }.to_owned(),
            checks,
        };
        if ready {
            ReadyResponse::Ready(Json(report))
        } else {
            ReadyResponse::NotReady(Json(report))
        }
    }
}

#[handler]
fn metrics_text(handle: Data<&PrometheusHandle>) -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// Everything a service's HTTP app is built from.
pub struct AppParts<T> {
    /// The service's OpenAPI service (its API plus [`HealthApi`]).
    pub api: OpenApiService<T, ()>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// What `/health/ready` checks.
    pub readiness: Readiness,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Routes outside the OpenAPI document: sidecar callbacks (subscriptions,
    /// job triggers), each guarded by its provider.
    pub callbacks: Vec<(&'static str, poem::endpoint::BoxEndpoint<'static>)>,
}

/// The OpenAPI document of `api` as the service serves it (`/openapi.json`)
/// and commits it (`openapi/<schema>.json`): poem-openapi's, made exact where
/// its derives cannot say it. Every request body of this platform refuses
/// unknown fields, so every schema a request body names gets
/// `additionalProperties: false`.
pub fn document<T: OpenApi>(api: &OpenApiService<T, ()>) -> String {
    let mut doc: serde_json::Value = match serde_json::from_str(&api.spec()) {
        Ok(doc) => doc,
        Err(_) => return api.spec(),
    };
    let mut bodies = Vec::new();
    for operation in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(serde_json::Value::as_object)
        .flat_map(|ops| ops.values())
    {
        for media in operation["requestBody"]["content"]
            .as_object()
            .into_iter()
            .flat_map(|c| c.values())
        {
            if let Some(name) = media["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                bodies.push(name.to_owned());
            }
        }
    }
    for name in bodies {
        if let Some(schema) = doc["components"]["schemas"][&name].as_object_mut() {
            schema.insert("additionalProperties".to_owned(), false.into());
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| api.spec())
}

/// The routes an app serves, as templates: documented paths (with their
/// methods, for the `Allow` header of a 405), sidecar callbacks, and the
/// fixed ones. Metrics are labelled with the template a path matches, so the
/// label set is bounded whatever paths callers send.
#[derive(Debug, Clone, Default)]
struct Routes {
    entries: Vec<RouteEntry>,
}

/// One route: its path segments (`None` for a parameter), its template, and
/// its methods (`None` where the document does not say).
#[derive(Debug, Clone)]
struct RouteEntry {
    segments: Vec<Option<String>>,
    template: String,
    methods: Option<String>,
}

/// The label of a path that matches no route.
const UNMATCHED: &str = "unmatched";

impl Routes {
    fn of(document: &str, callbacks: &[&str]) -> Self {
        let doc: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
        let segments = |template: &str| -> Vec<Option<String>> {
            template
                .split('/')
                .map(|s| (!s.starts_with('{') && !s.starts_with(':')).then(|| s.to_owned()))
                .collect()
        };
        let mut entries = Vec::new();
        for (template, ops) in doc["paths"].as_object().into_iter().flatten() {
            let methods: Vec<String> = ops
                .as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .map(|m| m.to_ascii_uppercase())
                .collect();
            entries.push(RouteEntry {
                segments: segments(template),
                template: template.clone(),
                methods: Some(methods.join(", ")),
            });
        }
        for fixed in ["/metrics", "/openapi.json"] {
            entries.push(RouteEntry {
                segments: segments(fixed),
                template: fixed.to_owned(),
                methods: Some("GET".to_owned()),
            });
        }
        for path in callbacks {
            let template = path
                .split('/')
                .map(|s| match s.strip_prefix(':') {
                    Some(name) => format!("{{{name}}}"),
                    None => s.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            entries.push(RouteEntry {
                segments: segments(path),
                template,
                methods: None,
            });
        }
        Routes { entries }
    }

    fn find(&self, path: &str) -> Option<&RouteEntry> {
        let given: Vec<&str> = path.split('/').collect();
        self.entries.iter().find(|e| {
            e.segments.len() == given.len()
                && e.segments
                    .iter()
                    .zip(&given)
                    .all(|(s, g)| s.as_deref().is_none_or(|s| s == *g))
        })
    }

    /// The documented methods of `path`.
    fn methods(&self, path: &str) -> Option<&str> {
        self.find(path).and_then(|e| e.methods.as_deref())
    }

    /// The metric label of `path`: its route template, `/docs` for Swagger
    /// UI, or `unmatched`.
    fn label(&self, path: &str) -> &str {
        if path == "/docs" || path.starts_with("/docs/") {
            return "/docs";
        }
        self.find(path).map_or(UNMATCHED, |e| e.template.as_str())
    }
}

/// Adds `Allow` to a 405 answer, naming the methods the path answers.
async fn allow_on_405<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    routes: Arc<Routes>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut response = ep.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(methods) = routes.methods(&path)
        && let Ok(value) = poem::http::HeaderValue::from_str(methods)
    {
        response
            .headers_mut()
            .insert(poem::http::header::ALLOW, value);
    }
    Ok(response)
}

/// Builds the full HTTP app: API, docs, metrics, limits and JSON errors.
pub fn build_app<T: OpenApi + 'static>(parts: AppParts<T>) -> impl Endpoint<Output = Response> {
    let AppParts {
        api,
        metrics,
        readiness,
        max_body_bytes,
        callbacks,
    } = parts;
    let docs = api.swagger_ui();
    let document = document(&api);
    let callback_paths: Vec<&str> = callbacks.iter().map(|(path, _)| *path).collect();
    let routes = Arc::new(Routes::of(&document, &callback_paths));
    let labels = routes.clone();
    let spec = poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(document.clone())
    });
    let mut route = Route::new();
    for (path, endpoint) in callbacks {
        route = route.at(path, endpoint);
    }
    route
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/metrics", get(metrics_text))
        .nest("/", api)
        .data(metrics)
        .data(readiness)
        .around(move |ep, req| limit_body(ep, req, max_body_bytes))
        .around(move |ep, req| record_request(ep, req, labels.clone()))
        .catch_all_error(|err| async move { problem_response(err) })
        .around(move |ep, req| allow_on_405(ep, req, routes.clone()))
}

/// Oversized bodies up to this size are read before the 413 is sent.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Rejects bodies over the limit with 413, whether or not they declare a length.
async fn limit_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    max: usize,
) -> poem::Result<Response> {
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        poem::Error::from_string(
            format!("request body exceeds the limit of {max} bytes"),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    };
    match declared {
        Some(n) if n > max => {
            // Read (and drop) a moderately oversized body before answering, so
            // the client gets the 413 instead of a broken pipe mid-upload.
            if n <= DRAIN_LIMIT {
                let _ = req.take_body().into_bytes_limit(DRAIN_LIMIT).await;
            }
            return Err(too_large());
        }
        Some(_) => {}
        None => {
            let body = req.take_body();
            let bytes = body.into_bytes_limit(max).await.map_err(|_| too_large())?;
            req.set_body(bytes);
        }
    }
    Ok(ep.call(req).await?.into_response())
}

/// Counts requests and their latency per method, route template and status.
async fn record_request<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    routes: Arc<Routes>,
) -> poem::Result<Response> {
    let method = match *req.method() {
        poem::http::Method::GET
        | poem::http::Method::POST
        | poem::http::Method::PUT
        | poem::http::Method::PATCH
        | poem::http::Method::DELETE
        | poem::http::Method::HEAD
        | poem::http::Method::OPTIONS => req.method().as_str().to_owned(),
        _ => "other".to_owned(),
    };
    let route = routes.label(req.uri().path()).to_owned();
    let started = std::time::Instant::now();
    let result = ep.call(req).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(r) => r.status(),
        Err(e) => e.status(),
    };
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    result
}

/// Where a service listens: its public API (users, probes, the Kubernetes
/// Service) and, on loopback, the port only its sidecar calls.
pub struct Listeners {
    pub public: tokio::net::TcpListener,
    pub internal: tokio::net::TcpListener,
}

impl Listeners {
    /// The public address actually bound.
    pub fn public_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.public.local_addr()
    }

    /// The internal (sidecar) address actually bound.
    pub fn internal_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.internal.local_addr()
    }
}

/// In a request's extensions when it arrived on the internal listener, the
/// one only the sidecar reaches: internal calls (service invocation) and the
/// sidecar's callbacks are accepted only with it.
#[derive(Debug, Clone, Copy)]
pub struct ViaSidecar;

/// Path prefixes only the sidecar calls: its configuration and subscription
/// reads (`/dapr/…`), topic deliveries (`/events/<topic>`, see
/// [`crate::consumer`]) and job triggers (`/job/<name>`). The public port
/// answers them 404.
pub const SIDECAR_ONLY_PREFIXES: &[&str] = &["/dapr/", "/events/", "/job/"];

/// Header the sidecar puts on every call to its app (the app API token).
pub const SIDECAR_TOKEN_HEADER: &str = "dapr-api-token";

/// Marks requests of the internal listener with [`ViaSidecar`]; on the
/// public one, answers the sidecar's paths 404 and any request carrying the
/// sidecar's token header 401, so whoever learns the token still cannot call
/// in from outside.
async fn by_listener<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    internal_port: u16,
) -> poem::Result<Response> {
    let internal = req
        .local_addr()
        .as_socket_addr()
        .is_some_and(|a| a.port() == internal_port && a.ip().is_loopback());
    if internal {
        req.extensions_mut().insert(ViaSidecar);
    } else if SIDECAR_ONLY_PREFIXES
        .iter()
        .any(|p| req.uri().path().starts_with(p))
    {
        return Err(poem::Error::from_status(StatusCode::NOT_FOUND));
    } else if req.headers().contains_key(SIDECAR_TOKEN_HEADER) {
        tracing::warn!(
            path = %req.uri().path(),
            "a request with the sidecar's token header came in on the public port; refused"
        );
        return Err(crate::auth::AuthError::Invalid(format!(
            "`{SIDECAR_TOKEN_HEADER}` is accepted only on the port the Dapr sidecar calls, \
             never on the public one"
        ))
        .into());
    }
    Ok(ep.call(req).await?.into_response())
}

/// Serves `app` on both listeners until `shutdown` is cancelled, then lets
/// in-flight requests finish for up to ten seconds. Requests of the internal
/// listener carry [`ViaSidecar`]; see [`by_listener`] for the public one.
pub async fn serve(
    listeners: Listeners,
    app: impl Endpoint + 'static,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let internal_port = listeners.internal_addr()?.port();
    let acceptor = TcpAcceptor::from_tokio(listeners.public)?
        .combine(TcpAcceptor::from_tokio(listeners.internal)?);
    let app = app
        .around(move |ep, req| by_listener(ep, req, internal_port))
        .catch_all_error(|err| async move { problem_response(err) });
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            app,
            async move { shutdown.cancelled().await },
            Some(Duration::from_secs(10)),
        )
        .await
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn stop_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = ctrl_c.await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}

/// Checks that the committed document at `path` is `current` (what the
/// service serves); the error shows the difference as a unified diff and
/// says how to regenerate it.
pub fn check_committed_document(current: &str, path: &std::path::Path) -> Result<(), String> {
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed.trim_end() == current.trim_end() {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(committed.trim_end(), current.trim_end())
        .unified_diff()
        .context_radius(3)
        .header("committed", "current")
        .to_string();
    Err(format!(
        "{} is stale: run `cargo xtask openapi` and commit the result\n{diff}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::Routes;

    const DOC: &str = r#"{"paths": {"/api/v1/tasks": {"get": {}, "post": {}},
                                   "/api/v1/tasks/{id}": {"get": {}, "delete": {}},
                                   "/api/v1/tasks/{id}/complete": {"post": {}}}}"#;

    #[test]
    fn a_405_names_the_methods_of_the_documented_path() {
        let routes = Routes::of(DOC, &[]);
        assert_eq!(routes.methods("/api/v1/tasks"), Some("GET, POST"));
        assert_eq!(routes.methods("/api/v1/tasks/abc"), Some("DELETE, GET"));
        assert_eq!(routes.methods("/metrics"), Some("GET"));
        assert_eq!(routes.methods("/api/v1/other"), None);
    }

    #[test]
    fn metric_labels_are_route_templates_and_bounded() {
        let routes = Routes::of(DOC, &["/job/:name", "/events/:topic", "/ws"]);
        assert_eq!(
            routes.label("/api/v1/tasks/0b7f0a54-3c0e-4b0e-9a47-6f1f8d1c2b3a/complete"),
            "/api/v1/tasks/{id}/complete"
        );
        assert_eq!(
            routes.label("/api/v1/tasks/not-even-a-uuid"),
            "/api/v1/tasks/{id}"
        );
        assert_eq!(routes.label("/health/ready/x"), "unmatched");
        assert_eq!(routes.label("/docs/swagger-ui.css"), "/docs");
        let mut labels = std::collections::HashSet::new();
        for n in 0..3000 {
            labels.insert(routes.label(&format!("/job/reminder-{n}")).to_owned());
            labels.insert(routes.label(&format!("/nope/{n}")).to_owned());
            labels.insert(routes.label(&format!("/{n}")).to_owned());
        }
        let mut labels: Vec<_> = labels.into_iter().collect();
        labels.sort();
        assert_eq!(labels, ["/job/{name}", "unmatched"]);
    }
}
