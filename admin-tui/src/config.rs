//! The console's settings, read once from flags and `TODO_ADMIN_*`
//! environment variables, with the local stack's addresses as defaults.

use std::path::PathBuf;

use clap::Parser;

use crate::token::TokenSource;

/// The Todo platform's operator console.
///
/// Watches every user's updates live, shows a task's audit trail, lists
/// notifications (and retries failed ones), recurring series and reminders,
/// and the services' health. Press `?` inside for the keys.
#[derive(Debug, Clone, Parser)]
#[command(name = "todo-admin", version)]
pub struct Config {
    /// The Todo service.
    #[arg(
        long,
        env = "TODO_ADMIN_TODO_URL",
        default_value = "http://127.0.0.1:8001"
    )]
    pub todo_url: String,
    /// The audit service.
    #[arg(
        long,
        env = "TODO_ADMIN_AUDIT_URL",
        default_value = "http://127.0.0.1:8002"
    )]
    pub audit_url: String,
    /// The WebSocket service (its operator stream is `/ws/operator`).
    #[arg(
        long,
        env = "TODO_ADMIN_WEBSOCKET_URL",
        default_value = "http://127.0.0.1:8003"
    )]
    pub websocket_url: String,
    /// The notification service.
    #[arg(
        long,
        env = "TODO_ADMIN_NOTIFICATION_URL",
        default_value = "http://127.0.0.1:8004"
    )]
    pub notification_url: String,
    /// The recurring-task service.
    #[arg(
        long,
        env = "TODO_ADMIN_RECURRING_URL",
        default_value = "http://127.0.0.1:8005"
    )]
    pub recurring_url: String,
    /// A bearer token with the operator role. Without it the console mints
    /// one from the local stack's state folder (as `cargo xtask token
    /// --operator` does), and mints again before it expires.
    #[arg(long, env = "TODO_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The local stack's state folder, to mint a token from (default: the
    /// one `cargo xtask up` uses).
    #[arg(long, env = "TODO_ADMIN_STATE_DIR", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The subject of a minted token.
    #[arg(long, default_value = "operator", value_name = "ID")]
    pub subject: String,
    /// How many rows the Live view keeps in memory; the oldest go first.
    #[arg(long, env = "TODO_ADMIN_BUFFER", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    pub buffer: u32,
    /// Replay the stream after this cursor first (default: live from now).
    #[arg(long, value_name = "SEQ")]
    pub since: Option<i64>,
}

/// The services' base URLs, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub todo: String,
    pub audit: String,
    pub websocket: String,
    pub notification: String,
    pub recurring: String,
}

impl Endpoints {
    /// The local stack's addresses.
    pub fn local() -> Self {
        Endpoints::from_urls([
            "http://127.0.0.1:8001",
            "http://127.0.0.1:8002",
            "http://127.0.0.1:8003",
            "http://127.0.0.1:8004",
            "http://127.0.0.1:8005",
        ])
    }

    /// From the Todo, audit, WebSocket, notification and recurring-task URLs.
    pub fn from_urls(urls: [&str; 5]) -> Self {
        let [todo, audit, websocket, notification, recurring] =
            urls.map(|u| u.trim_end_matches('/').to_owned());
        Endpoints {
            todo,
            audit,
            websocket,
            notification,
            recurring,
        }
    }

    /// Every service with its app id, in the README's order.
    pub fn services(&self) -> Vec<(&'static str, String)> {
        vec![
            ("todo-service", self.todo.clone()),
            ("audit-service", self.audit.clone()),
            ("websocket-service", self.websocket.clone()),
            ("notification-service", self.notification.clone()),
            ("recurring-task-service", self.recurring.clone()),
        ]
    }

    /// The operator stream's URL, resuming after `since` when given.
    pub fn operator_stream(&self, since: Option<i64>) -> String {
        let base = self.websocket.replacen("http", "ws", 1);
        match since {
            Some(s) => format!("{base}/ws/operator?since={s}"),
            None => format!("{base}/ws/operator"),
        }
    }
}

impl Config {
    pub fn endpoints(&self) -> Endpoints {
        Endpoints::from_urls([
            &self.todo_url,
            &self.audit_url,
            &self.websocket_url,
            &self.notification_url,
            &self.recurring_url,
        ])
    }

    /// The token given, or tokens minted from the local stack's state.
    pub fn token_source(&self) -> TokenSource {
        if let Some(token) = self.token.as_ref().filter(|t| !t.trim().is_empty()) {
            let from = if std::env::var_os("TODO_ADMIN_TOKEN").is_some() {
                "TODO_ADMIN_TOKEN"
            } else {
                "--token"
            };
            return TokenSource::given(token.trim().to_owned(), from);
        }
        TokenSource::local_stack(self.state_dir(), &self.subject)
    }

    fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state {
            return dir.clone();
        }
        #[cfg(feature = "local-stack")]
        {
            todo_local_stack::StackOptions::local().state_dir
        }
        #[cfg(not(feature = "local-stack"))]
        {
            PathBuf::from(".state")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_url_follows_the_websocket_service() {
        let e = Endpoints::from_urls(["a", "b", "http://h:8003/", "d", "e"]);
        assert_eq!(e.operator_stream(None), "ws://h:8003/ws/operator");
        assert_eq!(
            e.operator_stream(Some(42)),
            "ws://h:8003/ws/operator?since=42"
        );
        let tls = Endpoints::from_urls(["a", "b", "https://h", "d", "e"]);
        assert_eq!(tls.operator_stream(None), "wss://h/ws/operator");
    }

    #[test]
    fn defaults_are_the_local_stack() {
        let config = Config::parse_from(["todo-admin"]);
        assert_eq!(config.endpoints(), Endpoints::local());
        assert_eq!(config.buffer, 10_000);
    }
}
