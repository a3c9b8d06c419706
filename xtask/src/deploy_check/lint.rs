//! hadolint on every Dockerfile, actionlint on every GitHub Actions workflow
//! and shellcheck on every shell script of the repository (the files git
//! lists: tracked, or new and not ignored), each at its strictest setting.
//! Each test first shows the tool refusing a bad sample, so it cannot pass
//! because the tool judged nothing, and fails when it finds none of the
//! files that must exist.

use std::path::{Path, PathBuf};
use std::process::Output;

use todo_local_stack::cmd;
use tokio::process::Command;

use crate::deploy_tools;

/// The repository's root.
pub(super) fn repo_root() -> PathBuf {
    todo_local_stack::workspace_root()
}

/// Every file git lists (tracked, or untracked and not ignored) that exists,
/// relative to the root.
fn repo_files() -> Vec<PathBuf> {
    let root = repo_root();
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["ls-files", "-z", "-co", "--exclude-standard"])
        .output()
        .expect("running git ls-files");
    assert!(
        out.status.success(),
        "git ls-files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .filter(|path| root.join(path).is_file())
        .collect();
    files.sort();
    files.dedup();
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// `Dockerfile`, `Dockerfile.<anything>`, `<anything>.Dockerfile`, `Containerfile`.
fn is_dockerfile(path: &Path) -> bool {
    let name = file_name(path);
    name.starts_with("Dockerfile")
        || name.starts_with("Containerfile")
        || name.to_ascii_lowercase().ends_with(".dockerfile")
}

fn is_workflow(path: &Path) -> bool {
    path.parent() == Some(Path::new(".github/workflows"))
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        )
}

/// The shell a `#!` line names (`#!/bin/bash`, `#!/usr/bin/env bash`), if any.
fn shebang_shell(first_line: &str) -> Option<&str> {
    let rest = first_line.strip_prefix("#!")?.trim_start();
    if !rest.starts_with('/') {
        return None; // `#![attribute]` in Rust, not a shebang
    }
    let mut words = rest.split_whitespace();
    let program = words.next()?.rsplit('/').next()?;
    let program = if program == "env" {
        words.find(|w| !w.starts_with('-'))?
    } else {
        program
    };
    matches!(program, "sh" | "bash" | "dash" | "ksh").then_some(program)
}

/// `*.sh`, `*.bash`, or any file whose first line is a shell's `#!`.
fn is_shell_script(root: &Path, path: &Path) -> bool {
    if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("sh" | "bash")
    ) {
        return true;
    }
    let Ok(bytes) = std::fs::read(root.join(path)) else {
        return false;
    };
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    std::str::from_utf8(first).is_ok_and(|line| shebang_shell(line).is_some())
}

/// Runs a command (logged) and returns its output whatever its exit status.
async fn output(command: &mut Command, stdin: Option<&str>) -> Output {
    cmd::run_capture_status(command, stdin).await.unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn listed(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn shebangs_are_told_from_rust_attributes() {
    assert_eq!(shebang_shell("#!/usr/bin/env bash"), Some("bash"));
    assert_eq!(shebang_shell("#!/bin/sh -e"), Some("sh"));
    assert_eq!(shebang_shell("#!/usr/bin/env -S bash -eu"), Some("bash"));
    assert_eq!(shebang_shell("#!/usr/bin/env python3"), None);
    assert_eq!(shebang_shell("#![allow(clippy::print_stdout)]"), None);
    assert!(is_dockerfile(Path::new("Dockerfile")));
    assert!(is_dockerfile(Path::new("deploy/images/Dockerfile.debug")));
    assert!(!is_dockerfile(Path::new("docs/dockerfiles.md")));
    assert!(is_workflow(Path::new(".github/workflows/ci.yml")));
    assert!(!is_workflow(Path::new(".github/dependabot.yml")));
}

#[tokio::test]
async fn every_dockerfile_passes_hadolint() {
    let hadolint = deploy_tools::hadolint().await.unwrap();
    let bad = "FROM debian\nRUN cd /tmp && apt-get install curl\nCMD /app\n";
    let out = output(Command::new(&hadolint).arg("-"), Some(bad)).await;
    assert!(
        !out.status.success() && text(&out).contains("DL3006"),
        "hadolint passed a bad Dockerfile: {}",
        text(&out)
    );

    let root = repo_root();
    let files: Vec<PathBuf> = repo_files()
        .into_iter()
        .filter(|f| is_dockerfile(f))
        .collect();
    assert!(
        files.iter().any(|f| f == Path::new("Dockerfile")),
        "the root Dockerfile (every image's) was not found: {}",
        listed(&files)
    );
    eprintln!(
        "hadolint: {} Dockerfile(s): {}",
        files.len(),
        listed(&files)
    );
    let mut failures = Vec::new();
    for file in &files {
        let out = output(Command::new(&hadolint).current_dir(&root).arg(file), None).await;
        if !out.status.success() {
            failures.push(format!("{}:\n{}", file.display(), text(&out)));
        }
    }
    assert!(failures.is_empty(), "hadolint:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn every_workflow_passes_actionlint_with_shellcheck() {
    let actionlint = deploy_tools::actionlint().await.unwrap();
    let shellcheck = deploy_tools::shellcheck().await.unwrap();
    let lint = |dir: &Path| {
        let mut c = Command::new(&actionlint);
        c.current_dir(dir)
            .arg("-shellcheck")
            .arg(&shellcheck)
            .arg("-pyflakes=");
        c
    };

    let scratch = tempfile::tempdir().unwrap();
    let bad = scratch.path().join(".github/workflows/bad.yml");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(
        &bad,
        "name: bad\non: [push]\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.evnt.name }}\n      - run: cd $HOME/src; ls\n",
    )
    .unwrap();
    let out = output(lint(scratch.path()).arg(&bad), None).await;
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains("evnt") && said.contains("SC2086"),
        "actionlint (with shellcheck on run: scripts) passed a bad workflow: {said}"
    );

    let root = repo_root();
    let files: Vec<PathBuf> = repo_files()
        .into_iter()
        .filter(|f| is_workflow(f))
        .collect();
    assert!(!files.is_empty(), "no workflow found in .github/workflows");
    eprintln!(
        "actionlint: {} workflow(s): {}",
        files.len(),
        listed(&files)
    );
    let out = output(lint(&root).args(&files), None).await;
    assert!(out.status.success(), "actionlint:\n{}", text(&out));
}

#[tokio::test]
async fn every_shell_script_passes_shellcheck() {
    let shellcheck = deploy_tools::shellcheck().await.unwrap();
    let bad = "#!/usr/bin/env bash\ndir=$1\nls $dir\n";
    let out = output(Command::new(&shellcheck).arg("-"), Some(bad)).await;
    assert!(
        !out.status.success() && text(&out).contains("SC2086"),
        "shellcheck passed a bad script: {}",
        text(&out)
    );

    let root = repo_root();
    let files: Vec<PathBuf> = repo_files()
        .into_iter()
        .filter(|f| is_shell_script(&root, f))
        .collect();
    for expected in [
        ".ci/run",
        "deploy/minikube/up.sh",
        "deploy/minikube/smoke.sh",
        "deploy/minikube/down.sh",
        "deploy/minikube/logs.sh",
        "deploy/minikube/lib.sh",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(expected)),
            "{expected} was not found among the shell scripts: {}",
            listed(&files)
        );
    }
    eprintln!("shellcheck: {} script(s): {}", files.len(), listed(&files));
    // -x follows `source`, so a script is checked with what it sources.
    let out = output(
        Command::new(&shellcheck)
            .current_dir(&root)
            .args(["--external-sources", "--severity=style"])
            .args(&files),
        None,
    )
    .await;
    assert!(out.status.success(), "shellcheck:\n{}", text(&out));
}
