//! The Notifications view (the list, then the selected one in full, its
//! error readable) and the Schedules view (series above reminders).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph, Wrap};

use super::{clean, date_time, fit, placeholder, relative, trouble, view_block};
use crate::state::{Remote, SchedulePane, State};

fn status_style(status: &str) -> Style {
    match status {
        "failed" | "cancelled" => Style::new().fg(Color::Red).bold(),
        "sent" | "fired" | "active" => Style::new().fg(Color::Green),
        _ => Style::new().fg(Color::Yellow),
    }
}

/// A list of `len` rows with `selected` kept in view in `area`.
fn window(selected: usize, len: usize, area: Rect) -> (usize, usize) {
    let height = usize::from(area.height).max(1);
    let offset = (selected + 1).saturating_sub(height);
    (offset, len.min(offset + height))
}

/// Splits off a line per problem above `area`.
fn with_trouble(frame: &mut Frame, area: Rect, lines: Vec<Line<'static>>) -> Rect {
    let [banner, rest] =
        Layout::vertical([Constraint::Length(lines.len() as u16), Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(lines), banner);
    rest
}

fn loading_text<T>(remote: &Remote<T>, empty: &'static str) -> &'static str {
    match (&remote.data, &remote.error) {
        (Some(_), _) => empty,
        (None, Some(_)) => "Nothing to show.",
        (None, None) => "Loading…",
    }
}

pub(super) fn draw_notifications(state: &State, frame: &mut Frame, area: Rect) {
    let n = &state.notifications;
    let list = n.list.data.as_deref().unwrap_or_default();
    let filter = n.query.describe();
    let block = view_block(format!(
        " Notifications [{}]: {} shown · s status · / filter · r retry ",
        if filter.is_empty() {
            "all".to_owned()
        } else {
            filter
        },
        list.len()
    ));
    let problems: Vec<Line<'static>> = trouble(&n.list, "notification-service", state.now)
        .into_iter()
        .collect();
    if list.is_empty() {
        let mut lines = problems;
        lines.push(Line::from(loading_text(
            &n.list,
            "No notification matches.",
        )));
        placeholder(frame, area, block, lines);
        return;
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let inner = with_trouble(frame, inner, problems);
    let [head, rows, detail] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(60),
        Constraint::Min(4),
    ])
    .areas(inner);
    frame.render_widget(
        Line::from(format!(
            "{:<9} {:<12} {:<24} {:<21} {:>3}  {}",
            "status", "user", "title", "remind at", "try", "sent / last error"
        ))
        .bold()
        .underlined(),
        head,
    );
    let selected = n.selected_position().unwrap_or(0);
    let (from, to) = window(selected, list.len(), rows);
    let items = list[from..to].iter().map(|x| {
        let retrying = n.retrying.contains(&x.id);
        let status = if retrying {
            "retrying"
        } else {
            x.status.as_str()
        };
        let outcome = match (&x.sent_at, &x.last_error) {
            (Some(sent), _) => format!("sent {}", date_time(*sent)),
            (None, Some(e)) => clean(e.lines().next().unwrap_or_default()),
            (None, None) => String::new(),
        };
        ListItem::new(Line::from(vec![
            Span::styled(format!("{:<9} ", status), status_style(status)),
            Span::raw(format!(
                "{} {} {} {:>3}  ",
                fit(&x.user_id, 12),
                fit(&x.title, 24),
                date_time(x.remind_at),
                x.attempts
            )),
            Span::raw(outcome),
        ]))
    });
    let mut list_state = ListState::default().with_selected(Some(selected - from));
    frame.render_stateful_widget(
        List::new(items).highlight_style(Style::new().reversed()),
        rows,
        &mut list_state,
    );
    if let Some(x) = n.selected_notification() {
        let mut lines = vec![
            Line::from(format!(
                "id {}  ·  task {}  ·  user {}",
                x.id, x.task_id, x.user_id
            )),
            Line::from(vec![
                Span::raw("status "),
                Span::styled(x.status.clone(), status_style(&x.status)),
                Span::raw(format!(
                    "  ·  attempts {}  ·  created {}  ·  updated {}",
                    x.attempts,
                    date_time(x.created_at),
                    relative(x.updated_at, state.now)
                )),
            ]),
        ];
        if let Some(e) = &x.last_error {
            lines.push(Line::from(vec![
                Span::styled("last error: ", Style::new().fg(Color::Red).bold()),
                Span::raw(clean(e)),
            ]));
        }
        let hint = if x.status == "failed" {
            " r: retry · t: task history · Enter: JSON "
        } else {
            " t: task history · Enter: JSON "
        };
        frame.render_widget(
            Paragraph::new(lines)
                .block(
                    Block::bordered()
                        .title(format!(" {} ", x.title))
                        .title_bottom(Line::from(hint).dim()),
                )
                .wrap(Wrap { trim: false }),
            detail,
        );
    }
}

pub(super) fn draw_schedules(state: &State, frame: &mut Frame, area: Rect) {
    let s = &state.schedules;
    let now = state.now;
    let user = s
        .user
        .as_ref()
        .map_or("every user".to_owned(), |u| format!("user {u}"));
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let focus = |pane: SchedulePane| {
        if s.pane == pane {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new()
        }
    };

    let series = s.series.data.as_deref().unwrap_or_default();
    let block = view_block(format!(
        " Recurring series ({user}): {} · ←→ switch · Enter: task history ",
        series.len()
    ))
    .border_style(focus(SchedulePane::Series));
    let problems: Vec<Line<'static>> = trouble(&s.series, "recurring-task-service", now)
        .into_iter()
        .collect();
    if series.is_empty() {
        let mut lines = problems;
        lines.push(Line::from(loading_text(&s.series, "No recurring series.")));
        placeholder(frame, top, block, lines);
    } else {
        let inner = block.inner(top);
        frame.render_widget(block, top);
        let inner = with_trouble(frame, inner, problems);
        let [head, rows] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        frame.render_widget(
            Line::from(format!(
                "{:<22} {:<12} {:<8} {:<16} {:<21} {:>5}  {}",
                "title", "user", "every", "time zone", "next due", "inst.", "state"
            ))
            .bold()
            .underlined(),
            head,
        );
        let (from, to) = window(s.selected_series, series.len(), rows);
        let items = series[from..to].iter().map(|x| {
            let (state_text, style) = if x.is_active {
                ("active".to_owned(), status_style("active"))
            } else {
                (
                    format!("ended: {}", x.ended_reason.as_deref().unwrap_or("?")),
                    Style::new().fg(Color::DarkGray),
                )
            };
            let next = x.next_due_date.map_or("—".to_owned(), date_time);
            ListItem::new(Line::from(vec![
                Span::raw(format!(
                    "{} {} {:<8} {} {:<21} {:>5}  ",
                    fit(&x.title, 22),
                    fit(&x.user_id, 12),
                    x.frequency,
                    fit(&x.timezone, 16),
                    next,
                    x.instances
                )),
                Span::styled(state_text, style),
            ]))
        });
        let selected = (s.pane == SchedulePane::Series).then_some(s.selected_series - from);
        let mut list_state = ListState::default().with_selected(selected);
        frame.render_stateful_widget(
            List::new(items).highlight_style(Style::new().reversed()),
            rows,
            &mut list_state,
        );
    }

    let reminders = s.reminders.data.as_deref().unwrap_or_default();
    let block = view_block(format!(" Reminders ({user}): {} ", reminders.len()))
        .border_style(focus(SchedulePane::Reminders));
    let problems: Vec<Line<'static>> = trouble(&s.reminders, "recurring-task-service", now)
        .into_iter()
        .collect();
    if reminders.is_empty() {
        let mut lines = problems;
        lines.push(Line::from(loading_text(&s.reminders, "No reminders.")));
        placeholder(frame, bottom, block, lines);
        return;
    }
    let inner = block.inner(bottom);
    frame.render_widget(block, bottom);
    let inner = with_trouble(frame, inner, problems);
    let [head, rows] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    frame.render_widget(
        Line::from(format!(
            "{:<10} {:<22} {:<12} {:<21} {}",
            "status", "title", "user", "remind at", "countdown"
        ))
        .bold()
        .underlined(),
        head,
    );
    let (from, to) = window(s.selected_reminder, reminders.len(), rows);
    let items = reminders[from..to].iter().map(|r| {
        let when = match (r.status.as_str(), r.fired_at) {
            ("scheduled", _) => relative(r.remind_at, now),
            (_, Some(fired)) => format!("fired {}", relative(fired, now)),
            _ => String::new(),
        };
        ListItem::new(Line::from(vec![
            Span::styled(format!("{:<10} ", r.status), status_style(&r.status)),
            Span::raw(format!(
                "{} {} {:<21} {when}",
                fit(&r.title, 22),
                fit(&r.user_id, 12),
                date_time(r.remind_at)
            )),
        ]))
    });
    let selected = (s.pane == SchedulePane::Reminders).then_some(s.selected_reminder - from);
    let mut list_state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(
        List::new(items).highlight_style(Style::new().reversed()),
        rows,
        &mut list_state,
    );
}
