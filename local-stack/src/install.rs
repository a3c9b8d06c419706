//! Debian packages the stack needs from the machine (PostgreSQL, kcat, Java,
//! Maven; Chromium with its WebDriver and tmux for the system tests; podman,
//! runc and debootstrap for the container images), installed with apt-get
//! when missing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use tokio::process::Command;

use crate::cmd::{self, is_executable, which};

/// Newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
pub(crate) fn pg_bin_dir() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let bin = e.path().join("bin");
        let Ok(version) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if is_executable(&bin.join("initdb")) && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, b)| b)
}

pub(crate) fn psql_path() -> Option<PathBuf> {
    pg_bin_dir()
        .map(|b| b.join("psql"))
        .filter(|p| is_executable(p))
        .or_else(|| which("psql"))
}

pub(crate) fn kcat_path() -> Option<PathBuf> {
    which("kcat")
}

/// Debian's Chromium, driven headless by the live-page stack tests.
pub(crate) fn chromium_path() -> Option<PathBuf> {
    which("chromium")
}

/// Debian's ChromeDriver (package `chromium-driver`), the WebDriver server
/// the live-page stack tests talk to.
pub(crate) fn chromedriver_path() -> Option<PathBuf> {
    which("chromedriver")
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What the run needs from the system.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    pub pg_server: bool,
    pub kafka_jars: bool,
    /// Chromium and ChromeDriver (the live-page tests) and tmux (the
    /// console tests): the system tests' own tools.
    pub browser: bool,
}

/// Installs missing Debian packages in one apt-get run. Returns true if the
/// `postgresql` server package was installed now.
pub(crate) async fn ensure_packages(needs: &Needs) -> Result<bool> {
    let mut packages: Vec<&str> = Vec::new();
    if needs.pg_server && pg_bin_dir().is_none() {
        packages.push("postgresql");
    } else if psql_path().is_none() {
        packages.push("postgresql-client");
    }
    if kcat_path().is_none() {
        packages.push("kcat");
    }
    if which("java").is_none() {
        packages.push("default-jre-headless");
    }
    if needs.browser && chromium_path().is_none() {
        packages.push("chromium");
    }
    if needs.browser && chromedriver_path().is_none() {
        packages.push("chromium-driver");
    }
    // The console tests run `todo-admin` in a real terminal.
    if needs.browser && which("tmux").is_none() {
        packages.push("tmux");
    }
    if needs.kafka_jars && which("mvn").is_none() {
        packages.push("maven");
    }
    if packages.is_empty() {
        return Ok(false);
    }
    apt_install(&packages).await?;
    if needs.pg_server && pg_bin_dir().is_none() {
        bail!("apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb exists");
    }
    Ok(packages.contains(&"postgresql"))
}

/// The container images' tools (`crate::images`): podman with runc (its
/// default runtime, crun, is not what this machine's containers.conf names),
/// debootstrap for the base image, and objcopy (binutils, there wherever Rust
/// links) to strip the prebuilt binaries' line tables. Installed with apt-get
/// when missing.
pub(crate) async fn ensure_image_tools() -> Result<()> {
    let mut missing = Vec::new();
    for (program, package) in [
        ("podman", "podman"),
        ("runc", "runc"),
        ("debootstrap", "debootstrap"),
        ("objcopy", "binutils"),
    ] {
        // debootstrap lives in /usr/sbin, not on every PATH.
        let found =
            which(program).is_some() || is_executable(&Path::new("/usr/sbin").join(program));
        if !found {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing).await
}

/// Installs Debian packages with `apt-get update` then `apt-get install -y
/// --no-install-recommends` (through sudo when not root), logging both
/// commands. Fails when neither root nor sudo is available, naming the
/// packages to install by hand.
pub async fn apt_install(packages: &[&str]) -> Result<()> {
    let started = Instant::now();
    cmd::step(format!(
        "installing Debian packages: {}",
        packages.join(" ")
    ));
    let (program, prefix): (&str, Vec<&str>) = if is_root() {
        ("apt-get", vec![])
    } else if which("sudo").is_some() {
        ("sudo", vec!["apt-get"])
    } else {
        bail!(
            "missing packages {} and not root (no sudo): install them with apt-get",
            packages.join(" ")
        );
    };
    cmd::run(
        Command::new(program)
            .args(&prefix)
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .await?;
    cmd::run(
        Command::new(program)
            .args(&prefix)
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .await?;
    cmd::done("packages installed", started);
    Ok(())
}

/// `Path` helper used by several modules: fails with a readable message.
pub(crate) fn require(path: Option<PathBuf>, what: &str) -> Result<PathBuf> {
    match path {
        Some(p) => Ok(p),
        None => bail!("{what} not found"),
    }
}
