//! Waiting on a condition with a deadline, never on a bare sleep: every
//! observation of something asynchronous (a record on Kafka, a row written by
//! a consumer, a workflow's state) goes through [`eventually`].

use std::{future::Future, time::Duration};

use anyhow::{Result, bail};

/// Polls `check` every 100 ms until it returns `Some`, or fails after `within`
/// with the last observation.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not true within {within:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
