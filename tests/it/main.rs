//! Integration tests of the whole: one test binary (fast to link), one module per area.

mod bugs;
mod cli;
mod coverage;
mod determinism;
mod end_to_end;
mod failures;
mod properties;
mod reports;
mod shrink;
mod suites;
mod variants;

use faultline::patterns::Variant;
use faultline::scenarios::{run, Outcome, RunOptions, RunSpec, Scenario};
use faultline::sim::{Profile, Seed};

/// One run of a built-in variant (or one with settings, `PRESET+key=value`) in the
/// standard scenario, through the public runner.
pub fn run_seed(pattern: &str, profile: Profile, seed: u64) -> Outcome {
    run_seed_in(Scenario::standard(), pattern, profile, seed)
}

/// The standard scenario with every action on one customer. Tests of a mechanism that
/// has nothing to do with actions over two customers run here, so that the fractures
/// those bring to per-customer patterns do not hide what the test looks for (the
/// `actions across customers` tests and suite cells cover them).
pub fn single_customer_actions() -> Scenario {
    Scenario {
        cross_customer_pct: 0,
        ..Scenario::standard()
    }
}

/// [`run_seed`] with every action on one customer.
pub fn run_seed_single(pattern: &str, profile: Profile, seed: u64) -> Outcome {
    run_seed_in(single_customer_actions(), pattern, profile, seed)
}

fn run_seed_in(scenario: Scenario, pattern: &str, profile: Profile, seed: u64) -> Outcome {
    let variant = Variant::resolve(pattern, &[]).expect("registered variant");
    run(
        &RunSpec::new(variant, scenario, profile, Seed(seed)),
        RunOptions::default(),
    )
    .expect("run completes")
}
