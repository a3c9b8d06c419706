//! Unit tests of [`super::update`], one group per kind of action.

use chrono::TimeDelta;

use super::*;
use crate::fixture;
use crate::model::Frame;
use crate::state::{Health, Mode, Remote};

fn state() -> State {
    State::new(
        vec![
            ("todo-service", "http://t".to_owned()),
            ("audit-service", "http://a".to_owned()),
        ],
        100,
        fixture::now(),
    )
}

fn frame(text: &str) -> Action {
    Action::Stream(StreamEvent::Frame(Frame::parse(text)))
}

fn created(seq: i64) -> Action {
    frame(&fixture::created_text(seq, fixture::now()))
}

fn seqs(state: &State) -> Vec<i64> {
    state
        .live
        .visible()
        .into_iter()
        .filter_map(|i| match &state.live.rows[i] {
            LiveRow::Event { event, .. } => Some(event.seq),
            LiveRow::Marker { .. } => None,
        })
        .collect()
}

fn markers(state: &State) -> Vec<String> {
    state
        .live
        .rows
        .iter()
        .filter_map(|r| match r {
            LiveRow::Marker { text, .. } => Some(text.clone()),
            LiveRow::Event { .. } => None,
        })
        .collect()
}

/// Opens the prompt, clears what it was filled with, types `line`, Enter.
fn type_line(state: &mut State, line: &str) -> Vec<Command> {
    update(state, Action::StartPrompt);
    while matches!(&state.mode, Mode::Prompt(p) if !p.input.is_empty()) {
        update(state, Action::InputBackspace);
    }
    for c in line.chars() {
        update(state, Action::Input(c));
    }
    update(state, Action::InputSubmit)
}

fn with_notifications(state: &mut State) {
    update(state, Action::Show(View::Notifications));
    update(
        state,
        Action::NotificationsLoaded {
            query: NotificationQuery::default(),
            result: Ok(fixture::notifications()),
        },
    );
}

// Buffer and stream.

#[test]
fn the_buffer_keeps_the_newest_rows_up_to_its_capacity() {
    let mut s = state();
    for seq in 1..=250 {
        update(&mut s, created(seq));
    }
    assert_eq!(s.live.rows.len(), 100);
    assert_eq!(s.live.evicted, 150);
    assert_eq!(s.live.received, 250);
    assert_eq!(seqs(&s).first(), Some(&151));
    assert_eq!(s.live.last_seq, Some(250));
}

#[test]
fn an_update_seen_before_is_ignored_and_counted() {
    let mut s = state();
    update(&mut s, created(5));
    update(&mut s, created(5));
    update(&mut s, created(4));
    assert_eq!(seqs(&s), vec![5]);
    assert_eq!(s.live.duplicates, 2);
}

#[test]
fn a_resumed_stream_marks_the_gap_it_filled() {
    let mut s = state();
    for seq in 1..=40 {
        update(&mut s, created(seq));
    }
    update(
        &mut s,
        Action::Stream(StreamEvent::Closed {
            code: None,
            reason: String::new(),
            at: fixture::now(),
        }),
    );
    assert_eq!(
        s.stream,
        StreamStatus::Connecting {
            attempt: 1,
            since: Some(40)
        }
    );
    update(
        &mut s,
        Action::Stream(StreamEvent::Opened { since: Some(40) }),
    );
    assert_eq!(s.stream, StreamStatus::Replaying { since: 40 });
    for seq in 41..=77 {
        update(&mut s, created(seq));
    }
    update(&mut s, frame(r#"{"type":"ready","seq":77}"#));
    assert!(matches!(s.stream, StreamStatus::Live { .. }));
    assert_eq!(
        markers(&s),
        vec![
            "connection lost (no close frame); reconnecting".to_owned(),
            "resumed after seq 40: 37 missed updates replayed".to_owned(),
        ]
    );
    assert_eq!(s.live.resume, None);
}

#[test]
fn a_ready_message_sets_the_cursor_before_any_update() {
    let mut s = state();
    update(&mut s, Action::Stream(StreamEvent::Opened { since: None }));
    update(&mut s, frame(r#"{"type":"ready","seq":1234}"#));
    assert_eq!(s.live.last_seq, Some(1234));
    assert!(markers(&s).is_empty(), "a first connection fills no gap");
}

#[test]
fn resync_required_is_shown_as_an_alarm_never_ignored() {
    let mut s = state();
    update(
        &mut s,
        frame(r#"{"type":"resync-required","since":3,"pruned_through":900,"message":"x"}"#),
    );
    let alarm = s.live.rows.iter().any(|r| {
        matches!(r, LiveRow::Marker { alarm: true, text, .. } if text.contains("RESYNC REQUIRED") && text.contains("900"))
    });
    assert!(alarm, "{:?}", s.live.rows);
    assert!(s.note.as_ref().is_some_and(|n| n.error));
}

#[test]
fn an_unreadable_message_is_shown_not_dropped() {
    let mut s = state();
    update(&mut s, frame(r#"{"seq":9,"event_type":"task-exploded"}"#));
    assert!(markers(&s)[0].starts_with("unreadable message"));
}

#[test]
fn an_expired_token_closing_the_stream_is_said_in_the_status_line() {
    let mut s = state();
    update(
        &mut s,
        Action::Stream(StreamEvent::Closed {
            code: Some(4401),
            reason: "token expired, reconnect with a fresh token and since=8".to_owned(),
            at: fixture::now(),
        }),
    );
    assert!(
        s.auth_problem
            .as_ref()
            .is_some_and(|p| p.contains("token expired"))
    );
    update(
        &mut s,
        Action::Stream(StreamEvent::Opened { since: Some(8) }),
    );
    assert_eq!(s.auth_problem, None, "a fresh token was accepted");
}

#[test]
fn a_stream_that_cannot_open_says_why_and_when_it_tries_again() {
    let mut s = state();
    let retry_at = fixture::now() + TimeDelta::seconds(2);
    update(
        &mut s,
        Action::Stream(StreamEvent::Failed {
            error: FetchError::Unauthorized("token expired".into()),
            retry_at,
        }),
    );
    assert!(
        matches!(&s.stream, StreamStatus::Down { error, retry_at: r } if error.contains("token expired") && *r == retry_at)
    );
    assert!(s.auth_problem.is_some());
}

// Filtering.

#[test]
fn the_live_filter_matches_type_user_task_and_words() {
    let mut s = state();
    for seq in 1..=14 {
        update(&mut s, created(seq));
    }
    type_line(&mut s, "user:user-3");
    assert_eq!(seqs(&s), vec![3, 10]);
    type_line(&mut s, "type:task-deleted");
    assert!(seqs(&s).is_empty());
    let prefix = fixture::id(5).to_string();
    type_line(&mut s, &format!("task:{prefix}"));
    assert_eq!(seqs(&s), vec![4], "task 5 is seq 4's");
    type_line(&mut s, "NUMBER 12");
    assert_eq!(seqs(&s), vec![11]);
    type_line(&mut s, "");
    assert_eq!(seqs(&s).len(), 14);
    assert_eq!(s.mode, Mode::Normal);
}

#[test]
fn a_bad_filter_keeps_the_prompt_open_with_the_reason() {
    let mut s = state();
    type_line(&mut s, "type:task-exploded");
    assert!(matches!(s.mode, Mode::Prompt(_)));
    let note = s.note.clone().unwrap();
    assert!(note.error && note.text.contains("task-created"), "{note:?}");
    update(&mut s, Action::Back);
    assert_eq!(s.mode, Mode::Normal);
}

#[test]
fn markers_are_never_filtered_out() {
    let mut s = state();
    update(&mut s, created(1));
    update(&mut s, frame("garbage"));
    type_line(&mut s, "user:nobody");
    assert_eq!(s.live.visible().len(), 1);
}

// Pause and selection.

#[test]
fn a_pause_holds_new_rows_back_and_a_resume_shows_them() {
    let mut s = state();
    update(&mut s, created(1));
    update(&mut s, Action::TogglePause);
    update(&mut s, created(2));
    update(&mut s, created(3));
    assert_eq!(seqs(&s), vec![1]);
    assert_eq!(s.live.held_back(), 2);
    assert_eq!(s.live.received, 3, "kept while paused");
    update(&mut s, Action::TogglePause);
    assert_eq!(seqs(&s), vec![1, 2, 3]);
    assert!(s.live.follow);
}

#[test]
fn scrolling_up_stops_following_and_the_bottom_follows_again() {
    let mut s = state();
    for seq in 1..=10 {
        update(&mut s, created(seq));
    }
    update(&mut s, Action::Up(2));
    assert!(!s.live.follow);
    update(&mut s, created(11));
    let selected = |s: &State| match s.live.selected_row() {
        Some(LiveRow::Event { event, .. }) => event.seq,
        _ => -1,
    };
    assert_eq!(selected(&s), 8, "the selection stays on its row");
    update(&mut s, Action::Top);
    assert_eq!(selected(&s), 1);
    update(&mut s, Action::PageDown);
    assert!(s.live.follow);
    assert_eq!(selected(&s), 11);
    update(&mut s, Action::Up(1));
    update(&mut s, Action::Bottom);
    assert!(s.live.follow);
}

// Views, detail, task history.

#[test]
fn views_cycle_and_help_goes_back_with_esc() {
    let mut s = state();
    update(&mut s, Action::NextView);
    assert_eq!(s.view, View::Task);
    update(&mut s, Action::PreviousView);
    update(&mut s, Action::PreviousView);
    assert_eq!(s.view, View::Help);
    update(&mut s, Action::Show(View::Health));
    update(&mut s, Action::Show(View::Help));
    update(&mut s, Action::Back);
    assert_eq!(s.view, View::Health);
}

#[test]
fn enter_shows_the_event_as_json_and_then_its_task_history() {
    let mut s = state();
    update(&mut s, created(4));
    update(&mut s, Action::Open);
    let Mode::Detail(d) = &s.mode else {
        panic!("no detail: {:?}", s.mode)
    };
    assert!(
        d.body.contains("\"title\": \"Task number 5\""),
        "{}",
        d.body
    );
    assert!(d.body.contains("\"seq\": 4"));
    update(&mut s, Action::Down(3));
    assert!(matches!(&s.mode, Mode::Detail(d) if d.scroll == 3));
    let commands = update(&mut s, Action::Open);
    assert_eq!(s.view, View::Task);
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!(commands, vec![Command::FetchAudit(fixture::id(5))]);
    update(&mut s, Action::Back);
    assert_eq!(s.view, View::Live);
}

#[test]
fn a_task_history_takes_only_its_own_answer_and_refreshes_on_its_events() {
    let mut s = state();
    update(&mut s, created(4));
    assert_eq!(
        update(&mut s, Action::OpenTask),
        vec![Command::FetchAudit(fixture::id(5))]
    );
    update(
        &mut s,
        Action::AuditLoaded {
            task_id: fixture::id(99),
            result: Ok(fixture::audit_trail(99)),
        },
    );
    assert!(s.task.records.data.is_none(), "another task's answer");
    update(
        &mut s,
        Action::AuditLoaded {
            task_id: fixture::id(5),
            result: Ok(fixture::audit_trail(5)),
        },
    );
    assert_eq!(s.task.records.data.as_ref().map(Vec::len), Some(3));
    update(&mut s, created(54)); // task 5 again
    assert!(s.task.records.stale);
    let commands = update(&mut s, Action::Tick(fixture::now() + TimeDelta::seconds(1)));
    assert!(
        commands.contains(&Command::FetchAudit(fixture::id(5))),
        "{commands:?}"
    );
}

#[test]
fn a_typed_task_id_opens_its_history_and_a_bad_one_is_refused() {
    let mut s = state();
    update(&mut s, Action::Show(View::Task));
    let commands = type_line(&mut s, &fixture::id(7).to_string());
    assert_eq!(commands, vec![Command::FetchAudit(fixture::id(7))]);
    type_line(&mut s, "not-a-uuid");
    assert!(s.note.as_ref().is_some_and(|n| n.error));
    assert_eq!(s.task.task_id, Some(fixture::id(7)));
}

// Notifications and retry.

#[test]
fn r_retries_only_a_failed_notification_once_at_a_time() {
    let mut s = state();
    with_notifications(&mut s);
    let failed = fixture::id(401);
    assert_eq!(update(&mut s, Action::Retry), vec![Command::Retry(failed)]);
    assert!(s.notifications.retrying.contains(&failed));
    assert!(
        update(&mut s, Action::Retry).is_empty(),
        "already on its way"
    );
    update(&mut s, Action::Down(1));
    assert!(update(&mut s, Action::Retry).is_empty());
    assert!(
        s.note
            .as_ref()
            .is_some_and(|n| n.error && n.text.contains("sent"))
    );
}

#[test]
fn an_accepted_retry_shows_pending_then_the_refresh_shows_sent() {
    let mut s = state();
    with_notifications(&mut s);
    let failed = fixture::id(401);
    update(&mut s, Action::Retry);
    let mut pending = fixture::notification(1, "pending", "alice", "Call the bank");
    pending.attempts = 8;
    update(
        &mut s,
        Action::RetryAnswered {
            id: failed,
            result: Ok(pending),
        },
    );
    assert!(s.notifications.retrying.is_empty());
    assert_eq!(
        s.notifications.selected_notification().unwrap().status,
        "pending"
    );
    assert!(s.notifications.list.stale);
    let later = fixture::now() + TimeDelta::seconds(1);
    let commands = update(&mut s, Action::Tick(later));
    assert!(commands.contains(&Command::FetchNotifications(NotificationQuery::default())));
    let mut sent = fixture::notifications();
    sent[0].status = "sent".to_owned();
    update(
        &mut s,
        Action::NotificationsLoaded {
            query: NotificationQuery::default(),
            result: Ok(sent),
        },
    );
    assert_eq!(
        s.notifications.selected_notification().unwrap().status,
        "sent"
    );
}

#[test]
fn a_refused_retry_is_said() {
    let mut s = state();
    with_notifications(&mut s);
    update(&mut s, Action::Retry);
    update(
        &mut s,
        Action::RetryAnswered {
            id: fixture::id(401),
            result: Err(FetchError::Status {
                status: 409,
                message: "notification is not failed".into(),
            }),
        },
    );
    let note = s.note.clone().unwrap();
    assert!(note.error && note.text.contains("409"), "{note:?}");
    assert!(s.notifications.retrying.is_empty());
}

#[test]
fn a_delivered_notification_on_the_stream_refreshes_the_list() {
    let mut s = state();
    with_notifications(&mut s);
    assert!(!s.notifications.list.stale);
    let delivered = fixture::update_text(
        9,
        "notification-delivered",
        "alice",
        1,
        fixture::now(),
        &serde_json::json!({"notification_id": fixture::id(401), "notification_type": "reminder",
            "channel": "in_app", "title": "Call the bank", "due_date": null, "remind_at": "2026-03-02T09:59:00.000Z"}),
    );
    update(&mut s, frame(&delivered));
    assert!(s.notifications.list.stale);
}

#[test]
fn the_status_filter_cycles_and_asks_again() {
    let mut s = state();
    with_notifications(&mut s);
    let commands = update(&mut s, Action::CycleStatus);
    let pending = NotificationQuery {
        status: Some(NotificationStatus::Pending),
        ..NotificationQuery::default()
    };
    assert_eq!(commands, vec![Command::FetchNotifications(pending.clone())]);
    // An answer to the old filter is not shown under the new one.
    update(
        &mut s,
        Action::NotificationsLoaded {
            query: NotificationQuery::default(),
            result: Ok(Vec::new()),
        },
    );
    assert_eq!(s.notifications.list.data.as_ref().map(Vec::len), Some(3));
    type_line(&mut s, "status:failed user:alice");
    assert_eq!(s.notifications.query.user.as_deref(), Some("alice"));
    assert_eq!(
        s.notifications.query.status,
        Some(NotificationStatus::Failed)
    );
}

// Ticks, health, tokens.

#[test]
fn a_tick_asks_each_service_once_until_it_answers() {
    let mut s = state();
    let first = update(&mut s, Action::Tick(fixture::now()));
    assert_eq!(
        first
            .iter()
            .filter(|c| matches!(c, Command::FetchReadiness { .. }))
            .count(),
        2
    );
    assert!(first.contains(&Command::FetchConnections));
    let again = update(&mut s, Action::Tick(fixture::now() + TimeDelta::seconds(5)));
    assert!(again.is_empty(), "still in flight: {again:?}");
    update(
        &mut s,
        Action::ReadinessLoaded {
            app_id: "audit-service",
            result: Err(FetchError::Down("Connection refused (os error 111)".into())),
        },
    );
    let Health { services, .. } = &s.health;
    assert!(services[1].ready.is_down());
    let later = update(&mut s, Action::Tick(fixture::now() + TimeDelta::seconds(8)));
    assert!(later.contains(&Command::FetchReadiness {
        app_id: "audit-service",
        url: "http://a".into()
    }));
}

#[test]
fn a_down_service_keeps_its_last_good_answer() {
    let mut r: Remote<i64> = Remote::default();
    let t0 = fixture::now();
    assert!(r.begin(t0));
    r.finish(Ok(3), t0);
    assert!(r.begin(t0));
    r.finish(
        Err(FetchError::Down("refused".into())),
        t0 + TimeDelta::seconds(3),
    );
    assert_eq!((r.data, r.last_good), (Some(3), Some(t0)));
    assert!(r.is_down());
}

#[test]
fn a_refused_token_is_said_until_an_answer_is_good() {
    let mut s = state();
    with_notifications(&mut s);
    update(
        &mut s,
        Action::NotificationsLoaded {
            query: NotificationQuery::default(),
            result: Err(FetchError::Unauthorized("token expired".into())),
        },
    );
    assert!(
        s.auth_problem
            .as_ref()
            .is_some_and(|p| p.contains("notification-service"))
    );
    assert_eq!(
        s.notifications.list.data.as_ref().map(Vec::len),
        Some(3),
        "still shown"
    );
    with_notifications(&mut s);
    assert_eq!(s.auth_problem, None);
}

#[test]
fn the_rate_and_notes_follow_the_clock() {
    let mut s = state();
    update(&mut s, Action::Tick(fixture::now()));
    for seq in 1..=30 {
        update(&mut s, created(seq));
    }
    update(&mut s, Action::TogglePause);
    assert!(s.note.is_some());
    update(&mut s, Action::Tick(fixture::now() + TimeDelta::seconds(2)));
    assert!((s.live.rate - 15.0).abs() < 0.01, "{}", s.live.rate);
    update(
        &mut s,
        Action::Tick(fixture::now() + TimeDelta::seconds(10)),
    );
    assert_eq!(s.note, None);
}

#[test]
fn schedules_refresh_on_show_and_enter_opens_the_current_task() {
    let mut s = state();
    let commands = update(&mut s, Action::Show(View::Schedules));
    assert_eq!(
        commands,
        vec![
            Command::FetchSchedules { user: None },
            Command::FetchReminders { user: None }
        ]
    );
    update(
        &mut s,
        Action::SchedulesLoaded {
            user: None,
            result: Ok(fixture::schedules()),
        },
    );
    update(
        &mut s,
        Action::RemindersLoaded {
            user: None,
            result: Ok(fixture::reminders()),
        },
    );
    update(&mut s, Action::Down(1));
    assert_eq!(s.schedules.selected_series, 1);
    update(&mut s, Action::SwitchPane);
    update(&mut s, Action::Down(5));
    assert_eq!(s.schedules.selected_reminder, 2);
    let commands = update(&mut s, Action::Open);
    assert_eq!(commands, vec![Command::FetchAudit(fixture::id(21))]);
    update(&mut s, Action::Show(View::Schedules));
    let commands = type_line(&mut s, "user:bob");
    assert!(
        commands.is_empty(),
        "the unfiltered lists are still on their way"
    );
    // Their answers are not shown under the new filter; it is asked for.
    let commands = update(
        &mut s,
        Action::SchedulesLoaded {
            user: None,
            result: Ok(fixture::schedules()),
        },
    );
    assert_eq!(
        commands,
        vec![Command::FetchSchedules {
            user: Some("bob".into())
        }]
    );
    assert_eq!(
        s.schedules.series.data.as_ref().map(Vec::len),
        Some(2),
        "the older answer stays"
    );
    let commands = update(
        &mut s,
        Action::RemindersLoaded {
            user: None,
            result: Ok(Vec::new()),
        },
    );
    assert_eq!(
        commands,
        vec![Command::FetchReminders {
            user: Some("bob".into())
        }]
    );
    assert_eq!(s.schedules.reminders.data.as_ref().map(Vec::len), Some(3));
}

#[test]
fn quit_ends_the_console() {
    let mut s = state();
    update(&mut s, Action::Quit);
    assert!(s.quit);
}
