//! Every view drawn through ratatui's `TestBackend` from fixture data, in
//! its normal, empty and service-down states, at two terminal sizes, pinned
//! by insta snapshots in `snapshots/console/`. The states are reached
//! through `update`, as the running console reaches them.

use chrono::TimeDelta;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use todo_admin::action::{Action, StreamEvent};
use todo_admin::client::FetchError;
use todo_admin::fixture;
use todo_admin::model::Frame;
use todo_admin::render::render;
use todo_admin::state::{NotificationQuery, State, TokenInfo, View};
use todo_admin::update::update;

/// A view's fixture state, by kind (`normal`, `empty`, `down`).
type StateOf = fn(&str) -> State;

const SIZES: [(u16, u16); 2] = [(120, 32), (80, 24)];

fn base() -> State {
    let mut s = State::new(
        todo_admin::config::Endpoints::local().services(),
        10_000,
        fixture::now(),
    );
    update(
        &mut s,
        Action::Token(TokenInfo {
            subject: Some("operator".into()),
            expires_at: Some(fixture::now() + TimeDelta::hours(12)),
            operator: true,
            source: "fixture".into(),
        }),
    );
    s
}

fn down() -> FetchError {
    FetchError::Down("Connection refused (os error 111)".into())
}

fn apply(s: &mut State, actions: impl IntoIterator<Item = Action>) {
    for a in actions {
        update(s, a);
    }
}

fn streamed(s: &mut State, n: i64) {
    update(s, Action::Stream(StreamEvent::Opened { since: None }));
    for seq in 1..=n {
        let at = fixture::now() - TimeDelta::milliseconds((n - seq) * 250);
        let frame = Frame::parse(&fixture::created_text(seq, at));
        update(s, Action::Stream(StreamEvent::Frame(frame)));
    }
}

fn live(kind: &str) -> State {
    let mut s = base();
    match kind {
        "normal" => {
            streamed(&mut s, 40);
            apply(
                &mut s,
                [
                    Action::Stream(StreamEvent::Closed {
                        code: Some(1006),
                        reason: String::new(),
                        at: fixture::now(),
                    }),
                    Action::Stream(StreamEvent::Opened { since: Some(40) }),
                ],
            );
            for seq in 41..=44 {
                let frame = Frame::parse(&fixture::created_text(seq, fixture::now()));
                update(&mut s, Action::Stream(StreamEvent::Frame(frame)));
            }
            update(
                &mut s,
                Action::Stream(StreamEvent::Frame(Frame::Ready { seq: 44 })),
            );
            update(&mut s, Action::Up(3));
        }
        "empty" => update(&mut s, Action::Stream(StreamEvent::Opened { since: None })).clear(),
        _ => {
            update(
                &mut s,
                Action::Stream(StreamEvent::Failed {
                    error: down(),
                    retry_at: fixture::now() + TimeDelta::seconds(4),
                }),
            );
        }
    }
    s
}

fn task(kind: &str) -> State {
    let mut s = base();
    let id = fixture::id(5);
    update(&mut s, Action::Show(View::Task));
    if kind == "empty" {
        return s;
    }
    // Opened as the operator does: `/`, the id, Enter.
    update(&mut s, Action::StartPrompt);
    apply(&mut s, id.to_string().chars().map(Action::Input));
    update(&mut s, Action::InputSubmit);
    update(
        &mut s,
        Action::AuditLoaded {
            task_id: id,
            result: Ok(fixture::audit_trail(5)),
        },
    );
    update(&mut s, Action::Down(1));
    if kind == "down" {
        s.task.records.in_flight = true;
        update(
            &mut s,
            Action::AuditLoaded {
                task_id: id,
                result: Err(down()),
            },
        );
    }
    s
}

fn notifications(kind: &str) -> State {
    let mut s = base();
    update(&mut s, Action::Show(View::Notifications));
    let list = if kind == "empty" {
        Vec::new()
    } else {
        fixture::notifications()
    };
    update(
        &mut s,
        Action::NotificationsLoaded {
            query: NotificationQuery::default(),
            result: Ok(list),
        },
    );
    if kind == "down" {
        s.notifications.list.in_flight = true;
        update(
            &mut s,
            Action::NotificationsLoaded {
                query: NotificationQuery::default(),
                result: Err(down()),
            },
        );
    }
    s
}

fn schedules(kind: &str) -> State {
    let mut s = base();
    update(&mut s, Action::Show(View::Schedules));
    match kind {
        "normal" => apply(
            &mut s,
            [
                Action::SchedulesLoaded {
                    user: None,
                    result: Ok(fixture::schedules()),
                },
                Action::RemindersLoaded {
                    user: None,
                    result: Ok(fixture::reminders()),
                },
                Action::SwitchPane,
            ],
        ),
        "empty" => apply(
            &mut s,
            [
                Action::SchedulesLoaded {
                    user: None,
                    result: Ok(Vec::new()),
                },
                Action::RemindersLoaded {
                    user: None,
                    result: Ok(Vec::new()),
                },
            ],
        ),
        _ => apply(
            &mut s,
            [
                Action::SchedulesLoaded {
                    user: None,
                    result: Err(down()),
                },
                Action::RemindersLoaded {
                    user: None,
                    result: Err(down()),
                },
            ],
        ),
    }
    s
}

fn health(kind: &str) -> State {
    let mut s = base();
    update(&mut s, Action::Show(View::Health));
    if kind == "empty" {
        return s;
    }
    update(&mut s, Action::Tick(fixture::now()));
    let apps = [
        "todo-service",
        "audit-service",
        "websocket-service",
        "notification-service",
        "recurring-task-service",
    ];
    for (i, app_id) in apps.into_iter().enumerate() {
        let broken = kind == "down" && app_id == "audit-service";
        let ready = if broken {
            Err(down())
        } else {
            Ok(fixture::ready())
        };
        let counters = if broken {
            Err(down())
        } else {
            Ok(fixture::counters(100 * i as u64))
        };
        apply(
            &mut s,
            [
                Action::ReadinessLoaded {
                    app_id,
                    result: ready,
                },
                Action::CountersLoaded {
                    app_id,
                    result: counters,
                },
            ],
        );
    }
    update(&mut s, Action::ConnectionsLoaded(Ok(3)));
    s
}

/// The consuming services, in the Dead letters view's order.
const CONSUMERS: [&str; 4] = [
    "audit-service",
    "websocket-service",
    "notification-service",
    "recurring-task-service",
];

/// Normal: every consumer answers, with dead letters in three of them and
/// a failed intent in each dispatcher. Down: the same with the WebSocket
/// service unreachable (never answered) and the notification service gone
/// since its last answer.
fn dead_letters(kind: &str) -> State {
    let mut s = base();
    update(&mut s, Action::Show(View::DeadLetters));
    for app_id in CONSUMERS {
        let letters = match kind {
            "empty" => fixture::dead_letter_page(Vec::new()),
            _ => fixture::dead_letters(app_id),
        };
        let letters = if kind == "down" && app_id == "websocket-service" {
            Err(down())
        } else {
            Ok(letters)
        };
        update(
            &mut s,
            Action::DeadLettersLoaded {
                app_id,
                result: letters,
            },
        );
        if matches!(app_id, "notification-service" | "recurring-task-service") {
            let intents = match kind {
                "empty" => Default::default(),
                _ => fixture::failed_intents(app_id),
            };
            update(
                &mut s,
                Action::FailedIntentsLoaded {
                    app_id,
                    result: Ok(intents),
                },
            );
        }
    }
    if kind == "down" {
        let later = fixture::now() + TimeDelta::seconds(6);
        update(&mut s, Action::Tick(later));
        let app_id = "notification-service";
        apply(
            &mut s,
            [
                Action::DeadLettersLoaded {
                    app_id,
                    result: Err(down()),
                },
                Action::FailedIntentsLoaded {
                    app_id,
                    result: Err(down()),
                },
            ],
        );
    }
    if kind == "normal" {
        update(&mut s, Action::Down(1));
    }
    s
}

fn snapshot(name: &str, state: &State) {
    for (w, h) in SIZES {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| render(state, f)).unwrap();
        insta::with_settings!({ snapshot_path => "../../snapshots/console", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("{name}-{w}x{h}"), terminal.backend());
        });
    }
}

#[test]
fn every_view_in_every_state_at_two_sizes() {
    let views: [(&str, StateOf); 6] = [
        ("live", live),
        ("task", task),
        ("notifications", notifications),
        ("schedules", schedules),
        ("health", health),
        ("dead-letters", dead_letters),
    ];
    for (view, make) in views {
        for kind in ["normal", "empty", "down"] {
            snapshot(&format!("{view}-{kind}"), &make(kind));
        }
    }
}

#[test]
fn help_lists_every_key() {
    let mut s = base();
    update(&mut s, Action::Show(View::Help));
    snapshot("help", &s);
}

#[test]
fn an_event_opens_as_pretty_json_over_the_view() {
    let mut s = live("normal");
    update(&mut s, Action::Open);
    snapshot("live-detail", &s);
}

#[test]
fn the_filter_prompt_and_an_expired_token_show_in_the_bottom_lines() {
    let mut s = live("normal");
    update(&mut s, Action::Bottom);
    s.token.expires_at = Some(fixture::now() - TimeDelta::minutes(3));
    update(&mut s, Action::StartPrompt);
    for c in "user:user-3".chars() {
        update(&mut s, Action::Input(c));
    }
    snapshot("live-prompt-expired-token", &s);
}

#[test]
fn capital_r_asks_at_the_bottom_before_redriving_a_services_dead_letters() {
    let mut s = dead_letters("normal");
    update(&mut s, Action::RetryAll);
    snapshot("dead-letters-confirm", &s);
}

#[test]
fn a_redrive_in_flight_marks_its_row_and_its_outcome_is_in_the_status_line() {
    let mut s = dead_letters("normal");
    update(&mut s, Action::Up(1));
    update(&mut s, Action::Retry);
    update(&mut s, Action::Down(2));
    update(&mut s, Action::Retry);
    update(
        &mut s,
        Action::RedriveAnswered {
            app_id: "recurring-task-service",
            id: 8,
            result: Ok(todo_admin::model::Redriven::StillFailing(
                "database: no row in series for task 00000000-0000-4000-8000-00000000000c".into(),
            )),
        },
    );
    snapshot("dead-letters-redriving", &s);
}
