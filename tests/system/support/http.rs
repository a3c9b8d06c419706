//! HTTP answers as the tests look at them (status, content type, JSON body),
//! and plain reads of any service: a JSON document, a Prometheus sample.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// An HTTP answer: status and JSON body (Null when empty).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Answer {
    /// The answer's body, after checking the status.
    pub fn expect(self, status: u16) -> Result<Value> {
        if self.status != status {
            bail!(
                "expected HTTP {status}, got {} with {}",
                self.status,
                self.body
            );
        }
        Ok(self.body)
    }

    /// Reads a response: its status, content type and body (JSON if it
    /// parses, else the text as a JSON string).
    pub async fn read(res: reqwest::Response) -> Result<Answer> {
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

/// GETs a JSON document from any service as the holder of `token`.
pub async fn get_json(url: &str, token: &str) -> Result<Answer> {
    let res = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    Answer::read(res).await
}

/// The value of one Prometheus sample (0 when absent), e.g.
/// `events_skipped_total{reason="unknown_schema_version"}`.
pub async fn metric(base_url: &str, sample: &str) -> Result<f64> {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0))
}

/// One Prometheus sample summed over every replica of a service (a counter
/// or gauge of the service as a whole).
pub async fn service_metric(
    stack: &todo_local_stack::Stack,
    app_id: &str,
    sample: &str,
) -> Result<f64> {
    let mut total = 0.0;
    for base in stack.app_urls(app_id) {
        total += metric(&base, sample).await?;
    }
    Ok(total)
}

/// The log lines of every replica of a service, each with the replica's
/// number (0 for the first).
pub fn service_log_lines(
    stack: &todo_local_stack::Stack,
    app_id: &str,
) -> Result<Vec<(u16, String)>> {
    let mut lines = Vec::new();
    for replica in stack.replicas(app_id) {
        let path = stack.logs_dir().join(format!("{}.log", replica.name()));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        lines.extend(text.lines().map(|l| (replica.index, l.to_owned())));
    }
    Ok(lines)
}
