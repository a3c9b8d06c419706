//! `cargo xtask bench console`: the operator console's update loop, fed in
//! this process (no stack needed).
//!
//! 1. Sustained (first, so the process's memory is the console's): the real
//!    loop (`todo_admin::app::run`) fed 1 000 updates a second for
//!    `--seconds`, each stamped when it is sent; after every frame the lag
//!    between the newest update's timestamp and the frame is recorded.
//!    Reports frames per second (at most ~30), the lag in the first and the
//!    last quarter of the run (no growth means it keeps up), and the
//!    process's resident memory with the buffer full.
//! 2. Absorb: how many operator-stream messages per second the console can
//!    take in flat out (parse each text into the typed envelope, then
//!    `update`), with the default 10 000-row buffer full.
//! 3. Draw: time per frame of the Live view (following, and under a filter
//!    that matches one row in seven), the Task and the Health views, with the
//!    buffer full, into a 160×45 terminal whose output goes to a sink (the
//!    escape sequences are produced, not shown).
//!
//! Numbers are printed, never asserted.

use std::io::Sink;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use chrono::Utc;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use todo_admin::action::{Action, StreamEvent};
use todo_admin::client::Client;
use todo_admin::config::Endpoints;
use todo_admin::fixture;
use todo_admin::model::Frame;
use todo_admin::render::render;
use todo_admin::state::{State, View};
use todo_admin::token::TokenSource;
use todo_admin::update::update;
use tokio::sync::mpsc;

use crate::bench::percentile;

/// Options of `cargo xtask bench console`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Messages fed flat out in the absorb run.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Frames drawn per view in the draw run.
    #[arg(long, default_value_t = 300)]
    frames: usize,
    /// Length of the sustained run, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Updates per second in the sustained run.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Rows the console keeps (its default).
    #[arg(long, default_value_t = 10_000)]
    buffer: usize,
}

/// Resident and peak resident memory of this process, in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn new_state(buffer: usize) -> State {
    State::new(Endpoints::local().services(), buffer, Utc::now())
}

fn feed(state: &mut State, text: &str) {
    update(
        state,
        Action::Stream(StreamEvent::Frame(Frame::parse(text))),
    );
}

/// A terminal of 160×45 that writes its escape sequences nowhere.
fn sink_terminal() -> Result<Terminal<CrosstermBackend<Sink>>> {
    Ok(Terminal::with_options(
        CrosstermBackend::new(std::io::sink()),
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, 160, 45)),
        },
    )?)
}

fn absorb(o: &Options) {
    let now = Utc::now();
    let texts: Vec<String> = (1..=o.messages as i64)
        .map(|seq| fixture::created_text(seq, now))
        .collect();
    let mut state = new_state(o.buffer);
    let started = Instant::now();
    for text in &texts {
        feed(&mut state, text);
    }
    let all = started.elapsed();
    let parsed: Vec<Frame> = texts.iter().map(|t| Frame::parse(t)).collect();
    let mut state = new_state(o.buffer);
    let started = Instant::now();
    for frame in parsed {
        update(&mut state, Action::Stream(StreamEvent::Frame(frame)));
    }
    let update_only = started.elapsed();
    println!(
        "absorb: {} messages, parse + update {:.0}/s ({:.2} µs each), update alone {:.0}/s; {} rows kept",
        o.messages,
        o.messages as f64 / all.as_secs_f64(),
        all.as_secs_f64() * 1e6 / o.messages as f64,
        o.messages as f64 / update_only.as_secs_f64(),
        state.live.rows.len()
    );
}

fn draw(o: &Options) -> Result<()> {
    let mut state = new_state(o.buffer);
    let now = Utc::now();
    for seq in 1..=o.buffer as i64 {
        feed(&mut state, &fixture::created_text(seq, now));
    }
    let task = fixture::id(5);
    state.task.task_id = Some(task);
    state.task.records.data = Some(fixture::audit_trail(5));
    for (app_id, _) in Endpoints::local().services() {
        update(
            &mut state,
            Action::ReadinessLoaded {
                app_id,
                result: Ok(fixture::ready()),
            },
        );
        update(
            &mut state,
            Action::CountersLoaded {
                app_id,
                result: Ok(fixture::counters(1234)),
            },
        );
    }
    let mut terminal = sink_terminal()?;
    let mut seq = o.buffer as i64;
    let cases: [(&str, View, &str); 4] = [
        ("Live, following", View::Live, ""),
        ("Live, filtered (1 in 7)", View::Live, "user:user-3"),
        ("Task", View::Task, ""),
        ("Health", View::Health, ""),
    ];
    for (name, view, filter) in cases {
        state.view = view;
        state.live.filter = todo_admin::state::LiveFilter::parse(filter).map_err(|e| anyhow!(e))?;
        let mut times = Vec::with_capacity(o.frames);
        for _ in 0..o.frames {
            // A new row each frame, as under load, so every frame differs.
            seq += 1;
            feed(&mut state, &fixture::created_text(seq, now));
            let started = Instant::now();
            terminal
                .draw(|f| render(&state, f))
                .map_err(|e| anyhow!("drawing: {e}"))?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "draw {name:<24}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms per frame ({} rows in the buffer)",
            percentile(&times, 50.0),
            percentile(&times, 99.0),
            times.last().copied().unwrap_or(f64::NAN),
            state.live.rows.len()
        );
    }
    Ok(())
}

async fn sustained(o: &Options) -> Result<()> {
    let (before, _) = memory_mib();
    let state = new_state(o.buffer);
    let client = Client::new(
        Endpoints::local(),
        TokenSource::given("bench".into(), "bench"),
    );
    let (actions, inbox) = mpsc::channel(todo_admin::app::CHANNEL);
    let (rate, seconds) = (o.rate, o.seconds);
    let producer = {
        let actions = actions.clone();
        tokio::spawn(async move {
            let batch = (rate / 100).max(1);
            let mut every = tokio::time::interval(Duration::from_millis(10));
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut seq = 0i64;
            while Instant::now() < end {
                every.tick().await;
                for _ in 0..batch {
                    seq += 1;
                    // Parsed here, as the stream task does, off the loop.
                    let frame = Frame::parse(&fixture::created_text(seq, Utc::now()));
                    if actions
                        .send(Action::Stream(StreamEvent::Frame(frame)))
                        .await
                        .is_err()
                    {
                        return seq;
                    }
                }
            }
            let _ = actions.send(Action::Quit).await;
            seq
        })
    };
    let mut terminal = sink_terminal()?;
    let started = Instant::now();
    let mut lags: Vec<(f64, f64)> = Vec::new();
    let mut renders = Vec::new();
    let state = todo_admin::app::run(
        &mut terminal,
        state,
        client,
        actions,
        inbox,
        futures::stream::pending(),
        |state, stats| {
            renders.push(stats.render.as_secs_f64() * 1000.0);
            if let Some(todo_admin::state::LiveRow::Event { event, .. }) = state.live.rows.back() {
                let lag = (Utc::now() - event.timestamp())
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1000.0;
                lags.push((started.elapsed().as_secs_f64(), lag));
            }
        },
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let sent = producer.await?;
    let (after, peak) = memory_mib();
    let quarter = |from: f64, to: f64| {
        let mut v: Vec<f64> = lags
            .iter()
            .filter(|(t, _)| *t >= from * elapsed && *t < to * elapsed)
            .map(|(_, l)| *l)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        (
            percentile(&v, 50.0),
            percentile(&v, 99.0),
            v.last().copied().unwrap_or(f64::NAN),
        )
    };
    let (f50, f99, fmax) = quarter(0.0, 0.25);
    let (l50, l99, lmax) = quarter(0.75, 1.0);
    renders.sort_by(|a, b| a.total_cmp(b));
    println!(
        "sustained {rate}/s for {seconds}s: {sent} sent, {} received, {} kept; {} frames ({:.1}/s), draw p50 {:.2} ms p99 {:.2} ms",
        state.live.received,
        state.live.rows.len(),
        renders.len(),
        renders.len() as f64 / elapsed,
        percentile(&renders, 50.0),
        percentile(&renders, 99.0),
    );
    println!(
        "  lag newest update → frame: first quarter p50 {f50:.1} ms p99 {f99:.1} ms max {fmax:.1} ms; \
         last quarter p50 {l50:.1} ms p99 {l99:.1} ms max {lmax:.1} ms"
    );
    println!(
        "  memory: resident {after:.1} MiB ({:+.1} MiB for the console's state and loop), peak {peak:.1} MiB",
        after - before
    );
    Ok(())
}

pub async fn run(o: Options) -> Result<()> {
    println!(
        "console benchmark on {} ({} cores)",
        crate::bench::cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // First, while the process holds nothing else, so that its memory is
    // the console's.
    sustained(&o).await?;
    absorb(&o);
    draw(&o)
}
