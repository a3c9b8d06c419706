//! The fault schedule: a pure function of (seed, minutes), so a campaign that
//! found a violation can be replayed with the same faults at the same
//! offsets. Faults overlap on purpose (a sidecar killed while Kafka is down),
//! but never two on the same process at once.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// Every app id of the platform, each run with [`REPLICAS`] replicas.
pub const APPS: [&str; 5] = [
    "todo-service",
    "audit-service",
    "websocket-service",
    "notification-service",
    "recurring-task-service",
];

/// Replicas of every service during a campaign.
pub const REPLICAS: u16 = 2;

/// Mean time between the starts of two faults.
const MEAN_GAP_SECS: f64 = 6.0;

/// The kinds of fault, each of which a schedule holds at least once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `kill -9` of one replica, started again after the fault's duration.
    KillApp,
    /// SIGSTOP of one replica past the sidecar's timeouts, then SIGCONT.
    PauseApp,
    /// `kill -9` of one replica's sidecar, started again afterwards.
    KillSidecar,
    /// SIGSTOP of one replica's sidecar, then SIGCONT.
    PauseSidecar,
    /// Kafka stopped, then started on its data.
    Kafka,
    /// PostgreSQL stopped (fast shutdown), then started on its data.
    Postgres,
    /// Dapr placement stopped, then started.
    Placement,
    /// Dapr scheduler stopped, then started on its etcd data.
    Scheduler,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::KillApp,
        FaultKind::PauseApp,
        FaultKind::KillSidecar,
        FaultKind::PauseSidecar,
        FaultKind::Kafka,
        FaultKind::Postgres,
        FaultKind::Placement,
        FaultKind::Scheduler,
    ];

    /// How long a fault of this kind lasts, in seconds (inclusive range):
    /// pauses outlast the sidecars' 5–10 s timeouts to the app and the
    /// apps' timeouts to the sidecar.
    fn secs(self) -> (u64, u64) {
        match self {
            FaultKind::KillApp | FaultKind::KillSidecar => (2, 10),
            FaultKind::PauseApp | FaultKind::PauseSidecar => (12, 20),
            FaultKind::Kafka => (5, 20),
            FaultKind::Postgres => (2, 8),
            FaultKind::Placement | FaultKind::Scheduler => (3, 12),
        }
    }

    /// Whether it hits one replica (which [`Fault::replica`] names).
    pub fn per_replica(self) -> bool {
        matches!(
            self,
            FaultKind::KillApp
                | FaultKind::PauseApp
                | FaultKind::KillSidecar
                | FaultKind::PauseSidecar
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::KillApp => "kill -9 replica",
            FaultKind::PauseApp => "SIGSTOP replica",
            FaultKind::KillSidecar => "kill -9 sidecar",
            FaultKind::PauseSidecar => "SIGSTOP sidecar",
            FaultKind::Kafka => "Kafka stop",
            FaultKind::Postgres => "PostgreSQL restart",
            FaultKind::Placement => "placement restart",
            FaultKind::Scheduler => "scheduler restart",
        })
    }
}

/// One planned fault: what, on which replica (per-replica kinds), when it
/// starts (from the campaign's start) and how long the part stays down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// (app id, replica index from 0) for per-replica kinds.
    pub replica: Option<(&'static str, u16)>,
    pub at: Duration,
    pub duration: Duration,
}

impl Fault {
    pub fn end(&self) -> Duration {
        self.at + self.duration
    }

    /// The process it acts on: two faults on one target never overlap.
    pub fn target(&self) -> String {
        match (self.kind, self.replica) {
            (FaultKind::KillApp | FaultKind::PauseApp, Some((app, i))) => format!("{app}#{i}"),
            (FaultKind::KillSidecar | FaultKind::PauseSidecar, Some((app, i))) => {
                format!("{app}#{i}-daprd")
            }
            (kind, _) => format!("{kind:?}"),
        }
    }

    fn overlaps(&self, other: &Fault) -> bool {
        self.at < other.end() && other.at < self.end()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t+{:>5.1}s {:<19} {:<30} for {:>4.1}s",
            self.at.as_secs_f64(),
            self.kind.to_string(),
            match self.replica {
                Some((app, i)) => format!("{app} replica {}", i + 1),
                None => String::new(),
            },
            self.duration.as_secs_f64()
        )
    }
}

/// One long outage of Kafka or PostgreSQL added to a campaign: it starts a
/// sixth of the way in and lasts `duration` (cut to end a minute before the
/// campaign does); the other faults of that part move after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub kind: FaultKind,
    pub duration: Duration,
}

impl std::str::FromStr for Outage {
    type Err = String;

    /// `kafka:<minutes>` or `postgres:<minutes>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (part, minutes) = s
            .split_once(':')
            .ok_or_else(|| format!("{s}: expected kafka:<minutes> or postgres:<minutes>"))?;
        let kind = match part {
            "kafka" => FaultKind::Kafka,
            "postgres" => FaultKind::Postgres,
            other => {
                return Err(format!(
                    "{other}: only kafka or postgres can have a long outage"
                ));
            }
        };
        let minutes: f64 = minutes
            .parse()
            .ok()
            .filter(|m: &f64| m.is_finite() && *m > 0.0)
            .ok_or_else(|| format!("{minutes}: not a positive number of minutes"))?;
        Ok(Outage {
            kind,
            duration: Duration::from_secs_f64(minutes * 60.0),
        })
    }
}

/// [`schedule`] with `outage` (if any) in it: the long fault first, then the
/// seeded ones, those of the same part moved after it (or left out if that
/// ends them past the campaign).
pub fn schedule_with(seed: u64, minutes: f64, outage: Option<Outage>) -> Vec<Fault> {
    let Some(outage) = outage else {
        return schedule(seed, minutes);
    };
    let total = Duration::from_secs_f64(minutes.max(0.5) * 60.0);
    let at = total / 6;
    let duration = outage
        .duration
        .min(total.saturating_sub(at + Duration::from_secs(60)));
    let long = Fault {
        kind: outage.kind,
        replica: None,
        at,
        duration,
    };
    let mut faults = vec![long.clone()];
    for mut f in schedule(seed, minutes) {
        if f.target() == long.target() && f.overlaps(&long) {
            f.at = long.end() + Duration::from_secs(1) + (f.at.saturating_sub(long.at) / 10);
            if f.end() > total {
                continue;
            }
        }
        faults.push(f);
    }
    faults.sort_by_key(|f| f.at);
    // Later faults of the same part that now overlap a moved one go.
    let mut kept: Vec<Fault> = Vec::with_capacity(faults.len());
    for f in faults {
        if !kept
            .iter()
            .any(|k| k.target() == f.target() && k.overlaps(&f))
        {
            kept.push(f);
        }
    }
    kept
}

/// The faults of a campaign of `minutes` minutes with `seed`, by start time.
/// About one every [`MEAN_GAP_SECS`], at least 20 whatever the length (the
/// short campaign must hit the platform that often), every kind at least
/// once; each ends before the campaign does.
pub fn schedule(seed: u64, minutes: f64) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let total = (minutes.max(0.5) * 60.0).round() as u64;
    let count = ((total as f64 / MEAN_GAP_SECS).round() as usize).max(20);
    // Each fault starts in its own slot of the window that leaves room for
    // the longest fault before the end.
    let window = total.saturating_sub(20).max(count as u64) as f64;
    let slot = window / count as f64;
    // Every kind in the first slots (shuffled), then any kind.
    let mut kinds: Vec<FaultKind> = FaultKind::ALL.to_vec();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.random_range(0..=i));
    }
    let mut faults: Vec<Fault> = Vec::with_capacity(count);
    for i in 0..count {
        let kind = match kinds.get(i) {
            Some(k) => *k,
            None => *FaultKind::ALL.choose(&mut rng).expect("kinds"),
        };
        let at_ms = ((i as f64 + rng.random_range(0.0..0.6)) * slot * 1000.0) as u64;
        let (lo, hi) = kind.secs();
        let mut fault = Fault {
            kind,
            replica: None,
            at: Duration::from_millis(at_ms),
            duration: Duration::from_millis(rng.random_range(lo * 1000..=hi * 1000)),
        };
        let busy = |candidate: &Fault| {
            faults
                .iter()
                .any(|f| f.target() == candidate.target() && f.overlaps(candidate))
        };
        if kind.per_replica() {
            let mut targets: Vec<(&'static str, u16)> = APPS
                .iter()
                .flat_map(|app| (0..REPLICAS).map(move |i| (*app, i)))
                .collect();
            for j in (1..targets.len()).rev() {
                targets.swap(j, rng.random_range(0..=j));
            }
            let free = targets.into_iter().find(|t| {
                let mut c = fault.clone();
                c.replica = Some(*t);
                !busy(&c)
            });
            fault.replica = free;
            if fault.replica.is_none() {
                continue;
            }
        } else if busy(&fault) {
            // The same infrastructure part is still down: start this one
            // when that one ends.
            let end = faults
                .iter()
                .filter(|f| f.target() == fault.target())
                .map(Fault::end)
                .max()
                .unwrap_or(fault.at);
            fault.at = end + Duration::from_secs(1);
        }
        faults.push(fault);
    }
    faults.sort_by_key(|f| f.at);
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(schedule(7, 3.0), schedule(7, 3.0));
        assert_ne!(schedule(7, 3.0), schedule(8, 3.0));
    }

    #[test]
    fn a_three_minute_campaign_has_at_least_twenty_faults_of_every_kind() {
        for seed in 0..200 {
            let faults = schedule(seed, 3.0);
            assert!(faults.len() >= 20, "seed {seed}: {}", faults.len());
            for kind in FaultKind::ALL {
                assert!(
                    faults.iter().any(|f| f.kind == kind),
                    "seed {seed}: no {kind}"
                );
            }
        }
    }

    #[test]
    fn faults_overlap_but_never_on_the_same_process() {
        for seed in 0..200 {
            let faults = schedule(seed, 3.0);
            let mut overlapping = 0;
            for (i, a) in faults.iter().enumerate() {
                for b in &faults[i + 1..] {
                    if a.overlaps(b) {
                        overlapping += 1;
                        assert_ne!(a.target(), b.target(), "seed {seed}: {a} / {b}");
                    }
                }
            }
            assert!(overlapping >= 5, "seed {seed}: {overlapping} overlaps");
        }
    }

    #[test]
    fn every_fault_ends_within_the_campaign_and_per_replica_faults_name_one() {
        for seed in 0..50 {
            for minutes in [1.0, 3.0, 30.0] {
                for f in schedule(seed, minutes) {
                    assert!(f.end().as_secs_f64() <= minutes * 60.0 + 30.0, "{f}");
                    assert_eq!(f.kind.per_replica(), f.replica.is_some(), "{f}");
                    if let Some((app, i)) = f.replica {
                        assert!(APPS.contains(&app) && i < REPLICAS, "{f}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_long_outage_is_in_the_schedule_alone_on_its_part_and_ends_before_the_campaign() {
        let outage: Outage = "kafka:20".parse().unwrap();
        assert_eq!(outage.duration, Duration::from_secs(1200));
        for seed in 0..50 {
            let faults = schedule_with(seed, 30.0, Some(outage));
            let long: Vec<&Fault> = faults
                .iter()
                .filter(|f| f.kind == FaultKind::Kafka && f.duration == outage.duration)
                .collect();
            assert_eq!(long.len(), 1, "seed {seed}");
            assert_eq!(long[0].at, Duration::from_secs(300));
            for (i, a) in faults.iter().enumerate() {
                assert!(
                    a.end() <= Duration::from_secs(30 * 60 + 30),
                    "seed {seed}: {a}"
                );
                for b in &faults[i + 1..] {
                    assert!(
                        a.target() != b.target() || !a.overlaps(b),
                        "seed {seed}: {a} / {b}"
                    );
                }
            }
            assert!(faults.len() >= 200, "seed {seed}: {}", faults.len());
        }
        assert!("redis:3".parse::<Outage>().is_err());
        assert!("kafka:0".parse::<Outage>().is_err());
        assert!("postgres:1.5".parse::<Outage>().is_ok());
    }

    #[test]
    fn thirty_minutes_hold_about_one_fault_every_six_seconds() {
        let n = schedule(1, 30.0).len();
        assert!((250..=310).contains(&n), "{n}");
    }
}
