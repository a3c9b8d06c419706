//! The steady mixed workload: a few users, each creating, updating,
//! completing and deleting plain and recurring tasks and tasks with a
//! reminder a few seconds out, retrying as a real client does, while a
//! WebSocket client per user follows their updates. Every write and its
//! outcome is recorded for the checks; the workload asserts nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::client::{Answer, Api, StreamLog, follow_stream};

/// What a write was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Complete,
    Delete,
}

/// How a write ended for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer: the platform promised its events are on Kafka.
    Acked,
    /// The last answer was 503: not confirmed (no trace, or published once).
    Refused,
    /// No answer in the end (timeouts, resets) or one that cannot say
    /// (a 404 to a retried delete): it may or may not have happened.
    Unknown,
    /// Another answer (a 4xx the workload did not expect).
    Other(u16),
}

/// One write the workload made, with everything the checks need.
#[derive(Debug, Clone)]
pub struct Write {
    pub user: String,
    pub op: Op,
    /// The task it is about (for a create, from the answer when there is one).
    pub task_id: Option<String>,
    /// The unique title each attempt sent (create: one for all attempts,
    /// sent with one Idempotency-Key; update: one per attempt, since a
    /// PATCH has no key and each attempt may apply).
    pub titles: Vec<String>,
    pub outcome: Outcome,
    /// The task's version in the 2xx answer.
    pub version: Option<i64>,
    pub recurring: bool,
    pub reminder_at: Option<DateTime<Utc>>,
    /// Every status seen, in order (0: no answer).
    pub statuses: Vec<u16>,
}

/// What the workload left for the checks.
#[derive(Debug, Default)]
pub struct Recorded {
    pub writes: Vec<Write>,
    /// Per user, their WebSocket client's log.
    pub streams: Vec<(String, StreamLog)>,
}

/// Where the workload sends its calls.
#[derive(Debug, Clone)]
pub struct Target {
    pub todo_bases: Vec<String>,
    pub ws_bases: Vec<String>,
    /// (user, bearer token) of each user.
    pub users: Vec<(String, String)>,
}

/// The running workload: writers until [`Workload::stop_writes`], stream
/// clients until [`Workload::finish`] (they go on receiving while the
/// checks wait for the platform to settle).
pub struct Workload {
    writes: Arc<Mutex<Vec<Write>>>,
    streams: Vec<(String, Arc<Mutex<StreamLog>>)>,
    stop_writes: CancellationToken,
    stop_streams: CancellationToken,
    writers: Vec<tokio::task::JoinHandle<()>>,
    streams_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts every user's writer and WebSocket client.
    pub fn start(target: &Target, seed: u64) -> Workload {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let stop_writes = CancellationToken::new();
        let stop_streams = CancellationToken::new();
        let mut streams = Vec::new();
        let mut writers = Vec::new();
        let mut streams_tasks = Vec::new();
        for (n, (user, token)) in target.users.iter().enumerate() {
            let log = Arc::new(Mutex::new(StreamLog::default()));
            streams.push((user.clone(), log.clone()));
            let ws_bases: Vec<String> = target
                .ws_bases
                .iter()
                .cycle()
                .skip(n)
                .take(target.ws_bases.len())
                .cloned()
                .collect();
            streams_tasks.push(tokio::spawn(follow_stream(
                ws_bases,
                token.clone(),
                log,
                Duration::from_secs(20 + 7 * n as u64),
                stop_streams.clone(),
            )));
            let api = Api::new(target.todo_bases.clone(), user, token.clone());
            let writer = Writer {
                api,
                rng: StdRng::seed_from_u64(seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9)),
                writes: writes.clone(),
                plain: Vec::new(),
                recurring: Vec::new(),
            };
            writers.push(tokio::spawn(writer.run(stop_writes.clone())));
        }
        Workload {
            writes,
            streams,
            stop_writes,
            stop_streams,
            writers,
            streams_tasks,
        }
    }

    /// Stops the writers and waits for them (a write in flight finishes
    /// with its retries).
    pub async fn stop_writes(&mut self) {
        self.stop_writes.cancel();
        for w in self.writers.drain(..) {
            let _ = w.await;
        }
    }

    /// How many writes so far.
    pub fn writes_so_far(&self) -> usize {
        self.writes.lock().expect("writes").len()
    }

    /// Each user and their stream log so far (the checks poll it).
    pub fn stream_logs(&self) -> Vec<(String, StreamLog)> {
        self.streams
            .iter()
            .map(|(u, l)| (u.clone(), l.lock().expect("stream log").clone()))
            .collect()
    }

    /// Every write made (the writers must have been stopped).
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().expect("writes").clone()
    }

    /// Stops everything and returns what was recorded.
    pub async fn finish(self) -> Recorded {
        self.stop_writes.cancel();
        self.stop_streams.cancel();
        for t in self.writers.into_iter().chain(self.streams_tasks) {
            let _ = t.await;
        }
        Recorded {
            writes: self.writes.lock().expect("writes").clone(),
            streams: self
                .streams
                .iter()
                .map(|(u, l)| (u.clone(), l.lock().expect("stream log").clone()))
                .collect(),
        }
    }
}

/// A task the writer may still act on.
#[derive(Debug, Clone)]
struct Known {
    id: String,
}

/// One user's writer.
struct Writer {
    api: Api,
    rng: StdRng,
    writes: Arc<Mutex<Vec<Write>>>,
    /// Plain tasks not deleted (nor, for completes, completed).
    plain: Vec<Known>,
    /// Recurring tasks never completed nor deleted: a completed instance is
    /// left alone, so its one next instance is a fair expectation.
    recurring: Vec<Known>,
}

/// Retries after no answer or a 5xx: up to this many attempts in all.
const ATTEMPTS: u32 = 6;

impl Writer {
    async fn run(mut self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let roll = self.rng.random_range(0..100);
            let write = match roll {
                0..25 => self.create(false, false).await,
                25..35 => self.create(true, false).await,
                35..45 => self.create(false, true).await,
                45..65 => self.update().await,
                65..75 => self.complete(false).await,
                75..83 => self.complete(true).await,
                83..95 => self.delete(false).await,
                _ => self.delete(true).await,
            };
            if let Some(w) = write {
                self.writes.lock().expect("writes").push(w);
            }
            // The workload's own pace: a few writes a second per user.
            let pause = self.rng.random_range(150..450);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    fn unique(&mut self, what: &str) -> String {
        format!("{what} {}", uuid::Uuid::new_v4())
    }

    /// Sends with retries; every attempt's status is recorded. `body_for`
    /// gives the body of each attempt (0-based).
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        key: Option<&str>,
        mut body_for: impl FnMut(u32) -> Option<Value>,
        statuses: &mut Vec<u16>,
    ) -> Answer {
        let mut backoff = Duration::from_millis(300);
        let mut attempt = 0;
        loop {
            let body = body_for(attempt);
            let a = self
                .api
                .send(method.clone(), path, body.as_ref(), key)
                .await;
            statuses.push(a.status);
            attempt += 1;
            let retry = matches!(a.status, 0 | 429 | 500 | 502 | 503 | 504);
            if !retry || attempt >= ATTEMPTS {
                return a;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(3));
        }
    }

    fn outcome(a: &Answer) -> Outcome {
        match a.status {
            200..=299 => Outcome::Acked,
            503 => Outcome::Refused,
            0 | 500 | 502 | 504 | 429 => Outcome::Unknown,
            s => Outcome::Other(s),
        }
    }

    async fn create(&mut self, recurring: bool, reminder: bool) -> Option<Write> {
        let title = self.unique(if recurring { "series" } else { "task" });
        let mut body = json!({ "title": title });
        if recurring {
            let frequency = ["daily", "weekly", "monthly"][self.rng.random_range(0..3)];
            body["recurrence_schedule"] = json!(frequency);
            body["due_date"] = json!("2026-03-10T09:00:00Z");
        }
        let reminder_at = reminder.then(|| {
            (Utc::now() + TimeDelta::seconds(self.rng.random_range(3..10)))
                .duration_trunc(TimeDelta::seconds(1))
                .expect("a whole second")
        });
        if let Some(at) = reminder_at {
            body["reminder_time"] = json!(at.to_rfc3339());
        }
        let key = uuid::Uuid::new_v4().to_string();
        let mut statuses = Vec::new();
        let a = self
            .send(
                Method::POST,
                "/api/v1/tasks",
                Some(&key),
                |_| Some(body.clone()),
                &mut statuses,
            )
            .await;
        let outcome = Self::outcome(&a);
        let task_id = a.body["id"].as_str().map(str::to_owned);
        if let (Outcome::Acked, Some(id)) = (outcome, &task_id) {
            // Reminder tasks are left alone: their reminder must fire once.
            if recurring {
                self.recurring.push(Known { id: id.clone() });
            } else if !reminder {
                self.plain.push(Known { id: id.clone() });
            }
        }
        Some(Write {
            user: self.api.user.clone(),
            op: Op::Create,
            task_id,
            titles: vec![title],
            outcome,
            version: a.body["version"].as_i64(),
            recurring,
            reminder_at,
            statuses,
        })
    }

    fn pick(&mut self, recurring: bool) -> Option<(usize, Known)> {
        let list = if recurring {
            &self.recurring
        } else {
            &self.plain
        };
        if list.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..list.len());
        Some((i, list[i].clone()))
    }

    async fn update(&mut self) -> Option<Write> {
        let recurring = self.rng.random_bool(0.3) && !self.recurring.is_empty();
        let (_, task) = self.pick(recurring)?;
        let prefix = self.unique("edit");
        let mut titles = Vec::new();
        let mut statuses = Vec::new();
        let path = format!("/api/v1/tasks/{}", task.id);
        let a = self
            .send(
                Method::PATCH,
                &path,
                None,
                |attempt| {
                    let t = format!("{prefix} #{attempt}");
                    titles.push(t.clone());
                    Some(json!({ "title": t }))
                },
                &mut statuses,
            )
            .await;
        Some(Write {
            user: self.api.user.clone(),
            op: Op::Update,
            task_id: Some(task.id),
            titles,
            outcome: Self::outcome(&a),
            version: a.body["version"].as_i64(),
            recurring,
            reminder_at: None,
            statuses,
        })
    }

    async fn complete(&mut self, recurring: bool) -> Option<Write> {
        let (i, task) = self.pick(recurring)?;
        // Whatever the outcome, the task is not touched again.
        if recurring {
            self.recurring.swap_remove(i);
        } else {
            self.plain.swap_remove(i);
        }
        let key = uuid::Uuid::new_v4().to_string();
        let mut statuses = Vec::new();
        let path = format!("/api/v1/tasks/{}/complete", task.id);
        let a = self
            .send(Method::POST, &path, Some(&key), |_| None, &mut statuses)
            .await;
        Some(Write {
            user: self.api.user.clone(),
            op: Op::Complete,
            task_id: Some(task.id),
            titles: Vec::new(),
            outcome: Self::outcome(&a),
            version: a.body["version"].as_i64(),
            recurring,
            reminder_at: None,
            statuses,
        })
    }

    async fn delete(&mut self, recurring: bool) -> Option<Write> {
        let (i, task) = self.pick(recurring)?;
        if recurring {
            self.recurring.swap_remove(i);
        } else {
            self.plain.swap_remove(i);
        }
        let mut statuses = Vec::new();
        let path = format!("/api/v1/tasks/{}", task.id);
        let a = self
            .send(Method::DELETE, &path, None, |_| None, &mut statuses)
            .await;
        // A 404 after an attempt without an answer: the first may have done it.
        let outcome = if a.status == 404 && statuses.len() > 1 {
            Outcome::Unknown
        } else {
            Self::outcome(&a)
        };
        Some(Write {
            user: self.api.user.clone(),
            op: Op::Delete,
            task_id: Some(task.id),
            titles: Vec::new(),
            outcome,
            version: None,
            recurring,
            reminder_at: None,
            statuses,
        })
    }
}
