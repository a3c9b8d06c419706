//! `cargo xtask up`: the whole local stack, until Ctrl-C. Prints the URLs
//! and ready bearer tokens (two users and an operator) as shell lines.

use std::time::Duration;

use anyhow::{Result, bail};
use todo_local_stack::{OPERATOR_SUBJECT, Stack, StackOptions};
use tokio::signal::unix::{SignalKind, signal};

/// How long the tokens `up` prints stay valid.
const PRINTED_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The example users `up` prints tokens for.
const EXAMPLE_USERS: [&str; 2] = ["alice", "bob"];

/// Tokens printed by `up`: `(shell variable, token)`, the users first
/// (`ALICE_TOKEN`...), then the operator (`OPERATOR_TOKEN`).
fn example_tokens(stack: &Stack) -> Vec<(String, String)> {
    let users = EXAMPLE_USERS
        .iter()
        .map(|user| (*user, stack.token(user, false, PRINTED_TOKEN_TTL)));
    let operator = std::iter::once((
        OPERATOR_SUBJECT,
        stack.token(OPERATOR_SUBJECT, true, PRINTED_TOKEN_TTL),
    ));
    users
        .chain(operator)
        .map(|(subject, token)| (format!("{}_TOKEN", subject.to_uppercase()), token))
        .collect()
}

/// The token section: shell lines that can be pasted as a whole (comments,
/// `export`s, one example request to `todo_api`).
fn token_lines(tokens: &[(String, String)], todo_api: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "# Bearer tokens, valid {} h (`cargo xtask token --user <id> [--operator] [--ttl 1h]` mints more):",
        PRINTED_TOKEN_TTL.as_secs() / 3600
    )];
    lines.extend(
        tokens
            .iter()
            .map(|(var, token)| format!("export {var}={token}")),
    );
    if let Some((var, _)) = tokens.first() {
        lines.push(format!(
            "curl -H \"Authorization: Bearer ${var}\" {todo_api}/api/v1/tasks"
        ));
    }
    lines
}

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

fn print_urls(stack: &Stack, dev_trust_user_header: bool) {
    let tokens = example_tokens(stack);
    let live_token = tokens.first().map_or("<JWT>", |(_, t)| t.as_str());
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
            let ws = format!("ws://127.0.0.1:{}", spec.app_port);
            rows.push(("  WebSocket".into(), format!("{ws}/ws?since=<seq>")));
            rows.push((
                "    token".into(),
                "Sec-WebSocket-Protocol: todo-updates, bearer.<JWT> \
                 (or Authorization: Bearer <JWT>)"
                    .into(),
            ));
            rows.push((
                "  operator stream".into(),
                format!("{ws}/ws/operator?since=<seq> (an operator's JWT, $OPERATOR_TOKEN)"),
            ));
            rows.push((
                format!("  live page ({})", EXAMPLE_USERS[0]),
                format!("{app}/live#token={live_token}"),
            ));
        }
        rows.push(("  Dapr sidecar".into(), stack.dapr_http_url(spec.app_id)));
    }
    rows.push(("Kafka broker".into(), stack.kafka_brokers()));
    rows.push(("PostgreSQL (admin)".into(), stack.pg_admin_url()));
    rows.push(("logs".into(), stack.logs_dir().display().to_string()));
    rows.push((
        "admin console".into(),
        "cargo run --release -p admin-tui (in another terminal; or target/release/todo-admin)"
            .into(),
    ));
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
    let todo_api = format!(
        "http://127.0.0.1:{}",
        todo_local_stack::TODO_SERVICE.app_port
    );
    println!();
    for line in token_lines(&tokens, &todo_api) {
        println!("  {line}");
    }
    if dev_trust_user_header {
        println!(
            "\n  WARNING: --dev-trust-user-header: every service trusts `X-User-Id: <user>` \
             without a token, so anyone can act as any user (development only)."
        );
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
    /// Development only: every service trusts `X-User-Id: <user>` as the
    /// caller when a request has no token (AUTH_DEV_TRUST_USER_HEADER).
    #[arg(long)]
    dev_trust_user_header: bool,
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
    opts.dev_trust_user_header = args.dev_trust_user_header;
    for value in &args.replicas {
        apply_replicas(&mut opts, value)?;
    }
    let mut stack = tokio::select! {
        r = Stack::up(opts) => r?,
        _ = interrupted() => bail!("interrupted while starting (everything started was killed)"),
    };
    print_urls(&stack, args.dev_trust_user_header);
    // Until Ctrl-C: a child that exits or stays unready is named, with its
    // last log line, and started again with backoff.
    todo_local_stack::supervise::Supervisor::watch(&mut stack, interrupted()).await;
    eprintln!();
    tokio::select! {
        r = stack.shutdown() => r,
        _ = interrupted() => {
            eprintln!("[xtask] second signal: killing everything");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_section_is_shell_lines_to_paste_as_a_whole() {
        let tokens: Vec<_> = [("ALICE_TOKEN", "alice"), ("OPERATOR_TOKEN", "operator")]
            .iter()
            .map(|(var, sub)| (var.to_string(), format!("eyJ.{sub}.sig")))
            .collect();
        assert_eq!(
            token_lines(&tokens, "http://127.0.0.1:8001"),
            [
                "# Bearer tokens, valid 24 h (`cargo xtask token --user <id> [--operator] [--ttl 1h]` mints more):",
                "export ALICE_TOKEN=eyJ.alice.sig",
                "export OPERATOR_TOKEN=eyJ.operator.sig",
                "curl -H \"Authorization: Bearer $ALICE_TOKEN\" http://127.0.0.1:8001/api/v1/tasks",
            ]
        );
    }
}
