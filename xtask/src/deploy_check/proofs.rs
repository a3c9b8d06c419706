//! The chart judged by the tools a cluster's pipeline would use: `helm lint
//! --strict`; kubeconform `-strict` (Kubernetes 1.37 and Dapr CRD schemas)
//! of what `helm template` renders for the default, Minikube and external
//! values; the helm-unittest suites of its logic; and `values.schema.json`
//! refusing a wrong type and an unknown key.

use super::*;

async fn helm() -> Helm {
    Helm::provision().await.unwrap()
}

#[tokio::test]
async fn chart_lints_strictly_with_each_values_file() {
    lint(&helm().await).await.unwrap();
}

/// Renders with `values`, validates, and returns the manifests.
async fn valid(values: &[&str]) -> String {
    let helm = helm().await;
    let manifests = render(&helm, values, &[]).await.unwrap();
    let kubeconform = Kubeconform::provision().await.unwrap();
    let summary = validate(&kubeconform, &manifests).await.unwrap();
    assert!(
        summary.contains("Invalid: 0, Errors: 0, Skipped: 0"),
        "{summary}"
    );
    manifests
}

fn kinds(manifests: &str) -> Vec<String> {
    let mut kinds: Vec<String> = manifests
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_owned)
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[tokio::test]
async fn default_values_render_valid_manifests_with_dev_postgresql_and_kafka() {
    let manifests = valid(&[]).await;
    let kinds = kinds(&manifests);
    for kind in [
        "Component",
        "Configuration",
        "Deployment",
        "Job",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Resiliency",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "StatefulSet",
        "Pod",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    assert!(manifests.contains("name: todo-postgresql"));
    assert!(manifests.contains("name: todo-kafka"));
}

#[tokio::test]
async fn minikube_values_render_valid_manifests_with_an_ingress() {
    let manifests = valid(&[VALUES_FILES[0]]).await;
    assert!(kinds(&manifests).iter().any(|k| k == "Ingress"));
    assert!(manifests.contains("imagePullPolicy: Never"));
}

#[tokio::test]
async fn external_values_render_valid_manifests_without_postgresql_or_kafka() {
    let manifests = valid(&[VALUES_FILES[1]]).await;
    assert!(!kinds(&manifests).iter().any(|k| k == "StatefulSet"));
    assert!(manifests.contains("name: todo-db-provision-1"));
    assert!(manifests.contains("kafka-0.kafka.example.internal:9092"));
}

#[tokio::test]
async fn everything_optional_on_renders_valid_manifests() {
    let helm = helm().await;
    let manifests = render(
        &helm,
        &[VALUES_FILES[0]],
        &[
            "autoscaling.enabled=true",
            "ingress.tlsSecretName=todo-tls",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
            "auth.jwksUrl=https://id.example/jwks.json",
        ],
    )
    .await
    .unwrap();
    let kubeconform = Kubeconform::provision().await.unwrap();
    let summary = validate(&kubeconform, &manifests).await.unwrap();
    assert!(summary.contains("Invalid: 0, Errors: 0"), "{summary}");
    assert!(
        kinds(&manifests)
            .iter()
            .any(|k| k == "HorizontalPodAutoscaler")
    );
}

#[tokio::test]
async fn chart_unit_tests_pass() {
    let report = unittest(&helm().await).await.unwrap();
    assert!(report.contains("Tests:"), "{report}");
    assert!(!report.contains("failed"), "{report}");
}

async fn refused(sets: &[&str]) -> String {
    let helm = helm().await;
    let out = cmd::run_capture_status(&mut helm.template(&[], sets), None)
        .await
        .unwrap();
    assert!(!out.status.success(), "rendered with {sets:?}");
    text(&out)
}

#[tokio::test]
async fn values_schema_refuses_a_wrong_type() {
    let out = refused(&["services.todo.replicas=two"]).await;
    assert!(out.contains("/services/todo/replicas"), "{out}");
    assert!(out.contains("want integer"), "{out}");
    let out = refused(&["image.pullPolicy=Sometimes"]).await;
    assert!(out.contains("/image/pullPolicy"), "{out}");
}

#[tokio::test]
async fn values_schema_refuses_an_unknown_key_at_any_depth() {
    for (set, key) in [
        ("replicaCount=2", "replicaCount"),
        ("services.todo.replica=2", "replica"),
        ("kafka.topics.partitons=3", "partitons"),
        ("services.search.replicas=1", "search"),
        ("postgresql.external.provision.adminSecret.nmae=x", "nmae"),
    ] {
        let out = refused(&[set]).await;
        assert!(
            out.contains(&format!("additional properties '{key}' not allowed")),
            "{set}: {out}"
        );
    }
}

#[tokio::test]
async fn values_schema_refuses_a_short_signing_key() {
    let out = refused(&["auth.signingKey=short"]).await;
    assert!(out.contains("/auth/signingKey"), "{out}");
}
