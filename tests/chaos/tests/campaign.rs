//! The short chaos campaign of the test command: about three minutes of
//! at least 20 overlapping faults on a stack of its own (two replicas of
//! every service), with a random seed printed first so a failure can be
//! replayed (`cargo xtask chaos --minutes 3 --seed <seed>`, or
//! `CHAOS_SEED=<seed>` for this test).

#![allow(clippy::print_stdout)]

#[test]
fn a_short_campaign_of_overlapping_faults_breaks_no_promise() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(chaos::random_seed);
    eprintln!("CHAOS seed {seed} (replay with CHAOS_SEED={seed})");
    let mut options = chaos::Options::new(3.0, seed);
    options.state_name = "chaos-test".to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime
        .block_on(chaos::run(options))
        .unwrap_or_else(|e| panic!("the campaign (seed {seed}) could not run: {e:#}"));
    println!("{}", report.render());
    assert!(
        report.faults.len() >= 20,
        "seed {seed}: only {} faults",
        report.faults.len()
    );
    assert!(
        report.passed(),
        "seed {seed}: {} violations:\n{}",
        report.violations.len(),
        report.render()
    );
}
