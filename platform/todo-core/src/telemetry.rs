//! Logs and metrics set up once per process.
//!
//! Logs: one JSON object per line on stdout, with the fields of the current span
//! flattened in (so a `task_id` recorded on an instrumented function appears on
//! every line it logs). Filter with `RUST_LOG` (default `info`).
//! Metrics: a Prometheus recorder whose text the `/metrics` route renders.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the JSON log subscriber. Safe to call more than once (later calls
/// do nothing), so tests can call it freely.
pub fn init_logging(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    tracing::debug!(service, "logging initialised");
}

/// Installs the global Prometheus recorder and returns the handle that renders
/// it. A second call returns a fresh, unregistered handle (tests).
pub fn init_metrics() -> PrometheusHandle {
    let builder = PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .unwrap_or_else(|_| PrometheusBuilder::new());
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    let _ = metrics::set_global_recorder(recorder);
    handle
}
