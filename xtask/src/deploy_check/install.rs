//! `cargo xtask deploy-check --apiserver`: the chart as a real cluster's API
//! judges it. Starts the cached etcd + kube-apiserver of Kubernetes 1.37 on
//! loopback, installs the Dapr CRDs of the Dapr version the stack builds
//! (`charts/dapr/crds` of its Go module), then `helm install`, `helm upgrade`
//! with other replicas (and checks that the generated secrets survived it:
//! `lookup` against a real API), `helm rollback`, `helm uninstall`, and
//! a second install (which must adopt the database secrets the uninstall
//! kept), and `kubectl apply --dry-run=server` of the manifests rendered for
//! each values file; prints how long each step took. There is no kubelet, scheduler or
//! controller manager: objects are stored and validated, no pod ever runs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use todo_local_stack::{DAPR_VERSION, cache_dir, cmd, gomod};
use tokio::process::Command;

use super::{Helm, NAMESPACE, RELEASE, VALUES_FILES, chart_dir, render, succeeded, text};
use crate::deploy_tools::apiserver::{self, Loopback};

/// One timed step, for the report.
struct Timed {
    what: String,
    took: Duration,
}

async fn output(what: &str, c: &mut Command) -> Result<String> {
    let out = succeeded(what, cmd::run_capture_status(c, None).await?)?;
    Ok(text(&out))
}

/// `helm ... --kubeconfig <ours>`.
fn helm_on(helm: &Helm, loopback: &Loopback, args: &[&str]) -> Command {
    let mut c = helm.command(args);
    c.arg("--kubeconfig").arg(&loopback.kubeconfig);
    c
}

/// `helm uninstall` of the release, waiting until its objects are gone.
async fn uninstall(helm: &Helm, loopback: &Loopback) -> Result<()> {
    output(
        "helm uninstall",
        &mut helm_on(
            helm,
            loopback,
            &["uninstall", RELEASE, "-n", NAMESPACE, "--wait"],
        ),
    )
    .await
    .map(drop)
}

/// `kubectl -n todo-dev get <what> -o jsonpath=<path>`.
async fn get(loopback: &Loopback, what: &[&str], jsonpath: &str) -> Result<String> {
    let mut args = vec!["-n", NAMESPACE, "get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={jsonpath}");
    args.extend_from_slice(&["-o", &path]);
    let out = succeeded(
        "kubectl get",
        cmd::run_capture_status(&mut loopback.kubectl(&args), None).await?,
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn secret_value(loopback: &Loopback, name: &str, key: &str) -> Result<String> {
    get(loopback, &["secret", name], &format!("{{.data.{key}}}")).await
}

async fn replicas(loopback: &Loopback, deployment: &str) -> Result<String> {
    get(loopback, &["deployment", deployment], "{.spec.replicas}").await
}

pub(super) async fn run(helm: &Helm) -> Result<()> {
    let total = Instant::now();
    let mut steps: Vec<Timed> = Vec::new();
    let mut timed = |what: &str, started: Instant| {
        cmd::done(format!("apiserver proof: {what}"), started);
        steps.push(Timed {
            what: what.to_owned(),
            took: started.elapsed(),
        });
    };

    let started = Instant::now();
    let bins = apiserver::apiserver_binaries().await?;
    timed("etcd, kube-apiserver, kubectl found or built", started);
    let dir = cache_dir().join("deploy-check-apiserver");
    let started = Instant::now();
    let loopback = apiserver::start_on_loopback(&bins, &dir).await?;
    timed("etcd + kube-apiserver started on loopback", started);
    let result = prove(helm, &loopback, &mut timed).await;
    loopback.stop().await?;
    result?;

    println!(
        "\nchart on kube-apiserver v{} (loopback, no kubelet: nothing runs pods)",
        apiserver::KUBERNETES_VERSION
    );
    for s in &steps {
        println!("  {:<68} {:>7.2} s", s.what, s.took.as_secs_f64());
    }
    println!("  {:<68} {:>7.2} s", "total", total.elapsed().as_secs_f64());
    Ok(())
}

async fn prove(
    helm: &Helm,
    loopback: &Loopback,
    timed: &mut impl FnMut(&str, Instant),
) -> Result<()> {
    let started = Instant::now();
    let go = gomod::go("nothing: it only fetches the Dapr CRDs")?;
    let dapr = gomod::download(&go, &format!("github.com/dapr/dapr@v{DAPR_VERSION}")).await?;
    let crds = dapr.dir.join("charts/dapr/crds");
    output(
        "kubectl apply (Dapr CRDs)",
        loopback
            .kubectl(&["apply", "--server-side", "-f"])
            .arg(&crds),
    )
    .await?;
    output(
        "kubectl wait (Dapr CRDs established)",
        &mut loopback.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ]),
    )
    .await?;
    timed(
        &format!("Dapr v{DAPR_VERSION} CRDs installed and established"),
        started,
    );

    let chart = chart_dir();
    let chart = chart.to_str().context("chart path")?;
    let started = Instant::now();
    output(
        "helm install",
        &mut helm_on(
            helm,
            loopback,
            &[
                "install",
                RELEASE,
                chart,
                "-n",
                NAMESPACE,
                "--create-namespace",
            ],
        ),
    )
    .await?;
    timed("helm install (default values)", started);
    let kinds = output(
        "kubectl get",
        &mut loopback.kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "deployments,services,statefulsets,jobs,secrets,networkpolicies,poddisruptionbudgets,components.dapr.io,resiliencies.dapr.io,configurations.dapr.io",
            "--no-headers",
        ]),
    )
    .await?;
    println!("{kinds}");
    let token = secret_value(loopback, "todo-service-app-token", "token").await?;
    let key = secret_value(loopback, "auth-signing-key", "key").await?;
    let db = secret_value(loopback, "todo-db", "url").await?;
    if token.is_empty() || key.is_empty() || db.is_empty() {
        bail!("helm install made no todo-service-app-token, auth-signing-key or todo-db secret");
    }
    if replicas(loopback, "todo-service").await? != "1" {
        bail!("todo-service should have 1 replica after install");
    }

    let started = Instant::now();
    output(
        "helm upgrade",
        &mut helm_on(
            helm,
            loopback,
            &[
                "upgrade",
                RELEASE,
                chart,
                "-n",
                NAMESPACE,
                "--set",
                "services.todo.replicas=2",
                "--set",
                "services.websocket.replicas=2",
            ],
        ),
    )
    .await?;
    timed("helm upgrade (todo and websocket: 2 replicas)", started);
    if replicas(loopback, "todo-service").await? != "2" {
        bail!("todo-service should have 2 replicas after the upgrade");
    }
    if secret_value(loopback, "todo-service-app-token", "token").await? != token
        || secret_value(loopback, "auth-signing-key", "key").await? != key
        || secret_value(loopback, "todo-db", "url").await? != db
    {
        bail!("helm upgrade changed a generated secret (lookup should keep it)");
    }
    let partitions = get(
        loopback,
        &["job", &format!("{RELEASE}-kafka-topics-2")],
        "{.spec.template.spec.containers[0].env[?(@.name==\"PARTITIONS\")].value}",
    )
    .await?;
    if partitions != "2" {
        bail!("the upgrade's topics Job should ask for 2 partitions, not {partitions:?}");
    }
    println!(
        "upgrade: todo-service 2 replicas, topics Job of revision 2 asks for 2 partitions, secrets unchanged"
    );

    let started = Instant::now();
    output(
        "helm rollback",
        &mut helm_on(helm, loopback, &["rollback", RELEASE, "1", "-n", NAMESPACE]),
    )
    .await?;
    timed("helm rollback to revision 1", started);
    if replicas(loopback, "todo-service").await? != "1" {
        bail!("todo-service should have 1 replica again after the rollback");
    }
    if secret_value(loopback, "todo-service-app-token", "token").await? != token {
        bail!("helm rollback changed the app API token");
    }
    let history = output(
        "helm history",
        &mut helm_on(helm, loopback, &["history", RELEASE, "-n", NAMESPACE]),
    )
    .await?;
    println!("{history}");

    let started = Instant::now();
    uninstall(helm, loopback).await?;
    timed("helm uninstall", started);
    let left = output(
        "kubectl get",
        &mut loopback.kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "deployments,services,statefulsets,jobs,secrets,configmaps,components.dapr.io",
            "-l",
            "app.kubernetes.io/instance=todo",
            "--no-headers",
        ]),
    )
    .await?;
    println!("left after uninstall (helm.sh/resource-policy: keep):\n{left}");
    let unexpected: Vec<&str> = left
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or("");
            let kept = name
                .strip_prefix("secret/")
                .is_some_and(|n| n.ends_with("-db") || n == format!("{RELEASE}-postgresql"));
            !kept
        })
        .collect();
    if !unexpected.is_empty() {
        bail!(
            "helm uninstall left more than the kept database secrets:\n{}",
            unexpected.join("\n")
        );
    }

    // A new install adopts the kept database secrets, passwords and all
    // (the in-chart PostgreSQL's volume outlives an uninstall too).
    let started = Instant::now();
    output(
        "helm install (again)",
        &mut helm_on(
            helm,
            loopback,
            &["install", RELEASE, chart, "-n", NAMESPACE],
        ),
    )
    .await?;
    timed("helm install again (adopts the kept secrets)", started);
    if secret_value(loopback, "todo-db", "url").await? != db {
        bail!("a new install changed the kept todo-db secret");
    }
    uninstall(helm, loopback).await?;
    println!("reinstall: todo-db adopted unchanged");

    // What the controller manager's service-account controller would have
    // made: pods (the helm test hooks) are admitted only with one.
    output(
        "kubectl create serviceaccount default",
        &mut loopback.kubectl(&["-n", NAMESPACE, "create", "serviceaccount", "default"]),
    )
    .await?;
    for values in [&[][..], &[VALUES_FILES[0]], &[VALUES_FILES[1]]] {
        let name = values.first().copied().unwrap_or("values.yaml");
        let manifests = render(helm, values, &[]).await?;
        let started = Instant::now();
        let out = succeeded(
            &format!("kubectl apply --dry-run=server ({name})"),
            cmd::run_capture_status(
                &mut loopback.kubectl(&["apply", "--dry-run=server", "-n", NAMESPACE, "-f", "-"]),
                Some(&manifests),
            )
            .await?,
        )?;
        let count = String::from_utf8_lossy(&out.stdout).lines().count();
        timed(
            &format!("kubectl apply --dry-run=server, {name} ({count} objects)"),
            started,
        );
    }
    Ok(())
}
