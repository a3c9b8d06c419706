//! The Dapr runtime: `daprd`, `placement` and `scheduler` built from the Go
//! module `github.com/dapr/dapr` (pinned version) into the cache, with only the
//! components this platform uses (`deploy/local/daprd/components.go`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::proc::{self, Launch, Managed};
use crate::spec::*;
use crate::{cmd, gomod};

pub const BIN_DIR_ENV: &str = "DAPR_BIN_DIR";
const BINARIES: [&str; 3] = ["daprd", "placement", "scheduler"];

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Where the three binaries are.
#[derive(Debug, Clone)]
pub(crate) struct DaprBins {
    pub dir: PathBuf,
}

impl DaprBins {
    pub fn daprd(&self) -> PathBuf {
        self.dir.join("daprd")
    }
    pub fn placement(&self) -> PathBuf {
        self.dir.join("placement")
    }
    pub fn scheduler(&self) -> PathBuf {
        self.dir.join("scheduler")
    }
}

fn has_all(dir: &Path) -> bool {
    BINARIES.iter().all(|b| cmd::is_executable(&dir.join(b)))
}

/// `$DAPR_BIN_DIR`, then `~/.dapr/bin` (the `dapr init` layout), if complete.
fn preinstalled() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")?;
    let dir = PathBuf::from(home).join(".dapr/bin");
    has_all(&dir).then_some(dir)
}

/// `<cache>/dapr-v<version>`
pub(crate) fn build_root(cache: &Path) -> PathBuf {
    cache.join(format!("dapr-v{DAPR_VERSION}"))
}

struct BuildPlan {
    root: PathBuf,
    components: PathBuf,
    components_hash: String,
    missing: Vec<&'static str>,
}

fn stamp_path(root: &Path) -> PathBuf {
    root.join("bin/daprd.components.sha256")
}

fn plan(cache: &Path, repo: &Path) -> Result<BuildPlan> {
    let root = build_root(cache);
    let components = repo.join("deploy/local/daprd/components.go");
    let components_hash = sha256_file(&components)?;
    let bin = root.join("bin");
    let mut missing = Vec::new();
    for b in BINARIES {
        if !cmd::is_executable(&bin.join(b)) {
            missing.push(b);
        }
    }
    if !missing.contains(&"daprd") {
        let stamp = stamp_path(&root);
        let fresh = match std::fs::read_to_string(&stamp) {
            Ok(s) => s.trim() == components_hash,
            // Built by hand with the same recipe (no stamp): adopt it if it was
            // built from this components.go. (Our own rebuilds delete daprd
            // first, so an interrupted one never lands here.)
            Err(_) => {
                let copied = root.join("src/cmd/daprd/components/zz_notag.go");
                let same = sha256_file(&copied).ok().as_deref() == Some(components_hash.as_str());
                if same {
                    std::fs::write(&stamp, &components_hash)?;
                }
                same
            }
        };
        if !fresh {
            missing.insert(0, "daprd");
        }
    }
    Ok(BuildPlan {
        root,
        components,
        components_hash,
        missing,
    })
}

/// Finds or builds the binaries.
pub(crate) async fn ensure_binaries(cache: &Path, repo: &Path) -> Result<DaprBins> {
    if let Some(dir) = preinstalled() {
        if !has_all(&dir) {
            bail!("{} has no daprd, placement and scheduler", dir.display());
        }
        cmd::step(format!("dapr: using the binaries in {}", dir.display()));
        return Ok(DaprBins { dir });
    }
    let plan = plan(cache, repo)?;
    let bin = plan.root.join("bin");
    if plan.missing.is_empty() {
        return Ok(DaprBins { dir: bin });
    }
    let go = gomod::go("the Dapr runtime")?;
    let src = plan.root.join("src");
    if !src.join("go.mod").exists() {
        let started = Instant::now();
        cmd::step(format!(
            "dapr: fetching github.com/dapr/dapr@v{DAPR_VERSION} with the Go module proxy"
        ));
        let module = gomod::download(&go, &format!("github.com/dapr/dapr@v{DAPR_VERSION}")).await?;
        let tmp = plan.root.join("src.tmp");
        if tmp.exists() {
            gomod::make_writable(&tmp).await?;
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&plan.root)?;
        cmd::run(Command::new("cp").arg("-r").arg(&module.dir).arg(&tmp)).await?;
        gomod::make_writable(&tmp).await?;
        std::fs::rename(&tmp, &src)?;
        cmd::done("dapr: source ready", started);
    }
    std::fs::create_dir_all(&bin)?;
    if plan.missing.contains(&"daprd") {
        // Stale daprd and stamp go first, so an interrupted build never looks cached.
        let _ = std::fs::remove_file(bin.join("daprd"));
        let _ = std::fs::remove_file(stamp_path(&plan.root));
        std::fs::copy(
            &plan.components,
            src.join("cmd/daprd/components/zz_notag.go"),
        )
        .context("copying components.go into the dapr source")?;
    }
    for b in &plan.missing {
        let started = Instant::now();
        cmd::step(format!(
            "dapr: building {b} v{DAPR_VERSION} (first time: a few minutes on 2 cores)"
        ));
        let tmp_name = format!(".{b}.tmp");
        cmd::run(
            Command::new(&go)
                .current_dir(&src)
                .env("GOFLAGS", "-mod=mod -buildvcs=false")
                .args(["build", "-trimpath", "-ldflags"])
                .arg(format!(
                    "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version={DAPR_VERSION}"
                ))
                .arg("-o")
                .arg(format!("../bin/{tmp_name}"))
                .arg(format!("./cmd/{b}")),
        )
        .await?;
        std::fs::rename(bin.join(&tmp_name), bin.join(b))?;
        if *b == "daprd" {
            std::fs::write(stamp_path(&plan.root), &plan.components_hash)?;
        }
        cmd::done(format!("dapr: {b} built"), started);
    }
    Ok(DaprBins { dir: bin })
}

async fn http_status(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Polls a URL until it answers `want`.
pub(crate) async fn wait_http(
    managed: &mut Managed,
    client: &reqwest::Client,
    url: &str,
    want: u16,
    timeout: Duration,
) -> Result<()> {
    managed
        .wait_until(&format!("GET {url} -> {want}"), timeout, || async {
            http_status(client, url).await == Some(want)
        })
        .await
}

/// Placement service (actors / workflows).
pub(crate) async fn start_placement(
    state: &Path,
    bins: &DaprBins,
    client: &reqwest::Client,
) -> Result<Managed> {
    for (p, what) in [
        (PLACEMENT_PORT, "placement"),
        (PLACEMENT_HEALTHZ_PORT, "placement healthz"),
        (PLACEMENT_METRICS_PORT, "placement metrics"),
        (PLACEMENT_RAFT_PORT, "placement raft"),
    ] {
        proc::ensure_port_free(p, what)?;
    }
    let started = Instant::now();
    cmd::step("dapr: starting placement");
    let launch = Launch::new("placement", bins.placement(), state)
        .args(["--listen-address", "127.0.0.1"])
        .args(["--port", &PLACEMENT_PORT.to_string()])
        .args(["--healthz-listen-address", "127.0.0.1"])
        .args(["--healthz-port", &PLACEMENT_HEALTHZ_PORT.to_string()])
        .args(["--metrics-listen-address", "127.0.0.1"])
        .args(["--metrics-port", &PLACEMENT_METRICS_PORT.to_string()])
        .args([
            "--initial-cluster",
            &format!("dapr-placement-0=127.0.0.1:{PLACEMENT_RAFT_PORT}"),
        ])
        .env("DAPR_HOST_IP", "127.0.0.1");
    let mut m = proc::spawn(state, launch)?;
    let url = format!("http://127.0.0.1:{PLACEMENT_HEALTHZ_PORT}/healthz");
    wait_http(&mut m, client, &url, 200, Duration::from_secs(60)).await?;
    cmd::done(
        format!("dapr: placement ready on 127.0.0.1:{PLACEMENT_PORT}"),
        started,
    );
    Ok(m)
}

/// Scheduler service (jobs, workflow timers, actor reminders) with embedded etcd
/// persisted in `<state>/scheduler`.
pub(crate) async fn start_scheduler(
    state: &Path,
    bins: &DaprBins,
    client: &reqwest::Client,
) -> Result<Managed> {
    for (p, what) in [
        (SCHEDULER_PORT, "scheduler"),
        (SCHEDULER_HEALTHZ_PORT, "scheduler healthz"),
        (SCHEDULER_METRICS_PORT, "scheduler metrics"),
        (SCHEDULER_ETCD_CLIENT_PORT, "scheduler etcd client"),
        (SCHEDULER_ETCD_PEER_PORT, "scheduler etcd peer"),
    ] {
        proc::ensure_port_free(p, what)?;
    }
    let data = state.join("scheduler");
    std::fs::create_dir_all(&data)?;
    let started = Instant::now();
    cmd::step("dapr: starting scheduler");
    let launch = Launch::new("scheduler", bins.scheduler(), state)
        .args(["--listen-address", "127.0.0.1"])
        .args(["--port", &SCHEDULER_PORT.to_string()])
        .args(["--healthz-listen-address", "127.0.0.1"])
        .args(["--healthz-port", &SCHEDULER_HEALTHZ_PORT.to_string()])
        .args(["--metrics-listen-address", "127.0.0.1"])
        .args(["--metrics-port", &SCHEDULER_METRICS_PORT.to_string()])
        .arg("--etcd-data-dir")
        .arg(&data)
        .args(["--etcd-client-listen-address", "127.0.0.1"])
        .args([
            "--etcd-client-port",
            &SCHEDULER_ETCD_CLIENT_PORT.to_string(),
        ])
        .args([
            "--etcd-initial-cluster",
            &format!("dapr-scheduler-server-0=http://127.0.0.1:{SCHEDULER_ETCD_PEER_PORT}"),
        ])
        .env("DAPR_HOST_IP", "127.0.0.1");
    let mut m = proc::spawn(state, launch)?;
    let url = format!("http://127.0.0.1:{SCHEDULER_HEALTHZ_PORT}/healthz");
    wait_http(&mut m, client, &url, 200, Duration::from_secs(60)).await?;
    cmd::done(
        format!("dapr: scheduler ready on 127.0.0.1:{SCHEDULER_PORT}"),
        started,
    );
    Ok(m)
}

/// The sidecars' configuration file (`daprd --config`).
const SIDECAR_CONFIG: &str = "deploy/local/config.yaml";

/// The configuration file the sidecars run with: `deploy/local/config.yaml`
/// itself, or, with `cleanup_every`, a copy in the state folder whose SQLite
/// name resolution cleans up that often (see
/// [`with_name_resolution_cleanup_every`]).
pub(crate) fn sidecar_config(
    state: &Path,
    repo: &Path,
    cleanup_every: Option<Duration>,
) -> Result<PathBuf> {
    let original = repo.join(SIDECAR_CONFIG);
    let Some(every) = cleanup_every else {
        return Ok(original);
    };
    let text = std::fs::read_to_string(&original)
        .with_context(|| format!("reading {}", original.display()))?;
    let copy = state.join("dapr-config.yaml");
    let header = format!(
        "# Written by the local stack from {SIDECAR_CONFIG}: the name resolution's \
         cleanup, if on, every {every:?}.\n"
    );
    std::fs::write(
        &copy,
        header + &with_name_resolution_cleanup_every(&text, every)?,
    )
    .with_context(|| format!("writing {}", copy.display()))?;
    Ok(copy)
}

/// `config` (a Dapr `Configuration`) with its SQLite name resolution's
/// cleanup coming every `every`, if the configuration leaves it on (a
/// `cleanupInterval` other than zero; absent, the component's default of an
/// hour applies). A cleanup turned off stays off. Lets a test see in seconds
/// what the configured cleanup does after an hour.
pub(crate) fn with_name_resolution_cleanup_every(config: &str, every: Duration) -> Result<String> {
    use serde_yaml::Value;
    let mut doc: Value =
        serde_yaml::from_str(config).context("parsing the sidecar configuration")?;
    let resolution = &mut doc["spec"]["nameResolution"];
    if resolution["component"].as_str() != Some("sqlite") {
        return Ok(serde_yaml::to_string(&doc)?);
    }
    let Some(settings) = resolution["configuration"].as_mapping_mut() else {
        bail!("the sqlite name resolution has no configuration (it needs a connectionString)");
    };
    let interval = ["cleanupInterval", "cleanupIntervalInSeconds"]
        .iter()
        .find_map(|k| settings.get(*k).cloned());
    let off = match &interval {
        None => false,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => is_zero_go_duration(s),
        Some(other) => bail!("cleanupInterval {other:?} is neither a number nor a duration"),
    };
    if !off {
        settings.remove("cleanupIntervalInSeconds");
        settings.insert(
            "cleanupInterval".into(),
            format!("{}ms", every.as_millis()).into(),
        );
    }
    Ok(serde_yaml::to_string(&doc)?)
}

/// Whether a Go duration (or a bare number of seconds, which Dapr's metadata
/// decoder also takes) is zero: "0", "0s", "0h0m"...
fn is_zero_go_duration(s: &str) -> bool {
    let mut digits = s.chars().filter(char::is_ascii_digit).peekable();
    digits.peek().is_some() && digits.all(|c| c == '0')
}

/// The sidecar of one service, with the configuration file `config`
/// (normally `deploy/local/config.yaml`). cwd = the state folder, so
/// `localsecrets` finds `secrets.json` and name resolution its SQLite file
/// there.
pub(crate) fn daprd_launch(
    state: &Path,
    repo: &Path,
    bins: &DaprBins,
    replica: &Replica,
    app_api_token: &str,
    config: &Path,
) -> Launch {
    let mut launch = Launch::new(format!("{}-daprd", replica.name()), bins.daprd(), state)
        .args(["--app-id", replica.spec.app_id])
        .args(["--app-port", &replica.internal_port().to_string()])
        .args(["--app-protocol", "http"])
        .args([
            "--enable-app-health-check",
            "--app-health-check-path",
            "/health",
        ])
        .args(["--dapr-http-port", &replica.dapr_http_port().to_string()])
        .args(["--dapr-grpc-port", &replica.dapr_grpc_port().to_string()])
        .args([
            "--dapr-internal-grpc-port",
            &replica.dapr_internal_grpc_port().to_string(),
        ])
        .args(["--dapr-internal-grpc-listen-address", "127.0.0.1"])
        .args(["--dapr-listen-addresses", "127.0.0.1"])
        .args(["--metrics-port", &replica.dapr_metrics_port().to_string()])
        .args(["--metrics-listen-address", "127.0.0.1"])
        .args([
            "--placement-host-address",
            &format!("127.0.0.1:{PLACEMENT_PORT}"),
        ])
        .args([
            "--scheduler-host-address",
            &format!("127.0.0.1:{SCHEDULER_PORT}"),
        ])
        .arg("--resources-path")
        .arg(repo.join("deploy/local/components"))
        .arg("--config")
        .arg(config)
        .arg("--log-as-json")
        .env("DAPR_HOST_IP", "127.0.0.1")
        .env("APP_API_TOKEN", app_api_token);
    launch.stop_timeout = Duration::from_secs(15);
    launch
}

/// Ports one sidecar needs.
pub(crate) fn ensure_sidecar_ports_free(replica: &Replica) -> Result<()> {
    let what = format!("{} sidecar", replica.name());
    for p in [
        replica.dapr_http_port(),
        replica.dapr_grpc_port(),
        replica.dapr_internal_grpc_port(),
        replica.dapr_metrics_port(),
    ] {
        proc::ensure_port_free(p, &what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: local
spec:
  nameResolution:
    component: sqlite
    configuration:
      connectionString: "nameresolution.db"
"#;

    fn cleanup_of(config: &str) -> Option<String> {
        let doc: serde_yaml::Value = serde_yaml::from_str(config).unwrap();
        doc["spec"]["nameResolution"]["configuration"]["cleanupInterval"]
            .as_str()
            .map(str::to_owned)
    }

    #[test]
    fn the_default_hourly_cleanup_comes_every_few_seconds_instead() {
        let out = with_name_resolution_cleanup_every(CONFIG, Duration::from_secs(3)).unwrap();
        assert_eq!(cleanup_of(&out).as_deref(), Some("3000ms"));
        assert!(out.contains("nameresolution.db"), "{out}");
    }

    #[test]
    fn a_configured_cleanup_interval_is_shortened() {
        for key in ["cleanupInterval: 1h", "cleanupIntervalInSeconds: 3600"] {
            let config = format!("{CONFIG}      {key}\n");
            let out = with_name_resolution_cleanup_every(&config, Duration::from_secs(3)).unwrap();
            assert_eq!(cleanup_of(&out).as_deref(), Some("3000ms"), "{key}");
            assert!(!out.contains("cleanupIntervalInSeconds"), "{out}");
        }
    }

    #[test]
    fn a_cleanup_turned_off_stays_off() {
        for off in ["\"0\"", "0", "0s", "\"0h0m0s\""] {
            let config = format!("{CONFIG}      cleanupInterval: {off}\n");
            let out = with_name_resolution_cleanup_every(&config, Duration::from_secs(3)).unwrap();
            let doc: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
            let kept = &doc["spec"]["nameResolution"]["configuration"]["cleanupInterval"];
            assert!(
                kept.as_str().is_some_and(is_zero_go_duration) || kept.as_u64() == Some(0),
                "{off}: {kept:?}"
            );
        }
    }

    #[test]
    fn the_local_sidecars_run_without_the_name_resolution_cleanup() {
        let config = std::fs::read_to_string(crate::workspace_root().join(SIDECAR_CONFIG)).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
        let resolution = &doc["spec"]["nameResolution"];
        assert_eq!(resolution["component"].as_str(), Some("sqlite"));
        let cleanup = resolution["configuration"]["cleanupInterval"].as_str();
        assert!(cleanup.is_some_and(is_zero_go_duration), "{cleanup:?}");
    }

    #[test]
    fn another_resolver_is_left_alone() {
        let config = CONFIG.replace("component: sqlite", "component: mdns");
        let out = with_name_resolution_cleanup_every(&config, Duration::from_secs(3)).unwrap();
        assert_eq!(cleanup_of(&out), None);
    }
}
