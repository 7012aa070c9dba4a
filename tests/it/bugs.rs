//! The checker is sharp: every planted bug is caught within 50 seeds by the invariant it
//! should break, the same variant and profile are clean with the bug switched off (on
//! at least 20 seeds, and every seed up to the catch), so it is the bug that is caught,
//! not the pattern's own weakness; and every invariant has a bug that breaks it.

use faultline::patterns::bugs::{BugSet, BUGS};
use faultline::patterns::Variant;
use faultline::scenarios::{run, RunOptions, RunSpec, Scenario};
use faultline::sim::{Profile, Seed};

const SEEDS_MAX: u64 = 50;
/// Seeds every bug's variant and profile must be clean on without the bug, at least.
const CLEAN_SEEDS_MIN: u64 = 20;

#[test]
fn every_planted_bug_is_caught_within_50_seeds_and_only_with_the_bug() {
    for bug in BUGS {
        let variant = Variant::by_name(bug.variant).expect("the registry names real variants");
        let profile = Profile::from_name(bug.profile).expect("the registry names real profiles");
        let breaks = |seed: u64, bugs: BugSet| {
            let spec = RunSpec {
                bugs,
                ..RunSpec::new(variant, Scenario::standard(), profile, Seed(seed))
            };
            match run(&spec, RunOptions::default()) {
                // A bug that makes runs fail (a panic, a runaway) is caught by the
                // run boundary, not by an invariant.
                Err(failure) => {
                    assert_eq!(bug.breaks, "run-failed", "{}: {failure}", bug.name);
                    true
                }
                Ok(outcome) => outcome.violations.iter().any(|v| v.invariant == bug.breaks),
            }
        };
        let caught_at = (0..SEEDS_MAX).find(|&seed| breaks(seed, BugSet::of(&[bug.bug])));
        let Some(caught_at) = caught_at else {
            panic!(
                "{} was not caught by {} within {SEEDS_MAX} seeds of {} under {}",
                bug.name, bug.breaks, bug.variant, bug.profile
            )
        };
        // Clean without the bug on at least CLEAN_SEEDS_MIN seeds, so that it is the bug
        // that is caught, not the variant's own weakness.
        for seed in 0..(caught_at + 1).max(CLEAN_SEEDS_MIN) {
            assert!(
                !breaks(seed, BugSet::NONE),
                "{}: seed {seed} breaks {} even without the bug",
                bug.name,
                bug.breaks
            );
        }
    }
}

#[test]
fn bug_names_round_trip_and_sets_hold_what_they_were_given() {
    for bug in BUGS {
        assert_eq!(faultline::patterns::bugs::Bug::from_name(bug.name), Some(bug.bug));
        let set = BugSet::of(&[bug.bug]);
        assert!(set.has(bug.bug));
        assert_eq!(set.bugs(), vec![bug.bug]);
    }
    assert!(BugSet::NONE.bugs().is_empty());
}

#[test]
fn every_invariant_has_a_planted_bug_that_breaks_it() {
    for invariant in faultline::scenarios::INVARIANTS {
        assert!(
            BUGS.iter().any(|b| b.breaks == invariant.name),
            "no planted bug proves {} sharp",
            invariant.name
        );
    }
}
