//! The Live view: the newest updates at the bottom, the selection
//! highlighted, stream markers across the whole row.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState};
use todo_contract::EventType;

use super::{clean, clock_ms, fit, placeholder, view_block};
use crate::state::{LiveRow, State, StreamStatus};

fn type_color(t: EventType) -> Color {
    match t {
        EventType::TaskCreated => Color::Green,
        EventType::TaskUpdated => Color::Cyan,
        EventType::TaskCompleted => Color::Blue,
        EventType::TaskDeleted => Color::Red,
        EventType::ReminderFired | EventType::NotificationDelivered => Color::Magenta,
    }
}

pub(super) fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let live = &state.live;
    let mut title = vec![" Live: every user's updates ".into()];
    if !live.filter.is_empty() {
        title.push(format!("[/{}] ", live.filter.describe()).yellow());
    }
    if live.paused_at.is_some() {
        title.push(
            format!("[PAUSED, {} new held back: p resumes] ", live.held_back())
                .black()
                .on_yellow(),
        );
    } else if !live.follow {
        title.push("[scrolled: G follows the newest] ".yellow());
    }
    let block = view_block(Line::from(title));
    let visible = live.visible();
    if visible.is_empty() {
        let mut lines = vec![Line::from(match &state.stream {
            StreamStatus::Down { error, .. } => {
                format!(
                    "The operator stream cannot be opened ({error}). Retrying; the other views keep working."
                )
            }
            _ if live.rows.is_empty() => {
                "Waiting for updates: every change to any user's task appears here as it happens."
                    .to_owned()
            }
            _ => "Nothing matches the filter (/ changes it).".to_owned(),
        })];
        if live.duplicates > 0 {
            lines.push(Line::from(format!("{} repeated updates ignored", live.duplicates)).dim());
        }
        placeholder(frame, area, block, lines);
        return;
    }
    // Rows that fit between the borders, under the column names.
    let height = usize::from(area.height.saturating_sub(3)).max(1);
    let selected = live.selected_position(&visible).unwrap_or(0);
    let offset = (selected + 1).saturating_sub(height);
    // Narrow terminals get the task id's first block, which is enough to
    // tell tasks apart and to filter with `task:`.
    let task_width = if area.width >= 110 { 36 } else { 8 };
    let items = visible[offset..visible.len().min(offset + height)]
        .iter()
        .map(|&i| match &live.rows[i] {
            LiveRow::Event { event, .. } => {
                let env = &**event;
                let t = event.event_type();
                ListItem::new(Line::from(vec![
                    Span::raw(format!("{:>7} {} ", event.seq, clock_ms(event.timestamp()))),
                    Span::styled(
                        format!("{:<22} ", t.as_str()),
                        Style::new().fg(type_color(t)),
                    ),
                    Span::raw(format!(
                        "{} {} {}",
                        fit(&env.user_id, 12),
                        &env.task_id.to_string()[..task_width],
                        clean(event.title().unwrap_or(""))
                    )),
                ]))
            }
            LiveRow::Marker {
                at, text, alarm, ..
            } => {
                let style = if *alarm {
                    Style::new().fg(Color::White).bg(Color::Red).bold()
                } else {
                    Style::new().fg(Color::Black).bg(Color::Yellow)
                };
                ListItem::new(
                    Line::from(format!("{:>7} {} ── {text}", "──", clock_ms(*at))).style(style),
                )
            }
        });
    let header = format!(
        "{:>7} {:<12} {:<22} {:<12} {:<task_width$} title",
        "seq", "time (UTC)", "event", "user", "task"
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Line::from(header).bold().underlined(), head);
    let list = List::new(items).highlight_style(Style::new().reversed());
    let mut list_state = ListState::default().with_selected(Some(selected - offset));
    frame.render_stateful_widget(list, body, &mut list_state);
}
