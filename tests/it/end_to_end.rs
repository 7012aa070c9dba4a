//! From seed to verdict through the public runner: what each pattern guarantees under
//! faults, found by the checker alone.

use crate::{run_seed, single_customer_actions};
use faultline::patterns::Variant;
use faultline::scenarios::{run, RunOptions, RunSpec, Scenario};
use faultline::sim::{Profile, Seed};

/// With actions on one customer each, the outbox with an inbox holds every invariant;
/// with the standard mix (actions over two customers too) it fractures those only,
/// while cdc-tx, reassembling across partitions, holds every invariant.
#[test]
fn outbox_inbox_and_cdc_tx_hold_every_invariant_under_chaos_for_seeds_0_to_50() {
    let outbox = Variant::by_name("outbox-inbox").expect("registered variant");
    for seed in 0..50 {
        let spec = RunSpec::new(outbox, single_customer_actions(), Profile::Chaos, Seed(seed));
        let outcome = run(&spec, RunOptions::default()).expect("run completes");
        assert!(outcome.passed(), "seed {seed}: {:#?}", outcome.violations);
        assert!(
            outcome.metrics.converged_at_ms.is_some(),
            "seed {seed} never converged"
        );
        let mixed = run_seed("outbox-inbox", Profile::Chaos, seed);
        assert!(
            mixed.violations.iter().all(|v| v.invariant == "atomic-actions"),
            "seed {seed}: {:#?}",
            mixed.violations
        );
        let cdc = run_seed("cdc-tx", Profile::Chaos, seed);
        assert!(cdc.passed(), "cdc-tx seed {seed}: {:#?}", cdc.violations);
    }
}

#[test]
fn push_loses_updates_when_the_source_crashes_and_the_checker_says_so() {
    let failing: Vec<u64> = (0..50)
        .filter(|&seed| {
            run_seed("push", Profile::Crashes, seed)
                .violations
                .iter()
                .any(|v| v.invariant == "convergence")
        })
        .collect();
    assert!(
        !failing.is_empty(),
        "push under crashes must lose an update within seeds 0..50"
    );
}

#[test]
fn determinism_the_same_run_twice_gives_the_same_trace_hash() {
    for pattern in ["push", "outbox-inbox"] {
        for seed in [0, 7, 42] {
            let first = run_seed(pattern, Profile::Chaos, seed);
            let second = run_seed(pattern, Profile::Chaos, seed);
            assert_eq!(
                first.trace_hash, second.trace_hash,
                "{pattern} seed {seed} is not deterministic"
            );
            assert_eq!(first.violations, second.violations);
        }
    }
    assert_ne!(
        run_seed("push", Profile::Chaos, 1).trace_hash,
        run_seed("push", Profile::Chaos, 2).trace_hash
    );
}

#[test]
fn violations_carry_evidence_from_the_trace() {
    let variant = Variant::by_name("push").unwrap();
    let outcome = (0..50)
        .map(|seed| {
            run(
                &RunSpec::new(variant, Scenario::standard(), Profile::Crashes, Seed(seed)),
                RunOptions {
                    keep_trace: true,
                    ..RunOptions::default()
                },
            )
            .unwrap()
        })
        .find(|o| !o.passed())
        .expect("a failing seed");
    for v in &outcome.violations {
        // Liveness is about the whole run; every other violation names its events.
        if v.invariant == "liveness" {
            continue;
        }
        assert!(!v.evidence.is_empty(), "{v:?} has no evidence");
        for id in &v.evidence {
            let event = &outcome.trace[id.0 as usize];
            // A recovery that took a version back is what readers saw go back.
            let explains = ["commit", "apply", "welcome", "target-recovered"].contains(&event.kind);
            assert!(explains, "evidence points at {event:?}");
        }
    }
}

/// Crashes and power losses land inside I/O (writes and syncs take simulated time): over
/// three variants under `storage` and `crashes`, power losses meet unsynced and torn
/// tails, and the outbox with an inbox still holds every invariant (with actions on one
/// customer each: see above for actions over two).
#[test]
fn power_losses_meet_torn_and_unsynced_tails_and_outbox_inbox_still_holds() {
    let (mut torn, mut unsynced_lost) = (0, 0);
    for pattern in ["outbox-inbox", "cdc-tx", "full-copy"] {
        let variant = Variant::by_name(pattern).expect("registered variant");
        for profile in [Profile::Storage, Profile::Crashes] {
            for seed in 0..40 {
                let spec = RunSpec::new(variant, single_customer_actions(), profile, Seed(seed));
                let outcome = run(
                    &spec,
                    RunOptions {
                        keep_trace: true,
                        ..RunOptions::default()
                    },
                )
                .expect("run completes");
                let count = |kind: &str| outcome.trace.iter().filter(|e| e.kind == kind).count();
                torn += count(faultline::sim::trace::kind::TORN);
                unsynced_lost += count(faultline::sim::trace::kind::UNSYNCED_LOST);
                if pattern == "outbox-inbox" {
                    assert!(
                        outcome.passed(),
                        "{pattern} {profile:?} seed {seed}: {:#?}",
                        outcome.violations
                    );
                }
            }
        }
    }
    assert!(torn > 0, "no power loss tore an unsynced tail");
    assert!(unsynced_lost > 0, "no power loss dropped an unsynced tail");
}

/// Crashes land inside operations without help: the target that welcomes before its
/// commit is caught under `crashes` (its registry profile is `storage`) within ten
/// seeds, with no artificial gap in the bug.
#[test]
fn effect_before_commit_is_caught_under_crashes_within_ten_seeds() {
    let registered = faultline::patterns::bugs::BUGS
        .iter()
        .find(|b| b.name == "effect-before-commit")
        .expect("registered bug");
    let under_crashes = faultline::patterns::bugs::BugInfo {
        profile: "crashes",
        ..*registered
    };
    let found = faultline::scenarios::detection::detect(&under_crashes, 0..10, true, 1);
    assert!(!found.caught_on.is_empty(), "{found:?}");
}
