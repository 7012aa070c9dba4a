//! From seed to verdict through the public runner: what each pattern guarantees under
//! faults, found by the checker alone.

use crate::{run_seed, single_customer_actions};
use faultline::patterns::Variant;
use faultline::scenarios::{run, Faults, RunOptions, RunSpec, Scenario};
use faultline::sim::{Fault, Profile, Seed};

/// The outbox with an inbox and cdc-tx on brokers that fsync every batch
/// (`log.flush.interval.messages=1`): whatever the chaos does to the cluster, nothing is
/// lost, doubled or reordered, and the sides converge; what three broker hosts under the
/// profile's fault rate cost is time (leader sessions, min-ISR refusals, producer
/// request timeouts), so bounded-staleness is left out. With actions over two customers
/// the outbox fractures those only, while cdc-tx, reassembling across partitions, does
/// not. On Kafka's default, page-cache flushing, a partition whose last in-sync replica
/// loses power loses acknowledged records (ci.toml, "outbox-inbox under chaos"). The
/// chaos plans run without their purges: an operator deleting what a lagging consumer
/// has not read loses it by design, whatever the cluster keeps (the same cell pins that).
#[test]
fn outbox_inbox_and_cdc_tx_on_flushing_brokers_lose_nothing_under_chaos_for_seeds_0_to_50() {
    let beyond_time = |outcome: &faultline::scenarios::Outcome| -> Vec<String> {
        outcome
            .violations
            .iter()
            .filter(|v| v.invariant != "bounded-staleness")
            .map(|v| format!("{} / {} on {}", v.invariant, v.kind, v.key))
            .collect()
    };
    let without_purges = |pattern: &str, scenario: Scenario, seed: u64| {
        let variant = Variant::resolve(pattern, &[]).expect("registered variant");
        let spec = RunSpec::new(variant, scenario, Profile::Chaos, Seed(seed));
        let mut plan = spec.plan();
        plan.events
            .retain(|e| !matches!(e.fault, Fault::Purge { .. } | Fault::PurgeLifted { .. }));
        let spec = RunSpec {
            faults: Faults::Plan(plan),
            ..spec
        };
        run(&spec, RunOptions::default()).expect("run completes")
    };
    for seed in 0..50 {
        let outcome = without_purges(OUTBOX_INBOX_FLUSHING, single_customer_actions(), seed);
        assert!(
            beyond_time(&outcome).is_empty(),
            "seed {seed}: {:#?}",
            outcome.violations
        );
        assert!(
            outcome.metrics.converged_at_ms.is_some(),
            "seed {seed} never converged"
        );
        let mixed = without_purges(OUTBOX_INBOX_FLUSHING, Scenario::standard(), seed);
        assert!(
            beyond_time(&mixed)
                .iter()
                .all(|v| v.starts_with("atomic-actions")),
            "seed {seed}: {:#?}",
            mixed.violations
        );
        let cdc = without_purges(
            "cdc-tx+broker.log.flush.interval.messages=1",
            Scenario::standard(),
            seed,
        );
        assert!(
            beyond_time(&cdc).is_empty(),
            "cdc-tx seed {seed}: {:#?}",
            cdc.violations
        );
    }
}

/// The outbox with an inbox on brokers that fsync every batch.
const OUTBOX_INBOX_FLUSHING: &str = "outbox-inbox+broker.log.flush.interval.messages=1";

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
/// tails, and the outbox with an inbox on flushing brokers loses nothing (with actions on
/// one customer each: see above for actions over two, and for what the cluster's
/// outages cost in staleness).
#[test]
fn power_losses_meet_torn_and_unsynced_tails_and_outbox_inbox_still_holds() {
    let (mut torn, mut unsynced_lost) = (0, 0);
    for pattern in [OUTBOX_INBOX_FLUSHING, "cdc-tx", "full-copy"] {
        let variant = Variant::resolve(pattern, &[]).expect("registered variant");
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
                if pattern == OUTBOX_INBOX_FLUSHING {
                    assert!(
                        outcome
                            .violations
                            .iter()
                            .all(|v| v.invariant == "bounded-staleness"),
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
