//! Every variant's characteristic behaviour, shown through the checker's output and the
//! metrics only, never through a pattern's internals.

use std::collections::{BTreeMap, BTreeSet};

use crate::{run_seed, run_seed_single};
use faultline::patterns::VARIANTS;
use faultline::sim::Profile;

/// The `invariant/kind` pairs seen over `seeds`, every action on one customer (actions
/// over two have a test of their own, below).
fn found(pattern: &str, profile: Profile, seeds: std::ops::Range<u64>) -> BTreeSet<String> {
    seeds
        .flat_map(|s| run_seed_single(pattern, profile, s).violations)
        .map(|v| format!("{}/{}", v.invariant, v.kind))
        .collect()
}

fn any_of(found: &BTreeSet<String>, invariant: &str) -> bool {
    found.iter().any(|k| k.starts_with(&format!("{invariant}/")))
}

/// `outcome` broke none of `alarms` and converged.
fn assert_quiet(outcome: &faultline::scenarios::Outcome, alarms: &[&str], name: &str, seed: u64) {
    let raised: Vec<_> = outcome
        .violations
        .iter()
        .filter(|v| alarms.contains(&v.invariant))
        .collect();
    assert!(raised.is_empty(), "{name} seed {seed}: {raised:#?}");
    assert!(
        outcome.metrics.converged_at_ms.is_some(),
        "{name} seed {seed} never converged"
    );
}

/// Variants that lose changes without any fault, by design: the relay polling by "last
/// id seen" skips transactions that commit out of id order.
const LOSES_WITHOUT_FAULTS: &[&str] = &["outbox-last-id"];
/// Variants that regress without any fault, by design: concurrent calls with no order
/// per key, to a target that applies whatever arrives.
const REGRESSES_WITHOUT_FAULTS: &[&str] = &["push"];

/// Without faults nothing is lost, regressed, stuck or late, for every variant but the
/// ones whose design does so (checked to really do so below). Fractured actions,
/// orphans and missed welcomes can be a pattern's design, and are checked per variant.
#[test]
fn no_false_alarms_in_a_fault_free_world_for_every_variant() {
    for variant in VARIANTS {
        if LOSES_WITHOUT_FAULTS.contains(&variant.name) {
            continue;
        }
        let mut alarms_checked = vec!["convergence", "liveness", "bounded-staleness"];
        if !REGRESSES_WITHOUT_FAULTS.contains(&variant.name) {
            alarms_checked.push("monotonic");
        }
        for seed in 0..20 {
            let outcome = run_seed(variant.name, Profile::None, seed);
            assert_quiet(&outcome, &alarms_checked, variant.name, seed);
        }
    }
    for name in REGRESSES_WITHOUT_FAULTS {
        assert!(any_of(&found(name, Profile::None, 0..20), "monotonic"), "{name}");
    }
}

/// Ids are taken at insert and long transactions commit late: a relay that remembers
/// the last id it published never reads an id committed behind it; reading only below
/// the oldest open transaction, or marking each message sent, loses nothing.
#[test]
fn a_relay_polling_by_last_id_seen_skips_commits_that_land_out_of_id_order() {
    let naive = found("outbox-last-id", Profile::None, 0..40);
    assert!(naive.contains("convergence/missing"), "{naive:?}");
    for safe in ["outbox-last-id+relay.cursor=visible-id", "outbox-inbox"] {
        let found = found(safe, Profile::None, 0..40);
        assert!(found.is_empty(), "{safe}: {found:?}");
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
    // A customer who lives between two copies is never seen, so never welcomed: counted
    // as unobserved, not held against exactly-once-effects.
    assert!(!any_of(&atomic, "exactly-once-effects"), "{atomic:?}");
    let unobserved: u64 = (0..5)
        .map(|s| {
            run_seed("full-copy", Profile::None, s)
                .metrics
                .unobserved_customers
        })
        .sum();
    assert!(unobserved > 0, "short-lived customers are counted");
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
    // A commit that fails after its publish (a disk error) leaves a row the source
    // never committed.
    let storage = found("queue-fail-op", Profile::Storage, 0..10);
    assert!(storage.contains("convergence/phantom"), "{storage:?}");
    assert!(storage.contains("exactly-once-effects/unexpected"), "{storage:?}");
    // A broker cut off for longer than the 1 s delivery timeout fails the action.
    let failed: u64 = (0..10)
        .map(|s| {
            run_seed("queue-fail-op", Profile::Partitions, s)
                .metrics
                .actions_failed_integration
        })
        .sum();
    assert!(failed > 0, "a failed publish fails the business action");
    let after_commit: u64 = (0..10)
        .map(|s| {
            run_seed("queue-after-commit", Profile::Partitions, s)
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
fn outbox_without_inbox_reapplies_and_rewelcomes_redeliveries_and_the_inbox_absorbs_them() {
    // A relay crash between publish and mark-sent delivers a create again.
    let crashes = found("outbox", Profile::Crashes, 0..10);
    assert!(crashes.contains("exactly-once-effects/doubled"), "{crashes:?}");
    // A rewind after a failed apply or offset commit re-applies older versions.
    let storage = found("outbox", Profile::Storage, 0..10);
    assert!(storage.contains("monotonic/regressed"), "{storage:?}");
    // Broker outages may hold records past the staleness bound; nothing else breaks.
    let inbox = found("outbox-inbox", Profile::Storage, 0..10);
    assert!(
        inbox.iter().all(|k| k.starts_with("bounded-staleness/")),
        "{inbox:?}"
    );
    let absorbed: u64 = (0..10)
        .map(|s| {
            run_seed_single("outbox-inbox", Profile::Storage, s)
                .metrics
                .duplicates_absorbed
        })
        .sum();
    assert!(absorbed > 0, "the inbox did real work");
}

#[test]
fn the_idempotent_producer_retries_in_place_so_message_loss_alone_never_reorders() {
    // One consumer instance: a second one applies over the network to the target's
    // database, where a late apply regresses a blind target whatever the producer does
    // (the flaky-net cells in the suites show it).
    for pattern in [
        "outbox+consumer.instances=1",
        "outbox-logtail+consumer.instances=1",
        "cdc-tx",
    ] {
        let kinds = found(pattern, Profile::FlakyNet, 0..10);
        assert!(!any_of(&kinds, "monotonic"), "{pattern}: {kinds:?}");
    }
}

#[test]
fn outbox_logtail_replays_since_its_last_offset_flush_after_a_crash() {
    // Kafka Connect flushes the relay's position every 60 s: a crash replays from the
    // run's start, and a blind target regresses and re-creates deleted children.
    let kinds = found("outbox-logtail", Profile::Crashes, 0..10);
    assert!(kinds.contains("monotonic/regressed"), "{kinds:?}");
    assert!(kinds.contains("referential/orphan"), "{kinds:?}");
    // Rows and message still commit together: nothing is lost for good.
    assert!(!any_of(&kinds, "convergence"), "{kinds:?}");
}

#[test]
fn cdc_row_splits_actions_and_cdc_tx_applies_them_whole_and_once() {
    let row = found("cdc-row", Profile::FlakyNet, 0..5);
    assert!(any_of(&row, "atomic-actions"), "{row:?}");
    // Connector replays after crashes: row events re-applied out of date; the
    // transaction-aware sink reassembles and skips what its inbox holds.
    let row_crashes = found("cdc-row", Profile::Crashes, 0..5);
    assert!(row_crashes.contains("monotonic/regressed"), "{row_crashes:?}");
    // Nothing lost, doubled or reordered; what three broker hosts' outages cost in
    // staleness under chaos is the suites' (ci.toml "outbox-inbox under chaos").
    for profile in [Profile::FlakyNet, Profile::Crashes, Profile::Chaos] {
        let tx = found("cdc-tx", profile, 0..5);
        assert!(
            tx.iter().all(|k| k.starts_with("bounded-staleness/")),
            "{}: {tx:?}",
            profile.name()
        );
    }
    let absorbed: u64 = (0..5)
        .map(|s| {
            run_seed("cdc-tx", Profile::Crashes, s)
                .metrics
                .duplicates_absorbed
        })
        .sum();
    assert!(absorbed > 0, "replayed events met the inbox");
}

#[test]
fn push_ordered_serialises_a_customer_s_calls_so_only_late_arrivals_regress_or_orphan() {
    let blind = found("push", Profile::FlakyNet, 0..10);
    assert!(blind.contains("monotonic/regressed"), "{blind:?}");
    assert!(any_of(&blind, "referential"), "{blind:?}");
    // Without message delays, a customer's calls never overtake each other: nothing
    // regresses, no child arrives after its customer's delete...
    let partitioned = found("push-ordered", Profile::Partitions, 0..10);
    assert!(
        !any_of(&partitioned, "monotonic") && !any_of(&partitioned, "referential"),
        "{partitioned:?}"
    );
    // ...but a PUT the wire held past its timeout lands after its retry and the next
    // version, or after the delete: only the version check stops that.
    let ordered = found("push-ordered", Profile::FlakyNet, 0..10);
    assert!(ordered.contains("monotonic/regressed"), "{ordered:?}");
    let versioned = found("push-ordered-versioned", Profile::FlakyNet, 0..10);
    assert!(
        !any_of(&versioned, "monotonic") && !any_of(&versioned, "referential"),
        "{versioned:?}"
    );
}

#[test]
fn connect_s_offset_flush_interval_sets_how_much_a_crash_replays() {
    use faultline::patterns::cdc::CdcConfig;
    use faultline::patterns::{PatternConfig, Variant};
    use faultline::scenarios::{run, RunOptions, RunSpec, Scenario};
    use faultline::sim::Seed;

    let base = Variant::by_name("cdc-tx").unwrap();
    let PatternConfig::Cdc(config) = base.config else {
        unreachable!("cdc-tx is a CDC variant")
    };
    assert_eq!(config.offset_flush_interval_ms, 60_000, "Kafka Connect's default");
    let frequent: &'static Variant = Box::leak(Box::new(Variant {
        config: PatternConfig::Cdc(CdcConfig {
            offset_flush_interval_ms: 100,
            ..config
        }),
        ..*base
    }));
    // The events a crashed connector publishes again reach the sink's inbox as copies.
    let replayed = |variant: &'static Variant| -> u64 {
        (0..5)
            .map(|s| {
                let spec = RunSpec::new(variant, Scenario::standard(), Profile::Crashes, Seed(s));
                run(&spec, RunOptions::default())
                    .unwrap()
                    .metrics
                    .duplicates_absorbed
            })
            .sum()
    };
    let (default, every_100ms) = (replayed(base), replayed(frequent));
    assert!(
        default > 2 * every_100ms,
        "a 60 s flush replays far more after a crash: {default} copies vs {every_100ms}"
    );
}

#[test]
fn a_variant_that_reads_no_wall_clock_behaves_under_clock_skew_exactly_as_without_faults() {
    // What lets reports show "n/a" instead of a pass: the column cannot reach it.
    for variant in faultline::patterns::VARIANTS {
        for seed in 0..3 {
            let skewed = run_seed(variant.name, Profile::ClockSkew, seed);
            let calm = run_seed(variant.name, Profile::None, seed);
            // The runs may end at different instants (a run ends after its last fault),
            // so traffic counts differ; what the checker finds must not.
            let kinds = |o: &faultline::scenarios::Outcome| -> Vec<(String, String, String)> {
                o.violations
                    .iter()
                    .map(|v| (v.invariant.to_string(), v.kind.to_string(), v.key.clone()))
                    .collect()
            };
            let same = kinds(&skewed) == kinds(&calm)
                && skewed.metrics.staleness_histogram == calm.metrics.staleness_histogram
                && skewed.metrics.never_visible == calm.metrics.never_visible;
            if !variant.reads_wall_clock() {
                assert!(
                    same,
                    "{} seed {seed}: clock skew changed a run that reads no clock",
                    variant.name
                );
            }
        }
    }
    // And the one that reads a clock feels it.
    let felt = (0..5).any(|seed| {
        run_seed("push-lww", Profile::ClockSkew, seed).violations.len()
            != run_seed("push-lww", Profile::None, seed).violations.len()
    });
    assert!(
        felt,
        "push-lww compares wall clocks: skew must change its verdicts"
    );
}

/// An inbox whose entries a cleanup job deletes after 200 ms lets a copy redelivered
/// after a crash apply again. Crashes seed 1: target-2 loses power at 5020 ms and, back,
/// re-reads from its committed offset; the entry for msg-91 (customer/34 v2) is gone,
/// and v2 is applied over v3 at 7645 ms. Kept for the run (the preset), the same copy,
/// redelivered at 7489 ms, is skipped (its only breaks there are actions over two
/// customers, fractured by design, and time).
#[test]
fn an_inbox_cleaned_up_before_a_redelivery_applies_the_copy_again() {
    let kept = run_seed("outbox-inbox", Profile::Crashes, 1);
    assert!(
        kept.violations
            .iter()
            .all(|v| v.invariant == "atomic-actions" || v.invariant == "bounded-staleness"),
        "{:#?}",
        kept.violations
    );
    let cleaned = run_seed(
        "outbox-inbox+target.inbox.cleanup.after.ms=200",
        Profile::Crashes,
        1,
    );
    assert!(
        cleaned.violations.iter().any(|v| v.invariant == "monotonic"),
        "{:#?}",
        cleaned.violations
    );
}

/// Auto-commit (Kafka's default) commits what was handed to the handler every 5 s, so a
/// crashed target's consumer re-reads up to 5 s of records, where committing after each
/// batch re-reads at most the batch in hand. The inbox skips them either way: counted.
#[test]
fn auto_commit_redelivers_more_after_a_crash_and_the_inbox_absorbs_it() {
    let skipped = |pattern: &str| -> u64 {
        (0..6)
            .map(|seed| {
                let outcome = run_seed_single(pattern, Profile::Crashes, seed);
                // Broker outages may hold records past the staleness bound; nothing is
                // lost or doubled.
                assert!(
                    outcome
                        .violations
                        .iter()
                        .all(|v| v.invariant == "bounded-staleness"),
                    "{pattern} seed {seed}: {:#?}",
                    outcome.violations
                );
                outcome
                    .events_by_kind
                    .get("inbox-duplicate")
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    };
    let after_processing = skipped("outbox-inbox");
    let auto = skipped("outbox-inbox+consumer.offset.commit=auto");
    assert!(
        auto > 2 * after_processing.max(1),
        "auto {auto}, after processing {after_processing}"
    );
}

/// A welcome keyed by its customer goes out once whatever is redelivered: under crashes
/// `outbox` (no inbox) welcomes again after a redelivered create; keyed per customer
/// (`target.welcome.key = customer`) it never does.
#[test]
fn a_welcome_keyed_by_customer_is_never_doubled_by_a_redelivery() {
    let doubled = |pattern: &str| {
        (0..10)
            .filter(|seed| {
                run_seed_single(pattern, Profile::Crashes, *seed)
                    .violations
                    .iter()
                    .any(|v| v.invariant == "exactly-once-effects" && v.kind == "doubled")
            })
            .count()
    };
    assert!(doubled("outbox") > 0);
    assert_eq!(doubled("outbox+target.welcome.key=customer"), 0);
}

/// A topic's `retention.ms` deletes what a consumer cut off too long has not read, and
/// `auto.offset.reset` says where it resumes: `earliest` loses only what was deleted,
/// `latest` also skips what the topic still held. The target is down from 1 s to 4 s;
/// retention is 1 s. Without retention (the preset) nothing is lost.
#[test]
fn retention_outrunning_a_cut_off_consumer_loses_changes_and_latest_skips_more() {
    use faultline::patterns::Variant;
    use faultline::scenarios::{run, Faults, RunOptions, RunSpec, Scenario};
    use faultline::sim::{Fault, FaultEvent, FaultPlan, Seed, SimTime};
    let plan = FaultPlan::from_events(vec![
        FaultEvent {
            at: SimTime::from_millis(1_000),
            fault: Fault::Crash {
                host: "target".into(),
            },
        },
        FaultEvent {
            at: SimTime::from_millis(4_000),
            fault: Fault::Restart {
                host: "target".into(),
            },
        },
    ]);
    // Changes missing, offset resets, poll skips Kafka-wise, and missing changes whose
    // story names the poll skip.
    let lost = |pattern: &str| -> (usize, usize, u64, usize) {
        let variant = Variant::resolve(pattern, &[]).unwrap();
        let (mut missing, mut resets, mut skips, mut named) = (0, 0, 0, 0);
        for seed in 0..3 {
            let spec = RunSpec {
                faults: Faults::Plan(plan.clone()),
                ..RunSpec::new(variant, Scenario::standard(), Profile::None, Seed(seed))
            };
            let outcome = run(&spec, RunOptions::default()).unwrap();
            let gone = || {
                outcome
                    .violations
                    .iter()
                    .filter(|v| v.invariant == "convergence" && v.kind == "missing")
            };
            missing += gone().count();
            named += gone().filter(|v| v.story.contains("Kafka: poll skip")).count();
            resets += outcome.events_by_kind.get("offset-reset").copied().unwrap_or(0) as usize;
            skips += outcome.kafka_anomalies.get("poll skip").copied().unwrap_or(0);
        }
        (missing, resets, skips, named)
    };
    assert_eq!(lost("outbox-inbox"), (0, 0, 0, 0));
    let (earliest, earliest_resets, earliest_skips, earliest_named) =
        lost("outbox-inbox+topic.retention.ms=1000");
    let (latest, latest_resets, latest_skips, latest_named) =
        lost("outbox-inbox+topic.retention.ms=1000+consumer.auto.offset.reset=latest");
    assert!(
        earliest_resets > 0 && latest_resets > 0,
        "the consumers were reset"
    );
    // A reset jumps a consumer over what it never read: Jepsen's poll skip, and the
    // story of a change lost there says so.
    assert!(
        earliest_skips > 0 && latest_skips > 0,
        "{earliest_skips} {latest_skips}"
    );
    assert!(
        earliest_named > 0 && latest_named > 0,
        "{earliest_named} {latest_named}"
    );
    assert!(
        earliest > 0,
        "retention deleted records the consumer had not read"
    );
    assert!(latest > earliest, "latest {latest}, earliest {earliest}");
}

/// `hosts` crashed at `from_ms` and restarted at `to_ms`.
fn outage(hosts: &[&str], from_ms: u64, to_ms: u64) -> Vec<faultline::sim::FaultEvent> {
    use faultline::sim::{Fault, FaultEvent, SimTime};
    let at = |ms: u64, fault: Fault| FaultEvent {
        at: SimTime::from_millis(ms),
        fault,
    };
    hosts
        .iter()
        .flat_map(|&host| {
            [
                at(from_ms, Fault::Crash { host: host.into() }),
                at(to_ms, Fault::Restart { host: host.into() }),
            ]
        })
        .collect()
}

/// Seeds 0..3 of `pattern` in the standard scenario under exactly `events`.
fn runs_under(pattern: &str, events: &[faultline::sim::FaultEvent]) -> Vec<faultline::scenarios::Outcome> {
    use faultline::patterns::Variant;
    use faultline::scenarios::{run, Faults, RunOptions, RunSpec, Scenario};
    use faultline::sim::{FaultPlan, Seed};
    let variant = Variant::resolve(pattern, &[]).unwrap();
    (0..3)
        .map(|seed| {
            let spec = RunSpec {
                faults: Faults::Plan(FaultPlan::from_events(events.to_vec())),
                ..RunSpec::new(variant, Scenario::standard(), Profile::None, Seed(seed))
            };
            run(&spec, RunOptions::default()).unwrap()
        })
        .collect()
}

/// How many events of `kind` the runs' traces hold.
fn events_of(outcomes: &[faultline::scenarios::Outcome], kind: &str) -> usize {
    outcomes
        .iter()
        .map(|o| o.events_by_kind.get(kind).copied().unwrap_or(0) as usize)
        .sum()
}

/// How many violations of `invariant` / `kind` the runs found.
fn violations_of(outcomes: &[faultline::scenarios::Outcome], invariant: &str, kind: &str) -> usize {
    outcomes
        .iter()
        .flat_map(|o| &o.violations)
        .filter(|v| v.invariant == invariant && v.kind == kind)
        .count()
}

/// Retention by size and an operator's purge reach a lagging consumer the same way
/// as retention by age: the target is down from 1 s to 4 s (its partitions wait for
/// target-2 to notice), and either every partition keeps 2 KB, or every broker keeps
/// only its last 500 ms of data from 1.5 s to 3.5 s (`log.retention.ms` cut short when
/// a disk fills). The same outage with neither loses nothing (the test above).
#[test]
fn retention_by_size_and_a_purge_delete_what_a_lagging_consumer_has_not_read() {
    use faultline::sim::{Fault, FaultEvent, SimTime};
    let target_down = outage(&["target"], 1_000, 4_000);
    let mut purged = target_down.clone();
    for broker in ["broker-1", "broker-2", "broker-3"] {
        let at = |ms: u64, fault: Fault| FaultEvent {
            at: SimTime::from_millis(ms),
            fault,
        };
        purged.push(at(
            1_500,
            Fault::Purge {
                host: broker.into(),
                keep_ms: 500,
            },
        ));
        purged.push(at(3_500, Fault::PurgeLifted { host: broker.into() }));
    }
    for (pattern, events) in [
        ("outbox-inbox+topic.retention.bytes=2048", &target_down),
        ("outbox-inbox", &purged),
    ] {
        let runs = runs_under(pattern, events);
        let (missing, deleted) = (
            violations_of(&runs, "convergence", "missing"),
            events_of(&runs, "retention-deleted"),
        );
        assert!(
            deleted > 0 && missing > 0,
            "{pattern}: {missing} missing, {deleted} deletions"
        );
    }
}

/// `offsets.retention.minutes`: both instances of the target's service are down from
/// 1 s to 5 s, their sessions run out and the group is empty; with offsets kept 1 s
/// after that, the group's offsets are deleted, and the restarted consumers find none.
/// `latest` skips everything written while the group was away; `earliest` reads the
/// whole topic again, which the inbox absorbs. With the preset (offsets kept) nothing
/// expires.
#[test]
fn a_group_away_longer_than_offsets_retention_loses_its_offsets() {
    let group_away = outage(&["target", "target-2"], 1_000, 5_000);
    // Changes missing, offsets expired, and resets.
    let expired = |pattern: &str| -> (usize, usize, usize) {
        let runs = runs_under(pattern, &group_away);
        (
            violations_of(&runs, "convergence", "missing"),
            events_of(&runs, "offset-expired"),
            events_of(&runs, "offset-reset"),
        )
    };
    assert_eq!(expired("outbox-inbox"), (0, 0, 0));
    let (earliest_missing, earliest_expired, earliest_resets) =
        expired("outbox-inbox+broker.offsets.retention.ms=1000");
    assert!(
        earliest_expired > 0 && earliest_resets > 0,
        "{earliest_expired} {earliest_resets}"
    );
    assert_eq!(earliest_missing, 0, "earliest reads everything again");
    let (latest_missing, latest_expired, _) =
        expired("outbox-inbox+broker.offsets.retention.ms=1000+consumer.auto.offset.reset=latest");
    assert!(latest_expired > 0);
    assert!(
        latest_missing > 0,
        "latest skips what was written while the group was away"
    );
}

/// Compaction, with the target's service down from 1 s to 4 s (both instances): on an
/// outbox topic, whose records are events keyed by customer, the cleaner keeps only
/// each customer's last event and the earlier changes are lost; on a CDC topic, whose
/// records are row images keyed by row, the last image is the row and the consumer
/// converges, deletes coming as tombstones; unless the tombstones are dropped
/// (`delete.retention.ms`) before the consumer is back: those rows live on at the
/// target, and the consumer's jump over them is a poll skip.
#[test]
fn compaction_loses_events_keeps_row_state_and_drops_tombstones_after_delete_retention() {
    let group_away = outage(&["target", "target-2"], 1_000, 4_000);
    // Convergence violations by kind, records the cleaner removed, and poll skips.
    let outcome = |pattern: &str| -> (BTreeMap<&'static str, usize>, usize, u64) {
        let runs = runs_under(pattern, &group_away);
        let mut kinds = BTreeMap::new();
        for v in runs
            .iter()
            .flat_map(|o| &o.violations)
            .filter(|v| v.invariant == "convergence")
        {
            *kinds.entry(v.kind).or_insert(0) += 1;
        }
        let skips = runs
            .iter()
            .map(|o| o.kafka_anomalies.get("poll skip").copied().unwrap_or(0))
            .sum();
        (kinds, events_of(&runs, "log-cleaned"), skips)
    };
    let (events_kinds, events_cleaned, events_skips) = outcome("outbox-inbox+topic.cleanup.policy=compact");
    assert!(events_cleaned > 0);
    assert!(
        events_kinds.get("missing").is_some_and(|&n| n > 0),
        "{events_kinds:?}"
    );
    assert_eq!(events_skips, 0, "what compaction removed is no skip");
    let (rows_kinds, rows_cleaned, rows_skips) = outcome("cdc-row+topic.cleanup.policy=compact");
    assert!(rows_cleaned > 0);
    assert!(
        rows_kinds.is_empty(),
        "the last image of each row is the row: {rows_kinds:?}"
    );
    assert_eq!(rows_skips, 0);
    let (dropped_kinds, _, dropped_skips) =
        outcome("cdc-row+topic.cleanup.policy=compact+topic.delete.retention.ms=500");
    assert!(
        dropped_kinds.get("resurrected").is_some_and(|&n| n > 0),
        "deletes never read: {dropped_kinds:?}"
    );
    assert!(
        dropped_skips > 0,
        "the jump over a dropped tombstone is a poll skip"
    );
}

/// A deployed defect fails one key in eight on every attempt until the fix: blocking
/// holds (late, nothing lost), skipping loses the change, and re-driving dead letters
/// after the fix applies them behind the versions that followed them.
#[test]
fn poison_records_block_a_partition_or_are_lost_when_skipped_or_reordered_when_dead_lettered() {
    let seeds = 0..10;
    let block = found("outbox-inbox", Profile::Ops, seeds.clone());
    assert!(block.is_empty(), "{block:?}");
    let events = |pattern: &str, kind: &str| -> u64 {
        seeds
            .clone()
            .map(|s| {
                run_seed_single(pattern, Profile::Ops, s)
                    .events_by_kind
                    .get(kind)
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    };
    let skip = "outbox-inbox+consumer.error.policy=skip";
    assert!(events(skip, "record-skipped") > 0);
    let skipped = found(skip, Profile::Ops, seeds.clone());
    assert!(any_of(&skipped, "convergence"), "{skipped:?}");
    assert!(!any_of(&skipped, "monotonic"), "{skipped:?}");
    let dead_letter = "outbox-inbox+consumer.error.policy=dead-letter";
    assert!(events(dead_letter, "dead-lettered") > 0);
    assert!(events(dead_letter, "dead-letter-replayed") > 0);
    let redriven = found(dead_letter, Profile::Ops, seeds);
    assert!(redriven.contains("monotonic/regressed"), "{redriven:?}");
}

/// Two application instances each running the relay: without a lease both publish what
/// they find, so a consumer without an inbox applies copies (old versions again, welcomes
/// again); with a lease one publishes at a time, until clocks disagree about its expiry.
#[test]
fn two_relays_publish_twice_without_a_lease_and_a_lease_holds_until_clocks_disagree() {
    let unleased = found("outbox+relay.instances=2", Profile::None, 0..5);
    assert!(unleased.contains("monotonic/regressed"), "{unleased:?}");
    assert!(unleased.contains("exactly-once-effects/doubled"), "{unleased:?}");
    let leased = "outbox+relay.instances=2+relay.lease.ms=2000";
    let quiet = found(leased, Profile::None, 0..5);
    assert!(quiet.is_empty(), "{quiet:?}");
    let inbox = found("outbox-inbox+relay.instances=2", Profile::None, 0..5);
    assert!(inbox.is_empty(), "{inbox:?}");
    // A clock running ahead sees the holder's lease expired and takes it too.
    let skewed = found(leased, Profile::ClockSkew, 0..10);
    assert!(any_of(&skewed, "exactly-once-effects"), "{skewed:?}");
}

/// A run from an empty target (a `bootstrap` scenario) under no faults.
fn bootstrap_seed(pattern: &str, seed: u64) -> faultline::scenarios::Outcome {
    let scenario = faultline::scenarios::scenario::Scenario {
        bootstrap: true,
        ..faultline::scenarios::scenario::Scenario::standard()
    };
    run_in(pattern, scenario, Profile::None, seed)
}

/// A run of `pattern` in `scenario`, its trace kept.
fn run_in(
    pattern: &str,
    scenario: faultline::scenarios::scenario::Scenario,
    profile: Profile,
    seed: u64,
) -> faultline::scenarios::Outcome {
    let variant = faultline::patterns::Variant::resolve(pattern, &[]).expect("registered variant");
    faultline::scenarios::run(
        &faultline::scenarios::RunSpec::new(variant, scenario, profile, faultline::sim::Seed(seed)),
        faultline::scenarios::RunOptions {
            keep_trace: true,
            ..faultline::scenarios::RunOptions::default()
        },
    )
    .expect("run completes")
}

/// Every variant fills an empty target and converges without faults: nothing lost (the
/// handover's orphans, fractures, welcomes and the in-place copy's lateness are
/// per-pattern findings the review suite explains). The CDC connector snapshots, then
/// streams from the snapshot's position; the others copy beside the running
/// integration.
#[test]
fn every_variant_fills_an_empty_target_and_converges_without_faults() {
    for variant in VARIANTS {
        if LOSES_WITHOUT_FAULTS.contains(&variant.name) {
            continue;
        }
        for seed in 0..3 {
            let outcome = bootstrap_seed(variant.name, seed);
            assert_quiet(&outcome, &["convergence", "liveness"], variant.name, seed);
        }
    }
    // The connector snapshotted the initial rows; the copy job inserted them.
    let cdc = bootstrap_seed("cdc-tx", 0);
    assert!(
        cdc.trace
            .iter()
            .any(|e| e.kind == "snapshot" && e.detail.starts_with("rows=600 ")),
        "the connector took its initial snapshot of the 200 customers' rows"
    );
    let outbox = bootstrap_seed("outbox-inbox", 0);
    assert!(
        outbox.trace.iter().any(|e| e.kind == "bootstrap-copy"),
        "the one-off copy job ran"
    );
}

/// The `invariant/kind` pairs seen over `seeds` in the standard scenario with three
/// actions in ten over two customers.
fn found_across(pattern: &str, profile: Profile, seeds: std::ops::Range<u64>) -> BTreeSet<String> {
    let scenario = faultline::scenarios::scenario::Scenario {
        cross_customer_pct: 30,
        ..faultline::scenarios::scenario::Scenario::standard()
    };
    seeds
        .flat_map(|seed| run_in(pattern, scenario.clone(), profile, seed).violations)
        .map(|v| format!("{}/{}", v.invariant, v.kind))
        .collect()
}

/// Actions over two customers (a contact moved, two customers merged) span two
/// partitions. The outbox's events, one per customer, keep each customer's order but
/// apply such an action in two local transactions (fractured, nothing else); one event
/// per transaction applies it whole but carries the second customer's change in the
/// first's partition, out of order with that customer's own; Debezium's row events
/// applied one by one fracture it; cdc-tx reassembles it across partitions from the
/// transaction metadata, in every partition's order, and holds. Without faults.
#[test]
fn actions_across_customers_fracture_per_aggregate_events_reorder_per_transaction_ones_and_cdc_tx_reassembles_them(
) {
    let per_aggregate = found_across("outbox-inbox", Profile::None, 0..5);
    assert!(
        !per_aggregate.is_empty() && per_aggregate.iter().all(|k| k == "atomic-actions/fractured"),
        "{per_aggregate:?}"
    );
    let per_transaction = found_across("outbox-inbox+outbox.events=per-transaction", Profile::None, 0..10);
    assert!(
        ["monotonic", "convergence", "referential"]
            .iter()
            .any(|invariant| any_of(&per_transaction, invariant)),
        "{per_transaction:?}"
    );
    let rows = found_across("cdc-row", Profile::None, 0..5);
    assert!(any_of(&rows, "atomic-actions"), "{rows:?}");
    let reassembled = found_across("cdc-tx", Profile::None, 0..5);
    assert!(reassembled.is_empty(), "{reassembled:?}");
    let under_chaos = found_across("cdc-tx", Profile::Chaos, 0..5);
    assert!(!any_of(&under_chaos, "atomic-actions"), "{under_chaos:?}");
}

/// An unclean leader election loses acknowledged records: Jepsen's lost write, found
/// from what the clients saw (an offset acknowledged to the producer later read as
/// another record), and named in the stories of the changes it lost.
#[test]
fn an_unclean_election_shows_as_kafka_lost_writes_in_the_stories() {
    use faultline::patterns::Variant;
    use faultline::scenarios::{run, RunOptions, RunSpec, Scenario};
    use faultline::sim::Seed;
    let variant = Variant::resolve(
        "outbox-inbox+broker.log.flush.interval.messages=1+topic.unclean.leader.election.enable=true",
        &[],
    )
    .unwrap();
    let scenario = Scenario {
        cross_customer_pct: 0,
        ..Scenario::standard()
    };
    // ci.toml's "broker settings under crashes" shows the loss on seed 39.
    let outcome = run(
        &RunSpec::new(variant, scenario, Profile::Crashes, Seed(39)),
        RunOptions::default(),
    )
    .unwrap();
    assert!(
        outcome.kafka_anomalies.get("lost write").copied().unwrap_or(0) > 0,
        "{:?}",
        outcome.kafka_anomalies
    );
    let named = outcome
        .violations
        .iter()
        .filter(|v| v.invariant == "convergence" && v.story.contains("Kafka: lost write"))
        .count();
    assert!(named > 0, "a lost change's story names the lost write");
}
