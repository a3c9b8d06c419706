//! `cargo xtask bench websocket`: the WebSocket service under fan-out, on a
//! fresh local stack, from this process.
//!
//! 1. Memory per idle connection: the service's RSS (`/proc/<pid>/status`)
//!    before and after opening 1 000 idle streams (of a user with no updates).
//! 2. Request → client receipt latency with 1, 100 and 1 000 clients of one
//!    user: tasks are created through the Todo API at a fixed rate and every
//!    client's receipt of every update is timed from the request's start.
//!
//! Every stream and request carries the user's bearer token, minted once per
//! user before anything is timed.
//!
//! Numbers are printed, never asserted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use todo_local_stack::{Stack, StackOptions};

use crate::bench::percentile;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Options of `cargo xtask bench websocket`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Connected clients per latency run (repeatable); default 1, 100 and 1000.
    #[arg(long = "clients", default_values_t = [1, 100, 1000])]
    levels: Vec<usize>,
    /// Idle connections opened to measure memory per connection.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Updates per latency run.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Creates per second through the Todo API.
    #[arg(long, default_value_t = 20)]
    rate: u32,
}

/// Raises the soft open-files limit to the hard one: 1 000 client sockets
/// here, 1 000 server sockets in the service (which inherits the limit).
fn raise_fd_limit() -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < 4096 {
        bail!("the open-files limit is {soft}; 1 000 connections need more (ulimit -n)");
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The stream's subprotocol, offered with the token as `bearer.<JWT>`.
const PROTOCOL: &str = "todo-updates";

/// Opens a stream of the user whose bearer token is `token` and reads until
/// `ready`.
async fn open(port: u16, token: &str) -> Result<Socket> {
    let mut request = format!("ws://127.0.0.1:{port}/ws").into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&format!("{PROTOCOL}, bearer.{token}"))?,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    loop {
        match socket.next().await.context("closed before ready")?? {
            Message::Text(t) if t.as_str().contains("\"ready\"") => return Ok(socket),
            Message::Close(f) => bail!("closed before ready: {f:?}"),
            _ => {}
        }
    }
}

/// Opens `n` streams of the user whose token is `token`, 50 at a time.
async fn open_many(port: u16, token: &str, n: usize) -> Result<Vec<Socket>> {
    let mut sockets = Vec::with_capacity(n);
    while sockets.len() < n {
        let batch = (n - sockets.len()).min(50);
        let opened = futures::future::join_all((0..batch).map(|_| open(port, token))).await;
        for s in opened {
            sockets.push(s?);
        }
    }
    Ok(sockets)
}

/// One level: `clients` streams of a fresh user, `events` creates at `rate`;
/// returns the printed line.
async fn latency_level(
    stack: &Stack,
    http: &reqwest::Client,
    o: &Options,
    clients: usize,
) -> Result<String> {
    let port = stack.service("websocket-service").app_port;
    let user = format!("bench-ws-{}", uuid::Uuid::new_v4().simple());
    let token = stack.user_token(&user);
    let sockets = open_many(port, &token, clients).await?;
    // Each client records when it got each task's update.
    let receipts: Arc<Mutex<Vec<(String, Instant)>>> = Default::default();
    let mut readers = Vec::with_capacity(clients);
    for mut socket in sockets {
        let receipts = receipts.clone();
        readers.push(tokio::spawn(async move {
            let mut closed_with = None;
            while let Some(Ok(msg)) = socket.next().await {
                match msg {
                    Message::Text(t) => {
                        let at = Instant::now();
                        if let Ok(v) = serde_json::from_str::<Value>(t.as_str())
                            && let Some(id) = v["task_id"].as_str()
                        {
                            receipts.lock().unwrap().push((id.to_owned(), at));
                        }
                    }
                    Message::Close(f) => {
                        closed_with = f.map(|f| u16::from(f.code));
                        break;
                    }
                    _ => {}
                }
            }
            closed_with
        }));
    }
    let todo = stack.app_url("todo-service");
    let create = |n: usize| {
        let http = http.clone();
        let url = format!("{todo}/api/v1/tasks");
        let token = token.clone();
        async move {
            let started = Instant::now();
            let res = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "title": format!("ws bench {n}") }))
                .send()
                .await?;
            if !res.status().is_success() {
                bail!("create answered {}", res.status());
            }
            let v: Value = res.json().await?;
            Ok::<_, anyhow::Error>((v["id"].as_str().unwrap_or_default().to_owned(), started))
        }
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(o.rate)));
    let mut pending = Vec::with_capacity(o.events);
    for n in 0..o.events {
        ticker.tick().await;
        pending.push(tokio::spawn(create(n)));
    }
    let mut started: HashMap<String, Instant> = HashMap::new();
    for p in pending {
        let (id, at) = p.await??;
        started.insert(id, at);
    }
    let expected = started.len() * clients;
    let deadline = Instant::now() + Duration::from_secs(60);
    while receipts.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receipts.lock().unwrap().clone();
    let mut latencies: Vec<f64> = got
        .iter()
        .filter_map(|(id, at)| {
            started
                .get(id)
                .map(|s| at.duration_since(*s).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    for r in &readers {
        r.abort();
    }
    let mut cut_off = 0;
    for r in readers {
        if let Ok(Some(4008)) = r.await {
            cut_off += 1;
        }
    }
    Ok(format!(
        "  {clients:>5} clients: {} updates x {clients} = {expected} receipts expected, {} received; \
         request -> client receipt p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms{}",
        started.len(),
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
        if cut_off > 0 {
            format!("; {cut_off} clients cut off as too slow")
        } else {
            String::new()
        }
    ))
}

pub async fn run(o: Options) -> Result<()> {
    raise_fd_limit()?;
    println!("bench websocket: bringing up a fresh stack (.state/bench-websocket)");
    let mut stack = Stack::up(StackOptions::for_tests("bench-websocket")).await?;
    // Every client of a level is the same user (one user's fan-out is what
    // is measured), far past the per-user limit a replica sets by default.
    let streams = (o.levels.iter().copied().max().unwrap_or(0) + o.idle + 100).to_string();
    stack.stop_service("websocket-service").await?;
    stack.set_service_env(
        "websocket-service",
        &[
            ("WEBSOCKET_MAX_STREAMS_PER_USER", streams.as_str()),
            ("WEBSOCKET_MAX_STREAMS", streams.as_str()),
        ],
    )?;
    stack.start_service("websocket-service").await?;
    let result = async {
        let port = stack.service("websocket-service").app_port;
        let pid = stack
            .service_pid("websocket-service")
            .context("websocket-service is not running")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        // Warm-up: a connection and an update through every layer.
        let warm_up = Options {
            levels: vec![1],
            idle: 0,
            events: 20,
            rate: o.rate,
        };
        latency_level(&stack, &http, &warm_up, 1).await?;

        let idle_user = format!("bench-idle-{}", uuid::Uuid::new_v4().simple());
        let idle_token = stack.user_token(&idle_user);
        let warm = open_many(port, &idle_token, 50).await?;
        drop(warm);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid)?;
        let idle = open_many(port, &idle_token, o.idle).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid)?;
        println!();
        println!(
            "memory: websocket-service RSS {before} KiB -> {after} KiB with {} idle connections = {:.1} KiB per idle connection",
            o.idle,
            (after.saturating_sub(before)) as f64 / o.idle as f64
        );
        drop(idle);

        println!(
            "latency: {} creates at {}/s through the Todo API, every client of the user timed",
            o.events, o.rate
        );
        for &clients in &o.levels {
            println!("{}", latency_level(&stack, &http, &o, clients).await?);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    stack.shutdown().await?;
    result
}
