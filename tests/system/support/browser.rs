//! Headless Chromium driven over WebDriver (`fantoccini` against Debian's
//! `chromedriver`), for the live page: one fresh profile per browser, the
//! driver's log in the stack's logs folder.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use todo_local_stack::Stack;

use super::eventually;

/// Headless Chromium behind Debian's chromedriver: `stop` ends the session
/// (and Chromium); chromedriver is also killed on drop.
pub struct Browser {
    driver: tokio::process::Child,
    pub client: fantoccini::Client,
    _profile: TempDir,
}

/// A profile folder, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session (within 20 s).
    pub async fn start(stack: &Stack) -> Result<Browser> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let log = std::fs::File::create(stack.logs_dir().join("chromedriver.log"))?;
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver (Debian package chromium-driver)")?;
        let profile =
            TempDir(std::env::temp_dir().join(format!("todo-live-page-{}", uuid::Uuid::new_v4())));
        std::fs::create_dir_all(&profile.0)?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually(Duration::from_secs(20), "chromedriver session", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                Ok(fantoccini::ClientBuilder::new(
                    hyper_util::client::legacy::connect::HttpConnector::new(),
                )
                .capabilities(caps)
                .connect(&url)
                .await
                .ok())
            }
        })
        .await?;
        Ok(Browser {
            driver,
            client,
            _profile: profile,
        })
    }

    /// Evaluates `expr` in the current tab.
    pub async fn eval(&self, expr: &str) -> Result<Value> {
        Ok(self
            .client
            .execute(&format!("return {expr};"), vec![])
            .await?)
    }

    /// Ends the session (closing Chromium), then kills chromedriver.
    pub async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}
