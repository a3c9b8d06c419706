//! `cargo xtask <command>`: the developer command behind the README.
//!
//! * `up [--no-services] [--fresh]` — install/build what is missing, start the
//!   whole local stack, print the URLs, stop everything on Ctrl-C.
//! * `test [cargo test args…]` — build, then `cargo test --release --workspace`.
//! * `openapi` — write each service's OpenAPI document to `openapi/<schema>.json`.
//! * `bench [args…]` — load benchmark against a running stack.
//! * `bench websocket [args…]` — WebSocket fan-out latency and memory per connection.

#![allow(clippy::print_stdout)]

mod bench;
mod bench_websocket;
mod openapi;
mod test;
mod up;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <up [--no-services] [--fresh] | test [args] | openapi | bench [args] | bench websocket [args]>";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "up" => up::run(rest).await,
        "test" => match test::run(rest).await {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        "openapi" => openapi::run(rest).await,
        "bench" => match rest.split_first() {
            Some((sub, more)) if sub == "websocket" => bench_websocket::run(more).await,
            _ => bench::run(rest).await,
        },
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown command {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
