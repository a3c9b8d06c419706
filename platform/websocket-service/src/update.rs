//! What a client receives, as plain functions: an update (the event envelope
//! plus its `seq` cursor), the control messages (`ready`, `resync-required`),
//! where a replay starts, and which live updates the seam lets through.

use std::sync::Arc;

use serde_json::{Value, json};

/// One logged update, ready to send: its cursor, owner and message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The cursor; grows with every update the service logs.
    pub seq: i64,
    /// The owner of the task (who may see it).
    pub user_id: String,
    /// The JSON message: the envelope with `seq` added.
    pub text: Arc<str>,
}

impl LogEntry {
    /// The entry of `envelope` (a JSON object) logged at `seq`.
    pub fn new(seq: i64, user_id: impl Into<String>, envelope: &Value) -> Self {
        LogEntry {
            seq,
            user_id: user_id.into(),
            text: message_text(seq, envelope).into(),
        }
    }

    /// Whether a stream for `user` (None: the operator's, every user) gets it.
    pub fn visible_to(&self, user: Option<&str>) -> bool {
        user.is_none_or(|u| u == self.user_id)
    }
}

/// The message of an update: the envelope's fields plus `seq`.
pub fn message_text(seq: i64, envelope: &Value) -> String {
    let mut message = match envelope {
        Value::Object(map) => map.clone(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("envelope".to_owned(), other.clone());
            map
        }
    };
    message.insert("seq".to_owned(), json!(seq));
    Value::Object(message).to_string()
}

/// Sent once the replay (if any) is done: from here on, updates are live.
/// `seq` is a cursor the client may resume from.
pub fn ready_text(seq: i64) -> String {
    json!({ "type": "ready", "seq": seq }).to_string()
}

/// Sent instead of silently skipping when the cursor is older than the
/// retained log: updates up to `pruned_through` are gone; the client should
/// rebuild its state. What follows is everything still retained.
pub fn resync_required_text(since: i64, pruned_through: i64) -> String {
    json!({
        "type": "resync-required",
        "since": since,
        "pruned_through": pruned_through,
        "message": format!(
            "updates after {since} up to {pruned_through} are older than the retention window; \
             rebuild your state from what follows"
        ),
    })
    .to_string()
}

/// Where a connection's stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No cursor: live updates only, from the current end of the log.
    Live,
    /// Replay everything after the cursor, then live.
    Replay { after: i64 },
    /// The cursor is older than the retained log: say so, then replay what is
    /// retained, then live.
    Resync { since: i64, pruned_through: i64 },
}

/// Decides the start of a stream from the client's cursor and the highest
/// seq ever pruned. A cursor at or after the horizon loses nothing.
pub fn plan(since: Option<i64>, pruned_through: i64) -> Start {
    match since {
        None => Start::Live,
        Some(since) if since < pruned_through => Start::Resync {
            since,
            pruned_through,
        },
        Some(after) => Start::Replay { after },
    }
}

/// The seam rule: a live update is sent only if it is after the last one sent
/// (it may already have come from the replay).
pub fn is_new(seq: i64, last_sent: i64) -> bool {
    seq > last_sent
}

/// The close code of a client that fell too far behind.
pub const TOO_SLOW_CODE: u16 = 4008;

/// Close code of a stream whose token expired (4000 + HTTP 401); the client
/// reconnects with a fresh token and `since`.
pub const TOKEN_EXPIRED_CODE: u16 = 4401;

/// The close reason of a client that fell too far behind.
pub fn too_slow_reason(last_sent: i64) -> String {
    format!("too slow, resume with since={last_sent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_the_envelope_plus_its_seq() {
        let env = json!({"event_id": "e", "event_type": "task-created", "user_id": "alice"});
        let msg: Value = serde_json::from_str(&message_text(7, &env)).unwrap();
        assert_eq!(msg["seq"], 7);
        assert_eq!(msg["event_type"], "task-created");
        assert_eq!(msg["user_id"], "alice");
    }

    #[test]
    fn users_see_only_their_own_updates_and_the_operator_sees_all() {
        let e = LogEntry::new(1, "alice", &json!({}));
        assert!(e.visible_to(Some("alice")));
        assert!(!e.visible_to(Some("bob")));
        assert!(e.visible_to(None));
    }

    #[test]
    fn without_a_cursor_the_stream_is_live_only() {
        assert_eq!(plan(None, 0), Start::Live);
        assert_eq!(plan(None, 50), Start::Live);
    }

    #[test]
    fn a_cursor_within_the_retained_log_replays_after_it() {
        assert_eq!(plan(Some(0), 0), Start::Replay { after: 0 });
        assert_eq!(plan(Some(50), 50), Start::Replay { after: 50 });
        assert_eq!(plan(Some(70), 50), Start::Replay { after: 70 });
    }

    #[test]
    fn a_cursor_older_than_the_retained_log_requires_a_resync() {
        assert_eq!(
            plan(Some(10), 50),
            Start::Resync {
                since: 10,
                pruned_through: 50
            }
        );
        let msg: Value = serde_json::from_str(&resync_required_text(10, 50)).unwrap();
        assert_eq!(msg["type"], "resync-required");
        assert_eq!(msg["pruned_through"], 50);
    }

    #[test]
    fn the_seam_lets_through_only_updates_after_the_last_sent() {
        assert!(!is_new(5, 5));
        assert!(!is_new(4, 5));
        assert!(is_new(6, 5));
    }

    #[test]
    fn the_too_slow_reason_names_the_resume_cursor_and_fits_a_close_frame() {
        let reason = too_slow_reason(i64::MAX);
        assert!(reason.ends_with(&format!("since={}", i64::MAX)));
        assert!(reason.len() <= 123);
    }
}
