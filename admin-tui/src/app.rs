//! The runtime around [`update`] and [`render`]: one `tokio::select!` loop
//! turns terminal events, background answers and ticks into actions, carries
//! out the commands they return on spawned tasks, and redraws at most
//! [`FRAME`] apart, only when something changed. Inputs come first, so keys
//! stay responsive under a flood of updates.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use chrono::Utc;
use crossterm::event::Event;
use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::action::{Action, Command};
use crate::client::Client;
use crate::keys::action_for;
use crate::render::render;
use crate::state::State;
use crate::update::update;

/// At most ~30 frames a second.
pub const FRAME: Duration = Duration::from_millis(33);
/// Clock for countdowns, rates and periodic refreshes.
pub const TICK: Duration = Duration::from_millis(500);
/// How often the token's own claims are read again (expiry, renewal).
const TOKEN_EVERY: Duration = Duration::from_secs(15);
/// Room for this many actions between the background tasks and the loop.
pub const CHANNEL: usize = 8192;
/// The most queued actions applied before the loop looks at keys again.
const DRAIN: usize = 4096;

/// Carries out a command on its own task; the answer comes back as an action.
pub fn execute(client: &Client, command: Command, actions: &mpsc::Sender<Action>) {
    let client = client.clone();
    let actions = actions.clone();
    tokio::spawn(async move {
        let action = match command {
            Command::FetchAudit(task_id) => Action::AuditLoaded {
                task_id,
                result: client.audit(task_id).await,
            },
            Command::FetchNotifications(query) => {
                let result = client.notifications(&query).await;
                Action::NotificationsLoaded { query, result }
            }
            Command::Retry(id) => Action::RetryAnswered {
                id,
                result: client.retry(id).await,
            },
            Command::FetchSchedules { user } => {
                let result = client.schedules(user.as_deref()).await;
                Action::SchedulesLoaded { user, result }
            }
            Command::FetchReminders { user } => {
                let result = client.reminders(user.as_deref()).await;
                Action::RemindersLoaded { user, result }
            }
            Command::FetchReadiness { app_id, url } => Action::ReadinessLoaded {
                app_id,
                result: client.readiness(&url).await,
            },
            Command::FetchCounters { app_id, url } => Action::CountersLoaded {
                app_id,
                result: client.counters(&url).await,
            },
            Command::FetchConnections => Action::ConnectionsLoaded(client.connections().await),
            Command::FetchDeadLetters { app_id, url } => Action::DeadLettersLoaded {
                app_id,
                result: client.dead_letters(&url).await,
            },
            Command::FetchFailedIntents { app_id, url } => Action::FailedIntentsLoaded {
                app_id,
                result: client.failed_intents(&url).await,
            },
            Command::Redrive { app_id, url, id } => Action::RedriveAnswered {
                app_id,
                id,
                result: client.redrive(&url, id).await,
            },
            Command::RedriveAll { app_id, url } => Action::RedriveAllAnswered {
                app_id,
                result: client.redrive_all(&url).await,
            },
            Command::RetryIntent { app_id, url, key } => {
                let result = client.retry_intent(&url, &key).await;
                Action::IntentRetryAnswered {
                    app_id,
                    key,
                    result,
                }
            }
        };
        // The console may have quit meanwhile; nothing to do then.
        let _ = actions.send(action).await;
    });
}

/// What the loop measured, handed to `on_draw` after every frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameStats {
    /// How long drawing this frame took.
    pub render: Duration,
    pub frames: u64,
}

/// Runs the console until it quits (`q`, Ctrl-C, a [`Action::Quit`] sent
/// on the channel) or the terminal fails; returns the final state.
///
/// `actions` is where background tasks (the stream, command answers,
/// signals) send to; `inbox` is its receiving end.
pub async fn run<B, I>(
    terminal: &mut Terminal<B>,
    mut state: State,
    client: Client,
    actions: mpsc::Sender<Action>,
    mut inbox: mpsc::Receiver<Action>,
    mut inputs: I,
    mut on_draw: impl FnMut(&State, FrameStats),
) -> Result<State>
where
    B: Backend,
    I: Stream<Item = std::io::Result<Event>> + Unpin,
{
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut token = tokio::time::interval(TOKEN_EVERY);
    token.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut frames = 0u64;
    let apply = |state: &mut State, action: Action| {
        for command in update(state, action) {
            execute(&client, command, &actions);
        }
    };
    while !state.quit {
        tokio::select! {
            biased;
            input = inputs.next() => match input {
                Some(Ok(event)) => {
                    if let Some(action) = action_for(&state, &event) {
                        apply(&mut state, action);
                        dirty = true;
                    }
                }
                Some(Err(e)) => return Err(anyhow!("reading the terminal: {e}")),
                None => state.quit = true,
            },
            Some(action) = inbox.recv() => {
                apply(&mut state, action);
                for _ in 0..DRAIN {
                    match inbox.try_recv() {
                        Ok(action) => apply(&mut state, action),
                        Err(_) => break,
                    }
                }
                dirty = true;
            }
            _ = tick.tick() => {
                apply(&mut state, Action::Tick(Utc::now()));
                dirty = true;
            }
            _ = token.tick() => {
                let source = client.token().clone();
                let info = tokio::task::spawn_blocking(move || source.info()).await?;
                apply(&mut state, Action::Token(info));
                dirty = true;
            }
            _ = frame.tick(), if dirty => {
                let started = Instant::now();
                terminal
                    .draw(|f| render(&state, f))
                    .map_err(|e| anyhow!("drawing: {e}"))?;
                frames += 1;
                dirty = false;
                on_draw(&state, FrameStats { render: started.elapsed(), frames });
            }
        }
    }
    Ok(state)
}
