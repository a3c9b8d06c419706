//! `cargo xtask deploy-check`: the proofs of the Helm chart
//! (`deploy/helm/todo-platform`, issue 13) with the tools `deploy_tools`
//! provisions. Without options: `helm lint --strict`, `helm template` of the
//! default, Minikube and external values validated by kubeconform `-strict`
//! against the Kubernetes 1.37 and Dapr CRD schemas, and the chart's
//! helm-unittest suites (the same checks the tests in `proofs` make, for CI
//! and for a developer). With `--apiserver`: a real install, upgrade,
//! rollback and uninstall on a local kube-apiserver (`install`), too slow for
//! the test command.
//!
//! The tests here run in `cargo test --workspace`: `proofs` (lint, schemas,
//! unit tests, the values schema), `agreement` (the chart says what
//! `deploy/local/` and the local stack's service table say), `snapshots`
//! (the rendered manifests, pinned for review), `lint` (hadolint,
//! actionlint and shellcheck over every Dockerfile, workflow and shell script
//! of the repository) and `minikube` (the Minikube scripts' dry runs and the
//! pieces of `smoke.sh` that need no cluster).

mod install;

#[cfg(test)]
mod agreement;
#[cfg(test)]
mod lint;
#[cfg(test)]
mod minikube;
#[cfg(test)]
mod proofs;
#[cfg(test)]
mod snapshots;

use std::path::PathBuf;
use std::process::Output;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use todo_local_stack::{cache_dir, cmd, workspace_root};
use tokio::process::Command;

use crate::deploy_tools::{self, Kubeconform};

/// The chart, relative to the workspace root.
pub(crate) const CHART: &str = "deploy/helm/todo-platform";
/// The release name and namespace every script and proof uses.
pub(crate) const RELEASE: &str = "todo";
pub(crate) const NAMESPACE: &str = "todo-dev";
/// The values files shipped beside `values.yaml`, each rendered and proven.
pub(crate) const VALUES_FILES: [&str; 2] = ["values-minikube.yaml", "values-external.yaml"];

/// The chart's folder in this work tree.
pub(crate) fn chart_dir() -> PathBuf {
    workspace_root().join(CHART)
}

/// Helm, with its home folders in the cache (the user's are left alone).
#[derive(Debug, Clone)]
pub(crate) struct Helm {
    pub bin: PathBuf,
    home: PathBuf,
}

impl Helm {
    /// Builds or finds Helm (see [`deploy_tools::helm`]).
    pub async fn provision() -> Result<Helm> {
        Ok(Helm {
            bin: deploy_tools::helm().await?,
            home: cache_dir().join("deploy-check-helm-home"),
        })
    }

    /// `helm <args>` with `HELM_{CACHE,CONFIG,DATA}_HOME` of its own.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        for (var, sub) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            c.env(var, self.home.join(sub));
        }
        c.args(args);
        c
    }

    /// `helm template todo <chart> -n todo-dev` with these values files
    /// (paths or names of files in the chart folder) and `--set`s. Lookups
    /// find nothing here, so secrets are generated.
    pub fn template(&self, values: &[&str], sets: &[&str]) -> Command {
        let chart = chart_dir();
        let mut c = self.command(&["template", RELEASE]);
        c.arg(&chart).args(["-n", NAMESPACE]);
        for v in values {
            c.arg("-f").arg(chart.join(v));
        }
        for s in sets {
            c.args(["--set", s]);
        }
        c
    }
}

/// stdout then stderr of a command, for messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails with the command's output unless it succeeded.
fn succeeded(what: &str, out: Output) -> Result<Output> {
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, text(&out));
    }
    Ok(out)
}

/// `helm lint --strict` of the chart with its default values and with each
/// values file.
pub(crate) async fn lint(helm: &Helm) -> Result<()> {
    let chart = chart_dir();
    for values in std::iter::once(None).chain(VALUES_FILES.iter().map(Some)) {
        let mut c = helm.command(&["lint", "--strict", "-n", NAMESPACE]);
        c.arg(&chart);
        if let Some(v) = values {
            c.arg("-f").arg(chart.join(v));
        }
        succeeded(
            &format!("helm lint --strict ({})", values.unwrap_or(&"values.yaml")),
            cmd::run_capture_status(&mut c, None).await?,
        )?;
    }
    Ok(())
}

/// The chart rendered with `values` (files of the chart folder).
pub(crate) async fn render(helm: &Helm, values: &[&str], sets: &[&str]) -> Result<String> {
    let out = succeeded(
        "helm template",
        cmd::run_capture_status(&mut helm.template(values, sets), None).await?,
    )?;
    String::from_utf8(out.stdout).context("helm template printed non-UTF-8")
}

/// kubeconform `-strict` of `manifests` against the Kubernetes 1.37 and Dapr
/// CRD schemas; returns its summary line.
pub(crate) async fn validate(kubeconform: &Kubeconform, manifests: &str) -> Result<String> {
    let out = succeeded(
        "kubeconform -strict",
        cmd::run_capture_status(kubeconform.command().arg("-"), Some(manifests)).await?,
    )?;
    let out = text(&out);
    Ok(out
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or(&out)
        .to_owned())
}

/// The chart's helm-unittest suites (`tests/*_test.yaml`), as `helm unittest`.
pub(crate) async fn unittest(helm: &Helm) -> Result<String> {
    let plugin = deploy_tools::helm_unittest().await?;
    let mut c = helm.command(&["unittest"]);
    c.env("HELM_PLUGINS", &plugin.plugins).arg(chart_dir());
    let out = succeeded(
        "helm unittest",
        cmd::run_capture_status(&mut c, None).await?,
    )?;
    Ok(text(&out))
}

/// Options of `cargo xtask deploy-check`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Also install, upgrade, roll back and uninstall the chart on a local
    /// etcd + kube-apiserver of Kubernetes 1.37 (built on first use, about
    /// ten minutes on 2 cores), with the Dapr CRDs, and `kubectl apply
    /// --dry-run=server` every rendered manifest. No kubelet: no pod runs.
    #[arg(long)]
    apiserver: bool,
}

/// `cargo xtask deploy-check [--apiserver]`.
pub async fn run(options: Options) -> Result<()> {
    let started = Instant::now();
    let helm = Helm::provision().await?;
    lint(&helm).await?;
    cmd::done(
        "chart: helm lint --strict passed (default, minikube, external values)",
        started,
    );
    let kubeconform = Kubeconform::provision().await?;
    for values in [&[][..], &[VALUES_FILES[0]], &[VALUES_FILES[1]]] {
        let manifests = render(&helm, values, &[]).await?;
        let summary = validate(&kubeconform, &manifests).await?;
        println!(
            "kubeconform -strict, {}: {summary}",
            values.first().unwrap_or(&"values.yaml")
        );
    }
    let report = unittest(&helm).await?;
    if let Some(line) = report.lines().find(|l| l.starts_with("Tests:")) {
        println!(
            "helm unittest: {}",
            line.trim_start_matches("Tests:").trim()
        );
    }
    cmd::done("chart: static proofs passed", started);
    if options.apiserver {
        install::run(&helm).await?;
    }
    Ok(())
}
