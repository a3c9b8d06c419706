//! The Task view: the task's audit trail as a timeline (what changed at
//! each step) above the selected record's snapshot, its changed fields
//! highlighted with their previous value.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph, Wrap};
use serde_json::Value;

use super::{date_time, fit, placeholder, trouble, view_block};
use crate::model::{AuditRecord, FieldChange, changed_fields};
use crate::state::State;

fn show(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
    }
}

/// What record `i` changed, against the one before it.
fn changes(records: &[AuditRecord], i: usize) -> Vec<FieldChange> {
    match i.checked_sub(1) {
        Some(prev) => changed_fields(&records[prev].payload, &records[i].payload),
        None => Vec::new(),
    }
}

fn summary(records: &[AuditRecord], i: usize) -> String {
    let r = &records[i];
    if i == 0 {
        return match r.payload.get("title").and_then(Value::as_str) {
            Some(title) => format!("{} {title:?}", r.event_type),
            None => r.event_type.clone(),
        };
    }
    let changed = changes(records, i);
    if changed.is_empty() {
        return "no field changed".to_owned();
    }
    changed
        .iter()
        .map(|c| {
            format!(
                "{}: {} → {}",
                c.field,
                show(c.before.as_ref()),
                show(c.after.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let history = &state.task;
    let Some(task_id) = history.task_id else {
        placeholder(
            frame,
            area,
            view_block(" Task "),
            vec![
                Line::from("No task open."),
                Line::from(
                    "Press / and type a task id, or select any event (Live, Notifications, Schedules) and press t.",
                ),
            ],
        );
        return;
    };
    let records = history.records.data.as_deref().unwrap_or_default();
    let title = records
        .last()
        .and_then(|r| r.payload.get("title"))
        .and_then(Value::as_str)
        .map(|t| format!(" {t:?}"))
        .unwrap_or_default();
    let block = view_block(format!(
        " Task {task_id}{title}: {} audit record{} ",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    ));
    let mut lines = Vec::new();
    if let Some(line) = trouble(&history.records, "audit-service", state.now) {
        lines.push(line);
    }
    if records.is_empty() {
        lines.push(Line::from(if history.records.data.is_none() {
            if history.records.error.is_some() {
                "No history to show."
            } else {
                "Loading the audit trail…"
            }
        } else {
            "The audit service has no record of this task (yet): its events may still be on their way."
        }));
        placeholder(frame, area, block, lines);
        return;
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [banner, timeline, snapshot] = Layout::vertical([
        Constraint::Length(lines.len() as u16),
        Constraint::Percentage(45),
        Constraint::Min(3),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines), banner);

    let selected = history.selected.min(records.len() - 1);
    let height = usize::from(timeline.height).max(1);
    let offset = (selected + 1).saturating_sub(height);
    let items = (offset..records.len().min(offset + height)).map(|i| {
        let r = &records[i];
        ListItem::new(Line::from(vec![
            Span::raw(format!("{:>3} {} ", i + 1, date_time(r.timestamp))),
            Span::styled(format!("{:<15} ", r.event_type), Style::new().bold()),
            Span::styled(summary(records, i), Style::new().fg(Color::Yellow)),
        ]))
    });
    let mut list_state = ListState::default().with_selected(Some(selected - offset));
    frame.render_stateful_widget(
        List::new(items).highlight_style(Style::new().reversed()),
        timeline,
        &mut list_state,
    );

    let record = &records[selected];
    let changed = changes(records, selected);
    let mut fields = Vec::new();
    if let Value::Object(map) = &record.payload {
        for (key, value) in map {
            let change = changed.iter().find(|c| c.field == *key);
            let mut spans = vec![
                Span::styled(format!("{} ", fit(key, 20)), Style::new().fg(Color::Cyan)),
                Span::raw(show(Some(value))),
            ];
            if let Some(c) = change {
                spans[1] = spans[1]
                    .clone()
                    .style(Style::new().fg(Color::Yellow).bold());
                spans.push(Span::raw(format!("   was {}", show(c.before.as_ref()))).dim());
            }
            fields.push(Line::from(spans));
        }
    }
    let heading = format!(
        " #{} {} at {} (recorded {}) · Enter: JSON ",
        selected + 1,
        record.event_type,
        date_time(record.timestamp),
        date_time(record.recorded_at)
    );
    frame.render_widget(
        Paragraph::new(fields)
            .block(Block::bordered().title(heading))
            .wrap(Wrap { trim: false }),
        snapshot,
    );
}
