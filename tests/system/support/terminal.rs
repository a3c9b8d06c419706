//! A real terminal for the console tests: tmux (Debian's package) on a
//! server of its own, running a plain shell in which `todo-admin` is
//! started as a user would start it. Keys go in with `send-keys`; the screen
//! comes out with `capture-pane`; the terminal's modes (alternate screen,
//! mouse, cursor, the tty's line discipline) are read back after the console
//! quits, to check that it left the terminal as it found it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::process::Command;

use super::eventually;

/// The console binary built beside this test binary (`cargo build
/// --release --workspace --all-targets` builds both into one target dir).
pub fn console_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // <target>/release/deps/system-<hash> -> <target>/release/todo-admin
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test binary's folder")?;
    let bin = dir.join("todo-admin");
    ensure!(bin.exists(), "{} was not built", bin.display());
    Ok(bin)
}

/// A tmux server with one pane running a shell.
pub struct Terminal {
    socket: String,
}

impl Terminal {
    /// Starts a `width`×`height` terminal running `bash` with `env` set.
    pub async fn open(width: u16, height: u16, env: &[(&str, &str)]) -> Result<Terminal> {
        let term = Terminal {
            socket: format!("todo-admin-test-{}", uuid::Uuid::new_v4().simple()),
        };
        let mut args: Vec<String> = vec![
            "new-session".into(),
            "-d".into(),
            "-s".into(),
            "console".into(),
            "-x".into(),
            width.to_string(),
            "-y".into(),
            height.to_string(),
        ];
        for (k, v) in env
            .iter()
            .chain(&[("PS1", "$ "), ("TERM", "xterm-256color")])
        {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push("bash --norc --noprofile".into());
        term.tmux(&args).await?;
        Ok(term)
    }

    async fn tmux(&self, args: &[String]) -> Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .context("running tmux (Debian package `tmux`)")?;
        if !out.status.success() {
            bail!(
                "tmux {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Types `keys` (tmux key names such as `Enter`, `Escape`, `C-c`, or
    /// literal text with `literal`).
    pub async fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec![
            "send-keys".to_owned(),
            "-t".to_owned(),
            "console".to_owned(),
        ];
        args.extend(keys.iter().map(|k| (*k).to_owned()));
        self.tmux(&args).await.map(drop)
    }

    /// Types `text` as it is, then Enter.
    pub async fn line(&self, text: &str) -> Result<()> {
        self.tmux(&[
            "send-keys".into(),
            "-t".into(),
            "console".into(),
            "-l".into(),
            text.into(),
        ])
        .await?;
        self.keys(&["Enter"]).await
    }

    /// What the pane shows now.
    pub async fn screen(&self) -> Result<String> {
        self.tmux(&[
            "capture-pane".into(),
            "-p".into(),
            "-t".into(),
            "console".into(),
        ])
        .await
    }

    /// Waits until the screen shows `needle`; returns the screen.
    pub async fn shows(&self, needle: &str, within: Duration) -> Result<String> {
        self.showing(&format!("the console shows {needle:?}"), within, |s| {
            s.contains(needle)
        })
        .await
    }

    /// Waits until the screen satisfies `check`; the error has the last screen.
    pub async fn showing(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let last = std::sync::Mutex::new(String::new());
        let found = eventually(within, what, || async {
            let screen = self.screen().await?;
            let ok = check(&screen);
            *last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = screen.clone();
            Ok(ok.then_some(screen))
        })
        .await;
        found.with_context(|| {
            let last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            format!("the screen was:\n{last}")
        })
    }

    /// A tmux format of the pane (`#{alternate_on}`, ...).
    pub async fn pane(&self, format: &str) -> Result<String> {
        Ok(self
            .tmux(&[
                "display-message".into(),
                "-p".into(),
                "-t".into(),
                "console".into(),
                format.into(),
            ])
            .await?
            .trim()
            .to_owned())
    }

    /// Starts the console in the shell with `args`; prints its exit status
    /// when it ends.
    pub async fn start_console(&self, args: &[String]) -> Result<()> {
        let bin = console_binary()?;
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        self.line(&format!(
            "{} {}; echo \"console exited with $?\"",
            bin.display(),
            quoted.join(" ")
        ))
        .await
    }

    /// Checks that the console has quit and left the terminal as a shell
    /// needs it: main screen, no mouse reporting, cursor shown, and the tty
    /// back in canonical mode with echo (the shell's `stty` says so).
    pub async fn left_clean(&self) -> Result<()> {
        self.shows("console exited with 0", Duration::from_secs(5))
            .await?;
        for (format, want) in [
            ("#{alternate_on}", "0"),
            ("#{mouse_any_flag}", "0"),
            ("#{mouse_button_flag}", "0"),
            ("#{mouse_all_flag}", "0"),
            ("#{cursor_flag}", "1"),
        ] {
            let got = self.pane(format).await?;
            ensure!(got == want, "after quitting, {format} is {got}, not {want}");
        }
        // The answer's line starts with `tty:`, which the typed command does not.
        self.line(
            "printf 'tty:%s\\n' \"$(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)' | tr '\\n' ' ')\"",
        )
        .await?;
        let screen = self
            .showing("the shell's tty modes", Duration::from_secs(5), |s| {
                s.lines().any(|l| l.starts_with("tty:"))
            })
            .await?;
        let modes = screen
            .lines()
            .find(|l| l.starts_with("tty:"))
            .unwrap_or_default();
        ensure!(
            modes.contains("icanon echo") && !modes.contains("-icanon") && !modes.contains("-echo"),
            "the tty is still raw after quitting: {modes:?}"
        );
        Ok(())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
