//! Fan-out of committed updates to the open streams, without ever waiting for
//! one: each stream has a bounded queue; publishing never blocks, and a stream
//! whose queue is full is cut off (its [`Subscription::kicked`] token fires),
//! so a slow or stalled client never delays the others.

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

/// The registry of live streams.
pub struct Hub {
    capacity: usize,
    next_id: AtomicUsize,
    subscribers: Mutex<HashMap<usize, Subscriber>>,
    connections: AtomicUsize,
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

/// Counts an open WebSocket connection while it lives.
pub struct ConnectionGuard {
    hub: Arc<Hub>,
    kind: StreamKind,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("websocket_connections", "stream" => self.kind.label()).decrement(1.0);
    }
}

impl Hub {
    /// A hub whose streams may queue `capacity` updates each.
    pub fn new(capacity: usize) -> Arc<Hub> {
        Arc::new(Hub {
            capacity: capacity.max(1),
            next_id: AtomicUsize::new(0),
            subscribers: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
        })
    }

    /// Counts a connection until the guard is dropped.
    pub fn connection(self: &Arc<Self>, kind: StreamKind) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("websocket_connections", "stream" => kind.label()).increment(1.0);
        ConnectionGuard {
            hub: self.clone(),
            kind,
        }
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

    fn entry(seq: i64, user: &str) -> Arc<LogEntry> {
        Arc::new(LogEntry::new(seq, user, &json!({})))
    }

    #[test]
    fn a_stream_gets_only_its_users_updates() {
        let hub = Hub::new(8);
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
        let hub = Hub::new(2);
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
        let hub = Hub::new(2);
        let s = hub.subscribe(None);
        drop(s);
        assert_eq!(hub.subscribers.lock().unwrap().len(), 0);
        let guard = hub.connection(StreamKind::User);
        assert_eq!(hub.active_connections(), 1);
        drop(guard);
        assert_eq!(hub.active_connections(), 0);
    }
}
