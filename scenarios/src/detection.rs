//! How sharp each planted bug proves the checker: over a range of seeds of the bug's
//! variant and profile, on how many it is caught by the invariant it should break, and
//! on how many that invariant breaks without the bug (which should be none: otherwise it
//! is the variant's own weakness that is caught, not the bug).

use std::ops::Range;
use std::sync::atomic::AtomicBool;

use faultline_patterns::bugs::{BugInfo, BugSet};
use faultline_patterns::Variant;
use faultline_sim::{Profile, Seed};
use serde::Serialize;

use crate::runner::{Outcome, RunFailure, RunSpec};
use crate::scenario::Scenario;
use crate::sweep::sweep;

/// What a bug's invariant found over a range of seeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The bug.
    pub bug: &'static str,
    /// Whether the bug was switched on.
    pub with_bug: bool,
    /// Seeds run.
    pub seeds: u64,
    /// The seeds on which the bug's invariant broke (or, for a bug that makes runs
    /// fail, on which the run failed), in order.
    pub caught_on: Vec<u64>,
}

impl Detection {
    /// The share of seeds it was caught on (0.0 to 1.0).
    pub fn rate(&self) -> f64 {
        if self.seeds == 0 {
            0.0
        } else {
            self.caught_on.len() as f64 / self.seeds as f64
        }
    }
}

/// What broke on one seed: the invariants that fired, or `run-failed` for a run that
/// failed (a panic, a runaway the budget stopped). Each violation counts under its invariant (`convergence`) and its invariant and
/// kind (`convergence/missing`), so a bug's `breaks` may name either.
pub type Broken = std::collections::BTreeSet<String>;

/// Runs `variant` under `profile` over `seeds` with `bugs`, `jobs` at a time, and says
/// per seed what broke. The runs without a bug are shared by every bug of the same
/// variant and profile.
pub fn broken(variant: &str, profile: &str, bugs: BugSet, seeds: Range<u64>, jobs: usize) -> Vec<Broken> {
    let variant = Variant::resolve(variant, &[]).expect("the registry names real variants");
    let profile = Profile::from_name(profile).expect("the registry names real profiles");
    let specs: Vec<RunSpec> = seeds
        .map(|seed| RunSpec {
            bugs,
            ..RunSpec::new(variant, Scenario::standard(), profile, Seed(seed))
        })
        .collect();
    let what_broke = |_: &RunSpec, outcome: Result<Outcome, Box<RunFailure>>| match outcome {
        Err(_) => Broken::from(["run-failed".to_string()]),
        Ok(outcome) => outcome
            .violations
            .iter()
            .flat_map(|v| [v.invariant.to_string(), format!("{}/{}", v.invariant, v.kind)])
            .collect(),
    };
    sweep(&specs, jobs, what_broke, |_| {}, &AtomicBool::new(false))
        .into_iter()
        .map(|seed| seed.expect("the sweep was not cancelled"))
        .collect()
}

/// On which of `seeds` (whose results are `broken`, in order) `info`'s invariant broke.
pub fn detection(info: &BugInfo, with_bug: bool, seeds: Range<u64>, broken: &[Broken]) -> Detection {
    Detection {
        bug: info.name,
        with_bug,
        seeds: seeds.end - seeds.start,
        caught_on: seeds
            .zip(broken)
            .filter(|(_, broke)| broke.contains(info.breaks))
            .map(|(seed, _)| seed)
            .collect(),
    }
}

/// Runs `info`'s variant and profile over `seeds`, with the bug on or off, `jobs` at a
/// time, and says on which seeds its invariant broke.
pub fn detect(info: &BugInfo, seeds: Range<u64>, with_bug: bool, jobs: usize) -> Detection {
    let bugs = if with_bug {
        BugSet::of(&[info.bug])
    } else {
        BugSet::NONE
    };
    let results = broken(info.variant, info.profile, bugs, seeds.clone(), jobs);
    detection(info, with_bug, seeds, &results)
}
