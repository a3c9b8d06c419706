//! The Health view: a row per service (readiness and each check, consumer
//! counters, when it last answered) and the WebSocket connection count.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{relative, view_block};
use crate::client::FetchError;
use crate::state::State;

pub(super) fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let now = state.now;
    let rows = state.health.services.iter().map(|s| {
        let (status, style) = match (&s.ready.data, &s.ready.error) {
            (_, Some(FetchError::Down(_))) => (
                "DOWN".to_owned(),
                Style::new().fg(Color::White).bg(Color::Red).bold(),
            ),
            (_, Some(e)) => (e.to_string(), Style::new().fg(Color::Red).bold()),
            (Some(r), None) if r.status == "ready" => {
                ("ready".to_owned(), Style::new().fg(Color::Green).bold())
            }
            (Some(r), None) => (r.status.clone(), Style::new().fg(Color::Yellow).bold()),
            (None, None) => ("…".to_owned(), Style::new()),
        };
        let checks: Vec<Span> = match &s.ready.error {
            // Why it is down, where the checks would be.
            Some(FetchError::Down(why)) => {
                vec![Span::styled(why.clone(), Style::new().fg(Color::Red))]
            }
            _ => s
                .ready
                .data
                .iter()
                .flat_map(|r| &r.checks)
                .map(|c| {
                    let ok = c.status == "ok";
                    let text = match (&c.detail, ok) {
                        (Some(d), false) => format!("{} ✖ {d}  ", c.name),
                        _ => format!("{} {}  ", c.name, if ok { "✔" } else { "✖" }),
                    };
                    Span::styled(
                        text,
                        Style::new().fg(if ok { Color::Green } else { Color::Red }),
                    )
                })
                .collect(),
        };
        let counters = match (&s.counters.data, &s.counters.error) {
            (Some(c), None) => [c.consumed, c.duplicates, c.dead_letters].map(|v| v.to_string()),
            (Some(c), Some(_)) => {
                [c.consumed, c.duplicates, c.dead_letters].map(|v| format!("{v}?"))
            }
            (None, _) => ["—", "—", "—"].map(str::to_owned),
        };
        let [consumed, duplicates, dead_letters] = counters;
        let last_good = s
            .ready
            .last_good
            .map_or("never".to_owned(), |t| relative(t, now));
        Row::new(vec![
            Cell::from(s.app_id).bold(),
            Cell::from(status).style(style),
            Cell::from(Line::from(checks)),
            Cell::from(consumed),
            Cell::from(duplicates),
            Cell::from(dead_letters),
            Cell::from(last_good),
        ])
    });
    let connections = &state.health.connections;
    let footer = match (&connections.data, &connections.error) {
        (_, Some(e)) => Line::from(format!("WebSocket connections: unknown ({e})")).red(),
        (Some(n), None) => Line::from(format!(
            "WebSocket connections: {n} open on the replica that answered (this console's included)"
        )),
        (None, None) => Line::from("WebSocket connections: …"),
    };
    let block = view_block(" Health: /health/ready, /metrics, every 3 s ").title_bottom(footer);
    let table = Table::new(
        rows,
        [
            Constraint::Length(23),
            Constraint::Length(10),
            Constraint::Min(24),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(12),
        ],
    )
    .header(
        Row::new([
            "service", "ready", "checks", "consumed", "dupl.", "dead l.", "answered",
        ])
        .bold()
        .underlined(),
    )
    .block(block);
    frame.render_widget(table, area);
    if state.health.services.is_empty() {
        frame.render_widget(Paragraph::new("No services configured."), area);
    }
}
