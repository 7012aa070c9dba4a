//! Properties over generated scenarios: a small seeded workload and an explicit fault plan
//! built from generated episodes. proptest shrinks any failure to a minimal plan.

use faultline::patterns::bugs::{Bug, BugSet};
use faultline::patterns::Variant;
use faultline::scenarios::{run, Faults, RunOptions, RunSpec, Scenario};
use faultline::sim::{Fault, FaultEvent, FaultPlan, Seed, SimTime};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestError, TestRunner};

const HOSTS: [&str; 5] = ["source", "target", "broker-1", "broker-2", "broker-3"];

/// One fault episode: what, where, when, how long.
#[derive(Clone, Debug)]
struct Episode {
    kind: u8,
    host: usize,
    other: usize,
    start_ms: u64,
    length_ms: u64,
}

fn episode() -> impl Strategy<Value = Episode> {
    (
        0u8..4,
        0usize..HOSTS.len(),
        0usize..HOSTS.len(),
        100u64..1_500,
        20u64..600,
    )
        .prop_map(|(kind, host, other, start_ms, length_ms)| Episode {
            kind,
            host,
            other,
            start_ms,
            length_ms,
        })
}

/// Episodes as a valid, healed plan: an episode overlapping an earlier one on the same
/// host (or link) is dropped.
fn plan(episodes: &[Episode]) -> FaultPlan {
    let mut busy: Vec<(String, u64, u64)> = Vec::new();
    let mut events = Vec::new();
    for e in episodes {
        let (host, other) = (HOSTS[e.host].to_string(), HOSTS[e.other].to_string());
        let (start, end) = (e.start_ms, e.start_ms + e.length_ms);
        let resource = match e.kind {
            0 | 1 => host.clone(),
            _ if host == other => continue,
            _ => format!(
                "{}-{}",
                host.clone().min(other.clone()),
                host.clone().max(other.clone())
            ),
        };
        // Touching counts as overlapping: a crash and the previous restart at one instant
        // could apply in either order.
        if busy
            .iter()
            .any(|(r, s, t)| *r == resource && start <= *t && *s <= end)
        {
            continue;
        }
        busy.push((resource, start, end));
        let (on, off) = match e.kind {
            0 => (Fault::Crash { host: host.clone() }, Fault::Restart { host }),
            1 => (Fault::PowerLoss { host: host.clone() }, Fault::Restart { host }),
            2 => (
                Fault::Partition {
                    a: host.clone(),
                    b: other.clone(),
                },
                Fault::Heal { a: host, b: other },
            ),
            _ => (
                Fault::Hold {
                    a: host.clone(),
                    b: other.clone(),
                },
                Fault::Release { a: host, b: other },
            ),
        };
        events.push(FaultEvent {
            at: SimTime::from_millis(start),
            fault: on,
        });
        events.push(FaultEvent {
            at: SimTime::from_millis(end),
            fault: off,
        });
    }
    FaultPlan::from_events(events)
}

/// Twenty customers, each action on one of them (an action over two is two outbox
/// events, fractured by design: not the property's subject).
fn small_scenario(actions: u64) -> Scenario {
    Scenario {
        customers: 20,
        actions,
        actions_per_sec: 50,
        cross_customer_pct: 0,
        ..Scenario::standard()
    }
}

fn violations(seed: u64, actions: u64, episodes: &[Episode], bugs: BugSet) -> Vec<String> {
    let spec = RunSpec {
        faults: Faults::Plan(plan(episodes)),
        bugs,
        ..RunSpec::new(
            Variant::resolve(OUTBOX_INBOX_FLUSHING, &[]).unwrap(),
            small_scenario(actions),
            faultline::sim::Profile::None,
            Seed(seed),
        )
    };
    run(&spec, RunOptions::default())
        .expect("generated plans are valid")
        .violations
        .iter()
        .filter(|v| v.invariant != "bounded-staleness")
        .map(|v| format!("{}/{} on {}", v.invariant, v.kind, v.key))
        .collect()
}

/// The outbox with an inbox on brokers that fsync every batch: a plan may take every
/// broker down at once, and Kafka's page-cache default then loses what the last in-sync
/// replica had not written back (pinned in ci.toml, not this property's subject). What
/// the outages cost in staleness is not either: the property is that nothing is lost,
/// doubled, reordered or left unconverged.
const OUTBOX_INBOX_FLUSHING: &str = "outbox-inbox+broker.log.flush.interval.messages=1";

fn scenario_strategy() -> impl Strategy<Value = (u64, u64, Vec<Episode>)> {
    (0u64..1_000, 10u64..60, prop::collection::vec(episode(), 0..6))
}

proptest! {
    // A fixed generator seed: the cases are the same on every run and machine.
    #![proptest_config(Config { cases: 12, failure_persistence: None, rng_seed: RngSeed::Fixed(7), ..Config::default() })]

    /// The idempotent outbox keeps every promise but staleness under any healed crash,
    /// power-loss, partition or hold plan over the source, the target and the brokers.
    #[test]
    fn outbox_inbox_holds_every_invariant_under_generated_fault_plans((seed, actions, episodes) in scenario_strategy()) {
        let found = violations(seed, actions, &episodes, BugSet::NONE);
        prop_assert!(found.is_empty(), "{found:?} under {}", plan(&episodes));
    }
}

/// With a planted bug the same property must fail, and proptest must shrink the failure
/// to a small plan that still shows it.
#[test]
fn a_planted_bug_makes_the_property_fail_and_shrink() {
    let config = Config {
        cases: 64,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(7),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let bug = BugSet::of(&[Bug::RelayMarksBeforePublish]);
    // Power losses of the source: a process crash would still deliver a publish already
    // on the wire (the FIN follows the data); a power loss cuts it off.
    let source_power_loss = episode().prop_map(|e| Episode {
        kind: 1,
        host: 0,
        ..e
    });
    let strategy = (
        0u64..1_000,
        20u64..60,
        prop::collection::vec(source_power_loss, 1..8),
    );
    let result = runner.run(&strategy, |(seed, actions, episodes)| {
        let found = violations(seed, actions, &episodes, bug);
        prop_assert!(found.is_empty(), "{found:?}");
        Ok(())
    });
    match result {
        Err(TestError::Fail(why, (seed, actions, episodes))) => {
            assert!(
                why.message().contains("convergence"),
                "caught by convergence: {}",
                why.message()
            );
            let minimal = plan(&episodes);
            assert!(
                minimal.events.len() <= 4,
                "shrunk to {} fault events:\n{minimal}",
                minimal.events.len()
            );
            assert!(
                !violations(seed, actions, &episodes, bug).is_empty(),
                "the minimal case still fails"
            );
        }
        other => panic!("the planted bug went unnoticed: {other:?}"),
    }
}
