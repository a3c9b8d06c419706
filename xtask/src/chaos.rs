//! `cargo xtask chaos [--minutes N] [--seed S]`: the chaos campaign (the
//! `chaos` crate) on a fresh stack of its own with two replicas of every
//! service; prints its report and fails, naming the seed, on any violation.

use anyhow::{Result, bail};

/// Options of `cargo xtask chaos`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Minutes of faults (the workload runs through them; checks follow).
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// The schedule's seed (default: a random one, printed first).
    #[arg(long)]
    seed: Option<u64>,
    /// Users writing at once, each with a WebSocket client.
    #[arg(long, default_value_t = 4)]
    users: usize,
    /// One long outage among the faults: `kafka:<minutes>` or
    /// `postgres:<minutes>` (from a sixth of the way in).
    #[arg(long)]
    outage: Option<String>,
}

pub async fn run(o: Options) -> Result<()> {
    if o.minutes.is_nan() || o.minutes <= 0.0 {
        bail!("--minutes must be positive");
    }
    let seed = o.seed.unwrap_or_else(chaos::random_seed);
    eprintln!("[xtask] chaos: seed {seed}, {} minutes", o.minutes);
    let mut options = chaos::Options::new(o.minutes, seed);
    options.users = o.users.max(1);
    options.outage = o
        .outage
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: String| anyhow::anyhow!("--outage {e}"))?;
    let report = chaos::run(options).await?;
    eprintln!("{}", report.render());
    if !report.passed() {
        bail!(
            "{} violations; replay with `cargo xtask chaos --minutes {} --seed {seed}{}`",
            report.violations.len(),
            o.minutes,
            o.outage
                .map(|s| format!(" --outage {s}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
