//! `cargo xtask <command>`: the developer command behind the README
//! (`cargo xtask --help` lists the commands and their options).

#![allow(clippy::print_stdout)]

mod bench;
mod bench_console;
mod bench_recurring;
mod bench_websocket;
mod chaos;
mod deploy_check;
mod deploy_tools;
mod openapi;
mod sqlx;
mod test;
mod token;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "The Todo platform's developer command")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install or build what is missing, start the whole local stack, print
    /// the URLs, and stop everything on Ctrl-C.
    Up(up::UpArgs),
    /// Build, then run every test (`cargo test --release --workspace`); the
    /// stack tests start their own real PostgreSQL, Kafka and Dapr.
    Test {
        /// Passed on to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Chaos campaign on a fresh stack with two replicas of every service: a
    /// mixed workload under a seeded schedule of overlapping faults (kill -9
    /// and SIGSTOP of replicas and sidecars, Kafka, PostgreSQL, placement,
    /// scheduler), then checks from Kafka, the database and the clients'
    /// logs; fails with the seed on any violation.
    Chaos(chaos::Options),
    /// Print a bearer token for the local stack, and only the token
    /// (`TOKEN=$(cargo xtask token --user alice)`); the stack need not run.
    Token(token::TokenArgs),
    /// Write each service's OpenAPI document to `openapi/<schema>.json`.
    Openapi,
    /// Write (or `--check`) the compile-checked queries' offline data, the
    /// `.sqlx/` folder of each crate, against the migrations.
    Sqlx(sqlx::Options),
    /// Install or build the tools that check the deployment files (Helm,
    /// kubeconform with the Kubernetes and Dapr CRD schemas, helm-unittest,
    /// actionlint, shellcheck, hadolint) into the cache, and print each
    /// one's version and path.
    DeployTools(deploy_tools::Options),
    /// Prove the Helm chart: `helm lint --strict`, kubeconform `-strict` of
    /// its manifests for the default, Minikube and external values, its
    /// helm-unittest suites; `--apiserver` also installs, upgrades, rolls
    /// back and uninstalls it on a local kube-apiserver.
    DeployCheck(deploy_check::Options),
    /// Load benchmark on a fresh stack: Todo writes to Kafka, audit lag and
    /// catch-up; `bench websocket` for the WebSocket fan-out, `bench recurring`
    /// for recurrence and reminders, `bench console` for the operator console.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        which: Option<Bench>,
        #[command(flatten)]
        options: bench::Options,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Request → client latency with 1/100/1000 clients, memory per idle connection.
    Websocket(bench_websocket::Options),
    /// Completion → next instance, and reminder due time → notification sent.
    Recurring(bench_recurring::Options),
    /// The operator console's update loop and drawing, fed in process (no
    /// stack): messages/s absorbed, time per frame, lag at 1 000 updates/s.
    Console(bench_console::Options),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Up(args) => up::run(args).await,
        Command::Test { args } => match test::run(&args).await {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Chaos(options) => chaos::run(options).await,
        Command::Token(args) => token::run(args),
        Command::Openapi => openapi::run().await,
        Command::Sqlx(options) => sqlx::run(options).await,
        Command::DeployTools(options) => deploy_tools::run(options).await,
        Command::DeployCheck(options) => deploy_check::run(options).await,
        Command::Bench {
            which: Some(Bench::Websocket(o)),
            ..
        } => bench_websocket::run(o).await,
        Command::Bench {
            which: Some(Bench::Recurring(o)),
            ..
        } => bench_recurring::run(o).await,
        Command::Bench {
            which: Some(Bench::Console(o)),
            ..
        } => bench_console::run(o).await,
        Command::Bench {
            which: None,
            options,
        } => bench::run(options).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
