//! Every variant's characteristic behaviour, shown through the checker's output and the
//! metrics only, never through a pattern's internals.

use std::collections::BTreeSet;

use crate::run_seed;
use faultline::patterns::VARIANTS;
use faultline::sim::Profile;

/// The `invariant/kind` pairs seen over `seeds`.
fn found(pattern: &str, profile: Profile, seeds: std::ops::Range<u64>) -> BTreeSet<String> {
    seeds
        .flat_map(|s| run_seed(pattern, profile, s).violations)
        .map(|v| format!("{}/{}", v.invariant, v.kind))
        .collect()
}

fn any_of(found: &BTreeSet<String>, invariant: &str) -> bool {
    found.iter().any(|k| k.starts_with(&format!("{invariant}/")))
}

/// Without faults nothing is lost, regressed, stuck or late, for every variant.
/// (Fractured actions, orphans and missed welcomes can be a pattern's design, and are
/// checked per variant below.)
#[test]
fn no_false_alarms_in_a_fault_free_world_for_every_variant() {
    for variant in VARIANTS {
        for seed in 0..20 {
            let outcome = run_seed(variant.name, Profile::None, seed);
            let alarms: Vec<_> = outcome
                .violations
                .iter()
                .filter(|v| {
                    ["convergence", "monotonic", "liveness", "bounded-staleness"].contains(&v.invariant)
                })
                .collect();
            assert!(alarms.is_empty(), "{} seed {seed}: {alarms:#?}", variant.name);
            assert!(
                outcome.metrics.converged_at_ms.is_some(),
                "{} seed {seed} never converged",
                variant.name
            );
        }
    }
}

#[test]
fn full_copy_swaps_atomically_while_inplace_exposes_half_loaded_tables() {
    let atomic = found("full-copy", Profile::None, 0..5);
    assert!(
        !any_of(&atomic, "atomic-actions") && !any_of(&atomic, "referential"),
        "{atomic:?}"
    );
    let inplace = found("full-copy-inplace", Profile::None, 0..5);
    assert!(
        any_of(&inplace, "atomic-actions") && any_of(&inplace, "referential"),
        "{inplace:?}"
    );
    // A customer who lives between two copies is never seen, so never welcomed.
    assert!(atomic.contains("exactly-once-effects/lost"), "{atomic:?}");
    // Crashes delay copies but lose nothing: the next copy repairs the target.
    assert!(!any_of(
        &found("full-copy", Profile::Crashes, 0..10),
        "convergence"
    ));
}

#[test]
fn push_loses_queued_changes_on_crash_and_blind_push_regresses_under_reordering() {
    assert!(any_of(&found("push", Profile::Crashes, 0..10), "convergence"));
    let blind = found("push", Profile::FlakyNet, 0..10);
    assert!(blind.contains("monotonic/regressed"), "{blind:?}");
    let versioned = found("push-versioned", Profile::FlakyNet, 0..10);
    assert!(
        !any_of(&versioned, "monotonic"),
        "the version check stops stale overwrites: {versioned:?}"
    );
    // ...but not lost changes.
    assert!(any_of(
        &found("push-versioned", Profile::Crashes, 0..10),
        "convergence"
    ));
}

#[test]
fn last_writer_wins_holds_under_reordering_but_drops_newer_writes_when_the_clock_jumps() {
    let reordered = found("push-lww", Profile::FlakyNet, 0..10);
    assert!(
        !any_of(&reordered, "monotonic"),
        "stamps order the writes like versions: {reordered:?}"
    );
    let skewed = found("push-lww", Profile::ClockSkew, 0..5);
    assert!(
        any_of(&skewed, "convergence"),
        "a clock stepped back stamps newer writes older: {skewed:?}"
    );
    let versioned = found("push-versioned", Profile::ClockSkew, 0..5);
    assert!(
        !any_of(&versioned, "convergence"),
        "versions do not care about clocks: {versioned:?}"
    );
}

#[test]
fn notify_pull_loses_notifications_on_crash_and_dedup_saves_calls() {
    assert!(any_of(
        &found("notify-pull", Profile::Crashes, 0..10),
        "convergence"
    ));
    let calls = |pattern| {
        (0..5)
            .map(|s| run_seed(pattern, Profile::None, s).metrics.calls)
            .sum::<u64>()
    };
    let (each, dedup) = (calls("notify-pull"), calls("notify-pull-dedup"));
    assert!(dedup < each, "dedup should fetch less: {dedup} calls vs {each}");
    // Fetching rows one by one exposes actions in pieces.
    assert!(any_of(
        &found("notify-pull", Profile::None, 0..3),
        "atomic-actions"
    ));
}

#[test]
fn queue_after_commit_loses_what_was_queued_when_the_source_crashes() {
    let after = found("queue-after-commit", Profile::Crashes, 0..10);
    assert!(
        after.contains("convergence/missing") || after.contains("convergence/stale"),
        "{after:?}"
    );
    assert!(
        !after.contains("convergence/phantom"),
        "it publishes only committed rows: {after:?}"
    );
}

#[test]
fn queue_fail_op_publishes_rows_the_source_never_commits_and_fails_actions() {
    let found_kinds = found("queue-fail-op", Profile::FlakyNet, 0..10);
    assert!(found_kinds.contains("convergence/phantom"), "{found_kinds:?}");
    assert!(
        found_kinds.contains("exactly-once-effects/unexpected"),
        "{found_kinds:?}"
    );
    let failed: u64 = (0..10)
        .map(|s| {
            run_seed("queue-fail-op", Profile::FlakyNet, s)
                .metrics
                .actions_failed_integration
        })
        .sum();
    assert!(failed > 0, "a failed publish fails the business action");
    let after_commit: u64 = (0..10)
        .map(|s| {
            run_seed("queue-after-commit", Profile::FlakyNet, s)
                .metrics
                .actions_failed_integration
        })
        .sum();
    assert_eq!(
        after_commit, 0,
        "publishing after the commit never fails an action"
    );
}

#[test]
fn outbox_without_inbox_applies_duplicates_late_and_the_inbox_absorbs_them() {
    let plain = found("outbox", Profile::FlakyNet, 0..20);
    assert!(plain.contains("monotonic/regressed"), "{plain:?}");
    let inbox = found("outbox-inbox", Profile::FlakyNet, 0..20);
    assert!(inbox.is_empty(), "{inbox:?}");
    let absorbed: u64 = (0..20)
        .map(|s| {
            run_seed("outbox-inbox", Profile::FlakyNet, s)
                .metrics
                .duplicates_absorbed
        })
        .sum();
    assert!(absorbed > 0, "the inbox did real work");
}

#[test]
fn outbox_logtail_republishes_a_batch_after_a_failure() {
    let kinds = found("outbox-logtail", Profile::FlakyNet, 0..10);
    assert!(kinds.contains("monotonic/regressed"), "{kinds:?}");
    // Rows and message still commit together: nothing is lost for good.
    assert!(!any_of(&kinds, "convergence"), "{kinds:?}");
}

#[test]
fn cdc_row_splits_actions_and_cdc_tx_applies_them_whole() {
    let row = found("cdc-row", Profile::FlakyNet, 0..5);
    assert!(any_of(&row, "atomic-actions"), "{row:?}");
    let tx = found("cdc-tx", Profile::FlakyNet, 0..5);
    assert!(!any_of(&tx, "atomic-actions"), "{tx:?}");
    // Both re-read the log after a failed batch: at-least-once without a version check.
    assert!(row.contains("monotonic/regressed") && tx.contains("monotonic/regressed"));
}
