//! Fan-out of committed updates to the open streams, without ever waiting for
//! one: each stream has a bounded queue; publishing never blocks, and a stream
//! whose queue is full is cut off (its [`Subscription::kicked`] token fires),
//! so a slow or stalled client never delays the others. It also admits
//! connections: at most so many in all and per holder (the token's subject),
//! so one user cannot take every connection a replica can hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::update::LogEntry;

/// Which stream a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// One user's updates (`/ws`).
    User,
    /// Every user's updates (`/ws/operator`).
    Operator,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            StreamKind::User => "user",
            StreamKind::Operator => "operator",
        }
    }
}

struct Subscriber {
    user: Option<String>,
    queue: mpsc::Sender<Arc<LogEntry>>,
    kicked: CancellationToken,
}

/// How many streams a replica holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// In all.
    pub total: usize,
    /// Opened by one holder (a user, or an operator for the operator stream).
    pub per_holder: usize,
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this replica holds its most streams ({0}); retry later or on another replica")]
    Full(usize),
    #[error("`{holder}` already holds {limit} streams on this replica; close one first")]
    HolderFull { holder: String, limit: usize },
}

/// The registry of live streams.
pub struct Hub {
    capacity: usize,
    limits: Limits,
    next_id: AtomicUsize,
    subscribers: Mutex<HashMap<usize, Subscriber>>,
    connections: AtomicUsize,
    /// Open connections by holder; the sum is `connections`.
    holders: Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("capacity", &self.capacity)
            .field("connections", &self.active_connections())
            .finish()
    }
}

/// A registered stream: its queue of live updates. Dropping it unregisters.
pub struct Subscription {
    id: usize,
    hub: Arc<Hub>,
    /// Live updates, in seq order.
    pub queue: mpsc::Receiver<Arc<LogEntry>>,
    /// Fires when the hub cut this stream off for falling behind.
    pub kicked: CancellationToken,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.hub.subscribers.lock() {
            subs.remove(&self.id);
        }
    }
}

/// Holds an admitted connection's place while it lives.
pub struct ConnectionGuard {
    hub: Arc<Hub>,
    kind: StreamKind,
    holder: String,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut holders = self.hub.holders();
        if let Some(n) = holders.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                holders.remove(&self.holder);
            }
        }
        self.hub.connections.fetch_sub(1, Ordering::Relaxed);
        drop(holders);
        metrics::gauge!("websocket_connections", "stream" => self.kind.label()).decrement(1.0);
    }
}

impl Hub {
    /// A hub whose streams may queue `capacity` updates each, holding at
    /// most `limits` connections.
    pub fn new(capacity: usize, limits: Limits) -> Arc<Hub> {
        Arc::new(Hub {
            capacity: capacity.max(1),
            limits,
            next_id: AtomicUsize::new(0),
            subscribers: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            holders: Mutex::new(HashMap::new()),
        })
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection of `holder` within the limits, counted until the
    /// guard is dropped; refused (and counted in
    /// `websocket_streams_refused_total`) past either limit.
    pub fn admit(
        self: &Arc<Self>,
        kind: StreamKind,
        holder: &str,
    ) -> Result<ConnectionGuard, Refused> {
        let mut holders = self.holders();
        let refused = |reason: &'static str, e: Refused| {
            metrics::counter!("websocket_streams_refused_total", "reason" => reason).increment(1);
            Err(e)
        };
        if self.connections.load(Ordering::Relaxed) >= self.limits.total {
            return refused("replica_full", Refused::Full(self.limits.total));
        }
        let held = holders.entry(holder.to_owned()).or_default();
        if *held >= self.limits.per_holder {
            return refused(
                "holder_full",
                Refused::HolderFull {
                    holder: holder.to_owned(),
                    limit: self.limits.per_holder,
                },
            );
        }
        *held += 1;
        self.connections.fetch_add(1, Ordering::Relaxed);
        drop(holders);
        metrics::gauge!("websocket_connections", "stream" => kind.label()).increment(1.0);
        Ok(ConnectionGuard {
            hub: self.clone(),
            kind,
            holder: holder.to_owned(),
        })
    }

    /// Open WebSocket connections.
    pub fn active_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Registers a stream of `user`'s updates (None: everyone's). Every update
    /// published from now on is queued for it.
    pub fn subscribe(self: &Arc<Self>, user: Option<String>) -> Subscription {
        let (tx, rx) = mpsc::channel(self.capacity);
        let kicked = CancellationToken::new();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let subscriber = Subscriber {
            user,
            queue: tx,
            kicked: kicked.clone(),
        };
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.insert(id, subscriber);
        }
        Subscription {
            id,
            hub: self.clone(),
            queue: rx,
            kicked,
        }
    }

    /// Queues `entry` for every stream that may see it, never waiting; a
    /// stream whose queue is full is cut off. Returns how many were cut off.
    pub fn publish(&self, entry: &Arc<LogEntry>) -> usize {
        let Ok(mut subs) = self.subscribers.lock() else {
            return 0;
        };
        let mut cut = Vec::new();
        for (id, s) in subs.iter() {
            if !entry.visible_to(s.user.as_deref()) {
                continue;
            }
            match s.queue.try_send(entry.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.kicked.cancel();
                    cut.push(*id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => cut.push(*id),
            }
        }
        for id in &cut {
            subs.remove(id);
        }
        cut.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hub(capacity: usize) -> Arc<Hub> {
        Hub::new(
            capacity,
            Limits {
                total: 100,
                per_holder: 100,
            },
        )
    }

    fn entry(seq: i64, user: &str) -> Arc<LogEntry> {
        Arc::new(LogEntry::new(seq, user, &json!({})))
    }

    #[test]
    fn a_stream_gets_only_its_users_updates() {
        let hub = hub(8);
        let mut alice = hub.subscribe(Some("alice".into()));
        let mut operator = hub.subscribe(None);
        hub.publish(&entry(1, "bob"));
        hub.publish(&entry(2, "alice"));
        assert_eq!(alice.queue.try_recv().unwrap().seq, 2);
        assert!(alice.queue.try_recv().is_err());
        assert_eq!(operator.queue.try_recv().unwrap().seq, 1);
        assert_eq!(operator.queue.try_recv().unwrap().seq, 2);
    }

    #[test]
    fn a_full_queue_cuts_off_only_that_stream() {
        let hub = hub(2);
        let slow = hub.subscribe(Some("alice".into()));
        let mut fast = hub.subscribe(Some("alice".into()));
        for seq in 1..=2 {
            assert_eq!(hub.publish(&entry(seq, "alice")), 0);
            assert_eq!(fast.queue.try_recv().unwrap().seq, seq);
        }
        assert_eq!(hub.publish(&entry(3, "alice")), 1);
        assert!(slow.kicked.is_cancelled());
        assert!(!fast.kicked.is_cancelled());
        assert_eq!(fast.queue.try_recv().unwrap().seq, 3);
        hub.publish(&entry(4, "alice"));
        assert_eq!(fast.queue.try_recv().unwrap().seq, 4);
    }

    #[test]
    fn dropping_a_subscription_unregisters_it() {
        let hub = hub(2);
        let s = hub.subscribe(None);
        drop(s);
        assert_eq!(hub.subscribers.lock().unwrap().len(), 0);
        let guard = hub.admit(StreamKind::User, "alice").unwrap();
        assert_eq!(hub.active_connections(), 1);
        drop(guard);
        assert_eq!(hub.active_connections(), 0);
        assert!(hub.holders().is_empty(), "no holder is remembered forever");
    }

    #[test]
    fn a_holder_gets_at_most_its_share_and_a_closed_stream_frees_a_place() {
        let hub = Hub::new(
            2,
            Limits {
                total: 10,
                per_holder: 2,
            },
        );
        let a1 = hub.admit(StreamKind::User, "alice").unwrap();
        let _a2 = hub.admit(StreamKind::User, "alice").unwrap();
        assert_eq!(
            hub.admit(StreamKind::User, "alice").err(),
            Some(Refused::HolderFull {
                holder: "alice".into(),
                limit: 2
            })
        );
        let _b = hub.admit(StreamKind::User, "bob").unwrap();
        drop(a1);
        assert!(hub.admit(StreamKind::User, "alice").is_ok());
    }

    #[test]
    fn a_full_replica_refuses_everyone() {
        let hub = Hub::new(
            2,
            Limits {
                total: 2,
                per_holder: 5,
            },
        );
        let _a = hub.admit(StreamKind::User, "alice").unwrap();
        let _b = hub.admit(StreamKind::Operator, "ops").unwrap();
        assert_eq!(
            hub.admit(StreamKind::User, "carol").err(),
            Some(Refused::Full(2))
        );
        assert_eq!(hub.active_connections(), 2);
    }
}
