//! `cargo xtask up`: the whole local stack, until Ctrl-C.

use anyhow::{Result, bail};
use todo_local_stack::{Stack, StackOptions};
use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn interrupted() {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Cannot install handlers: never resolve (default behaviour applies).
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

fn print_urls(stack: &Stack) {
    let mut rows: Vec<(String, String)> = Vec::new();
    for spec in stack.services() {
        let replicas = stack.replicas(spec.app_id);
        if replicas.len() > 1 {
            for r in &replicas {
                rows.push((
                    format!("{} replica {}", spec.app_id, r.index + 1),
                    format!(
                        "http://127.0.0.1:{} (sidecar http://127.0.0.1:{})",
                        r.app_port(),
                        r.dapr_http_port()
                    ),
                ));
            }
        }
        let app = format!("http://127.0.0.1:{}", spec.app_port);
        rows.push((format!("{} API", spec.app_id), app.clone()));
        rows.push(("  Swagger UI".into(), format!("{app}/docs")));
        rows.push(("  OpenAPI".into(), format!("{app}/openapi.json")));
        rows.push(("  metrics".into(), format!("{app}/metrics")));
        if spec.app_id == todo_local_stack::WEBSOCKET_SERVICE.app_id {
            rows.push((
                "  WebSocket".into(),
                format!(
                    "ws://127.0.0.1:{}/ws?user_id=<user>&since=<seq>",
                    spec.app_port
                ),
            ));
            rows.push(("  live page".into(), format!("{app}/live?user_id=alice")));
        }
        rows.push(("  Dapr sidecar".into(), stack.dapr_http_url(spec.app_id)));
    }
    rows.push(("Kafka broker".into(), stack.kafka_brokers()));
    rows.push(("PostgreSQL (admin)".into(), stack.pg_admin_url()));
    rows.push(("logs".into(), stack.logs_dir().display().to_string()));
    rows.push((
        "watch events".into(),
        format!(
            "kcat -b {} -C -t task-events -o beginning",
            stack.kafka_brokers()
        ),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!();
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
    println!("\nPress Ctrl-C to stop everything.");
}

/// Options of `cargo xtask up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Start PostgreSQL, Kafka, placement and scheduler only (and provision them).
    #[arg(long)]
    no_services: bool,
    /// Wipe the state folder (.state) first.
    #[arg(long)]
    fresh: bool,
    /// Replicas to run: `N` for every service, `APP_ID=N` for one (repeatable;
    /// the later wins). Each replica has its own sidecar; its ports are the
    /// first's plus 100 per replica (8101, 3601... for the second).
    #[arg(long, value_name = "N|APP_ID=N")]
    replicas: Vec<String>,
}

/// Applies one `--replicas` value.
fn apply_replicas(opts: &mut StackOptions, value: &str) -> Result<()> {
    let parse = |n: &str| {
        n.trim()
            .parse::<u16>()
            .map_err(|_| anyhow::anyhow!("--replicas {value}: {n:?} is not a number"))
    };
    match value.split_once('=') {
        Some((app_id, n)) => opts.set_replicas(app_id.trim(), parse(n)?),
        None => {
            let n = parse(value)?;
            todo_local_stack::SERVICES
                .iter()
                .try_for_each(|s| opts.set_replicas(s.app_id, n))
        }
    }
}

pub async fn run(args: UpArgs) -> Result<()> {
    let mut opts = StackOptions::local();
    if args.no_services {
        opts.services.clear();
    }
    opts.fresh = args.fresh;
    for value in &args.replicas {
        apply_replicas(&mut opts, value)?;
    }
    let stack = tokio::select! {
        r = Stack::up(opts) => r?,
        _ = interrupted() => bail!("interrupted while starting (everything started was killed)"),
    };
    print_urls(&stack);
    interrupted().await;
    eprintln!();
    tokio::select! {
        r = stack.shutdown() => r,
        _ = interrupted() => {
            eprintln!("[xtask] second signal: killing everything");
            Ok(())
        }
    }
}
