//! The checker is sharp: every planted bug is caught within 20 seeds by the invariant it
//! should break, and its variant and profile are clean on seeds 0..200 with the bug
//! switched off, so it is the bug that is caught, not the pattern's own weakness; and
//! every invariant has a bug that breaks it.

use faultline::patterns::bugs::{BugSet, BUGS};
use std::collections::BTreeMap;

use faultline::scenarios::detection::{broken, detect, detection, Broken};
use faultline::scenarios::sweep::default_jobs;

/// Seeds within which each bug must be caught.
const CAUGHT_WITHIN: u64 = 20;
/// Seeds each bug's variant and profile must be clean on without the bug.
const CLEAN_SEEDS: u64 = 200;

#[test]
fn every_planted_bug_is_caught_within_20_seeds_and_clean_without_it_on_200() {
    // The bug-free runs of one variant and profile serve every bug planted there.
    let mut clean_runs: BTreeMap<(&str, &str), Vec<Broken>> = BTreeMap::new();
    for bug in BUGS {
        let with = detect(bug, 0..CAUGHT_WITHIN, true, default_jobs());
        assert!(
            !with.caught_on.is_empty(),
            "{} was not caught by {} within {CAUGHT_WITHIN} seeds of {} under {}",
            bug.name,
            bug.breaks,
            bug.variant,
            bug.profile
        );
        let runs = clean_runs.entry((bug.variant, bug.profile)).or_insert_with(|| {
            broken(
                bug.variant,
                bug.profile,
                BugSet::NONE,
                0..CLEAN_SEEDS,
                default_jobs(),
            )
        });
        let without = detection(bug, false, 0..CLEAN_SEEDS, runs);
        assert!(
            without.caught_on.is_empty(),
            "{}: {} breaks {} under {} even without the bug, on seeds {:?}",
            bug.name,
            bug.variant,
            bug.breaks,
            bug.profile,
            without.caught_on
        );
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
