//! The Dead letters view's part of [`super::update`]: asking every consuming
//! service for its open dead letters (and the two intent dispatchers for
//! their failed intents), moving one selection through both lists, and the
//! redrives and retries, whose outcomes are said in the status line. Like
//! the rest of the update: no I/O, only state and [`Command`]s.

use uuid::Uuid;

use super::{LIST_EVERY, note_auth, pretty, say, step};
use crate::action::Command;
use crate::client::FetchError;
use crate::model::{DeadLetterPage, FailedIntentPage, IntentRetried, RedriveAll, Redriven};
use crate::state::{Confirm, DeadLetters, Detail, FailureRow, Mode, State, View};

/// Asks each service whose list is due (stale, or not asked for a while).
pub(super) fn refresh(state: &mut State, commands: &mut Vec<Command>) {
    let now = state.now;
    for s in &mut state.dead_letters.services {
        if s.letters.due(now, LIST_EVERY) && s.letters.begin(now) {
            commands.push(Command::FetchDeadLetters {
                app_id: s.app_id,
                url: s.url.clone(),
            });
        }
        if let Some(intents) = &mut s.intents
            && intents.due(now, LIST_EVERY)
            && intents.begin(now)
        {
            commands.push(Command::FetchFailedIntents {
                app_id: s.app_id,
                url: s.url.clone(),
            });
        }
    }
}

/// Everything is asked for again (the view was just opened).
pub(super) fn mark_stale(d: &mut DeadLetters) {
    for s in &mut d.services {
        s.letters.stale = true;
        if let Some(intents) = &mut s.intents {
            intents.stale = true;
        }
    }
}

pub(super) fn move_selection(d: &mut DeadLetters, delta: isize) {
    let rows = d.rows();
    let Some(p) = d.selected_position(&rows) else {
        return;
    };
    let new = step(p, rows.len(), delta);
    d.position = new;
    d.selected = Some(rows[new].clone());
}

/// After the lists changed: the selection stays on its row and remembers
/// where that is now; when its row is gone, the row now in its place is
/// selected.
fn settle_selection(d: &mut DeadLetters) {
    if d.selected.is_none() {
        return;
    }
    let rows = d.rows();
    match d.selected_position(&rows) {
        Some(p) => {
            d.position = p;
            d.selected = Some(rows[p].clone());
        }
        None => d.selected = None,
    }
}

pub(super) fn letters_loaded(
    state: &mut State,
    app_id: &'static str,
    result: Result<DeadLetterPage, FetchError>,
) {
    note_auth(state, app_id, &result);
    let now = state.now;
    if let Some(s) = state.dead_letters.service_mut(app_id) {
        s.letters.finish(result, now);
    }
    settle_selection(&mut state.dead_letters);
}

pub(super) fn intents_loaded(
    state: &mut State,
    app_id: &'static str,
    result: Result<FailedIntentPage, FetchError>,
) {
    note_auth(state, app_id, &result);
    let now = state.now;
    if let Some(intents) = state
        .dead_letters
        .service_mut(app_id)
        .and_then(|s| s.intents.as_mut())
    {
        intents.finish(result, now);
    }
    settle_selection(&mut state.dead_letters);
}

/// `r`: redrives the selected dead letter, or retries the selected failed
/// intent; once at a time per row.
pub(super) fn retry(state: &mut State, commands: &mut Vec<Command>) {
    if state.mode != Mode::Normal {
        return;
    }
    let d = &mut state.dead_letters;
    let rows = d.rows();
    let Some(p) = d.selected_position(&rows) else {
        say(
            state,
            "nothing to redrive: no open dead letter or failed intent",
            false,
        );
        return;
    };
    let row = rows[p].clone();
    // Pinned, so that once the row is gone the next one is selected.
    d.selected = Some(row.clone());
    d.position = p;
    let Some(url) = d.service(row.app_id()).map(|s| s.url.clone()) else {
        return;
    };
    if !d.busy.insert(row.clone()) {
        return;
    }
    let text = match row {
        FailureRow::Letter { app_id, id } => {
            commands.push(Command::Redrive { app_id, url, id });
            format!("redriving {app_id} dead letter {id}…")
        }
        FailureRow::Intent { app_id, key } => {
            let text = format!("retrying {app_id} intent {key}…");
            commands.push(Command::RetryIntent { app_id, url, key });
            text
        }
    };
    say(state, text, false);
}

/// `R`: asks before redriving every open dead letter of the selected row's
/// service.
pub(super) fn ask_redrive_all(state: &mut State) {
    if state.view != View::DeadLetters || state.mode != Mode::Normal {
        return;
    }
    let d = &state.dead_letters;
    let Some(row) = d.selected_row() else {
        say(
            state,
            "no row selected: R redrives the open dead letters of the selected row's service",
            true,
        );
        return;
    };
    let app_id = row.app_id();
    let Some(service) = d.service(app_id) else {
        return;
    };
    if d.redriving_all.contains(app_id) {
        say(
            state,
            format!("every open dead letter of {app_id} is being redriven already"),
            false,
        );
        return;
    }
    let open = service
        .letters
        .data
        .as_ref()
        .filter(|_| service.letters.error.is_none())
        .map(|p| p.total);
    let question = match open {
        Some(0) => {
            say(state, format!("{app_id} has no open dead letters"), false);
            return;
        }
        Some(1) => format!("Redrive the 1 open dead letter of {app_id}?"),
        Some(n) => format!("Redrive all {n} open dead letters of {app_id}?"),
        // Its list could not be read: the count is not known.
        None => format!("Redrive every open dead letter of {app_id}?"),
    };
    state.mode = Mode::Confirm(Confirm { app_id, question });
}

/// The answer to the question `R` asked.
pub(super) fn confirm(state: &mut State, yes: bool, commands: &mut Vec<Command>) {
    let Mode::Confirm(Confirm { app_id, .. }) = state.mode else {
        return;
    };
    state.mode = Mode::Normal;
    if !yes {
        say(state, format!("nothing redriven in {app_id}"), false);
        return;
    }
    let d = &mut state.dead_letters;
    let Some(url) = d.service(app_id).map(|s| s.url.clone()) else {
        return;
    };
    if d.redriving_all.insert(app_id) {
        commands.push(Command::RedriveAll { app_id, url });
        say(
            state,
            format!("redriving every open dead letter of {app_id}…"),
            false,
        );
    }
}

/// Takes a row that is no longer open out of the list at once (the refresh
/// asked for next confirms it).
fn forget(d: &mut DeadLetters, row: &FailureRow) {
    let Some(s) = d.service_mut(row.app_id()) else {
        return;
    };
    match row {
        FailureRow::Letter { id, .. } => {
            if let Some(page) = &mut s.letters.data {
                let before = page.dead_letters.len();
                page.dead_letters.retain(|x| x.id != *id);
                if page.dead_letters.len() < before {
                    page.total = (page.total - 1).max(0);
                }
            }
        }
        FailureRow::Intent { key, .. } => {
            if let Some(page) = s.intents.as_mut().and_then(|r| r.data.as_mut()) {
                let before = page.intents.len();
                page.intents.retain(|x| x.key != *key);
                if page.intents.len() < before {
                    page.total = (page.total - 1).max(0);
                }
            }
        }
    }
}

/// Marks a service's lists to be asked for again.
fn stale(d: &mut DeadLetters, app_id: &str) {
    if let Some(s) = d.service_mut(app_id) {
        s.letters.stale = true;
        if let Some(intents) = &mut s.intents {
            intents.stale = true;
        }
    }
}

pub(super) fn redrive_answered(
    state: &mut State,
    app_id: &'static str,
    id: i64,
    result: Result<Redriven, FetchError>,
) {
    let row = FailureRow::Letter { app_id, id };
    state.dead_letters.busy.remove(&row);
    note_auth(state, app_id, &result);
    let what = format!("{app_id} dead letter {id}");
    let (text, error, gone) = match result {
        Ok(Redriven::Applied) => (format!("{what}: applied"), false, true),
        Ok(Redriven::AlreadyApplied) => (
            format!("{what}: already applied (a redelivery got through; nothing was done)"),
            false,
            true,
        ),
        Ok(Redriven::AlreadyRedriven) => (format!("{what}: already redriven"), false, true),
        Ok(Redriven::StillFailing(reason)) => {
            (format!("{what}: still failing: {reason}"), true, false)
        }
        Ok(Redriven::NotFound) => (format!("{what}: not found"), true, true),
        Err(e) => (format!("redrive of {what} failed: {e}"), true, false),
    };
    settle_answer(state, app_id, &row, gone, text, error);
}

pub(super) fn intent_retry_answered(
    state: &mut State,
    app_id: &'static str,
    key: String,
    result: Result<IntentRetried, FetchError>,
) {
    let what = format!("{app_id} intent {key}");
    let row = FailureRow::Intent { app_id, key };
    state.dead_letters.busy.remove(&row);
    note_auth(state, app_id, &result);
    let (text, error, gone) = match result {
        Ok(IntentRetried::Accepted) => (format!("{what}: retried, it runs again now"), false, true),
        Ok(IntentRetried::NotFound) => (format!("{what}: not found"), true, true),
        Err(e) => (format!("retry of {what} failed: {e}"), true, false),
    };
    settle_answer(state, app_id, &row, gone, text, error);
}

pub(super) fn redrive_all_answered(
    state: &mut State,
    app_id: &'static str,
    result: Result<RedriveAll, FetchError>,
) {
    state.dead_letters.redriving_all.remove(app_id);
    note_auth(state, app_id, &result);
    stale(&mut state.dead_letters, app_id);
    match result {
        Ok(RedriveAll {
            applied,
            already_applied,
            still_failing,
        }) => say(
            state,
            format!(
                "{app_id}, every open dead letter redriven: {applied} applied, \
                 {already_applied} already applied, {still_failing} still failing"
            ),
            still_failing > 0,
        ),
        Err(e) => say(
            state,
            format!("redrive of every open dead letter of {app_id} failed: {e}"),
            true,
        ),
    }
}

/// The task of the selected row, if it is about one.
pub(super) fn selected_task(d: &DeadLetters) -> Option<Uuid> {
    match d.selected_row()? {
        FailureRow::Letter { app_id, id } => d.letter(app_id, id)?.task_id,
        FailureRow::Intent { app_id, key } => d.intent(app_id, &key)?.task_id,
    }
}

/// Enter: the selected dead letter (with its CloudEvent) or failed intent
/// as JSON.
pub(super) fn detail(d: &DeadLetters) -> Option<Detail> {
    match d.selected_row()? {
        FailureRow::Letter { app_id, id } => {
            let letter = d.letter(app_id, id)?;
            Some(Detail {
                title: format!("{app_id} dead letter {id} · {}", letter.topic),
                body: pretty(letter),
                scroll: 0,
                task_id: letter.task_id,
            })
        }
        FailureRow::Intent { app_id, key } => {
            let intent = d.intent(app_id, &key)?;
            Some(Detail {
                title: format!("{app_id} failed intent {key}"),
                body: pretty(intent),
                scroll: 0,
                task_id: intent.task_id,
            })
        }
    }
}

#[cfg(test)]
mod tests;

/// After an answer about `row`: drops it from the list if it is no longer
/// open, marks `app_id`'s lists for a refresh, and says `text`.
fn settle_answer(
    state: &mut State,
    app_id: &'static str,
    row: &FailureRow,
    gone: bool,
    text: String,
    error: bool,
) {
    let d = &mut state.dead_letters;
    if gone {
        forget(d, row);
        settle_selection(d);
    }
    stale(d, app_id);
    say(state, text, error);
}
