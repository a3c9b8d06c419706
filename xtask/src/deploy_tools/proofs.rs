//! The chart's tools, provisioned as `cargo xtask deploy-tools` does it
//! (kubeconform with its schemas, helm, helm-unittest), each judge a tiny good
//! and a tiny bad input the way the chart's checks will (issue 13). The first
//! run builds the tools (minutes); later runs take seconds.

use std::path::Path;
use std::process::Output;

use tokio::process::Command;

use super::*;

/// Runs a command (logged) and returns its output whatever its exit status.
async fn output(cmd: &mut Command, stdin: Option<&str>) -> Output {
    cmd::run_capture_status(cmd, stdin).await.unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: todo-service
  namespace: todo-dev
spec:
  replicas: 2
  selector:
    matchLabels: {app: todo-service}
  template:
    metadata:
      labels: {app: todo-service}
    spec:
      containers:
        - name: todo-service
          image: todo-service:dev
          ports: [{containerPort: 8001}]
";

const COMPONENT: &str = "\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: kafka-pubsub
spec:
  type: pubsub.kafka
  version: v1
  metadata:
    - name: brokers
      value: kafka:9092
";

async fn kubeconform(manifest: &str) -> Output {
    let k = Kubeconform::provision().await.unwrap();
    output(k.command().arg("-"), Some(manifest)).await
}

#[tokio::test]
async fn kubeconform_passes_a_valid_deployment_and_component() {
    let out = kubeconform(&format!("{DEPLOYMENT}---\n{COMPONENT}")).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Valid: 2"), "{}", text(&out));
}

#[tokio::test]
async fn kubeconform_refuses_a_wrong_type() {
    let out = kubeconform(&DEPLOYMENT.replace("replicas: 2", "replicas: two")).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("replicas"), "{}", text(&out));
}

#[tokio::test]
async fn kubeconform_refuses_an_unknown_field() {
    let out = kubeconform(&DEPLOYMENT.replace("replicas: 2", "replicas: 2\n  replica: 2")).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("replica"), "{}", text(&out));
}

#[tokio::test]
async fn kubeconform_refuses_an_unknown_field_in_a_dapr_component() {
    let out =
        kubeconform(&COMPONENT.replace("  version: v1", "  version: v1\n  versoin: v1")).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("versoin"), "{}", text(&out));
}

#[tokio::test]
async fn kubeconform_refuses_a_kind_it_has_no_schema_for() {
    let out = kubeconform(&COMPONENT.replace("kind: Component", "kind: Komponent")).await;
    assert!(!out.status.success(), "{}", text(&out));
}

/// `helm` with its home folders in `dir`, so tests leave the user's alone.
fn helm_in(helm: &Path, dir: &Path) -> Command {
    let mut c = Command::new(helm);
    for (var, sub) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        c.env(var, dir.join("helm").join(sub));
    }
    c
}

/// A chart with one ConfigMap that records the Kubernetes version Helm
/// renders for, and one helm-unittest suite.
fn tiny_chart(dir: &Path) -> std::path::PathBuf {
    let chart = dir.join("tiny");
    write(
        &chart.join("Chart.yaml"),
        "apiVersion: v2\nname: tiny\ndescription: A throwaway chart.\nversion: 0.1.0\nicon: https://example.invalid/icon.png\n",
    );
    write(&chart.join("values.yaml"), "greeting: hello\n");
    write(
        &chart.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-tiny\ndata:\n  greeting: {{ .Values.greeting | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n",
    );
    write(
        &chart.join("tests/configmap_test.yaml"),
        "suite: configmap\ntemplates: [templates/configmap.yaml]\ntests:\n  - it: greets and renders for the pinned Kubernetes\n    asserts:\n      - equal: {path: data.greeting, value: hello}\n      - equal: {path: data.kube, value: v1.37.0}\n",
    );
    chart
}

#[tokio::test]
async fn helm_lints_a_tiny_chart_and_renders_for_kubernetes_1_37() {
    let helm = helm().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chart = tiny_chart(dir.path());
    let out = output(
        helm_in(&helm, dir.path())
            .args(["lint", "--strict"])
            .arg(&chart),
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = output(helm_in(&helm, dir.path()).arg("template").arg(&chart), None).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("kube: \"v1.37.0\""), "{}", text(&out));
    // A broken template fails the lint.
    write(
        &chart.join("templates/broken.yaml"),
        "a: {{ .Values.greeting \n",
    );
    let out = output(
        helm_in(&helm, dir.path())
            .args(["lint", "--strict"])
            .arg(&chart),
        None,
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn helm_unittest_runs_as_a_helm_plugin_and_fails_a_wrong_assertion() {
    let helm = helm().await.unwrap();
    let unittest = helm_unittest().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chart = tiny_chart(dir.path());
    let run = || {
        let mut c = helm_in(&helm, dir.path());
        c.env("HELM_PLUGINS", &unittest.plugins)
            .arg("unittest")
            .arg(&chart);
        c
    };
    let out = output(&mut run(), None).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 passed"), "{}", text(&out));
    write(&chart.join("values.yaml"), "greeting: goodbye\n");
    let out = output(&mut run(), None).await;
    assert!(!out.status.success(), "{}", text(&out));
}

// hadolint, actionlint and shellcheck are proven in `deploy_check::lint`: each
// refuses a bad sample there before it judges every file of the repository.
