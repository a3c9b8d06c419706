//! Drawing: [`render`] turns the [`State`] into a frame and changes
//! nothing. The frame is a tab bar, the current view, a status line (stream,
//! buffer, token, the latest note) and, over them, a prompt, a yes/no
//! question or a JSON detail.
//! Each view draws only the rows that fit, so a full buffer costs no more
//! than an empty one.

mod dead_letters;
mod health;
mod lists;
mod live;
mod task;

use chrono::{DateTime, TimeDelta, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Wrap};
use unicode_width::UnicodeWidthChar;

use crate::client::FetchError;
use crate::keys::HELP;
use crate::state::{Mode, Remote, State, StreamStatus, View};

/// Draws the whole console.
pub fn render(state: &State, frame: &mut Frame) {
    let prompt_height = u16::from(matches!(state.mode, Mode::Prompt(_) | Mode::Confirm(_)));
    let [tabs, body, status, prompt] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(prompt_height),
    ])
    .areas(frame.area());
    draw_tabs(state, frame, tabs);
    match state.view {
        View::Live => live::draw(state, frame, body),
        View::Task => task::draw(state, frame, body),
        View::Notifications => lists::draw_notifications(state, frame, body),
        View::Schedules => lists::draw_schedules(state, frame, body),
        View::Health => health::draw(state, frame, body),
        View::DeadLetters => dead_letters::draw(state, frame, body),
        View::Help => draw_help(frame, body),
    }
    draw_status(state, frame, status);
    match &state.mode {
        Mode::Prompt(p) => {
            let line = Line::from(vec![
                Span::styled(format!("/ {}: ", p.kind.label()), Style::new().bold()),
                Span::raw(p.input.as_str()),
                Span::styled("█", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            ]);
            frame.render_widget(Paragraph::new(line), prompt);
        }
        Mode::Confirm(c) => {
            let line = Line::from(vec![
                Span::styled(
                    format!("{} ", c.question),
                    Style::new().fg(Color::Yellow).bold(),
                ),
                Span::styled("y", Style::new().bold()),
                Span::raw(" yes · "),
                Span::styled("n", Style::new().bold()),
                Span::raw(" / Esc no"),
            ]);
            frame.render_widget(Paragraph::new(line), prompt);
        }
        Mode::Detail(d) => {
            let area = centered(frame.area(), 90, 80);
            frame.render_widget(Clear, area);
            let hint = if d.task_id.is_some() {
                " Esc close · ↑↓ PgUp PgDn scroll · Enter/t task history "
            } else {
                " Esc close · ↑↓ PgUp PgDn scroll "
            };
            let block = Block::bordered()
                .title(Line::from(format!(" {} ", d.title)).bold())
                .title_bottom(Line::from(hint).dim())
                .border_style(Style::new().fg(Color::Cyan));
            frame.render_widget(
                Paragraph::new(d.body.as_str())
                    .block(block)
                    .scroll((d.scroll, 0)),
                area,
            );
        }
        Mode::Normal => {}
    }
}

fn centered(area: Rect, width_percent: u16, height_percent: u16) -> Rect {
    let [area] = Layout::horizontal([Constraint::Percentage(width_percent)])
        .flex(Flex::Center)
        .areas(area);
    let [area] = Layout::vertical([Constraint::Percentage(height_percent)])
        .flex(Flex::Center)
        .areas(area);
    area
}

/// The tab bar's titles: in full where they fit, else shortened.
fn tab_titles(width: u16) -> Vec<String> {
    let titles = |name: fn(View) -> &'static str| -> Vec<String> {
        View::ALL
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{} {}", i + 1, name(*v)))
            .collect()
    };
    let full = titles(View::title);
    if bar_width(&full) <= usize::from(width) {
        full
    } else {
        titles(View::short_title)
    }
}

/// Columns `Tabs` takes for `titles`: each padded by one space either side,
/// a divider between two.
fn bar_width(titles: &[String]) -> usize {
    titles.iter().map(|t| t.chars().count() + 2).sum::<usize>() + titles.len().saturating_sub(1)
}

/// The program's name at the right of the tab bar.
const NAME: &str = "todo-admin ";

fn draw_tabs(state: &State, frame: &mut Frame, area: Rect) {
    let titles = tab_titles(area.width);
    // The name goes first when the views do not fit beside it.
    let name_width = if bar_width(&titles) + NAME.len() <= usize::from(area.width) {
        NAME.len() as u16
    } else {
        0
    };
    let tabs = Tabs::new(titles)
        .select(state.view.index())
        .highlight_style(Style::new().fg(Color::Black).bg(Color::Cyan).bold())
        .divider("│");
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(name_width)]).areas(area);
    frame.render_widget(tabs, left);
    frame.render_widget(Paragraph::new(NAME).right_aligned().dim(), right);
}

/// `12:00:01.456` (UTC).
pub(crate) fn clock_ms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

/// `2026-03-02 10:00:00Z`.
pub(crate) fn date_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `42s`, `4m 12s`, `2h 05m`, `3d 4h`.
pub(crate) fn span(d: TimeDelta) -> String {
    let s = d.num_seconds().abs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `in 4m 12s` or `3s ago`.
pub(crate) fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if (t - now).abs() < TimeDelta::seconds(1) {
        "just now".to_owned()
    } else if t > now {
        format!("in {}", span(t - now))
    } else {
        format!("{} ago", span(now - t))
    }
}

/// A line saying why a view's data is missing or old, if it is.
pub(crate) fn trouble<T>(
    remote: &Remote<T>,
    service: &str,
    now: DateTime<Utc>,
) -> Option<Line<'static>> {
    let error = remote.error.as_ref()?;
    let since = remote
        .last_good
        .map(|t| {
            format!(
                "; showing its answer of {} ({})",
                date_time(t),
                relative(t, now)
            )
        })
        .unwrap_or_default();
    let text = match error {
        FetchError::Down(why) => format!("⚠ {service} is DOWN ({why}){since}"),
        e if e.is_auth() => format!("⚠ {service} refused the console's token: {e}{since}"),
        e => format!("⚠ {service} {e}{since}"),
    };
    Some(Line::from(text).style(Style::new().fg(Color::Red).bold()))
}

/// The view's block: bordered, with its title.
pub(crate) fn view_block(title: impl Into<Line<'static>>) -> Block<'static> {
    Block::bordered().title(title.into().bold())
}

/// A message in the middle of an empty view.
pub(crate) fn placeholder(frame: &mut Frame, area: Rect, block: Block<'_>, lines: Vec<Line<'_>>) {
    frame.render_widget(
        Paragraph::new(lines).block(block).wrap(Wrap { trim: true }),
        area,
    );
}

fn draw_status(state: &State, frame: &mut Frame, area: Rect) {
    let now = state.now;
    let stream = match &state.stream {
        StreamStatus::Connecting { attempt, since } => {
            let from = since.map_or(String::new(), |s| format!(" after seq {s}"));
            Span::styled(
                format!("◌ connecting{from} (attempt {attempt})"),
                Style::new().fg(Color::Yellow),
            )
        }
        StreamStatus::Replaying { since } => Span::styled(
            format!("◐ replaying after seq {since}"),
            Style::new().fg(Color::Yellow),
        ),
        StreamStatus::Live { .. } => Span::styled("● live", Style::new().fg(Color::Green)),
        StreamStatus::Down { error, retry_at } => Span::styled(
            format!("✖ stream {error}; retrying {}", relative(*retry_at, now)),
            Style::new().fg(Color::Red),
        ),
    };
    let live = &state.live;
    let mut counters = vec![Span::raw(format!(
        " │ {:.0}/s · {} received · {}/{} kept",
        live.rate,
        live.received,
        live.rows.len(),
        live.capacity,
    ))];
    if let Some(seq) = live.last_seq {
        counters.push(Span::raw(format!(" · seq {seq}")));
    }
    let mut spans = vec![Span::raw(" │ ")];
    if let Some(problem) = &state.auth_problem {
        spans.push(Span::styled(
            format!("TOKEN REFUSED by {problem}"),
            Style::new().fg(Color::White).bg(Color::Red).bold(),
        ));
    } else {
        let token = &state.token;
        let who = token.subject.as_deref().unwrap_or("?");
        match token.expires_at {
            Some(exp) if exp <= now => spans.push(Span::styled(
                format!("token of {who} EXPIRED {}", relative(exp, now)),
                Style::new().fg(Color::White).bg(Color::Red).bold(),
            )),
            Some(exp) => spans.push(Span::raw(format!(
                "{who}{}, token expires {}",
                if token.operator {
                    ""
                } else {
                    " (NOT an operator)"
                },
                relative(exp, now)
            ))),
            None => spans.push(Span::styled("no token", Style::new().fg(Color::Red))),
        }
    }
    if let Some(note) = &state.note {
        spans.push(Span::raw(" │ "));
        let style = if note.error {
            Style::new().fg(Color::Red).bold()
        } else {
            Style::new().fg(Color::Cyan)
        };
        spans.push(Span::styled(note.text.clone(), style));
    }
    // A note is what just happened (a redrive's outcome, a refused filter):
    // where the line cannot hold it all, the stream's counters give way.
    let width = |spans: &[Span]| spans.iter().map(Span::width).sum::<usize>();
    let fits = stream.width() + width(&counters) + width(&spans) <= usize::from(area.width);
    let counters = if state.note.is_none() || fits {
        counters
    } else {
        Vec::new()
    };
    let spans: Vec<Span> = std::iter::once(stream)
        .chain(counters)
        .chain(spans)
        .collect();
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().bg(Color::DarkGray)),
        area,
    );
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let mut lines = vec![
        Line::from("Views").bold(),
        Line::from(
            "  1 Live           every user's updates from the WebSocket service's operator stream",
        ),
        Line::from("  2 Task           one task's audit trail; changed fields are highlighted"),
        Line::from(
            "  3 Notifications  pending, sent and failed notifications; r retries a failed one",
        ),
        Line::from("  4 Schedules      recurring series and reminder jobs, with countdowns"),
        Line::from(
            "  5 Health         every service's readiness, consumer counters and connections",
        ),
        Line::from(
            "  6 Dead letters   every consumer's open dead letters and failed intents; r redrives one, R a service's all",
        ),
        Line::from(""),
        Line::from("Keys").bold(),
    ];
    for (keys, what) in HELP {
        lines.push(Line::from(vec![
            Span::styled(format!("  {keys:<24}"), Style::new().fg(Color::Cyan)),
            Span::raw(*what),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(view_block(" Help "))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// `text` made safe to draw (control characters, which would move the
/// cursor, become `�`) and cut or padded to exactly `width` columns, wide
/// characters counted as two (`…` where cut).
pub(crate) fn fit(text: &str, width: usize) -> String {
    let text = clean(text);
    let total: usize = text.chars().map(|c| c.width().unwrap_or(0)).sum();
    let mut out = String::with_capacity(width + 3);
    let mut used = 0;
    if total <= width {
        out.push_str(&text);
        used = total;
    } else if width > 0 {
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width - 1 {
                break;
            }
            out.push(c);
            used += w;
        }
        out.push('…');
        used += 1;
    }
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    out
}

/// `text` with control characters made visible, for free-running text
/// (titles at the end of a row, errors).
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '�' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_pads_cuts_and_counts_wide_characters_as_two() {
        assert_eq!(fit("bob", 5), "bob  ");
        assert_eq!(fit("alexandra", 5), "alex…");
        assert_eq!(fit("日本語テキスト", 7), "日本語…");
        assert_eq!(fit("日本語", 6), "日本語");
        assert_eq!(fit("a\u{1b}[2Jb", 6), "a�[2Jb");
        assert_eq!(fit("x", 0), "");
    }

    #[test]
    fn spans_read_as_an_operator_would_say_them() {
        assert_eq!(span(TimeDelta::seconds(42)), "42s");
        assert_eq!(span(TimeDelta::seconds(252)), "4m 12s");
        assert_eq!(span(TimeDelta::minutes(125)), "2h 05m");
        assert_eq!(span(TimeDelta::hours(76)), "3d 4h");
    }
}
