//! What a client receives, as plain functions: an update (the event envelope
//! plus its `seq` cursor), the control messages (`ready`, `resync-required`),
//! what a replay must announce before a page, and which live updates the
//! seam lets through.

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

/// Sent instead of silently skipping when updates after the cursor were
/// pruned (the cursor is older than the retained log, or pruning caught up
/// with a replay): updates after `since` up to `pruned_through` are gone; the
/// client should rebuild its state. What follows is everything still retained.
pub fn resync_required_text(since: i64, pruned_through: i64) -> String {
    json!({
        "type": "resync-required",
        "reason": "pruned",
        "since": since,
        "pruned_through": pruned_through,
        "message": format!(
            "updates after {since} up to {pruned_through} are older than the retention window; \
             rebuild your state from what follows"
        ),
    })
    .to_string()
}

/// Sent when the cursor is beyond the end of the log, which happens only when
/// the log was restored to an earlier state: the stream goes on from the
/// log's real end (`log_end`), and the client should rebuild its state.
pub fn cursor_ahead_text(since: i64, log_end: i64, pruned_through: i64) -> String {
    json!({
        "type": "resync-required",
        "reason": "ahead_of_log",
        "since": since,
        "log_end": log_end,
        "pruned_through": pruned_through,
        "message": format!(
            "the cursor {since} is beyond the end of the update log ({log_end}); the log was \
             restored to an earlier state: rebuild your state from what follows"
        ),
    })
    .to_string()
}

/// What a replaying stream must tell its client before sending a page read
/// after `after`, given the page's snapshot of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Updates after `after` up to `pruned_through` are gone.
    Pruned { since: i64, pruned_through: i64 },
    /// The cursor is past the end of the log (a restored log): go on from
    /// `log_end`.
    Ahead { since: i64, log_end: i64 },
}

/// The gap, if any, between what a stream has sent (`after`, and the
/// horizon it already announced) and a page read with `pruned_through` and
/// `log_end` in one snapshot. A cursor at or after the horizon and within
/// the log loses nothing.
pub fn gap(after: i64, announced: i64, pruned_through: i64, log_end: i64) -> Option<Gap> {
    if after > log_end {
        Some(Gap::Ahead {
            since: after,
            log_end,
        })
    } else if after < pruned_through && announced < pruned_through {
        Some(Gap::Pruned {
            since: after,
            pruned_through,
        })
    } else {
        None
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
    fn a_cursor_within_the_retained_log_loses_nothing() {
        assert_eq!(gap(0, 0, 0, 10), None);
        assert_eq!(gap(50, 50, 50, 80), None);
        assert_eq!(gap(70, 70, 50, 80), None);
        assert_eq!(gap(80, 80, 50, 80), None);
    }

    #[test]
    fn a_cursor_older_than_the_retained_log_requires_a_resync_once() {
        assert_eq!(
            gap(10, 10, 50, 80),
            Some(Gap::Pruned {
                since: 10,
                pruned_through: 50
            })
        );
        // Told once: the next page of the same replay is not a new gap...
        assert_eq!(gap(10, 50, 50, 80), None);
        // ...unless pruning moved on again meanwhile.
        assert_eq!(
            gap(55, 50, 60, 80),
            Some(Gap::Pruned {
                since: 55,
                pruned_through: 60
            })
        );
        let msg: Value = serde_json::from_str(&resync_required_text(10, 50)).unwrap();
        assert_eq!(msg["type"], "resync-required");
        assert_eq!(msg["since"], 10);
        assert_eq!(msg["pruned_through"], 50);
    }

    #[test]
    fn a_cursor_beyond_the_end_of_the_log_goes_on_from_the_end() {
        assert_eq!(
            gap(1000, 1000, 0, 500),
            Some(Gap::Ahead {
                since: 1000,
                log_end: 500
            })
        );
        let msg: Value = serde_json::from_str(&cursor_ahead_text(1000, 500, 20)).unwrap();
        assert_eq!(msg["type"], "resync-required");
        assert_eq!(msg["reason"], "ahead_of_log");
        assert_eq!(msg["log_end"], 500);
        // The console reads `since` and `pruned_through` of every resync.
        assert_eq!(msg["since"], 1000);
        assert_eq!(msg["pruned_through"], 20);
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
