//! `todo-admin`: reads its settings, takes the terminal, runs the console,
//! gives the terminal back.

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use crossterm::event::EventStream;
use todo_admin::action::Action;
use todo_admin::app::{self, CHANNEL};
use todo_admin::client::Client;
use todo_admin::config::Config;
use todo_admin::state::State;
use todo_admin::{stream, terminal};
use tokio::sync::mpsc;

/// Sends a quit when the console is told to stop (SIGTERM, SIGHUP, SIGINT).
async fn quit_on_signal(actions: mpsc::Sender<Action>) {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
    ];
    let mut streams: Vec<_> = kinds.into_iter().filter_map(|k| signal(k).ok()).collect();
    let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
    futures::future::select_all(waits).await;
    let _ = actions.send(Action::Quit).await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let endpoints = config.endpoints();
    let token = config.token_source();
    if let Err(why) = token.bearer() {
        eprintln!(
            "todo-admin: no operator token: {why}\n\
             Give one with --token or TODO_ADMIN_TOKEN (a token with the operator role), \
             or start the local stack first (`cargo xtask up`)."
        );
        return ExitCode::from(2);
    }
    let mut state = State::new(endpoints.services(), config.buffer as usize, Utc::now());
    state.token = token.info();
    let client = Client::new(endpoints.clone(), token.clone());
    let (actions, inbox) = mpsc::channel(CHANNEL);
    let mut guard = match terminal::enter() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("todo-admin: cannot take the terminal: {e}");
            return ExitCode::FAILURE;
        }
    };
    let follower = tokio::spawn(stream::follow(
        endpoints,
        token,
        config.since,
        actions.clone(),
    ));
    let signals = tokio::spawn(quit_on_signal(actions.clone()));
    let outcome = app::run(
        &mut guard.terminal,
        state,
        client,
        actions,
        inbox,
        EventStream::new(),
        |_, _| {},
    )
    .await;
    follower.abort();
    signals.abort();
    drop(guard);
    match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("todo-admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
