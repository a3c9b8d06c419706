//! `cargo xtask test`: build everything, check the compile-checked queries'
//! offline data against the migrations (`cargo xtask sqlx --check`), then run
//! every test (the database and stack tests bring up their own PostgreSQL and
//! stack) with the output streamed; keeps cargo's exit code.

use std::process::ExitCode;

use anyhow::{Context, Result};

async fn cargo(args: &[&str], extra: &[String]) -> Result<i32> {
    let mut c = todo_local_stack::cargo_command();
    c.args(args).args(extra);
    eprintln!("[xtask] $ cargo {} {}", args.join(" "), extra.join(" "));
    let status = c.status().await.context("cannot run cargo")?;
    Ok(status.code().unwrap_or(1))
}

pub async fn run(args: &[String]) -> Result<ExitCode> {
    let code = cargo(&["build", "--release", "--workspace", "--all-targets"], &[]).await?;
    if code != 0 {
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    eprintln!("[xtask] checking the offline query data (.sqlx/) against the migrations");
    crate::sqlx::run(crate::sqlx::Options { check: true }).await?;
    let code = cargo(&["test", "--release", "--workspace"], args).await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
