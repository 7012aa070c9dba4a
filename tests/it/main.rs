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
    let variant = Variant::resolve(pattern, &[]).expect("registered variant");
    run(
        &RunSpec::new(variant, Scenario::standard(), profile, Seed(seed)),
        RunOptions::default(),
    )
    .expect("run completes")
}
