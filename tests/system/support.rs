//! What the system tests share to act as a user and to look at the stack from
//! outside: clients of the services' HTTP APIs and WebSocket streams, a
//! headless browser for the live page, a terminal (tmux) for the console, forged tokens, `kcat` on the topics, a superuser
//! connection to PostgreSQL, and polling with a deadline. The story modules
//! import from here; nothing here asserts a story's behaviour.

mod browser;
mod db;
mod env;
mod http;
mod kafka;
pub mod terminal;
mod todo_api;
mod tokens;
mod wait;
mod websocket;
mod workflows;

use serde_json::Value;

pub use browser::Browser;
pub use db::admin_db;
pub use env::with_service_env;
pub use http::{Answer, get_json, metric, service_log_lines, service_metric};
pub use kafka::{Record, expect_records, produce, read_topic, task_records};
pub use todo_api::TodoClient;
pub use tokens::{claims, hs256, now, with};
pub use wait::eventually;
pub use websocket::{WsClient, close_frame, handshake, ws_url, ws_url_at};
pub use workflows::terminate_workflow;

/// The string at `pointer` in `v` (empty when absent or not a string).
pub fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}
