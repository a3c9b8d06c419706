//! Which [`Action`] a terminal event means, given the mode: in a prompt,
//! keys type; elsewhere they navigate. Pure, so the key map is tested and
//! the Help view lists the same keys ([`HELP`]).

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

use crate::action::Action;
use crate::state::{Mode, State, View};

/// Rows a mouse wheel notch scrolls.
const WHEEL_ROWS: usize = 3;

/// Every key, for the Help view: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    ("Tab / Shift-Tab, 1–7", "next / previous view, or go to one"),
    (
        "↑ ↓, k j, mouse wheel",
        "move the selection (scroll, in a detail)",
    ),
    ("PgUp / PgDn", "move by a page"),
    (
        "g / G, Home / End",
        "first / last row (G follows the newest in Live)",
    ),
    (
        "Enter",
        "open the selection: an event's or record's JSON; in a JSON, its task's history",
    ),
    ("t", "the selected row's task history (Task view)"),
    ("Esc", "close the detail or prompt; back from Task or Help"),
    (
        "/",
        "filter: Live type:… user:… task:… or words; Notifications status:… user:… task:…; Schedules user:…; Task: a task id",
    ),
    (
        "p",
        "pause / resume the Live view (updates are kept meanwhile)",
    ),
    (
        "r",
        "retry the selected failed notification; redrive the selected dead letter or retry the failed intent",
    ),
    (
        "R",
        "redrive every open dead letter of the selected row's service (asks y / n first)",
    ),
    (
        "s",
        "cycle the notification status filter: all, pending, sent, failed",
    ),
    (
        "← → , h l",
        "switch between series and reminders (Schedules)",
    ),
    ("?", "this help"),
    ("q, Ctrl-C", "quit"),
];

/// The action a terminal event asks for, if any.
pub fn action_for(state: &State, event: &Event) -> Option<Action> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => key_action(state, key),
        Event::Mouse(mouse) => match mouse.kind {
            MouseEventKind::ScrollUp => Some(Action::Up(WHEEL_ROWS)),
            MouseEventKind::ScrollDown => Some(Action::Down(WHEEL_ROWS)),
            _ => None,
        },
        Event::Resize(..) => Some(Action::Resize),
        _ => None,
    }
}

fn key_action(state: &State, key: &KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        return Some(Action::Quit);
    }
    if let Mode::Confirm(_) = state.mode {
        return match key.code {
            KeyCode::Char('y' | 'Y') => Some(Action::Confirm(true)),
            KeyCode::Char('n' | 'N') | KeyCode::Esc => Some(Action::Confirm(false)),
            // Nothing else answers the question, so a stray key does no harm.
            _ => None,
        };
    }
    if let Mode::Prompt(_) = state.mode {
        return match key.code {
            KeyCode::Enter => Some(Action::InputSubmit),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Backspace => Some(Action::InputBackspace),
            KeyCode::Char(c) if !ctrl => Some(Action::Input(c)),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Tab => Action::NextView,
        KeyCode::BackTab => Action::PreviousView,
        KeyCode::Char(c @ '1'..='7') => Action::Show(View::ALL[(c as usize) - ('1' as usize)]),
        KeyCode::Char('?') => Action::Show(View::Help),
        KeyCode::Up | KeyCode::Char('k') => Action::Up(1),
        KeyCode::Down | KeyCode::Char('j') => Action::Down(1),
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('/') => Action::StartPrompt,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('r') => Action::Retry,
        KeyCode::Char('R') => Action::RetryAll,
        KeyCode::Char('s') => Action::CycleStatus,
        KeyCode::Char('t') => Action::OpenTask,
        KeyCode::Left | KeyCode::Right | KeyCode::Char('h') | KeyCode::Char('l') => {
            Action::SwitchPane
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use crossterm::event::{MouseEvent, MouseEventKind};

    use super::*;
    use crate::state::{Confirm, Prompt, PromptKind};

    fn press(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn state() -> State {
        State::new(Vec::new(), 100, Utc::now())
    }

    #[test]
    fn keys_navigate_in_normal_mode() {
        let s = state();
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('q'))),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('j'))),
            Some(Action::Down(1))
        );
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('3'))),
            Some(Action::Show(View::Notifications))
        );
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('?'))),
            Some(Action::Show(View::Help))
        );
        let wheel = Event::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollUp,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        });
        assert_eq!(action_for(&s, &wheel), Some(Action::Up(3)));
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('6'))),
            Some(Action::Show(View::DeadLetters))
        );
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('7'))),
            Some(Action::Show(View::Help))
        );
        let shift_r = Event::Key(KeyEvent::new(KeyCode::Char('R'), KeyModifiers::SHIFT));
        assert_eq!(action_for(&s, &shift_r), Some(Action::RetryAll));
    }

    #[test]
    fn a_question_takes_only_yes_no_and_esc() {
        let mut s = state();
        s.mode = Mode::Confirm(Confirm {
            app_id: "audit-service",
            question: "Redrive?".to_owned(),
        });
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('y'))),
            Some(Action::Confirm(true))
        );
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('n'))),
            Some(Action::Confirm(false))
        );
        assert_eq!(
            action_for(&s, &press(KeyCode::Esc)),
            Some(Action::Confirm(false))
        );
        assert_eq!(action_for(&s, &press(KeyCode::Char('r'))), None);
        assert_eq!(action_for(&s, &press(KeyCode::Char('q'))), None);
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(action_for(&s, &ctrl_c), Some(Action::Quit));
    }

    #[test]
    fn keys_type_in_a_prompt_and_ctrl_c_always_quits() {
        let mut s = state();
        s.mode = Mode::Prompt(Prompt {
            kind: PromptKind::LiveFilter,
            input: String::new(),
        });
        assert_eq!(
            action_for(&s, &press(KeyCode::Char('q'))),
            Some(Action::Input('q'))
        );
        assert_eq!(action_for(&s, &press(KeyCode::Esc)), Some(Action::Back));
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(action_for(&s, &ctrl_c), Some(Action::Quit));
    }
}
