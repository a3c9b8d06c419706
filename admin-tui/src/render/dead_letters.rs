//! The Dead letters view: every consuming service's open dead letters in
//! one table, newest failure first, the failed intents of the services that
//! dispatch them in a second, and the selected row in full below. A service
//! that did not answer is named in red above the tables, so an empty table
//! never passes for "nothing wrong".

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};
use uuid::Uuid;

use super::{clean, date_time, relative, trouble, view_block};
use crate::model::FailedIntentPage;
use crate::state::{DeadLetters, FailureRow, Remote, ServiceFailures, State};

/// `audit` for `audit-service`: the tables are narrow.
fn short(app_id: &str) -> &str {
    app_id.strip_suffix("-service").unwrap_or(app_id)
}

/// The first 8 characters of a task id, as `/ task:` takes it elsewhere.
fn task_prefix(task: Option<Uuid>) -> String {
    task.map_or("—".to_owned(), |t| t.to_string()[..8].to_owned())
}

/// `3 open` in green when none, yellow otherwise; `DOWN` or `?` in red
/// when the service did not answer; `…` before its first answer.
fn count_span<T>(name: &str, remote: &Remote<T>, count: impl Fn(&T) -> i64) -> Span<'static> {
    match (&remote.data, &remote.error) {
        (_, Some(_)) => {
            let what = if remote.is_down() { "DOWN" } else { "?" };
            Span::styled(format!("{name} {what}"), Style::new().fg(Color::Red).bold())
        }
        (Some(d), None) => {
            let n = count(d);
            let style = if n == 0 {
                Style::new().fg(Color::Green)
            } else {
                Style::new().fg(Color::Yellow)
            };
            Span::styled(format!("{name} {n}"), style)
        }
        (None, None) => Span::raw(format!("{name} …")),
    }
}

fn joined(spans: Vec<Span<'static>>) -> Line<'static> {
    let mut out = Vec::with_capacity(spans.len() * 2);
    for (i, s) in spans.into_iter().enumerate() {
        if i > 0 {
            out.push(Span::raw(" · "));
        }
        out.push(s);
    }
    Line::from(out)
}

/// What an empty table says: nothing open, or that it cannot know.
fn empty_text(answered: usize, failed: usize, nothing: &'static str) -> &'static str {
    match (answered, failed) {
        (0, 0) => "Loading…",
        (_, 0) => nothing,
        (0, _) => "Nothing to show: no service answered.",
        _ => "None in the services that answered.",
    }
}

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.iter().copied()).bold().underlined()
}

pub(super) fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let d = &state.dead_letters;
    let rows = d.rows();
    let selected = d.selected_position(&rows);
    let detail_height = if selected.is_some() { 7 } else { 0 };
    let [letters_area, intents_area, detail_area] = Layout::vertical([
        Constraint::Fill(3),
        Constraint::Fill(2),
        Constraint::Length(detail_height),
    ])
    .areas(area);
    let letters_shown = d.letters().len();
    let selected_letter = selected.filter(|p| *p < letters_shown);
    let selected_intent = selected.and_then(|p| p.checked_sub(letters_shown));
    draw_letters(state, frame, letters_area, selected_letter);
    draw_intents(state, frame, intents_area, selected_intent);
    if let Some(p) = selected {
        draw_selected(state, frame, detail_area, &rows[p]);
    }
}

fn draw_letters(state: &State, frame: &mut Frame, area: Rect, selected: Option<usize>) {
    let d = &state.dead_letters;
    let now = state.now;
    let letters = d.letters();
    let open: i64 = d
        .services
        .iter()
        .filter_map(|s| s.letters.data.as_ref())
        .map(|p| p.total)
        .sum();
    let block = view_block(format!(
        " Dead letters: {open} open, newest failure first · r redrive · R all of its service "
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let mut lines = vec![joined(
        d.services
            .iter()
            .map(|s| count_span(short(s.app_id), &s.letters, |p| p.total))
            .collect(),
    )];
    lines.extend(
        d.services
            .iter()
            .filter_map(|s| trouble(&s.letters, s.app_id, now)),
    );
    let cut = letters.len() as i64;
    if open > cut {
        lines.push(
            Line::from(format!(
                "showing the newest {cut} of {open}: redrive them to see the rest"
            ))
            .yellow(),
        );
    }
    let answered = d
        .services
        .iter()
        .filter(|s| s.letters.data.is_some())
        .count();
    let failed = d
        .services
        .iter()
        .filter(|s| s.letters.error.is_some())
        .count();
    if letters.is_empty() {
        lines.push(Line::from(empty_text(
            answered,
            failed,
            "No open dead letters: every event was applied.",
        )));
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        return;
    }
    let [top, table_area] =
        Layout::vertical([Constraint::Length(lines.len() as u16), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(lines), top);
    let table_rows = letters.iter().map(|(app_id, x)| {
        let busy = d.busy.contains(&FailureRow::Letter { app_id, id: x.id });
        let reason = if busy {
            Cell::from("redriving…").yellow()
        } else {
            Cell::from(clean(x.reason.lines().next().unwrap_or_default()))
        };
        Row::new(vec![
            Cell::from(short(app_id).to_owned()),
            Cell::from(x.topic.clone()),
            Cell::from(task_prefix(x.task_id)),
            Cell::from(format!("{:>5}", x.attempts)),
            Cell::from(relative(x.failed_at, now)),
            reason,
        ])
    });
    let widths = [
        Constraint::Length(14),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(11),
        Constraint::Fill(1),
    ];
    let titles = ["service", "topic", "task", "tries", "failed", "reason"];
    draw_table(frame, table_area, table_rows, widths, &titles, selected);
}

/// The services that dispatch intents, with their failed-intents list.
fn intent_services(
    d: &DeadLetters,
) -> impl Iterator<Item = (&ServiceFailures, &Remote<FailedIntentPage>)> {
    d.services
        .iter()
        .filter_map(|s| s.intents.as_ref().map(|r| (s, r)))
}

fn draw_intents(state: &State, frame: &mut Frame, area: Rect, selected: Option<usize>) {
    let d = &state.dead_letters;
    let now = state.now;
    let intents = d.intents();
    let total: i64 = intent_services(d)
        .filter_map(|(_, r)| r.data.as_ref())
        .map(|p| p.total)
        .sum();
    let block = view_block(format!(" Failed intents: {total}, newest first · r retry "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = vec![joined(
        intent_services(d)
            .map(|(s, r)| count_span(short(s.app_id), r, |p| p.total))
            .collect(),
    )];
    // A service whose dead letters could not be read either is named once,
    // above the dead letters.
    lines.extend(
        intent_services(d)
            .filter(|(s, _)| s.letters.error.is_none())
            .filter_map(|(s, r)| trouble(r, s.app_id, now)),
    );
    let answered = intent_services(d).filter(|(_, r)| r.data.is_some()).count();
    let failed = intent_services(d)
        .filter(|(_, r)| r.error.is_some())
        .count();
    if intents.is_empty() {
        lines.push(Line::from(empty_text(
            answered,
            failed,
            "No failed intents.",
        )));
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        return;
    }
    let [top, table_area] =
        Layout::vertical([Constraint::Length(lines.len() as u16), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(lines), top);
    let table_rows = intents.iter().map(|(app_id, x)| {
        let busy = d.busy.contains(&FailureRow::Intent {
            app_id,
            key: x.key.clone(),
        });
        let reason = if busy {
            Cell::from("retrying…").yellow()
        } else {
            Cell::from(clean(x.reason.lines().next().unwrap_or_default()))
        };
        Row::new(vec![
            Cell::from(short(app_id).to_owned()),
            Cell::from(clean(&x.key)),
            Cell::from(x.kind.clone()),
            Cell::from(format!("{:>5}", x.attempts)),
            Cell::from(relative(x.failed_at, now)),
            reason,
        ])
    });
    let widths = [
        Constraint::Length(14),
        Constraint::Fill(1),
        Constraint::Length(14),
        Constraint::Length(5),
        Constraint::Length(11),
        Constraint::Fill(1),
    ];
    let titles = ["service", "key", "kind", "tries", "failed", "reason"];
    draw_table(frame, table_area, table_rows, widths, &titles, selected);
}

/// A list of failures with its header, the selected row highlighted.
fn draw_table<'a>(
    frame: &mut Frame,
    area: Rect,
    rows: impl IntoIterator<Item = Row<'a>>,
    widths: [Constraint; 6],
    titles: &[&'static str],
    selected: Option<usize>,
) {
    let table = Table::new(rows, widths)
        .header(header(titles))
        .row_highlight_style(Style::new().reversed());
    let mut table_state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut table_state);
}

fn task_text(task: Option<Uuid>) -> String {
    task.map_or("no task".to_owned(), |t| format!("task {t}"))
}

/// The selected row in full: its ids, times and whole reason.
fn draw_selected(state: &State, frame: &mut Frame, area: Rect, row: &FailureRow) {
    let d = &state.dead_letters;
    let now = state.now;
    let red = Style::new().fg(Color::Red).bold();
    let (title, lines, hint) = match row {
        FailureRow::Letter { app_id, id } => {
            let Some(x) = d.letter(app_id, *id) else {
                return;
            };
            (
                format!(" {app_id} dead letter {id} · {} ", x.topic),
                vec![
                    Line::from(vec![
                        Span::styled("reason: ", red),
                        Span::raw(clean(&x.reason)),
                    ]),
                    Line::from(task_text(x.task_id)),
                    Line::from(format!(
                        "{} failed attempts  ·  first {}  ·  last {}",
                        x.attempts,
                        date_time(x.first_failed_at),
                        relative(x.failed_at, now)
                    )),
                    Line::from(format!("event {}", clean(&x.event_key))),
                ],
                format!(" r redrive · R redrive all of {app_id} · Enter: JSON · t: task history "),
            )
        }
        FailureRow::Intent { app_id, key } => {
            let Some(x) = d.intent(app_id, key) else {
                return;
            };
            (
                format!(" {app_id} failed intent · {} ", x.kind),
                vec![
                    Line::from(vec![
                        Span::styled("reason: ", red),
                        Span::raw(clean(&x.reason)),
                    ]),
                    Line::from(format!("key {}", clean(&x.key))),
                    Line::from(task_text(x.task_id)),
                    Line::from(format!(
                        "{} refused attempts  ·  failed {}",
                        x.attempts,
                        relative(x.failed_at, now)
                    )),
                ],
                " r retry · Enter: JSON · t: task history ".to_owned(),
            )
        }
    };
    frame.render_widget(
        Paragraph::new(lines)
            .block(
                Block::bordered()
                    .title(title)
                    .title_bottom(Line::from(hint).dim()),
            )
            .wrap(Wrap { trim: false }),
        area,
    );
}
