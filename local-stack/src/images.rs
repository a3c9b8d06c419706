//! The platform's container images, built on this machine from the root
//! `Dockerfile` (one target per image, [`IMAGE_TARGETS`]) with podman, for
//! the image proof of the system tests (`tests/system/images.rs`).
//!
//! No container registry is reachable here, so the Dockerfile's base,
//! [`BASE_IMAGE`], is made locally: `debootstrap --variant=minbase` of Debian
//! 12 from the mirror apt uses, trimmed as the slim images are (no apt lists,
//! no downloaded packages, no manuals, locales or documentation but the
//! copyright files), cached as a tarball in `<cache>/debian-<suite>-minbase/`
//! and imported under that name. Podman (Debian's, rootful) reads a
//! `containers.conf` of our own (`CONTAINERS_CONF`), which this machine needs:
//! runc as the runtime and explicit ulimits. Images are built with
//! `BINARIES=prebuilt` from a context [`prebuilt_context`] assembles (the
//! Dockerfile, `db/`, and the release binaries without their line tables).
//! [`crate::Stack::outside_replica`] gives a container the ports and sidecar
//! of one more replica of its service.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::cmd;
use crate::install::{self, is_root};
use crate::options::cache_dir;
use crate::spec::{MAX_REPLICAS, Replica, SERVICES};

/// The Dockerfile's base image; a local debootstrap when none is present.
pub const BASE_IMAGE: &str = "docker.io/library/debian:bookworm-slim";

/// The Debian release of [`BASE_IMAGE`].
pub const BASE_SUITE: &str = "bookworm";

/// The tag every image gets (the workspace's version).
pub const IMAGE_TAG: &str = "0.1.0";

/// The console's build target (and binary).
pub const CONSOLE_TARGET: &str = "todo-admin";

/// Every build target of the Dockerfile: the services, by app id, then the
/// console.
pub const IMAGE_TARGETS: [&str; 6] = [
    "todo-service",
    "audit-service",
    "websocket-service",
    "notification-service",
    "recurring-task-service",
    CONSOLE_TARGET,
];

/// The label our imported base carries (with the tarball's digest), so a
/// base pulled from a registry is never replaced.
const BASE_LABEL: &str = "org.todo-platform.debootstrap";

/// `todo-platform/<target>:0.1.0`.
pub fn image_name(target: &str) -> String {
    format!("todo-platform/{target}:{IMAGE_TAG}")
}

/// This machine's podman with our `containers.conf`.
#[derive(Debug, Clone)]
pub struct Podman {
    conf: PathBuf,
}

/// What `containers.conf` must say on this machine: its default runtime
/// (crun) is not installed, and without explicit ulimits the containers get
/// limits the kernel refuses.
const CONTAINERS_CONF: &str = r#"# Written by todo-local-stack (local-stack/src/images.rs); read through
# CONTAINERS_CONF by the image proof of the system tests.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"#;

impl Podman {
    /// Installs podman, runc and debootstrap with apt-get when missing and
    /// writes `<cache>/podman/containers.conf`. Rootful podman and
    /// debootstrap need root.
    pub async fn ensure() -> Result<Podman> {
        if !is_root() {
            bail!(
                "the container images are built with rootful podman and debootstrap: run as root"
            );
        }
        install::ensure_image_tools().await?;
        let dir = cache_dir().join("podman");
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("containers.conf");
        if std::fs::read_to_string(&conf).ok().as_deref() != Some(CONTAINERS_CONF) {
            std::fs::write(&conf, CONTAINERS_CONF)
                .with_context(|| format!("writing {}", conf.display()))?;
            cmd::step(format!("podman: wrote {}", conf.display()));
        }
        Ok(Podman { conf })
    }

    /// The `containers.conf` it reads (`CONTAINERS_CONF`).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// `podman` with `CONTAINERS_CONF` set.
    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf);
        c
    }

    /// Runs `podman <args>`, logging it; its stdout, trimmed.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let out = cmd::run_capture(self.command().args(args), None).await?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `podman <args>` without logging it; `None` unless it succeeded.
    pub async fn query(&self, args: &[&str]) -> Option<String> {
        let out = cmd::run_quiet(self.command().args(args), None).await.ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Makes sure [`BASE_IMAGE`] exists: kept if it was pulled from a
    /// registry or imported from the current tarball, else imported from the
    /// debootstrap tarball (made first if not cached).
    pub async fn ensure_base_image(&self) -> Result<()> {
        let format = format!("{{{{index .Labels \"{BASE_LABEL}\"}}}}");
        let label = self
            .query(&["image", "inspect", "--format", &format, BASE_IMAGE])
            .await;
        if let Some(label) = &label
            && (label.is_empty() || label == "<no value>")
        {
            cmd::step(format!("podman: using {BASE_IMAGE} as it is (not ours)"));
            return Ok(());
        }
        let tarball = base_tarball().await?;
        let digest = crate::dapr::sha256_file(&tarball)?;
        if label.as_deref() == Some(digest.as_str()) {
            return Ok(());
        }
        let started = Instant::now();
        cmd::step(format!(
            "podman: importing {} as {BASE_IMAGE}",
            tarball.display()
        ));
        let tarball = tarball.to_string_lossy();
        self.run(&[
            "import",
            "--change",
            &format!("LABEL {BASE_LABEL}={digest}"),
            "--change",
            "CMD [\"bash\"]",
            &tarball,
            BASE_IMAGE,
        ])
        .await?;
        cmd::done(format!("podman: {BASE_IMAGE} ready"), started);
        Ok(())
    }

    /// `podman build --target <target>` of the Dockerfile in `context` with
    /// `BINARIES=prebuilt`, tagged [`image_name`]. Docker's image format, so
    /// that `HEALTHCHECK` is kept (OCI's has no such field).
    pub async fn build_prebuilt(&self, context: &Path, target: &str) -> Result<()> {
        let started = Instant::now();
        cmd::step(format!("podman: building {}", image_name(target)));
        let context = context.to_string_lossy();
        cmd::run_capture(
            self.command().args([
                "build",
                "--format",
                "docker",
                "--target",
                target,
                "--build-arg",
                "BINARIES=prebuilt",
                "--tag",
                &image_name(target),
                &context,
            ]),
            None,
        )
        .await?;
        cmd::done(format!("podman: {} built", image_name(target)), started);
        Ok(())
    }

    /// The size of an image in bytes, as `podman images` shows it.
    pub async fn image_size(&self, image: &str) -> Result<u64> {
        let size = self
            .run(&["image", "inspect", "--format", "{{.Size}}", image])
            .await?;
        size.parse()
            .with_context(|| format!("podman's size of {image}: {size:?}"))
    }
}

impl crate::Stack {
    /// One more replica of `app_id`, after the stack's own, whose app runs
    /// outside the stack (a container on the host network): starts its
    /// sidecar on that replica's ports, waits until the sidecar's API is up,
    /// and returns the replica with the environment its app needs (the
    /// variables the stack gives its own replicas: `APP_PORT`, the sidecar's
    /// ports, `APP_API_TOKEN`, `AUTH_DEV_TRUST_USER_HEADER`, `RUST_LOG`).
    /// Stop the sidecar with [`crate::Stack::stop_replica_sidecar`].
    pub async fn outside_replica(
        &mut self,
        app_id: &str,
    ) -> Result<(Replica, Vec<(String, String)>)> {
        let spec = self.spec(app_id)?;
        let index = u16::try_from(self.replicas(app_id).len())?;
        if index >= MAX_REPLICAS {
            bail!("{app_id} runs {index} replicas already, the most there can be");
        }
        let replica = Replica { spec, index };
        let env = crate::services::app_launch(
            Path::new(spec.package),
            &replica,
            self.app_api_token(app_id),
            self.dev_trust_user_header,
        )
        .env;
        self.start_replica_sidecar(replica).await?;
        Ok((replica, env))
    }

    /// Waits until a replica's sidecar is fully healthy (`/v1.0/healthz`:
    /// its app answers too), e.g. once an outside app is up.
    pub async fn wait_replica_sidecar_ready(&mut self, replica: Replica) -> Result<()> {
        self.wait_sidecar(&replica, true).await
    }
}

/// The mirror apt uses for `suite` (from `/etc/apt/sources.list.d/*.sources`
/// and `/etc/apt/sources.list`), or `http://deb.debian.org/debian`.
pub fn debian_mirror(suite: &str) -> String {
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|x| x == "sources" || x == "list") {
                texts.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    texts
        .iter()
        .find_map(|t| mirror_in(t, suite))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}

/// The first `deb` source of `suite` in a sources file, one-line or deb822.
fn mirror_in(text: &str, suite: &str) -> Option<String> {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        // deb [options] uri suite components...
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']'))?;
            rest.drain(..=end);
        }
        if rest.get(1) == Some(&suite) {
            return rest.first().map(|u| u.trim_end_matches('/').to_owned());
        }
    }
    for paragraph in text.split("\n\n") {
        let field = |name: &str| {
            paragraph.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let has_suite = field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == suite));
        let enabled = field("Enabled").is_none_or(|e| e != "no");
        if is_deb && has_suite && enabled {
            return field("URIs")
                .and_then(|u| u.split_whitespace().next())
                .map(|u| u.trim_end_matches('/').to_owned());
        }
    }
    None
}

/// `<cache>/debian-<suite>-minbase/rootfs.tar`, made once with debootstrap.
async fn base_tarball() -> Result<PathBuf> {
    let dir = cache_dir().join(format!("debian-{BASE_SUITE}-minbase"));
    let tarball = dir.join("rootfs.tar");
    if tarball.exists() {
        return Ok(tarball);
    }
    let started = Instant::now();
    let mirror = debian_mirror(BASE_SUITE);
    cmd::step(format!(
        "debootstrap: Debian {BASE_SUITE} (minbase) from {mirror} (once, about a minute)"
    ));
    let rootfs = dir.join("rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)?;
    }
    std::fs::create_dir_all(&dir)?;
    // In /usr/sbin, which not every PATH holds.
    let debootstrap = cmd::which("debootstrap").unwrap_or_else(|| "/usr/sbin/debootstrap".into());
    cmd::run(
        Command::new(debootstrap)
            .args(["--variant=minbase", BASE_SUITE])
            .arg(&rootfs)
            .arg(&mirror),
    )
    .await?;
    slim(&rootfs)?;
    let tmp = dir.join("rootfs.tar.tmp");
    cmd::run(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tmp)
            .arg("."),
    )
    .await?;
    std::fs::rename(&tmp, &tarball)?;
    std::fs::remove_dir_all(&rootfs)?;
    cmd::done(format!("debootstrap: {}", tarball.display()), started);
    Ok(tarball)
}

/// Trims a fresh root filesystem as Debian's slim images are: no
/// downloaded packages or package lists, no manuals, info pages or locales,
/// no documentation but each package's copyright file.
fn slim(rootfs: &Path) -> Result<()> {
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ] {
        empty_dir(&rootfs.join(dir), &|_| false)?;
    }
    empty_dir(&rootfs.join("usr/share/doc"), &|p: &Path| {
        p.file_name().is_some_and(|n| n == "copyright")
    })?;
    Ok(())
}

/// Removes what `dir` holds (recursively), but files `keep` accepts and the
/// folders on their way; the folder itself stays.
fn empty_dir(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<bool> {
    let mut kept = false;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(false);
    };
    for e in entries.flatten() {
        let p = e.path();
        let kind = e.file_type()?;
        if kind.is_dir() {
            if empty_dir(&p, keep)? {
                kept = true;
            } else {
                std::fs::remove_dir(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        } else if keep(&p) {
            kept = true;
        } else if p.file_name().is_some_and(|n| n == "lock" || n == "partial") {
            // apt's lock file and partial/ folder stay (apt expects them).
            kept = true;
        } else {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(kept)
}

/// Assembles a build context for `BINARIES=prebuilt` in `dest` (replacing
/// it): the repository's `Dockerfile`, `.dockerignore` and `db/`, and each
/// image's binary from `bin_dir` at `target/release/<binary>`, without its
/// line tables (`objcopy --strip-debug`: about 80 MB less per image; the
/// symbols stay for backtraces). Returns `dest`.
pub async fn prebuilt_context(repo: &Path, bin_dir: &Path, dest: &Path) -> Result<PathBuf> {
    let started = Instant::now();
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    let release = dest.join("target/release");
    std::fs::create_dir_all(&release)?;
    for file in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(repo.join(file), dest.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    cmd::run(
        Command::new("cp")
            .arg("-r")
            .arg(repo.join("db"))
            .arg(dest.join("db")),
    )
    .await?;
    let binaries = SERVICES.iter().map(|s| s.package).chain([CONSOLE_TARGET]);
    for bin in binaries {
        let from = bin_dir.join(bin);
        if !from.exists() {
            bail!(
                "{} was not built (cargo build --release --workspace --all-targets)",
                from.display()
            );
        }
        cmd::run(
            Command::new("objcopy")
                .arg("--strip-debug")
                .arg(&from)
                .arg(release.join(bin)),
        )
        .await?;
    }
    cmd::done(
        format!("images: build context in {}", dest.display()),
        started,
    );
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_read_from_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(deb822, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let security_only =
            "Types: deb\nURIs: http://security.example/\nSuites: bookworm-security\n";
        assert_eq!(mirror_in(security_only, "bookworm"), None);
        let one_line = "# comment\ndeb-src http://src.example/debian bookworm main\n\
                        deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n";
        assert_eq!(
            mirror_in(one_line, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in("deb http://m.example/debian bookworm main", "bookworm").as_deref(),
            Some("http://m.example/debian")
        );
    }

    #[test]
    fn every_service_has_an_image_target_named_as_its_app_id() {
        for spec in SERVICES {
            assert!(IMAGE_TARGETS.contains(&spec.app_id), "{}", spec.app_id);
            assert_eq!(spec.app_id, spec.package);
        }
        assert_eq!(image_name("todo-admin"), "todo-platform/todo-admin:0.1.0");
    }

    #[test]
    fn the_dockerfile_has_a_stage_per_target_and_names_the_base() {
        let dockerfile =
            std::fs::read_to_string(crate::workspace_root().join("Dockerfile")).unwrap();
        for target in IMAGE_TARGETS {
            assert!(
                dockerfile.contains(&format!(" AS {target}\n")),
                "no stage {target}"
            );
        }
        assert!(dockerfile.contains(&format!("FROM {BASE_IMAGE} AS runtime")));
        for spec in SERVICES {
            assert!(
                dockerfile.contains(&format!("EXPOSE {}\n", spec.app_port)),
                "{} port",
                spec.app_id
            );
        }
    }
}
