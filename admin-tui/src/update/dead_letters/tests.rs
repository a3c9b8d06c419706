//! Unit tests of the Dead letters view's update: keys → commands → state.

use chrono::TimeDelta;

use crate::action::{Action, Command};
use crate::client::FetchError;
use crate::config::Endpoints;
use crate::fixture;
use crate::model::{IntentRetried, RedriveAll, Redriven};
use crate::state::{FailureRow, Mode, State, View};
use crate::update::update;

const AUDIT: &str = "audit-service";
const WEBSOCKET: &str = "websocket-service";
const NOTIFICATION: &str = "notification-service";
const RECURRING: &str = "recurring-task-service";

fn state() -> State {
    State::new(Endpoints::local().services(), 100, fixture::now())
}

fn down() -> FetchError {
    FetchError::Down("Connection refused (os error 111)".into())
}

/// The view opened and every service's answer in: the fixture's letters
/// and intents, the WebSocket service down.
fn loaded() -> State {
    let mut s = state();
    update(&mut s, Action::Show(View::DeadLetters));
    for app_id in [AUDIT, NOTIFICATION, RECURRING] {
        update(
            &mut s,
            Action::DeadLettersLoaded {
                app_id,
                result: Ok(fixture::dead_letters(app_id)),
            },
        );
    }
    update(
        &mut s,
        Action::DeadLettersLoaded {
            app_id: WEBSOCKET,
            result: Err(down()),
        },
    );
    for app_id in [NOTIFICATION, RECURRING] {
        update(
            &mut s,
            Action::FailedIntentsLoaded {
                app_id,
                result: Ok(fixture::failed_intents(app_id)),
            },
        );
    }
    s
}

fn letter(app_id: &'static str, id: i64) -> FailureRow {
    FailureRow::Letter { app_id, id }
}

fn note(s: &State) -> (String, bool) {
    let n = s.note.clone().expect("a note in the status line");
    (n.text, n.error)
}

#[test]
fn opening_the_view_asks_every_consumer_and_both_intent_dispatchers_once() {
    let mut s = state();
    let commands = update(&mut s, Action::Show(View::DeadLetters));
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    assert_eq!(
        commands,
        vec![
            Command::FetchDeadLetters {
                app_id: AUDIT,
                url: url(8002)
            },
            Command::FetchDeadLetters {
                app_id: WEBSOCKET,
                url: url(8003)
            },
            Command::FetchDeadLetters {
                app_id: NOTIFICATION,
                url: url(8004)
            },
            Command::FetchFailedIntents {
                app_id: NOTIFICATION,
                url: url(8004)
            },
            Command::FetchDeadLetters {
                app_id: RECURRING,
                url: url(8005)
            },
            Command::FetchFailedIntents {
                app_id: RECURRING,
                url: url(8005)
            },
        ]
    );
    let ticked = update(&mut s, Action::Tick(fixture::now() + TimeDelta::seconds(1)));
    assert!(
        !ticked
            .iter()
            .any(|c| matches!(c, Command::FetchDeadLetters { .. })),
        "still on their way: {ticked:?}"
    );
}

#[test]
fn the_lists_are_asked_for_again_periodically_while_the_view_is_shown() {
    let mut s = loaded();
    let soon = update(&mut s, Action::Tick(fixture::now() + TimeDelta::seconds(1)));
    assert!(
        !soon.iter().any(|c| matches!(
            c,
            Command::FetchDeadLetters { .. } | Command::FetchFailedIntents { .. }
        )),
        "{soon:?}"
    );
    let later = update(&mut s, Action::Tick(fixture::now() + TimeDelta::seconds(6)));
    assert_eq!(
        later
            .iter()
            .filter(|c| matches!(c, Command::FetchDeadLetters { .. }))
            .count(),
        4
    );
    update(&mut s, Action::Show(View::Live));
    for app_id in [AUDIT, WEBSOCKET, NOTIFICATION, RECURRING] {
        update(
            &mut s,
            Action::DeadLettersLoaded {
                app_id,
                result: Ok(fixture::dead_letters(app_id)),
            },
        );
    }
    let elsewhere = update(
        &mut s,
        Action::Tick(fixture::now() + TimeDelta::seconds(30)),
    );
    assert!(
        !elsewhere
            .iter()
            .any(|c| matches!(c, Command::FetchDeadLetters { .. })),
        "not while another view is shown: {elsewhere:?}"
    );
}

#[test]
fn every_consumers_letters_are_one_list_newest_failure_first_then_the_intents() {
    let s = loaded();
    assert_eq!(
        s.dead_letters.rows(),
        vec![
            letter(AUDIT, 17),
            letter(RECURRING, 8),
            letter(AUDIT, 12),
            FailureRow::Intent {
                app_id: NOTIFICATION,
                key: format!("delivery-{}", fixture::id(401)),
            },
            FailureRow::Intent {
                app_id: RECURRING,
                key: format!("reminder-{}", fixture::id(12)),
            },
        ]
    );
    let websocket = s.dead_letters.service(WEBSOCKET).unwrap();
    assert!(websocket.letters.is_down(), "the unreachable one is known");
}

#[test]
fn the_selection_moves_from_the_dead_letters_into_the_intents() {
    let mut s = loaded();
    assert_eq!(s.dead_letters.selected_row(), Some(letter(AUDIT, 17)));
    update(&mut s, Action::Down(3));
    assert!(matches!(
        s.dead_letters.selected_row(),
        Some(FailureRow::Intent {
            app_id: NOTIFICATION,
            ..
        })
    ));
    update(&mut s, Action::Bottom);
    update(&mut s, Action::Down(1));
    assert!(matches!(
        s.dead_letters.selected_row(),
        Some(FailureRow::Intent {
            app_id: RECURRING,
            ..
        })
    ));
    update(&mut s, Action::Top);
    assert_eq!(s.dead_letters.selected_row(), Some(letter(AUDIT, 17)));
}

#[test]
fn the_selection_stays_on_its_row_when_a_newer_failure_comes_in_above() {
    let mut s = loaded();
    update(&mut s, Action::Down(1));
    assert_eq!(s.dead_letters.selected_row(), Some(letter(RECURRING, 8)));
    let mut page = fixture::dead_letters(AUDIT);
    page.dead_letters.push(fixture::dead_letter(
        AUDIT,
        30,
        "task-events",
        Some(9),
        0,
        1,
        "new",
    ));
    page.total = 3;
    update(
        &mut s,
        Action::DeadLettersLoaded {
            app_id: AUDIT,
            result: Ok(page),
        },
    );
    assert_eq!(s.dead_letters.rows()[0], letter(AUDIT, 30));
    assert_eq!(s.dead_letters.selected_row(), Some(letter(RECURRING, 8)));
}

#[test]
fn r_redrives_the_selected_dead_letter_once_at_a_time() {
    let mut s = loaded();
    update(&mut s, Action::Down(1));
    let commands = update(&mut s, Action::Retry);
    assert_eq!(
        commands,
        vec![Command::Redrive {
            app_id: RECURRING,
            url: "http://127.0.0.1:8005".into(),
            id: 8
        }]
    );
    assert!(s.dead_letters.busy.contains(&letter(RECURRING, 8)));
    assert!(
        note(&s)
            .0
            .contains("redriving recurring-task-service dead letter 8")
    );
    assert!(
        update(&mut s, Action::Retry).is_empty(),
        "already on its way"
    );
}

#[test]
fn an_applied_redrive_is_said_and_its_row_goes_the_next_one_selected_and_the_list_asked_again() {
    let mut s = loaded();
    update(&mut s, Action::Retry);
    let commands = update(
        &mut s,
        Action::RedriveAnswered {
            app_id: AUDIT,
            id: 17,
            result: Ok(Redriven::Applied),
        },
    );
    assert_eq!(
        note(&s),
        ("audit-service dead letter 17: applied".to_owned(), false)
    );
    assert!(!s.dead_letters.rows().contains(&letter(AUDIT, 17)));
    assert_eq!(
        s.dead_letters.selected_row(),
        Some(letter(RECURRING, 8)),
        "the row that took its place"
    );
    assert!(s.dead_letters.busy.is_empty());
    assert_eq!(
        s.dead_letters
            .service(AUDIT)
            .unwrap()
            .letters
            .data
            .as_ref()
            .unwrap()
            .total,
        1
    );
    assert!(
        commands.contains(&Command::FetchDeadLetters {
            app_id: AUDIT,
            url: "http://127.0.0.1:8002".into()
        }),
        "{commands:?}"
    );
}

#[test]
fn a_redrive_that_fails_again_keeps_its_row_and_says_why() {
    let mut s = loaded();
    update(&mut s, Action::Retry);
    update(
        &mut s,
        Action::RedriveAnswered {
            app_id: AUDIT,
            id: 17,
            result: Ok(Redriven::StillFailing(
                "violates check constraint \"no_empty_title\"".into(),
            )),
        },
    );
    assert_eq!(
        note(&s),
        (
            "audit-service dead letter 17: still failing: violates check constraint \"no_empty_title\""
                .to_owned(),
            true
        )
    );
    assert_eq!(s.dead_letters.selected_row(), Some(letter(AUDIT, 17)));
    assert!(s.dead_letters.busy.is_empty(), "it can be tried again");
}

#[test]
fn every_other_redrive_outcome_is_said() {
    let cases = [
        (Ok(Redriven::AlreadyApplied), "already applied", false),
        (Ok(Redriven::AlreadyRedriven), "already redriven", false),
        (Ok(Redriven::NotFound), "not found", true),
        (Err(down()), "failed: down: Connection refused", true),
    ];
    for (result, said, error) in cases {
        let mut s = loaded();
        update(&mut s, Action::Retry);
        update(
            &mut s,
            Action::RedriveAnswered {
                app_id: AUDIT,
                id: 17,
                result,
            },
        );
        let (text, is_error) = note(&s);
        assert!(text.contains(said) && is_error == error, "{text}");
    }
}

#[test]
fn r_on_a_failed_intent_retries_it() {
    let mut s = loaded();
    update(&mut s, Action::Down(4));
    let key = format!("reminder-{}", fixture::id(12));
    let commands = update(&mut s, Action::Retry);
    assert_eq!(
        commands,
        vec![Command::RetryIntent {
            app_id: RECURRING,
            url: "http://127.0.0.1:8005".into(),
            key: key.clone()
        }]
    );
    update(
        &mut s,
        Action::IntentRetryAnswered {
            app_id: RECURRING,
            key: key.clone(),
            result: Ok(IntentRetried::Accepted),
        },
    );
    let (text, error) = note(&s);
    assert!(
        !error && text.contains(&key) && text.contains("retried"),
        "{text}"
    );
    assert_eq!(s.dead_letters.intents().len(), 1);
}

#[test]
fn capital_r_asks_before_redriving_all_of_the_selected_rows_service() {
    let mut s = loaded();
    update(&mut s, Action::Down(1));
    assert!(update(&mut s, Action::RetryAll).is_empty());
    let Mode::Confirm(c) = &s.mode else {
        panic!("no question: {:?}", s.mode);
    };
    assert_eq!(c.app_id, RECURRING);
    assert_eq!(
        c.question,
        "Redrive the 1 open dead letter of recurring-task-service?"
    );
    assert!(update(&mut s, Action::Confirm(false)).is_empty());
    assert_eq!(s.mode, Mode::Normal);
    assert!(note(&s).0.contains("nothing redriven"));

    update(&mut s, Action::Top);
    update(&mut s, Action::RetryAll);
    assert!(
        matches!(&s.mode, Mode::Confirm(c) if c.question == "Redrive all 2 open dead letters of audit-service?")
    );
    let commands = update(&mut s, Action::Confirm(true));
    assert_eq!(
        commands,
        vec![Command::RedriveAll {
            app_id: AUDIT,
            url: "http://127.0.0.1:8002".into()
        }]
    );
    assert_eq!(s.mode, Mode::Normal);
    let commands = update(
        &mut s,
        Action::RedriveAllAnswered {
            app_id: AUDIT,
            result: Ok(RedriveAll {
                applied: 1,
                already_applied: 0,
                still_failing: 1,
            }),
        },
    );
    assert_eq!(
        note(&s),
        (
            "audit-service, every open dead letter redriven: 1 applied, 0 already applied, \
             1 still failing"
                .to_owned(),
            true
        )
    );
    assert!(commands.contains(&Command::FetchDeadLetters {
        app_id: AUDIT,
        url: "http://127.0.0.1:8002".into()
    }));
}

#[test]
fn capital_r_with_nothing_open_asks_nothing() {
    let mut s = state();
    update(&mut s, Action::Show(View::DeadLetters));
    update(&mut s, Action::RetryAll);
    assert_eq!(s.mode, Mode::Normal);
    assert!(note(&s).1, "nothing selected is said");
    update(
        &mut s,
        Action::FailedIntentsLoaded {
            app_id: NOTIFICATION,
            result: Ok(fixture::failed_intents(NOTIFICATION)),
        },
    );
    update(
        &mut s,
        Action::DeadLettersLoaded {
            app_id: NOTIFICATION,
            result: Ok(fixture::dead_letter_page(Vec::new())),
        },
    );
    update(&mut s, Action::RetryAll);
    assert_eq!(s.mode, Mode::Normal);
    assert_eq!(
        note(&s),
        (
            "notification-service has no open dead letters".to_owned(),
            false
        )
    );
}

#[test]
fn enter_shows_the_dead_letter_with_its_event_and_t_its_task() {
    let mut s = loaded();
    update(&mut s, Action::Open);
    let Mode::Detail(d) = &s.mode else {
        panic!("no detail: {:?}", s.mode);
    };
    assert!(
        d.title.contains("audit-service dead letter 17"),
        "{}",
        d.title
    );
    assert!(d.body.contains("\"specversion\": \"1.0\""), "{}", d.body);
    update(&mut s, Action::Back);
    let commands = update(&mut s, Action::OpenTask);
    assert_eq!(s.view, View::Task);
    assert_eq!(commands, vec![Command::FetchAudit(fixture::id(5))]);
}

#[test]
fn a_refused_token_on_a_dead_letters_list_is_said() {
    let mut s = state();
    update(&mut s, Action::Show(View::DeadLetters));
    update(
        &mut s,
        Action::DeadLettersLoaded {
            app_id: AUDIT,
            result: Err(FetchError::Forbidden("operators only".into())),
        },
    );
    assert!(
        s.auth_problem
            .as_ref()
            .is_some_and(|p| p.starts_with("audit-service")),
        "{:?}",
        s.auth_problem
    );
}
