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

/// The scripts of the `helm test` pods, as the chart renders them with
/// `sets`: file name -> text.
async fn helm_test_scripts(sets: &[&str]) -> Vec<(String, String)> {
    let helm = helm().await;
    let mut c = helm.template(&[], sets);
    c.args(["-s", "templates/tests/roundtrip-configmap.yaml"]);
    let out = cmd::run_capture(&mut c, None).await.unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    doc["data"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn helm_test_scripts_compile_and_mint_a_token_the_services_accept() {
    let key = "helm-test-signing-key-0123456789abcdef-0123456789";
    let set_key = format!("auth.signingKey={key}");
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in helm_test_scripts(&[&set_key]).await {
        let path = dir.path().join(&name);
        std::fs::write(&path, text).unwrap();
        cmd::run_capture(
            Command::new("python3")
                .args(["-m", "py_compile"])
                .arg(&path),
            None,
        )
        .await
        .unwrap();
    }
    // The round trip's user token, minted as the test pod mints it (key from
    // Secret auth-signing-key, issuer and audience from the values).
    let out = cmd::run_capture(
        Command::new("python3")
            .arg(dir.path().join("roundtrip.py"))
            .args(["--mint", "helm-test-alice"])
            .env("NAMESPACE", NAMESPACE)
            .env("AUTH_ISSUER", "todo-platform")
            .env("AUTH_AUDIENCE", "todo-platform")
            .env("SIGNING_KEY", key)
            .env("TIMEOUT_SECS", "5"),
        None,
    )
    .await
    .unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    let settings = todo_core::auth::AuthSettings::default();
    let auth = todo_core::auth::Authenticator::with_secret(key.as_bytes(), &settings).unwrap();
    let identity = auth.verify(token.trim()).await.unwrap();
    assert_eq!(identity.subject, "helm-test-alice");
    assert!(!identity.operator);
    // And one signed with another key is refused.
    let other = todo_core::auth::Authenticator::with_secret(
        b"another-key-0123456789abcdef-0123456789abcdef",
        &settings,
    )
    .unwrap();
    assert!(other.verify(token.trim()).await.is_err());
}
