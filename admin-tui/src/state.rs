//! Everything the console knows, as plain data: which view is shown, the
//! live buffer, what each view last fetched (and whether its service
//! answered), the stream's and the token's condition. Changed only by
//! [`crate::update::update`]; read by [`crate::render`].

use std::collections::{BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use todo_contract::EventType;
use uuid::Uuid;

use crate::client::FetchError;
use crate::model::{
    AuditRecord, ConsumerCounters, DeadLetter, DeadLetterPage, FailedIntent, FailedIntentPage,
    LiveEvent, Notification, Readiness, Reminder, Schedule,
};

/// The console's views, in tab order (keys 1–7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Live,
    Task,
    Notifications,
    Schedules,
    Health,
    DeadLetters,
    Help,
}

impl View {
    pub const ALL: [View; 7] = [
        View::Live,
        View::Task,
        View::Notifications,
        View::Schedules,
        View::Health,
        View::DeadLetters,
        View::Help,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Live => "Live",
            View::Task => "Task",
            View::Notifications => "Notifications",
            View::Schedules => "Schedules",
            View::Health => "Health",
            View::DeadLetters => "Dead letters",
            View::Help => "Help",
        }
    }

    /// The tab's name where the whole bar does not fit (80 columns).
    pub fn short_title(self) -> &'static str {
        match self {
            View::Notifications => "Notif.",
            View::Schedules => "Sched.",
            View::DeadLetters => "Dead l.",
            v => v.title(),
        }
    }

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// What keys do right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// A line of input at the bottom (`/`).
    Prompt(Prompt),
    /// A pretty-printed JSON document over the view (Enter).
    Detail(Detail),
    /// A yes/no question at the bottom before something that cannot be
    /// taken back (`R`).
    Confirm(Confirm),
}

/// The question `R` asks: redrive every open dead letter of a service?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub app_id: &'static str,
    pub question: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// `type:… user:… task:…` and free words, on the Live view.
    LiveFilter,
    /// A task id, on the Task view.
    TaskId,
    /// `status:… user:… task:…`, on the Notifications view.
    NotificationFilter,
    /// `user:…` (or a bare user id), on the Schedules view.
    ScheduleFilter,
}

impl PromptKind {
    pub fn label(self) -> &'static str {
        match self {
            PromptKind::LiveFilter => "filter (type:… user:… task:… or words)",
            PromptKind::TaskId => "task id",
            PromptKind::NotificationFilter => "filter (status:… user:… task:…)",
            PromptKind::ScheduleFilter => "filter (user:…)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub input: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub title: String,
    pub body: String,
    /// First line shown.
    pub scroll: u16,
    /// The task whose history `t`/Enter opens from here.
    pub task_id: Option<Uuid>,
}

/// A short message in the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub error: bool,
    pub at: DateTime<Utc>,
}

/// What a service last answered to one kind of request.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote<T> {
    /// The last good answer (kept while the service is down, marked stale).
    pub data: Option<T>,
    pub last_good: Option<DateTime<Utc>>,
    /// Why the last attempt failed; `None` after a good answer.
    pub error: Option<FetchError>,
    pub in_flight: bool,
    /// Something changed since the last answer: fetch again when possible.
    pub stale: bool,
    pub requested_at: Option<DateTime<Utc>>,
}

impl<T> Default for Remote<T> {
    fn default() -> Self {
        Remote {
            data: None,
            last_good: None,
            error: None,
            in_flight: false,
            stale: true,
            requested_at: None,
        }
    }
}

impl<T> Remote<T> {
    /// Marks a request as sent; false if one is already on its way.
    pub fn begin(&mut self, now: DateTime<Utc>) -> bool {
        if self.in_flight {
            self.stale = true;
            return false;
        }
        self.in_flight = true;
        self.stale = false;
        self.requested_at = Some(now);
        true
    }

    /// Records an answer: data and time when good, the error otherwise
    /// (the last good data stays).
    pub fn finish(&mut self, result: Result<T, FetchError>, now: DateTime<Utc>) {
        self.in_flight = false;
        match result {
            Ok(data) => {
                self.data = Some(data);
                self.last_good = Some(now);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Whether it is time to ask again: never asked, marked stale, or the
    /// last request is older than `every`.
    pub fn due(&self, now: DateTime<Utc>, every: chrono::TimeDelta) -> bool {
        !self.in_flight && (self.stale || self.requested_at.is_none_or(|at| now - at >= every))
    }

    /// Whether the service could not be reached at the last attempt.
    pub fn is_down(&self) -> bool {
        matches!(self.error, Some(FetchError::Down(_)))
    }
}

/// A row of the live buffer: an update, or a note about the stream itself
/// (a gap filled, a resync, a lost connection), which filters never hide.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveRow {
    Event {
        id: u64,
        event: Box<LiveEvent>,
    },
    Marker {
        id: u64,
        at: DateTime<Utc>,
        text: String,
        /// Shown as an error (resync required, unreadable message).
        alarm: bool,
    },
}

impl LiveRow {
    pub fn id(&self) -> u64 {
        match self {
            LiveRow::Event { id, .. } | LiveRow::Marker { id, .. } => *id,
        }
    }
}

/// The Live view's filter, from `type:task-created user:alice task:0190 word`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFilter {
    pub event_type: Option<EventType>,
    pub user: Option<String>,
    /// A prefix of the task id.
    pub task: Option<String>,
    /// Words that must each appear in the type, user, task id or title.
    pub words: Vec<String>,
}

impl LiveFilter {
    /// Reads a filter line; an unknown event type is an error naming the
    /// known ones.
    pub fn parse(line: &str) -> Result<LiveFilter, String> {
        let mut filter = LiveFilter::default();
        for token in line.split_whitespace() {
            match token.split_once(':') {
                Some(("type", t)) => {
                    filter.event_type = Some(EventType::parse(t).ok_or_else(|| {
                        let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
                        format!("no event type {t:?}; the types are {}", known.join(", "))
                    })?);
                }
                Some(("user", u)) => filter.user = Some(u.to_owned()),
                Some(("task", t)) => filter.task = Some(t.to_lowercase()),
                _ => filter.words.push(token.to_lowercase()),
            }
        }
        Ok(filter)
    }

    pub fn is_empty(&self) -> bool {
        *self == LiveFilter::default()
    }

    pub fn matches(&self, event: &LiveEvent) -> bool {
        let env = event;
        if self.event_type.is_some_and(|t| t != env.event_type) {
            return false;
        }
        if self.user.as_ref().is_some_and(|u| *u != env.user_id) {
            return false;
        }
        let task = env.task_id.to_string();
        if self
            .task
            .as_ref()
            .is_some_and(|t| !task.starts_with(t.as_str()))
        {
            return false;
        }
        self.words.iter().all(|w| {
            env.event_type.as_str().contains(w.as_str())
                || env.user_id.to_lowercase().contains(w.as_str())
                || task.contains(w.as_str())
                || event
                    .title()
                    .is_some_and(|t| t.to_lowercase().contains(w.as_str()))
        })
    }

    /// The filter as the operator would type it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.event_type {
            parts.push(format!("type:{}", t.as_str()));
        }
        if let Some(u) = &self.user {
            parts.push(format!("user:{u}"));
        }
        if let Some(t) = &self.task {
            parts.push(format!("task:{t}"));
        }
        parts.extend(self.words.iter().cloned());
        parts.join(" ")
    }
}

/// A replay in progress after a reconnect with `since=after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub after: i64,
    pub replayed: u64,
}

/// The Live view: a bounded buffer of the operator stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub rows: VecDeque<LiveRow>,
    /// At most this many rows are kept; the oldest go first.
    pub capacity: usize,
    next_id: u64,
    /// Updates received since the console started.
    pub received: u64,
    /// Rows dropped from the front to keep within `capacity`.
    pub evicted: u64,
    /// The newest `seq` received: where a reconnect resumes.
    pub last_seq: Option<i64>,
    /// Updates at or below `last_seq` received again, ignored.
    pub duplicates: u64,
    pub filter: LiveFilter,
    /// Keep the newest row selected and in view.
    pub follow: bool,
    /// The selected row's id, when not following.
    pub selected: Option<u64>,
    /// While paused, rows after this id are kept but not shown.
    pub paused_at: Option<u64>,
    pub resume: Option<Resume>,
    /// Updates per second over the last tick.
    pub rate: f64,
    pub(crate) rate_mark: Option<(DateTime<Utc>, u64)>,
}

impl Live {
    pub fn new(capacity: usize) -> Self {
        Live {
            rows: VecDeque::with_capacity(capacity.min(65_536)),
            capacity: capacity.max(1),
            next_id: 0,
            received: 0,
            evicted: 0,
            last_seq: None,
            duplicates: 0,
            filter: LiveFilter::default(),
            follow: true,
            selected: None,
            paused_at: None,
            resume: None,
            rate: 0.0,
            rate_mark: None,
        }
    }

    fn push(&mut self, row: impl FnOnce(u64) -> LiveRow) {
        let id = self.next_id;
        self.next_id += 1;
        if self.rows.len() >= self.capacity {
            self.rows.pop_front();
            self.evicted += 1;
        }
        self.rows.push_back(row(id));
    }

    pub(crate) fn push_event(&mut self, event: Box<LiveEvent>) {
        self.push(|id| LiveRow::Event { id, event });
    }

    pub(crate) fn push_marker(&mut self, at: DateTime<Utc>, text: String, alarm: bool) {
        self.push(|id| LiveRow::Marker {
            id,
            at,
            text,
            alarm,
        });
    }

    /// The id the next row will get (rows after a pause started are those
    /// with an id at or above the one current then).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn shown(&self, row: &LiveRow) -> bool {
        if self.paused_at.is_some_and(|p| row.id() >= p) {
            return false;
        }
        match row {
            LiveRow::Event { event, .. } => self.filter.matches(event),
            LiveRow::Marker { .. } => true,
        }
    }

    /// Positions in `rows` of the rows shown, oldest first.
    pub fn visible(&self) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| self.shown(&self.rows[i]))
            .collect()
    }

    /// Rows kept but hidden by the pause.
    pub fn held_back(&self) -> usize {
        self.paused_at.map_or(0, |p| {
            self.rows.iter().rev().take_while(|r| r.id() >= p).count()
        })
    }

    /// Where the selection is in `visible` (the last row when following or
    /// when the selected row is gone; the nearest older one when it is
    /// filtered out).
    pub fn selected_position(&self, visible: &[usize]) -> Option<usize> {
        if visible.is_empty() {
            return None;
        }
        let last = visible.len() - 1;
        if self.follow {
            return Some(last);
        }
        let Some(selected) = self.selected else {
            return Some(last);
        };
        let ids: Vec<u64> = visible.iter().map(|&i| self.rows[i].id()).collect();
        Some(match ids.binary_search(&selected) {
            Ok(p) => p,
            Err(0) => 0,
            Err(p) => p - 1,
        })
    }

    /// The selected row, if any is shown.
    pub fn selected_row(&self) -> Option<&LiveRow> {
        let visible = self.visible();
        self.selected_position(&visible)
            .map(|p| &self.rows[visible[p]])
    }
}

/// The Task view: one task's audit trail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskHistory {
    pub task_id: Option<Uuid>,
    pub records: Remote<Vec<AuditRecord>>,
    pub selected: usize,
}

/// Notification statuses, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    Pending,
    Sent,
    Failed,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sent => "sent",
            NotificationStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What the Notifications view asks the notification service for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationQuery {
    pub status: Option<NotificationStatus>,
    pub user: Option<String>,
    pub task: Option<Uuid>,
}

impl NotificationQuery {
    pub fn parse(line: &str) -> Result<NotificationQuery, String> {
        let mut q = NotificationQuery::default();
        for token in line.split_whitespace() {
            match token.split_once(':') {
                Some(("status", s)) => {
                    q.status = Some(NotificationStatus::parse(s).ok_or_else(|| {
                        format!("no status {s:?}; the statuses are pending, sent, failed")
                    })?);
                }
                Some(("user", u)) => q.user = Some(u.to_owned()),
                Some(("task", t)) => {
                    q.task = Some(t.parse().map_err(|_| format!("{t:?} is not a task id"))?);
                }
                _ => {
                    return Err(format!(
                        "{token:?}: use status:pending|sent|failed, user:<id>, task:<uuid>"
                    ));
                }
            }
        }
        Ok(q)
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.status {
            parts.push(format!("status:{}", s.as_str()));
        }
        if let Some(u) = &self.user {
            parts.push(format!("user:{u}"));
        }
        if let Some(t) = self.task {
            parts.push(format!("task:{t}"));
        }
        parts.join(" ")
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notifications {
    pub list: Remote<Vec<Notification>>,
    pub query: NotificationQuery,
    /// The selected notification (kept across refreshes).
    pub selected: Option<Uuid>,
    /// Retries sent and not yet answered.
    pub retrying: BTreeSet<Uuid>,
}

impl Notifications {
    pub fn selected_position(&self) -> Option<usize> {
        let list = self.list.data.as_deref()?;
        if list.is_empty() {
            return None;
        }
        Some(
            self.selected
                .and_then(|id| list.iter().position(|n| n.id == id))
                .unwrap_or(0),
        )
    }

    pub fn selected_notification(&self) -> Option<&Notification> {
        let p = self.selected_position()?;
        self.list.data.as_ref().map(|l| &l[p])
    }
}

/// Which table of the Schedules view has the selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SchedulePane {
    #[default]
    Series,
    Reminders,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedules {
    pub series: Remote<Vec<Schedule>>,
    pub reminders: Remote<Vec<Reminder>>,
    pub user: Option<String>,
    pub pane: SchedulePane,
    pub selected_series: usize,
    pub selected_reminder: usize,
}

/// The services whose consumers keep dead letters (`/api/v1/dead-letters`).
pub const CONSUMERS: [&str; 4] = [
    "audit-service",
    "websocket-service",
    "notification-service",
    "recurring-task-service",
];

/// The services that dispatch intents (`/api/v1/intents/failed`).
pub const INTENT_SERVICES: [&str; 2] = ["notification-service", "recurring-task-service"];

/// One consuming service as the Dead letters view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFailures {
    pub app_id: &'static str,
    pub url: String,
    /// Its open dead letters.
    pub letters: Remote<DeadLetterPage>,
    /// Its failed intents, for a service that dispatches intents.
    pub intents: Option<Remote<FailedIntentPage>>,
}

/// A row of the Dead letters view, by what identifies it across refreshes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureRow {
    Letter { app_id: &'static str, id: i64 },
    Intent { app_id: &'static str, key: String },
}

impl FailureRow {
    pub fn app_id(&self) -> &'static str {
        match self {
            FailureRow::Letter { app_id, .. } | FailureRow::Intent { app_id, .. } => app_id,
        }
    }
}

/// The Dead letters view: every consuming service's open dead letters in
/// one list, newest failure first, then the failed intents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetters {
    pub services: Vec<ServiceFailures>,
    /// The selected row (kept across refreshes).
    pub selected: Option<FailureRow>,
    /// Where the selection last was: where it stays when its row is gone
    /// (redriven), so the next row is selected.
    pub position: usize,
    /// Rows whose redrive or retry is sent and not yet answered.
    pub busy: BTreeSet<FailureRow>,
    /// Services whose redrive of everything is not yet answered.
    pub redriving_all: BTreeSet<&'static str>,
}

impl DeadLetters {
    /// Every service's dead letters (stale ones of a service that stopped
    /// answering included), newest failure first.
    pub fn letters(&self) -> Vec<(&'static str, &DeadLetter)> {
        let mut all: Vec<(&'static str, &DeadLetter)> = self
            .services
            .iter()
            .flat_map(|s| {
                s.letters
                    .data
                    .iter()
                    .flat_map(|p| &p.dead_letters)
                    .map(move |d| (s.app_id, d))
            })
            .collect();
        all.sort_by(|(a, x), (b, y)| {
            y.failed_at
                .cmp(&x.failed_at)
                .then(a.cmp(b))
                .then(y.id.cmp(&x.id))
        });
        all
    }

    /// Every service's failed intents, newest first.
    pub fn intents(&self) -> Vec<(&'static str, &FailedIntent)> {
        let mut all: Vec<(&'static str, &FailedIntent)> = self
            .services
            .iter()
            .flat_map(|s| {
                s.intents
                    .iter()
                    .flat_map(|r| r.data.iter())
                    .flat_map(|p| &p.intents)
                    .map(move |i| (s.app_id, i))
            })
            .collect();
        all.sort_by(|(a, x), (b, y)| {
            y.failed_at
                .cmp(&x.failed_at)
                .then(a.cmp(b))
                .then(x.key.cmp(&y.key))
        });
        all
    }

    /// The rows in the order shown: dead letters, then failed intents.
    pub fn rows(&self) -> Vec<FailureRow> {
        let letters = self
            .letters()
            .into_iter()
            .map(|(app_id, d)| FailureRow::Letter { app_id, id: d.id });
        let intents = self
            .intents()
            .into_iter()
            .map(|(app_id, i)| FailureRow::Intent {
                app_id,
                key: i.key.clone(),
            });
        letters.chain(intents).collect()
    }

    /// Where the selection is in [`DeadLetters::rows`]: its row, or where it
    /// was when that row is gone.
    pub fn selected_position(&self, rows: &[FailureRow]) -> Option<usize> {
        if rows.is_empty() {
            return None;
        }
        Some(
            self.selected
                .as_ref()
                .and_then(|sel| rows.iter().position(|r| r == sel))
                .unwrap_or(self.position.min(rows.len() - 1)),
        )
    }

    /// The selected row, if any is shown.
    pub fn selected_row(&self) -> Option<FailureRow> {
        let rows = self.rows();
        self.selected_position(&rows).map(|p| rows[p].clone())
    }

    pub fn service(&self, app_id: &str) -> Option<&ServiceFailures> {
        self.services.iter().find(|s| s.app_id == app_id)
    }

    pub fn service_mut(&mut self, app_id: &str) -> Option<&mut ServiceFailures> {
        self.services.iter_mut().find(|s| s.app_id == app_id)
    }

    pub fn letter(&self, app_id: &str, id: i64) -> Option<&DeadLetter> {
        self.service(app_id)?
            .letters
            .data
            .as_ref()?
            .dead_letters
            .iter()
            .find(|d| d.id == id)
    }

    pub fn intent(&self, app_id: &str, key: &str) -> Option<&FailedIntent> {
        self.service(app_id)?
            .intents
            .as_ref()?
            .data
            .as_ref()?
            .intents
            .iter()
            .find(|i| i.key == key)
    }
}

/// One service as the Health view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceHealth {
    pub app_id: &'static str,
    pub url: String,
    pub ready: Remote<Readiness>,
    pub counters: Remote<ConsumerCounters>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub services: Vec<ServiceHealth>,
    /// The WebSocket service's `/api/v1/connections`.
    pub connections: Remote<i64>,
}

/// The operator stream's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    Connecting {
        attempt: u32,
        since: Option<i64>,
    },
    /// Open; replaying after `since` until `ready`.
    Replaying {
        since: i64,
    },
    Live {
        since: DateTime<Utc>,
    },
    Down {
        error: String,
        retry_at: DateTime<Utc>,
    },
}

/// What the console knows of its own token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenInfo {
    pub subject: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub operator: bool,
    /// Where it came from: `TODO_ADMIN_TOKEN`, `--token`, the local stack.
    pub source: String,
}

/// The whole console.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub view: View,
    /// Where Esc on Help goes back to.
    pub previous_view: View,
    pub mode: Mode,
    /// The time of the last tick: countdowns and ages are reckoned from it.
    pub now: DateTime<Utc>,
    pub live: Live,
    pub task: TaskHistory,
    pub notifications: Notifications,
    pub schedules: Schedules,
    pub health: Health,
    pub dead_letters: DeadLetters,
    pub stream: StreamStatus,
    pub token: TokenInfo,
    /// A service refused the token (401/403): said in the status line until
    /// a later answer is good.
    pub auth_problem: Option<String>,
    pub note: Option<Note>,
    pub quit: bool,
}

impl State {
    /// A console with nothing received yet, showing Live.
    pub fn new(services: Vec<(&'static str, String)>, capacity: usize, now: DateTime<Utc>) -> Self {
        let dead_letters = DeadLetters {
            services: services
                .iter()
                .filter(|(app_id, _)| CONSUMERS.contains(app_id))
                .map(|(app_id, url)| ServiceFailures {
                    app_id,
                    url: url.clone(),
                    letters: Remote::default(),
                    intents: INTENT_SERVICES.contains(app_id).then(Remote::default),
                })
                .collect(),
            ..DeadLetters::default()
        };
        State {
            view: View::Live,
            previous_view: View::Live,
            mode: Mode::Normal,
            now,
            live: Live::new(capacity),
            task: TaskHistory::default(),
            notifications: Notifications::default(),
            schedules: Schedules::default(),
            health: Health {
                services: services
                    .into_iter()
                    .map(|(app_id, url)| ServiceHealth {
                        app_id,
                        url,
                        ready: Remote::default(),
                        counters: Remote::default(),
                    })
                    .collect(),
                connections: Remote::default(),
            },
            dead_letters,
            stream: StreamStatus::Connecting {
                attempt: 1,
                since: None,
            },
            token: TokenInfo::default(),
            auth_problem: None,
            note: None,
            quit: false,
        }
    }
}
