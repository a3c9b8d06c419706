//! Shared pieces of the Todo platform's services: Dapr glue, start-up, HTTP
//! surface, errors, logs and metrics. The event contract itself is the
//! `todo-contract` crate.
//!
//! - [`auth`]: who is calling: bearer tokens, roles, calls through Dapr.
//! - [`bootstrap`]: start-up steps every service shares.
//! - [`consumer`]: subscribing through Dapr: token check, schema gate, inbox.
//! - [`sidecar`]: the Dapr sidecar as the services see it: secrets, bulk publishing
//!   of CloudEvents, health.
//! - [`problem`]: the JSON error body every API answers with, and its HTTP mapping.
//! - [`server`]: health/readiness/metrics endpoints, request metrics, body limits,
//!   JSON errors for everything outside the typed APIs, graceful serving.
//! - [`telemetry`]: JSON logs and the Prometheus recorder.
//! - [`text`]: a strict JSON string type for request bodies.
//! - [`settings`]: the environment every service reads at start-up.
//! - [`database`]: the PostgreSQL pool, from credentials in the Dapr secret store.
//! - [`workflow`]: hosting Dapr Workflows: the worker, idempotent instance starts.
//! - [`intent`]: remote calls recorded in a transaction and made after it commits.

pub mod auth;
pub mod bootstrap;
pub mod consumer;
pub mod database;
pub mod intent;
pub mod problem;
pub mod server;
pub mod settings;
pub mod sidecar;
pub mod telemetry;
pub mod text;
pub mod workflow;
