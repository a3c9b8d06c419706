//! The console's one state transition: [`update`] applies an [`Action`] to
//! the [`State`] and returns the [`Command`]s the runtime should carry out.
//! No I/O and no clock here (time comes with [`Action::Tick`]), so every
//! behaviour is a unit test.

use chrono::{DateTime, TimeDelta, Utc};
use todo_contract::EventType;
use uuid::Uuid;

mod dead_letters;

use crate::action::{Action, Command, StreamEvent};
use crate::client::FetchError;
use crate::model::Frame;
use crate::state::{
    Detail, LiveFilter, LiveRow, Mode, Note, NotificationQuery, NotificationStatus, Prompt,
    PromptKind, Remote, Resume, SchedulePane, ServiceHealth, State, StreamStatus, TaskHistory,
    View,
};

/// Health, counters and connections are asked for this often.
pub const HEALTH_EVERY: TimeDelta = TimeDelta::seconds(3);
/// The list shown (notifications, schedules) is asked for this often.
pub const LIST_EVERY: TimeDelta = TimeDelta::seconds(5);
/// Rows moved by PgUp/PgDn.
pub const PAGE_ROWS: usize = 20;
/// How long a note stays in the status line.
const NOTE_FOR: TimeDelta = TimeDelta::seconds(8);

/// Applies `action`; returns what to fetch or send.
pub fn update(state: &mut State, action: Action) -> Vec<Command> {
    let mut commands = Vec::new();
    match action {
        Action::Tick(now) => {
            state.now = now;
            tick(state, &mut commands);
        }
        Action::Resize => {}
        Action::Quit => state.quit = true,
        Action::NextView => {
            let next = View::ALL[(state.view.index() + 1) % View::ALL.len()];
            show(state, next, &mut commands);
        }
        Action::PreviousView => {
            let n = View::ALL.len();
            let previous = View::ALL[(state.view.index() + n - 1) % n];
            show(state, previous, &mut commands);
        }
        Action::Show(view) => show(state, view, &mut commands),
        Action::Up(n) => move_selection(state, -(n as isize)),
        Action::Down(n) => move_selection(state, n as isize),
        Action::PageUp => move_selection(state, -(PAGE_ROWS as isize)),
        Action::PageDown => move_selection(state, PAGE_ROWS as isize),
        Action::Top => move_selection(state, isize::MIN / 2),
        Action::Bottom => move_selection(state, isize::MAX / 2),
        Action::Open => open(state, &mut commands),
        Action::Back => back(state),
        Action::StartPrompt => start_prompt(state),
        Action::Input(c) => {
            if let Mode::Prompt(p) = &mut state.mode {
                p.input.push(c);
            }
        }
        Action::InputBackspace => {
            if let Mode::Prompt(p) = &mut state.mode {
                p.input.pop();
            }
        }
        Action::InputSubmit => submit_prompt(state, &mut commands),
        Action::TogglePause => toggle_pause(state),
        Action::Retry => {
            if state.view == View::DeadLetters {
                dead_letters::retry(state, &mut commands);
            } else {
                retry(state, &mut commands);
            }
        }
        Action::RetryAll => dead_letters::ask_redrive_all(state),
        Action::Confirm(yes) => dead_letters::confirm(state, yes, &mut commands),
        Action::CycleStatus => cycle_status(state, &mut commands),
        Action::OpenTask => {
            if let Some(task_id) = selected_task(state) {
                open_task(state, task_id, &mut commands);
            }
        }
        Action::SwitchPane => {
            if state.view == View::Schedules {
                state.schedules.pane = match state.schedules.pane {
                    SchedulePane::Series => SchedulePane::Reminders,
                    SchedulePane::Reminders => SchedulePane::Series,
                };
            }
        }
        Action::Stream(event) => stream(state, event),
        Action::AuditLoaded { task_id, result } => {
            if state.task.task_id == Some(task_id) {
                note_auth(state, "audit-service", &result);
                let now = state.now;
                state.task.records.finish(result, now);
                let len = state.task.records.data.as_ref().map_or(0, Vec::len);
                state.task.selected = state.task.selected.min(len.saturating_sub(1));
                refresh(state, &mut commands);
            }
        }
        Action::NotificationsLoaded { query, result } => {
            note_auth(state, "notification-service", &result);
            let current = query == state.notifications.query;
            settle(&mut state.notifications.list, current, result, state.now);
            refresh(state, &mut commands);
        }
        Action::RetryAnswered { id, result } => retry_answered(state, id, result),
        Action::SchedulesLoaded { user, result } => {
            note_auth(state, "recurring-task-service", &result);
            let current = user == state.schedules.user;
            settle(&mut state.schedules.series, current, result, state.now);
            clamp_schedules(state);
            refresh(state, &mut commands);
        }
        Action::RemindersLoaded { user, result } => {
            note_auth(state, "recurring-task-service", &result);
            let current = user == state.schedules.user;
            settle(&mut state.schedules.reminders, current, result, state.now);
            clamp_schedules(state);
            refresh(state, &mut commands);
        }
        Action::ReadinessLoaded { app_id, result } => {
            let now = state.now;
            if let Some(s) = service(state, app_id) {
                s.ready.finish(result, now);
            }
        }
        Action::CountersLoaded { app_id, result } => {
            let now = state.now;
            if let Some(s) = service(state, app_id) {
                s.counters.finish(result, now);
            }
        }
        Action::ConnectionsLoaded(result) => {
            note_auth(state, "websocket-service", &result);
            let now = state.now;
            state.health.connections.finish(result, now);
        }
        Action::DeadLettersLoaded { app_id, result } => {
            dead_letters::letters_loaded(state, app_id, result);
            refresh(state, &mut commands);
        }
        Action::FailedIntentsLoaded { app_id, result } => {
            dead_letters::intents_loaded(state, app_id, result);
            refresh(state, &mut commands);
        }
        Action::RedriveAnswered { app_id, id, result } => {
            dead_letters::redrive_answered(state, app_id, id, result);
            refresh(state, &mut commands);
        }
        Action::IntentRetryAnswered {
            app_id,
            key,
            result,
        } => {
            dead_letters::intent_retry_answered(state, app_id, key, result);
            refresh(state, &mut commands);
        }
        Action::RedriveAllAnswered { app_id, result } => {
            dead_letters::redrive_all_answered(state, app_id, result);
            refresh(state, &mut commands);
        }
        Action::Token(info) => state.token = info,
    }
    commands
}

/// The Health view's row of `app_id`.
fn service<'a>(state: &'a mut State, app_id: &str) -> Option<&'a mut ServiceHealth> {
    state
        .health
        .services
        .iter_mut()
        .find(|s| s.app_id == app_id)
}

/// Records an answer, unless it was asked under a filter that has changed
/// since: then the list is asked for again.
fn settle<T>(
    remote: &mut Remote<T>,
    current: bool,
    result: Result<T, FetchError>,
    now: DateTime<Utc>,
) {
    if current {
        remote.finish(result, now);
    } else {
        remote.in_flight = false;
        remote.stale = true;
    }
}

fn say(state: &mut State, text: impl Into<String>, error: bool) {
    state.note = Some(Note {
        text: text.into(),
        error,
        at: state.now,
    });
}

/// A refused token is said in the status line; a good answer clears it.
fn note_auth<T>(state: &mut State, service: &str, result: &Result<T, FetchError>) {
    match result {
        Err(e) if e.is_auth() => state.auth_problem = Some(format!("{service}: {e}")),
        Ok(_) => state.auth_problem = None,
        Err(_) => {}
    }
}

fn tick(state: &mut State, commands: &mut Vec<Command>) {
    let now = state.now;
    let live = &mut state.live;
    match live.rate_mark {
        Some((at, count)) if now - at >= TimeDelta::seconds(1) => {
            let secs = (now - at).num_milliseconds() as f64 / 1000.0;
            live.rate = (live.received - count) as f64 / secs;
            live.rate_mark = Some((now, live.received));
        }
        Some(_) => {}
        None => live.rate_mark = Some((now, live.received)),
    }
    if state.note.as_ref().is_some_and(|n| now - n.at >= NOTE_FOR) {
        state.note = None;
    }
    for s in &mut state.health.services {
        if s.ready.due(now, HEALTH_EVERY) && s.ready.begin(now) {
            commands.push(Command::FetchReadiness {
                app_id: s.app_id,
                url: s.url.clone(),
            });
        }
        if s.counters.due(now, HEALTH_EVERY) && s.counters.begin(now) {
            commands.push(Command::FetchCounters {
                app_id: s.app_id,
                url: s.url.clone(),
            });
        }
    }
    let connections = &mut state.health.connections;
    if connections.due(now, HEALTH_EVERY) && connections.begin(now) {
        commands.push(Command::FetchConnections);
    }
    refresh(state, commands);
}

/// Asks for what the current view shows when it is due (stale, or not
/// asked for a while); only one request of a kind at a time.
fn refresh(state: &mut State, commands: &mut Vec<Command>) {
    let now = state.now;
    match state.view {
        View::Task => {
            let task = &mut state.task;
            if let Some(id) = task.task_id
                && task.records.stale
                && task.records.begin(now)
            {
                commands.push(Command::FetchAudit(id));
            }
        }
        View::Notifications => {
            let n = &mut state.notifications;
            if n.list.due(now, LIST_EVERY) && n.list.begin(now) {
                commands.push(Command::FetchNotifications(n.query.clone()));
            }
        }
        View::Schedules => {
            let s = &mut state.schedules;
            if s.series.due(now, LIST_EVERY) && s.series.begin(now) {
                commands.push(Command::FetchSchedules {
                    user: s.user.clone(),
                });
            }
            if s.reminders.due(now, LIST_EVERY) && s.reminders.begin(now) {
                commands.push(Command::FetchReminders {
                    user: s.user.clone(),
                });
            }
        }
        View::DeadLetters => dead_letters::refresh(state, commands),
        View::Live | View::Health | View::Help => {}
    }
}

fn show(state: &mut State, view: View, commands: &mut Vec<Command>) {
    state.mode = Mode::Normal;
    if view != state.view {
        state.previous_view = state.view;
        state.view = view;
    }
    match view {
        View::Notifications => state.notifications.list.stale = true,
        View::Schedules => {
            state.schedules.series.stale = true;
            state.schedules.reminders.stale = true;
        }
        View::DeadLetters => dead_letters::mark_stale(&mut state.dead_letters),
        _ => {}
    }
    refresh(state, commands);
}

fn step(position: usize, len: usize, delta: isize) -> usize {
    let last = len.saturating_sub(1) as isize;
    (position as isize).saturating_add(delta).clamp(0, last) as usize
}

fn move_selection(state: &mut State, delta: isize) {
    if let Mode::Detail(d) = &mut state.mode {
        let by = delta.clamp(-10_000, 10_000);
        d.scroll = (i64::from(d.scroll) + by as i64).clamp(0, i64::from(u16::MAX)) as u16;
        return;
    }
    match state.view {
        View::Live => {
            let live = &mut state.live;
            let visible = live.visible();
            let Some(position) = live.selected_position(&visible) else {
                return;
            };
            let last = visible.len() - 1;
            let new = step(position, visible.len(), delta);
            if new == last && delta > 0 {
                live.follow = true;
                live.selected = None;
            } else {
                live.follow = false;
                live.selected = Some(live.rows[visible[new]].id());
            }
        }
        View::Task => {
            let len = state.task.records.data.as_ref().map_or(0, Vec::len);
            state.task.selected = step(state.task.selected, len, delta);
        }
        View::Notifications => {
            let n = &mut state.notifications;
            if let (Some(p), Some(list)) = (n.selected_position(), n.list.data.as_ref()) {
                n.selected = Some(list[step(p, list.len(), delta)].id);
            }
        }
        View::Schedules => {
            let s = &mut state.schedules;
            match s.pane {
                SchedulePane::Series => {
                    let len = s.series.data.as_ref().map_or(0, Vec::len);
                    s.selected_series = step(s.selected_series, len, delta);
                }
                SchedulePane::Reminders => {
                    let len = s.reminders.data.as_ref().map_or(0, Vec::len);
                    s.selected_reminder = step(s.selected_reminder, len, delta);
                }
            }
        }
        View::DeadLetters => dead_letters::move_selection(&mut state.dead_letters, delta),
        View::Health | View::Help => {}
    }
}

fn clamp_schedules(state: &mut State) {
    let s = &mut state.schedules;
    let series = s.series.data.as_ref().map_or(0, Vec::len);
    let reminders = s.reminders.data.as_ref().map_or(0, Vec::len);
    s.selected_series = s.selected_series.min(series.saturating_sub(1));
    s.selected_reminder = s.selected_reminder.min(reminders.saturating_sub(1));
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("(cannot show: {e})"))
}

/// The task the selection belongs to, in any view.
fn selected_task(state: &State) -> Option<Uuid> {
    if let Mode::Detail(d) = &state.mode {
        return d.task_id;
    }
    match state.view {
        View::Live => match state.live.selected_row()? {
            LiveRow::Event { event, .. } => Some(event.task_id),
            LiveRow::Marker { .. } => None,
        },
        View::Task => state.task.task_id,
        View::Notifications => state
            .notifications
            .selected_notification()
            .map(|n| n.task_id),
        View::Schedules => {
            let s = &state.schedules;
            match s.pane {
                SchedulePane::Series => s
                    .series
                    .data
                    .as_ref()?
                    .get(s.selected_series)
                    .map(|x| x.current_task_id.unwrap_or(x.id)),
                SchedulePane::Reminders => s
                    .reminders
                    .data
                    .as_ref()?
                    .get(s.selected_reminder)
                    .map(|r| r.task_id),
            }
        }
        View::DeadLetters => dead_letters::selected_task(&state.dead_letters),
        View::Health | View::Help => None,
    }
}

fn open_task(state: &mut State, task_id: Uuid, commands: &mut Vec<Command>) {
    state.mode = Mode::Normal;
    if state.view != View::Task {
        state.previous_view = state.view;
        state.view = View::Task;
    }
    if state.task.task_id != Some(task_id) {
        state.task = TaskHistory {
            task_id: Some(task_id),
            ..TaskHistory::default()
        };
    }
    state.task.records.stale = true;
    refresh(state, commands);
}

fn open(state: &mut State, commands: &mut Vec<Command>) {
    if let Mode::Detail(d) = &state.mode {
        if let Some(id) = d.task_id {
            open_task(state, id, commands);
        }
        return;
    }
    let detail = match state.view {
        View::Live => match state.live.selected_row() {
            Some(LiveRow::Event { event, .. }) => {
                let body = serde_json::from_str::<serde_json::Value>(&event.raw)
                    .map(|v| pretty(&v))
                    .unwrap_or_else(|_| event.raw.to_string());
                Some(Detail {
                    title: format!(
                        "seq {} · {} · task {}",
                        event.seq,
                        event.event_type().as_str(),
                        event.task_id
                    ),
                    body,
                    scroll: 0,
                    task_id: Some(event.task_id),
                })
            }
            Some(LiveRow::Marker { text, .. }) => Some(Detail {
                title: "stream".to_owned(),
                body: text.clone(),
                scroll: 0,
                task_id: None,
            }),
            None => None,
        },
        View::Task => state
            .task
            .records
            .data
            .as_ref()
            .and_then(|r| r.get(state.task.selected))
            .map(|r| Detail {
                title: format!("{} · {}", r.event_type, r.event_id),
                body: pretty(r),
                scroll: 0,
                task_id: Some(r.task_id),
            }),
        View::Notifications => state.notifications.selected_notification().map(|n| Detail {
            title: format!("notification {}", n.id),
            body: pretty(n),
            scroll: 0,
            task_id: Some(n.task_id),
        }),
        View::Schedules => {
            if let Some(task_id) = selected_task(state) {
                open_task(state, task_id, commands);
            }
            None
        }
        View::DeadLetters => dead_letters::detail(&state.dead_letters),
        View::Health | View::Help => None,
    };
    if let Some(d) = detail {
        state.mode = Mode::Detail(d);
    }
}

fn back(state: &mut State) {
    match state.mode {
        Mode::Detail(_) | Mode::Prompt(_) | Mode::Confirm(_) => state.mode = Mode::Normal,
        Mode::Normal => {
            if matches!(state.view, View::Help | View::Task) && state.previous_view != state.view {
                state.view = state.previous_view;
            }
        }
    }
}

fn start_prompt(state: &mut State) {
    if state.mode != Mode::Normal {
        return;
    }
    let (kind, input) = match state.view {
        View::Live => (PromptKind::LiveFilter, state.live.filter.describe()),
        View::Task => (PromptKind::TaskId, String::new()),
        View::Notifications => (
            PromptKind::NotificationFilter,
            state.notifications.query.describe(),
        ),
        View::Schedules => (
            PromptKind::ScheduleFilter,
            state
                .schedules
                .user
                .as_ref()
                .map(|u| format!("user:{u}"))
                .unwrap_or_default(),
        ),
        View::Health | View::DeadLetters | View::Help => return,
    };
    state.mode = Mode::Prompt(Prompt { kind, input });
}

fn submit_prompt(state: &mut State, commands: &mut Vec<Command>) {
    let Mode::Prompt(prompt) = &state.mode else {
        return;
    };
    let input = prompt.input.trim().to_owned();
    // A bad line keeps the prompt open, with the reason, to be corrected.
    let outcome: Result<String, String> = match prompt.kind {
        PromptKind::LiveFilter => LiveFilter::parse(&input).map(|f| {
            let text = if f.is_empty() {
                "filter cleared".to_owned()
            } else {
                format!("showing {}", f.describe())
            };
            state.live.filter = f;
            text
        }),
        PromptKind::TaskId => match input.parse::<Uuid>() {
            Ok(id) => {
                open_task(state, id, commands);
                Ok(format!("task {id}"))
            }
            Err(_) => Err(format!("{input:?} is not a task id (a UUID)")),
        },
        PromptKind::NotificationFilter => NotificationQuery::parse(&input).map(|q| {
            let n = &mut state.notifications;
            n.query = q;
            n.selected = None;
            n.list.stale = true;
            if n.query.describe().is_empty() {
                "every notification".to_owned()
            } else {
                format!("showing {}", n.query.describe())
            }
        }),
        PromptKind::ScheduleFilter => {
            let user = input.strip_prefix("user:").unwrap_or(&input).trim();
            if user.contains(char::is_whitespace) {
                Err(format!("{input:?}: name one user (user:<id>)"))
            } else {
                let s = &mut state.schedules;
                s.user = (!user.is_empty()).then(|| user.to_owned());
                s.series.stale = true;
                s.reminders.stale = true;
                s.selected_series = 0;
                s.selected_reminder = 0;
                Ok(s.user
                    .as_ref()
                    .map_or("every user".to_owned(), |u| format!("user {u}")))
            }
        }
    };
    match outcome {
        Ok(text) => {
            if matches!(state.mode, Mode::Prompt(_)) {
                state.mode = Mode::Normal;
            }
            say(state, text, false);
            refresh(state, commands);
        }
        Err(e) => say(state, e, true),
    }
}

fn toggle_pause(state: &mut State) {
    if state.view != View::Live {
        return;
    }
    let live = &mut state.live;
    if live.paused_at.take().is_some() {
        live.follow = true;
        live.selected = None;
        say(state, "resumed", false);
    } else {
        live.paused_at = Some(live.next_id());
        say(state, "paused: new updates are kept, not shown", false);
    }
}

fn retry(state: &mut State, commands: &mut Vec<Command>) {
    if state.view != View::Notifications || state.mode != Mode::Normal {
        return;
    }
    let Some(n) = state.notifications.selected_notification() else {
        return;
    };
    let (id, status) = (n.id, n.status.clone());
    if status != "failed" {
        say(
            state,
            format!("only a failed notification can be retried; this one is {status}"),
            true,
        );
    } else if state.notifications.retrying.insert(id) {
        commands.push(Command::Retry(id));
        say(state, format!("retrying {id}…"), false);
    }
}

fn retry_answered(
    state: &mut State,
    id: Uuid,
    result: Result<crate::model::Notification, FetchError>,
) {
    state.notifications.retrying.remove(&id);
    note_auth(state, "notification-service", &result);
    match result {
        Ok(n) => {
            let text = format!("retry accepted: attempt {} of {id} started", n.attempts);
            if let Some(row) = state
                .notifications
                .list
                .data
                .as_mut()
                .and_then(|l| l.iter_mut().find(|x| x.id == id))
            {
                *row = n;
            }
            state.notifications.list.stale = true;
            say(state, text, false);
        }
        Err(e) => say(state, format!("retry of {id} refused: {e}"), true),
    }
}

fn cycle_status(state: &mut State, commands: &mut Vec<Command>) {
    if state.view != View::Notifications {
        return;
    }
    let n = &mut state.notifications;
    n.query.status = match n.query.status {
        None => Some(NotificationStatus::Pending),
        Some(NotificationStatus::Pending) => Some(NotificationStatus::Sent),
        Some(NotificationStatus::Sent) => Some(NotificationStatus::Failed),
        Some(NotificationStatus::Failed) => None,
    };
    n.selected = None;
    n.list.stale = true;
    refresh(state, commands);
}

fn stream(state: &mut State, event: StreamEvent) {
    let now = state.now;
    match event {
        StreamEvent::Connecting { attempt, since } => {
            state.stream = StreamStatus::Connecting { attempt, since };
        }
        StreamEvent::Opened { since } => {
            if state
                .auth_problem
                .as_ref()
                .is_some_and(|p| p.starts_with("websocket-service"))
            {
                state.auth_problem = None;
            }
            match since {
                Some(after) => {
                    state.stream = StreamStatus::Replaying { since: after };
                    state.live.resume = Some(Resume { after, replayed: 0 });
                }
                None => state.stream = StreamStatus::Live { since: now },
            }
        }
        StreamEvent::Frame(frame) => receive(state, frame),
        StreamEvent::Closed { code, reason, at } => {
            let code_text = code.map_or("no close frame".to_owned(), |c| format!("code {c}"));
            let text = if reason.is_empty() {
                format!("connection lost ({code_text}); reconnecting")
            } else {
                format!("connection closed ({code_text}: {reason}); reconnecting")
            };
            if code == Some(4401) {
                state.auth_problem = Some(format!("websocket-service: token expired ({reason})"));
            }
            state.live.resume = None;
            state.live.push_marker(at, text, code != Some(1000));
            state.stream = StreamStatus::Connecting {
                attempt: 1,
                since: state.live.last_seq,
            };
        }
        StreamEvent::Failed { error, retry_at } => {
            if error.is_auth() {
                state.auth_problem = Some(format!("websocket-service: {error}"));
            }
            state.stream = StreamStatus::Down {
                error: error.to_string(),
                retry_at,
            };
        }
    }
}

fn receive(state: &mut State, frame: Frame) {
    let now = state.now;
    let live = &mut state.live;
    match frame {
        Frame::Update(event) => {
            if live.last_seq.is_some_and(|last| event.seq <= last) {
                live.duplicates += 1;
                return;
            }
            live.last_seq = Some(event.seq);
            live.received += 1;
            if let Some(r) = &mut live.resume {
                r.replayed += 1;
            }
            let event_type = event.event_type();
            if state.task.task_id == Some(event.task_id) {
                state.task.records.stale = true;
            }
            if event_type == EventType::NotificationDelivered {
                state.notifications.list.stale = true;
            } else {
                state.schedules.series.stale = true;
                state.schedules.reminders.stale = true;
            }
            state.live.push_event(event);
        }
        Frame::Ready { seq } => {
            // From here the cursor is at least `seq`, even with nothing
            // received yet: a reconnect resumes there, missing nothing.
            live.last_seq = Some(live.last_seq.map_or(seq, |l| l.max(seq)));
            if let Some(Resume { after, replayed }) = live.resume.take() {
                let text = format!(
                    "resumed after seq {after}: {replayed} missed update{} replayed",
                    if replayed == 1 { "" } else { "s" }
                );
                live.push_marker(now, text, false);
            }
            state.stream = StreamStatus::Live { since: now };
        }
        Frame::ResyncRequired {
            since,
            pruned_through,
        } => {
            let text = format!(
                "RESYNC REQUIRED: updates after seq {since} up to {pruned_through} are older than \
                 the retention window and lost to this console; what follows is everything retained"
            );
            live.push_marker(now, text.clone(), true);
            say(state, text, true);
        }
        Frame::Unreadable { reason, .. } => {
            live.push_marker(now, format!("unreadable message: {reason}"), true);
        }
    }
}

#[cfg(test)]
mod tests;
