//! `todo-admin`, the operators' terminal console of the Todo platform.
//!
//! It talks to the services only over HTTP and the WebSocket service's
//! operator stream, with an operator's bearer token, and is built the way
//! well-kept ratatui applications are:
//! - [`state`]: everything the console knows, as plain data;
//! - [`action`]: what can happen (keys, ticks, answers, stream messages) and
//!   what the update asks for ([`action::Command`]);
//! - [`update`]: the one pure state transition, unit-tested;
//! - [`render`]: drawing only, snapshot-tested through ratatui's `TestBackend`;
//! - [`app`]: the `tokio::select!` loop that joins them, [`keys`] the key map;
//! - [`client`] and [`stream`]: the HTTP calls and the operator stream, on
//!   their own tasks; [`token`]: the operator's token; [`terminal`]: taking
//!   the terminal and always giving it back.

pub mod action;
pub mod app;
pub mod client;
pub mod config;
pub mod fixture;
pub mod keys;
pub mod model;
pub mod render;
pub mod state;
pub mod stream;
pub mod terminal;
pub mod token;
pub mod update;
