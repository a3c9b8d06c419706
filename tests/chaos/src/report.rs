//! The campaign's report: counts, faults with their recovery times, the
//! platform's own restarts, and every violation, printed as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::checks::{Counts, Violation};
use crate::faults::FaultRun;
use crate::schedule::FaultKind;

/// What a campaign found.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub minutes: f64,
    pub faults: Vec<FaultRun>,
    pub counts: Counts,
    pub writes: usize,
    pub violations: Vec<Violation>,
    /// Restarts the supervisor made during the campaign.
    pub supervisor: Vec<String>,
    /// What had to be restarted after the last fault (`Stack::revive` and
    /// starts of what never came back).
    pub restored: Vec<String>,
    /// How long the checks took to pass (or until their deadline).
    pub settle: Duration,
}

impl Report {
    /// No violation.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The table and the violations, as printed at the end.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        let injected = self.faults.iter().filter(|f| f.began.is_some()).count();
        let failed = self.faults.iter().filter(|f| f.error.is_some()).count();
        let _ = writeln!(
            s,
            "chaos campaign: seed {}, {} min of faults, {} writes",
            self.seed, self.minutes, self.writes
        );
        let rows: [(&str, String); 14] = [
            ("acknowledged", c.acknowledged.to_string()),
            ("  of which on Kafka", c.acknowledged_on_kafka.to_string()),
            ("refused (503)", c.refused.to_string()),
            ("no answer", c.unknown.to_string()),
            ("other answers (status: count)", format!("{:?}", c.other)),
            ("task-events events", c.task_events.to_string()),
            ("  audited once", c.audited.to_string()),
            (
                "delivered (WebSocket)",
                format!("{} of {}", c.delivered, c.expected_deliveries),
            ),
            ("  reconnects", c.reconnects.to_string()),
            (
                "recurring completions / reminders due",
                format!("{} / {}", c.recurring_completions, c.reminders_due),
            ),
            ("duplicates (applied twice)", c.duplicates.to_string()),
            ("redelivered on Kafka (same id)", c.redelivered.to_string()),
            ("missing", c.missing.to_string()),
            (
                "faults injected",
                format!("{injected} ({failed} with an error)"),
            ),
        ];
        let _ = writeln!(
            s,
            "+---------------------------------------+----------------+"
        );
        for (k, v) in rows {
            let _ = writeln!(s, "| {k:<37} | {v:>14} |");
        }
        let _ = writeln!(
            s,
            "+---------------------------------------+----------------+"
        );
        let _ = writeln!(
            s,
            "| recovery per fault type               | count  p50  max | not recovered"
        );
        let mut by_kind: BTreeMap<FaultKind, (Vec<Duration>, usize)> = BTreeMap::new();
        for f in &self.faults {
            let e = by_kind.entry(f.fault.kind).or_default();
            match f.recovery {
                Some(d) => e.0.push(d),
                None => e.1 += 1,
            }
        }
        for (kind, (mut ds, lost)) in by_kind {
            ds.sort();
            let p50 = ds.get(ds.len().saturating_sub(1) / 2).copied();
            let max = ds.last().copied();
            let secs = |d: Option<Duration>| {
                d.map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
            };
            let _ = writeln!(
                s,
                "| {:<37} | {:>5} {:>5} {:>5} | {lost}",
                kind.to_string(),
                ds.len() + lost,
                secs(p50),
                secs(max)
            );
        }
        let _ = writeln!(s, "checks settled in {:.1}s", self.settle.as_secs_f64());
        let _ = writeln!(s, "faults (planned, then actual begin/end, recovery):");
        for f in &self.faults {
            let opt = |d: Option<Duration>| {
                d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64()))
            };
            let _ = writeln!(
                s,
                "  {}  began {} ended {} recovered in {}{}",
                f.fault,
                opt(f.began),
                opt(f.ended),
                opt(f.recovery),
                f.error
                    .as_deref()
                    .map(|e| format!("  ERROR {}", e.lines().next().unwrap_or_default()))
                    .unwrap_or_default()
            );
        }
        if !self.supervisor.is_empty() {
            let _ = writeln!(s, "restarted by the supervisor during the campaign:");
            for l in &self.supervisor {
                let _ = writeln!(s, "  {l}");
            }
        }
        if !self.restored.is_empty() {
            let _ = writeln!(s, "restored after the campaign:");
            for l in &self.restored {
                let _ = writeln!(s, "  {l}");
            }
        }
        if self.passed() {
            let _ = writeln!(s, "no violation (seed {})", self.seed);
        } else {
            let _ = writeln!(
                s,
                "{} violations (seed {}):",
                self.violations.len(),
                self.seed
            );
            for v in &self.violations {
                let _ = writeln!(s, "  {v}");
            }
            let _ = writeln!(
                s,
                "replay: cargo xtask chaos --minutes {} --seed {}",
                self.minutes, self.seed
            );
        }
        s
    }
}
