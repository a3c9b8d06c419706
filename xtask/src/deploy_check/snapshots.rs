//! What the chart renders for each values file, pinned for review as insta
//! snapshots in `snapshots/helm/` (style: rendered Helm manifests are read
//! by humans). Generated secrets are fixed through values or redacted, so a
//! change shows only what a template change made.

use serde::Deserialize;
use serde_yaml::Value;

use super::*;

/// Fixed values for the secrets values can set.
const FIXED: [&str; 7] = [
    "appApiTokens.todo-service=snapshot-todo-service-token",
    "appApiTokens.audit-service=snapshot-audit-service-token",
    "appApiTokens.websocket-service=snapshot-websocket-service-token",
    "appApiTokens.notification-service=snapshot-notification-service-token",
    "appApiTokens.recurring-task-service=snapshot-recurring-task-service-token",
    "auth.signingKey=snapshot-signing-key-0123456789abcdef0123456789abcdef",
    "postgresql.adminPassword=snapshot-admin-password",
];

/// The role passwords (generated, no value sets them) become `<generated>`,
/// in `password` and inside `url`.
fn redact(doc: &mut Value) {
    if doc["kind"] != "Secret" {
        return;
    }
    let Some(data) = doc.get_mut("stringData").and_then(Value::as_mapping_mut) else {
        return;
    };
    let Some(password) = data
        .get("password")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    if password.starts_with("snapshot-") {
        return;
    }
    for (_, v) in data.iter_mut() {
        if let Some(s) = v.as_str() {
            *v = Value::from(s.replace(&password, "<generated>"));
        }
    }
}

async fn snapshot(values: &[&str]) -> String {
    let helm = Helm::provision().await.unwrap();
    let text = render(&helm, values, &FIXED).await.unwrap();
    let mut out = String::new();
    for d in serde_yaml::Deserializer::from_str(&text) {
        let mut doc = Value::deserialize(d).unwrap();
        if doc.is_null() {
            continue;
        }
        redact(&mut doc);
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&doc).unwrap());
    }
    out
}

fn pinned(name: &str, text: &str) {
    insta::with_settings!({ snapshot_path => "../../../snapshots/helm", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, text);
    });
}

#[tokio::test]
async fn default_values_render_as_pinned() {
    pinned("default", &snapshot(&[]).await);
}

#[tokio::test]
async fn minikube_values_render_as_pinned() {
    pinned("minikube", &snapshot(&[VALUES_FILES[0]]).await);
}

#[tokio::test]
async fn external_values_render_as_pinned() {
    pinned("external", &snapshot(&[VALUES_FILES[1]]).await);
}
