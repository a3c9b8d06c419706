//! The topics seen with `kcat`, a Kafka client that is not Dapr, so what the
//! tests read is what is really on the broker: reading records (CloudEvents
//! parsed) and producing records as a foreign producer would.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use todo_local_stack::Stack;

use super::eventually;

/// One Kafka record as `kcat -J` shows it, with the CloudEvent parsed.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub cloud_event: Value,
}

impl Record {
    /// The envelope (the CloudEvent's `data`).
    pub fn envelope(&self) -> &Value {
        &self.cloud_event["data"]
    }
}

/// Everything on `topic`, read from the beginning with kcat.
pub async fn read_topic(stack: &Stack, topic: &str) -> Result<Vec<Record>> {
    Ok(todo_local_stack::read_topic(&stack.kafka_brokers(), topic)
        .await?
        .into_iter()
        .map(|r| Record {
            key: r.key,
            cloud_event: serde_json::from_str(&r.value).unwrap_or(Value::String(r.value)),
        })
        .collect())
}

/// The records on `topic` about `task_id`, in offset order.
pub async fn task_records(stack: &Stack, topic: &str, task_id: &str) -> Result<Vec<Record>> {
    Ok(read_topic(stack, topic)
        .await?
        .into_iter()
        .filter(|r| r.envelope()["task_id"] == task_id)
        .collect())
}

/// Waits until `topic` holds exactly `n` records about `task_id` and returns them.
/// Writes answer only after their events are on Kafka, so this normally
/// succeeds on the first read; the deadline absorbs kcat's own start-up.
pub async fn expect_records(
    stack: &Stack,
    topic: &str,
    task_id: &str,
    n: usize,
) -> Result<Vec<Record>> {
    let records = eventually(
        Duration::from_secs(10),
        &format!("{n} records for {task_id} on {topic}"),
        || async {
            let r = task_records(stack, topic, task_id).await?;
            Ok((r.len() >= n).then_some(r))
        },
    )
    .await?;
    if records.len() != n {
        bail!(
            "expected {n} records for {task_id} on {topic}, found {}: {records:#?}",
            records.len()
        );
    }
    Ok(records)
}

/// Produces one record onto `topic` with kcat, as a producer that is not Dapr.
pub async fn produce(stack: &Stack, topic: &str, key: &str, value: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kcat")
        .args(["-b", &stack.kafka_brokers(), "-P", "-t", topic, "-k", key])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running kcat -P")?;
    let mut stdin = child.stdin.take().context("kcat stdin")?;
    stdin.write_all(value.as_bytes()).await?;
    stdin.write_all(b"\n").await?;
    drop(stdin);
    let status = child.wait().await?;
    if !status.success() {
        bail!("kcat -P failed");
    }
    Ok(())
}
