//! What can happen to the console ([`Action`]: a key, a tick, an answer, a
//! stream message) and what the update asks the runtime to do about it
//! ([`Command`]: fetch, retry, redrive).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::client::FetchError;
use crate::model::{
    AuditRecord, ConsumerCounters, DeadLetterPage, FailedIntentPage, Frame, IntentRetried,
    Notification, Readiness, RedriveAll, Redriven, Reminder, Schedule,
};
use crate::state::{NotificationQuery, TokenInfo, View};

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Time passed (countdowns, rates, periodic refreshes).
    Tick(DateTime<Utc>),
    /// The terminal changed size: draw again.
    Resize,
    Quit,
    NextView,
    PreviousView,
    Show(View),
    Up(usize),
    Down(usize),
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Enter: open what is selected.
    Open,
    /// Esc: close the detail or prompt, leave Help.
    Back,
    /// `/`: a filter (or a task id, on the Task view).
    StartPrompt,
    Input(char),
    InputBackspace,
    InputSubmit,
    /// `p`: stop or go on showing new rows in Live.
    TogglePause,
    /// `r`: retry the selected failed notification; redrive the selected
    /// dead letter or retry the selected failed intent.
    Retry,
    /// `R`: redrive every open dead letter of the selected row's service
    /// (after a yes).
    RetryAll,
    /// The answer to a [`crate::state::Confirm`] question: `y` or `n`/Esc.
    Confirm(bool),
    /// `s`: cycle the notification status filter.
    CycleStatus,
    /// `t`: the selected row's task history.
    OpenTask,
    /// Left/right (`h`/`l`): the other table of the Schedules view.
    SwitchPane,
    Stream(StreamEvent),
    AuditLoaded {
        task_id: Uuid,
        result: Result<Vec<AuditRecord>, FetchError>,
    },
    NotificationsLoaded {
        query: NotificationQuery,
        result: Result<Vec<Notification>, FetchError>,
    },
    RetryAnswered {
        id: Uuid,
        result: Result<Notification, FetchError>,
    },
    SchedulesLoaded {
        user: Option<String>,
        result: Result<Vec<Schedule>, FetchError>,
    },
    RemindersLoaded {
        user: Option<String>,
        result: Result<Vec<Reminder>, FetchError>,
    },
    ReadinessLoaded {
        app_id: &'static str,
        result: Result<Readiness, FetchError>,
    },
    CountersLoaded {
        app_id: &'static str,
        result: Result<ConsumerCounters, FetchError>,
    },
    ConnectionsLoaded(Result<i64, FetchError>),
    DeadLettersLoaded {
        app_id: &'static str,
        result: Result<DeadLetterPage, FetchError>,
    },
    FailedIntentsLoaded {
        app_id: &'static str,
        result: Result<FailedIntentPage, FetchError>,
    },
    RedriveAnswered {
        app_id: &'static str,
        id: i64,
        result: Result<Redriven, FetchError>,
    },
    RedriveAllAnswered {
        app_id: &'static str,
        result: Result<RedriveAll, FetchError>,
    },
    IntentRetryAnswered {
        app_id: &'static str,
        key: String,
        result: Result<IntentRetried, FetchError>,
    },
    Token(TokenInfo),
}

/// What happened to the operator stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Connecting {
        attempt: u32,
        since: Option<i64>,
    },
    Opened {
        since: Option<i64>,
    },
    Frame(Frame),
    /// Closed by the server (with its code and reason) or dropped, at `at`.
    Closed {
        code: Option<u16>,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The connection could not be opened; the next attempt is at `retry_at`.
    Failed {
        error: FetchError,
        retry_at: DateTime<Utc>,
    },
}

/// Work the runtime does for the update, reporting back with an [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    FetchAudit(Uuid),
    FetchNotifications(NotificationQuery),
    Retry(Uuid),
    FetchSchedules {
        user: Option<String>,
    },
    FetchReminders {
        user: Option<String>,
    },
    FetchReadiness {
        app_id: &'static str,
        url: String,
    },
    FetchCounters {
        app_id: &'static str,
        url: String,
    },
    FetchConnections,
    FetchDeadLetters {
        app_id: &'static str,
        url: String,
    },
    FetchFailedIntents {
        app_id: &'static str,
        url: String,
    },
    Redrive {
        app_id: &'static str,
        url: String,
        id: i64,
    },
    RedriveAll {
        app_id: &'static str,
        url: String,
    },
    RetryIntent {
        app_id: &'static str,
        url: String,
        key: String,
    },
}
