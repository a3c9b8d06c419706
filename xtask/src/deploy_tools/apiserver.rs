//! etcd, kube-apiserver and kubectl of Kubernetes [`KUBERNETES_VERSION`],
//! built from the Go module proxy into
//! `~/.cache/todo-platform/kubernetes-v<version>/bin`, and a check that they
//! run: etcd and kube-apiserver on loopback, `kubectl version` against them.
//! For the real-install proof of the chart (`deploy-check --apiserver`,
//! issue 13); too slow to build for the tests (minutes on 2 cores), so only
//! `cargo xtask deploy-tools --apiserver` calls it. Nothing runs pods there:
//! there is no kubelet.
//!
//! `k8s.io/kubernetes` cannot be built with `go install pkg@version`: its
//! `go.mod` replaces every `k8s.io/<staging>` module with a folder of its own
//! repository. A wrapper module requires it and replaces each of those
//! modules with its published `v0.<minor>.<patch>` instead; etcd is built
//! from the same module graph, at the version Kubernetes requires.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use todo_local_stack::{cmd, gomod};
use tokio::process::{Child, Command};

use super::{cached, major_minor};

/// The newest Kubernetes 1.37 release on the Go module proxy.
pub const KUBERNETES_VERSION: &str = "1.37.2";
const KUBERNETES_MODULE: &str = "k8s.io/kubernetes";
const ETCD_PACKAGE: &str = "go.etcd.io/etcd/server/v3";

/// The three binaries.
#[derive(Debug, Clone)]
pub struct ApiserverBins {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
}

/// The version variables Kubernetes' own build sets (in component-base and
/// client-go), so the binaries report v1.37.x instead of v0.0.0-master.
fn version_ldflags() -> String {
    let (major, minor) = major_minor(KUBERNETES_VERSION);
    let mut flags = vec!["-s".to_owned(), "-w".to_owned()];
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        for (key, value) in [
            ("gitVersion", format!("v{KUBERNETES_VERSION}")),
            ("gitMajor", major.to_owned()),
            ("gitMinor", minor.to_owned()),
            ("gitTreeState", "clean".to_owned()),
        ] {
            flags.push(format!("-X {pkg}.{key}={value}"));
        }
    }
    flags.join(" ")
}

/// Builds or finds etcd, kube-apiserver and kubectl (about ten minutes the
/// first time on 2 cores).
pub async fn apiserver_binaries() -> Result<ApiserverBins> {
    let ldflags = version_ldflags();
    let recipe = format!("wrapper module, CGO_ENABLED=0 go build -ldflags '{ldflags}'");
    let root = cached(
        &format!("kubernetes-v{KUBERNETES_VERSION}"),
        &recipe,
        async |root| build(root, &ldflags).await,
    )
    .await?;
    let bin = root.join("bin");
    Ok(ApiserverBins {
        etcd: bin.join("etcd"),
        kube_apiserver: bin.join("kube-apiserver"),
        kubectl: bin.join("kubectl"),
    })
}

async fn build(root: &Path, ldflags: &str) -> Result<()> {
    let go = gomod::go("etcd, kube-apiserver and kubectl")?;
    let module =
        gomod::download(&go, &format!("{KUBERNETES_MODULE}@v{KUBERNETES_VERSION}")).await?;
    let go_mod = std::fs::read_to_string(&module.go_mod)?;
    let staging_version = format!(
        "v0{}",
        &KUBERNETES_VERSION[KUBERNETES_VERSION.find('.').context("version")?..]
    );
    // The k8s.io modules it requires and replaces with its own folders.
    let required: Vec<String> = gomod::requires(&go_mod)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    let staging: Vec<String> = gomod::replaces(&go_mod)
        .into_iter()
        .filter(|r| r.new.starts_with("./staging/") && required.contains(&r.old))
        .map(|r| r.old)
        .collect();
    if staging.is_empty() {
        bail!(
            "{KUBERNETES_MODULE} v{KUBERNETES_VERSION} replaces no k8s.io module with a staging folder"
        );
    }
    cmd::step(format!(
        "kubernetes: building etcd, kube-apiserver and kubectl v{KUBERNETES_VERSION} through a wrapper module \
         ({} staging modules at {staging_version}; first time: about ten minutes on 2 cores)",
        staging.len()
    ));
    let src = root.join("src");
    std::fs::create_dir_all(&src)?;
    let go_cmd = || {
        let mut c = Command::new(&go);
        c.current_dir(&src)
            .env_remove("GOFLAGS")
            .env("GOWORK", "off")
            .env("CGO_ENABLED", "0");
        c
    };
    cmd::run(go_cmd().args(["mod", "init", "todo-platform.invalid/kubernetes-build"])).await?;
    let mut edit = go_cmd();
    edit.args(["mod", "edit"]).arg(format!(
        "-require={KUBERNETES_MODULE}@v{KUBERNETES_VERSION}"
    ));
    for m in &staging {
        edit.arg(format!("-replace={m}={m}@{staging_version}"));
    }
    cmd::run(&mut edit).await?;
    let apiserver_pkg = format!("{KUBERNETES_MODULE}/cmd/kube-apiserver");
    let kubectl_pkg = format!("{KUBERNETES_MODULE}/cmd/kubectl");
    cmd::run(
        go_cmd()
            .arg("get")
            .arg(format!("{apiserver_pkg}@v{KUBERNETES_VERSION}"))
            .arg(format!("{kubectl_pkg}@v{KUBERNETES_VERSION}")),
    )
    .await?;
    let bin = root.join("bin");
    for (name, pkg) in [
        ("kube-apiserver", apiserver_pkg.as_str()),
        ("kubectl", kubectl_pkg.as_str()),
        ("etcd", ETCD_PACKAGE),
    ] {
        let started = Instant::now();
        cmd::run(
            go_cmd()
                .args(["build", "-mod=mod", "-trimpath", "-ldflags", ldflags, "-o"])
                .arg(bin.join(name))
                .arg(pkg),
        )
        .await?;
        cmd::done(format!("kubernetes: {name} built"), started);
    }
    Ok(())
}

/// A free loopback port (bound then released; fine for a one-off check).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_logged(cmd_: &mut Command, log: &Path) -> Result<Child> {
    cmd::log_cmd(&cmd::display_cmd(cmd_));
    let file = std::fs::File::create(log)?;
    cmd_.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", cmd::display_cmd(cmd_)))
}

/// Polls `ready` every half second until it holds, `child` exits (an error
/// with its log's tail) or `timeout` passes.
async fn wait_for(
    what: &str,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
    mut ready: impl AsyncFnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}):\n{}", cmd::tail(log, 30));
        }
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} not ready after {timeout:?}:\n{}",
                cmd::tail(log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// etcd and kube-apiserver running on loopback, and a kubeconfig for them
/// (an admin bearer token). Both processes are killed when it is dropped;
/// [`Loopback::stop`] waits for them.
pub struct Loopback {
    etcd: Child,
    apiserver: Child,
    /// `<dir>/kubeconfig`, for kubectl and helm (`--kubeconfig`).
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl Loopback {
    /// `kubectl --kubeconfig <ours> <args>`.
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c
    }

    /// Stops kube-apiserver, then etcd.
    pub async fn stop(mut self) -> Result<()> {
        for child in [&mut self.apiserver, &mut self.etcd] {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }
}

/// Starts etcd and kube-apiserver on loopback and returns what `kubectl
/// version` and `kubectl get namespaces` print. Both processes are stopped on
/// return.
pub async fn check_on_loopback(bins: &ApiserverBins, dir: &Path) -> Result<String> {
    let loopback = start_on_loopback(bins, dir).await?;
    let version = cmd::run_capture(&mut loopback.kubectl(&["version"]), None).await?;
    let namespaces = cmd::run_capture(&mut loopback.kubectl(&["get", "namespaces"]), None).await?;
    loopback.stop().await?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&version.stdout),
        String::from_utf8_lossy(&namespaces.stdout)
    ))
}

/// Starts etcd and kube-apiserver on loopback (fresh data in `dir`, free
/// ports, a self-signed serving certificate, a bearer token in
/// `system:masters`) and waits until `/readyz` answers.
pub async fn start_on_loopback(bins: &ApiserverBins, dir: &Path) -> Result<Loopback> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
    cmd::step(format!("apiserver check: etcd on 127.0.0.1:{etcd_port}"));
    let etcd_log = dir.join("etcd.log");
    let mut etcd = spawn_logged(
        Command::new(&bins.etcd)
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            )),
        &etcd_log,
    )?;
    let client = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{etcd_port}/health");
    wait_for(
        "etcd",
        &mut etcd,
        &etcd_log,
        Duration::from_secs(30),
        async || {
            client
                .get(&health)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await?;

    let key = dir.join("service-account.key");
    let public = dir.join("service-account.pub");
    cmd::run_capture(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&key),
        None,
    )
    .await?;
    cmd::run_capture(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public),
        None,
    )
    .await?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, format!("{token},admin,admin,\"system:masters\"\n"))?;
    let certs = dir.join("certs");
    cmd::step(format!(
        "apiserver check: kube-apiserver on https://127.0.0.1:{api_port}"
    ));
    let api_log = dir.join("kube-apiserver.log");
    let mut apiserver = spawn_logged(
        Command::new(&bins.kube_apiserver)
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            // The default reconciler refuses a loopback advertise address;
            // nothing here needs the `kubernetes` Service's endpoints.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--secure-port={api_port}"))
            .arg("--cert-dir")
            .arg(&certs)
            .arg("--token-auth-file")
            .arg(&tokens)
            .args([
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
            ])
            .args(["--service-account-issuer=https://kubernetes.default.svc.cluster.local"])
            .arg("--service-account-key-file")
            .arg(&public)
            .arg("--service-account-signing-key-file")
            .arg(&key),
        &api_log,
    )?;
    // The serving certificate is self-signed, made by kube-apiserver at
    // start: nothing to pin it to, and nothing leaves loopback.
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: admin\n  user:\n    token: {token}\n\
             contexts:\n- name: local\n  context:\n    cluster: local\n    user: admin\n\
             current-context: local\n"
        ),
    )?;
    let kubectl = |args: &[&str]| {
        let mut c = Command::new(&bins.kubectl);
        c.arg("--kubeconfig").arg(&kubeconfig).args(args);
        c
    };
    wait_for(
        "kube-apiserver",
        &mut apiserver,
        &api_log,
        Duration::from_secs(120),
        async || {
            cmd::run_quiet(&mut kubectl(&["get", "--raw", "/readyz"]), None)
                .await
                .is_ok_and(|o| o.status.success())
        },
    )
    .await?;
    cmd::done("apiserver check: kube-apiserver ready", started);
    Ok(Loopback {
        etcd,
        apiserver,
        kubeconfig,
        kubectl: bins.kubectl.clone(),
    })
}
