//! Dapr's own view of the services' workflow instances, through a sidecar's
//! workflow HTTP API: what the engine says, and giving an instance up
//! behind a service's back (as the engine does when it loses or wedges one).

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::Value;
use todo_local_stack::Stack;

use super::{eventually, get_json, text};

fn instance_url(stack: &Stack, app: &str, instance_id: &str) -> String {
    format!(
        "{}/v1.0/workflows/dapr/{instance_id}",
        stack.dapr_http_url(app)
    )
}

/// Waits (up to `within`) until instance `instance_id` of `app` has status
/// `status` (`RUNNING`, `COMPLETED`, `TERMINATED`, …); Dapr's view of it.
pub async fn workflow_becomes(
    stack: &Stack,
    app: &str,
    instance_id: &str,
    status: &str,
    within: Duration,
) -> Result<Value> {
    let url = instance_url(stack, app, instance_id);
    eventually(within, &format!("{instance_id} is {status}"), || async {
        let w = get_json(&url, &stack.operator_token()).await?;
        Ok((w.status == 200 && text(&w.body, "/runtimeStatus") == status).then_some(w.body))
    })
    .await
}

/// Terminates running instance `instance_id` of `app` through its sidecar
/// and waits until Dapr shows it terminated: its work is left undone.
pub async fn terminate_workflow(stack: &Stack, app: &str, instance_id: &str) -> Result<()> {
    let url = instance_url(stack, app, instance_id);
    workflow_becomes(stack, app, instance_id, "RUNNING", Duration::from_secs(30)).await?;
    let res = reqwest::Client::new()
        .post(format!("{url}/terminate"))
        .timeout(Duration::from_secs(30))
        .send()
        .await?;
    ensure!(
        res.status().is_success(),
        "terminating {instance_id}: {}",
        res.status()
    );
    workflow_becomes(
        stack,
        app,
        instance_id,
        "TERMINATED",
        Duration::from_secs(30),
    )
    .await?;
    Ok(())
}
