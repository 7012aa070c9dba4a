//! Crash recovery of each system, in a real world with real faults.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use faultline_patterns::bugs::BugSet;
use faultline_patterns::domain::{Action, ActionId, ActionRequest, CustomerId};
use faultline_patterns::history::{Recorder, Rows};
use faultline_patterns::systems::broker::{
    install_logs, run_broker, BrokerClient, BrokerError, ClusterConfig, Producer, ProducerConfig, CLUSTER,
    CONNECT_SOURCE_PRODUCER, KAFKA_PRODUCER, OFFSETS_TOPIC,
};
use faultline_patterns::systems::controller::{replicas, run_controller};
use faultline_patterns::systems::group::{Fenced, HEARTBEAT_INTERVAL_MS};
use faultline_patterns::systems::source::{
    install_slots, LogGone, LogRetention, OutboxEvents, Source, SourceConfig, SyncPolicy,
    POSTGRES_LOG_RETENTION, SOURCE_LOG,
};
use faultline_patterns::{Setup, Variant};
use faultline_sim::{Fault, FaultEvent, FaultPlan, Seed, SimTime, World, WorldConfig};

/// One broker that syncs every batch: what these tests' broker was before replication,
/// so a power loss of it tests its own recovery.
const ONE_SYNCED_BROKER: ClusterConfig = ClusterConfig {
    brokers: 1,
    min_insync_replicas: 1,
    flush_every_batch: true,
    ..CLUSTER
};

/// Registers a Kafka cluster: its controller and `broker-1`...
fn install_cluster(world: &mut World, cluster: ClusterConfig) {
    world
        .host("controller", move |ctx| {
            run_controller(
                ctx,
                cluster.brokers,
                cluster.unclean_leader_election,
                vec![("t".to_string(), 1)],
            )
        })
        .unwrap();
    for n in 1..=cluster.brokers {
        let name = format!("broker-{n}");
        world
            .host(&name, move |ctx| {
                run_broker(ctx, BugSet::NONE, cluster, Default::default())
            })
            .unwrap();
        install_logs(world.disk(&name).unwrap(), &[("t".to_string(), 1)]);
    }
}

fn at(ms: u64, fault: Fault) -> FaultEvent {
    FaultEvent {
        at: SimTime::from_millis(ms),
        fault,
    }
}

fn creates(count: u64, every_ms: u64) -> Rc<Vec<(SimTime, ActionRequest)>> {
    Rc::new(
        (0..count)
            .map(|i| {
                let action = Action::CreateCustomer {
                    customer: CustomerId(i),
                    name: format!("n{i}"),
                    street: "s".into(),
                    phone: "p".into(),
                    email: "e".into(),
                };
                (
                    SimTime::from_millis(i * every_ms),
                    ActionRequest {
                        id: ActionId(i),
                        action,
                        hold_ms: 0,
                    },
                )
            })
            .collect(),
    )
}

/// The source's rows as a power loss now would leave them: its durable log content
/// decoded here, not by the source's own recovery.
fn durable_rows(disk: &faultline_sim::Disk) -> Rows {
    let mut rows = Rows::new();
    for frame in faultline_sim::disk::frames(&disk.durable_content(SOURCE_LOG)) {
        let record: serde_json::Value = serde_json::from_slice(frame).unwrap();
        let Some(images) = record.get("Commit").and_then(|c| c.get("rows")) else {
            continue;
        };
        let images: Vec<faultline_patterns::domain::RowImage> =
            serde_json::from_value(images.clone()).unwrap();
        for image in images {
            rows.insert(
                image.key,
                faultline_patterns::history::RowState {
                    version: image.version,
                    data: image.data,
                },
            );
        }
    }
    rows
}

/// Runs a lone source through a power loss at 205 ms; returns the recorder and world.
fn source_through_power_loss(sync: SyncPolicy) -> (Recorder, World) {
    source_with_workers_through_power_loss(sync, 1, creates(40, 10))
}

/// As [`source_through_power_loss`], with `workers` concurrent transactions.
fn source_with_workers_through_power_loss(
    sync: SyncPolicy,
    workers: usize,
    schedule: Rc<Vec<(SimTime, ActionRequest)>>,
) -> (Recorder, World) {
    let recorder = Recorder::new(Rows::new());
    let mut world = World::new(WorldConfig::new(Seed(3)));
    let host_recorder = recorder.clone();
    world
        .host("source", move |ctx| {
            let recorder = host_recorder.clone();
            let schedule = Rc::clone(&schedule);
            async move {
                let source = Source::recover(
                    &ctx,
                    SourceConfig {
                        sync,
                        outbox: false,
                        outbox_events: OutboxEvents::PerAggregate,
                        stamp_writes: false,
                        workers,
                        log_retention: POSTGRES_LOG_RETENTION,
                        bugs: BugSet::NONE,
                    },
                    recorder,
                )
                .await;
                let syncer = source.clone();
                tokio::task::spawn_local(async move { syncer.run_sync_loop().await });
                source.run_workload(schedule, None, |_| {}).await;
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    world.set_plan(FaultPlan::from_events(vec![
        at(
            205,
            Fault::PowerLoss {
                host: "source".into(),
            },
        ),
        at(
            250,
            Fault::Restart {
                host: "source".into(),
            },
        ),
    ]));
    // Long enough for the periodic sync after the restart to make later commits durable.
    world.run_until(SimTime::from_millis(1_500), |_| false).unwrap();
    (recorder, world)
}

/// Four connections, every fourth transaction open 41 ms after its insert: ids commit
/// out of order, every acknowledged commit survives the power loss, and the sequence
/// resumes after the highest id committed, not after the last record replayed (action
/// 16's, begun at 160 ms, is the last before the power loss at 205 ms).
#[test]
fn concurrent_transactions_commit_out_of_id_order_and_recovery_resumes_after_the_highest_id() {
    let schedule: Vec<_> = creates(40, 10)
        .iter()
        .cloned()
        .map(|(at, mut request)| {
            request.hold_ms = if request.id.0 % 4 == 0 { 41 } else { 0 };
            (at, request)
        })
        .collect();
    let (recorder, world) =
        source_with_workers_through_power_loss(SyncPolicy::OnCommit, 4, Rc::new(schedule));
    let rows = durable_rows(world.disk("source").unwrap());
    let history = recorder.finish(rows, Rows::new(), SimTime::ZERO, SimTime::ZERO);
    let acknowledged = history.outcomes.iter().filter(|o| o.result.is_ok()).count();
    assert!(acknowledged >= 25, "{acknowledged} acknowledged");
    let durable = history.durable_commits();
    assert_eq!(durable.iter().filter(|d| **d).count(), acknowledged);
    let before: Vec<_> = history
        .commits
        .iter()
        .filter(|c| c.at < SimTime::from_millis(205))
        .map(|c| c.tx)
        .collect();
    assert!(
        before.windows(2).any(|w| w[0] > w[1]),
        "long transactions commit after later ids: {before:?}"
    );
    let highest = before.iter().max().expect("commits before the power loss");
    let after: Vec<_> = history
        .commits
        .iter()
        .filter(|c| c.at > SimTime::from_millis(250))
        .map(|c| c.tx)
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|tx| tx > highest),
        "{highest} then {after:?}"
    );
}

#[test]
fn source_replays_its_log_and_every_acknowledged_commit_survives_power_loss_with_sync_on_commit() {
    let (recorder, world) = source_through_power_loss(SyncPolicy::OnCommit);
    let rows = durable_rows(world.disk("source").unwrap());
    let history = recorder.finish(rows.clone(), Rows::new(), SimTime::ZERO, SimTime::ZERO);
    let acknowledged: Vec<_> = history.outcomes.iter().filter(|o| o.result.is_ok()).collect();
    assert!(
        acknowledged.len() >= 30,
        "actions before the crash and after the restart commit"
    );
    let durable = history.durable_commits();
    assert_eq!(
        durable.iter().filter(|d| **d).count(),
        acknowledged.len(),
        "no acknowledged commit vanished"
    );
    // After the restart, tx ids continue from the replayed log: in commit order they only
    // grow, so no id is reused.
    let txs: Vec<_> = history.commits.iter().map(|c| c.tx).collect();
    assert!(txs.len() >= 30);
    assert!(
        txs.windows(2).all(|w| w[0] < w[1]),
        "tx ids grow across the restart: {txs:?}"
    );
    // Actions due while the source was down never ran.
    assert!(history.outcomes.len() < 40);
}

#[test]
fn acknowledged_commits_vanish_on_power_loss_when_the_source_syncs_periodically() {
    let (recorder, world) = source_through_power_loss(SyncPolicy::Periodic { every_ms: 1_000 });
    let rows = durable_rows(world.disk("source").unwrap());
    let history = recorder.finish(rows, Rows::new(), SimTime::ZERO, SimTime::ZERO);
    let acknowledged_before_crash = history
        .outcomes
        .iter()
        .filter(|o| o.result.is_ok() && o.at < SimTime::from_millis(205))
        .count();
    let durable = history.durable_commits();
    assert!(acknowledged_before_crash > 10);
    let vanished = durable.iter().filter(|d| !**d).count();
    assert_eq!(
        vanished, acknowledged_before_crash,
        "nothing was synced before the power loss"
    );
}

#[test]
fn broker_keeps_every_acknowledged_record_across_power_loss_and_offsets_survive() {
    let acked: Rc<RefCell<Vec<u64>>> = Rc::default();
    // What the client read back after the restart: stored offsets and the committed one.
    type ReadBack = Option<(Vec<u64>, u64)>;
    let after: Rc<RefCell<ReadBack>> = Rc::default();
    let mut world = World::new(WorldConfig::new(Seed(4)));
    install_cluster(&mut world, ONE_SYNCED_BROKER);
    let (acked_in, after_in) = (Rc::clone(&acked), Rc::clone(&after));
    world
        .host("client", move |ctx| {
            let (acked, after) = (Rc::clone(&acked_in), Rc::clone(&after_in));
            async move {
                cluster_ready(&ctx).await;
                let broker = BrokerClient::new(&ctx, 1, Duration::from_millis(100));
                // Retried until the coordinator takes it, as a consumer does.
                while broker.commit_offset("g", None, "t", 0, 3).await.is_err() {}
                for n in 0..20u64 {
                    if let Ok(offset) = broker
                        .produce("t", 0, vec![(n.to_string(), n.to_string())], None)
                        .await
                    {
                        acked.borrow_mut().push(offset);
                    }
                    faultline_sim::timer::sleep(Duration::from_millis(10)).await;
                }
                faultline_sim::timer::sleep(Duration::from_millis(300)).await;
                let records = broker.fetch("t", 0, 0, 0).await.unwrap();
                let committed = broker
                    .committed_offset("g", "t", 0)
                    .await
                    .unwrap()
                    .expect("offsets are kept for the run");
                *after.borrow_mut() = Some((records.iter().map(|r| r.offset).collect(), committed));
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    world.set_plan(FaultPlan::from_events(vec![
        at(
            120,
            Fault::PowerLoss {
                host: "broker-1".into(),
            },
        ),
        at(
            180,
            Fault::Restart {
                host: "broker-1".into(),
            },
        ),
    ]));
    world.run_until(SimTime::from_secs(2), |_| false).unwrap();
    let (stored, committed) = after.borrow().clone().expect("client finished");
    for offset in acked.borrow().iter() {
        assert!(
            stored.contains(offset),
            "acknowledged offset {offset} lost: {stored:?}"
        );
    }
    assert!(acked.borrow().len() < 20, "produces during the outage fail");
    assert_eq!(committed, 3, "the committed offset survives");
}

/// Retention deletes records older than `retention.ms` from the head of a partition; a
/// fetch below the log start is out of range, and the deletion survives a power loss:
/// read back after the restart, before retention runs again, the log start is where it
/// was (it is made durable before it takes effect).
#[test]
fn retention_deletes_old_records_for_good_and_a_fetch_below_the_log_start_is_out_of_range() {
    use faultline_patterns::systems::broker::BrokerRecord;
    type Offsets = Result<Vec<u64>, BrokerError>;
    let after: Rc<RefCell<Option<(Offsets, Offsets)>>> = Rc::default();
    let mut world = World::new(WorldConfig::new(Seed(4)));
    install_cluster(
        &mut world,
        ClusterConfig {
            retention_ms: Some(300),
            ..ONE_SYNCED_BROKER
        },
    );
    let after_in = Rc::clone(&after);
    world
        .host("client", move |ctx| {
            let after = Rc::clone(&after_in);
            async move {
                cluster_ready(&ctx).await;
                let broker = BrokerClient::new(&ctx, 1, Duration::from_millis(100));
                // Ten records about 100 ms apart.
                for n in 0..10u64 {
                    let _ = broker
                        .produce("t", 0, vec![(n.to_string(), n.to_string())], None)
                        .await;
                    faultline_sim::timer::sleep(Duration::from_millis(100)).await;
                }
                // After the broker's restart at 1.2 s, before its first retention check.
                faultline_sim::timer::sleep(Duration::from_millis(250)).await;
                let offsets = |r: Result<Vec<BrokerRecord>, BrokerError>| -> Offsets {
                    r.map(|records| records.iter().map(|x| x.offset).collect())
                };
                // The first call after the restart may meet the connection it reset.
                let mut from_zero = offsets(broker.fetch("t", 0, 0, 0).await);
                if matches!(from_zero, Err(BrokerError::Call(_))) {
                    from_zero = offsets(broker.fetch("t", 0, 0, 0).await);
                }
                let start = match &from_zero {
                    Err(BrokerError::OutOfRange { start, .. }) => *start,
                    _ => 0,
                };
                let from_start = offsets(broker.fetch("t", 0, start, 0).await);
                *after.borrow_mut() = Some((from_zero, from_start));
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    world.set_plan(FaultPlan::from_events(vec![
        at(
            1_100,
            Fault::PowerLoss {
                host: "broker-1".into(),
            },
        ),
        at(
            1_200,
            Fault::Restart {
                host: "broker-1".into(),
            },
        ),
    ]));
    world.run_until(SimTime::from_millis(1_400), |_| false).unwrap();
    let (from_zero, from_start) = after.borrow().clone().expect("client read back");
    let Err(BrokerError::OutOfRange { start, end }) = from_zero else {
        panic!("the oldest records were deleted before the power loss, yet: {from_zero:?}");
    };
    assert_eq!(end, 10, "every record was acknowledged and kept");
    assert!(
        (5..10).contains(&start),
        "records older than 300 ms at 1 s went: start {start}"
    );
    assert_eq!(
        from_start,
        Ok((start..10).collect::<Vec<_>>()),
        "the rest is readable"
    );
}

/// A world running outbox-inbox from empty tables through `schedule`, with its recorder.
fn outbox_inbox_world(seed: Seed, schedule: Rc<Vec<(SimTime, ActionRequest)>>) -> (World, Recorder) {
    let variant = Variant::by_name("outbox-inbox").unwrap();
    let initial = Rows::new();
    let recorder = Recorder::new(initial.clone());
    let setup = Setup {
        recorder: recorder.clone(),
        initial: Rc::new(initial),
        bootstrap: None,
        schedule,
        source: variant.source_config(SyncPolicy::OnCommit, 1, BugSet::NONE),
        bugs: BugSet::NONE,
        kafka: Default::default(),
    };
    let mut world = World::new(WorldConfig::new(seed));
    variant.install(&mut world, &setup).unwrap();
    (world, recorder)
}

#[test]
fn consumer_resumes_from_its_committed_offset_and_sees_redelivery_after_a_crash() {
    let (mut world, recorder) = outbox_inbox_world(Seed(5), creates(60, 20));
    // Lose some calls (offset commits among them: each is retried, its partition waiting
    // meanwhile), and kill the target's processes while messages flow: the second
    // instance, killed in the middle of its first batch (six of its eight messages
    // applied, nothing committed), is restarted from the committed offset and reads them
    // again.
    let loss = faultline_sim::MessageFaultRates {
        loss: 0.1,
        ..Default::default()
    };
    // The cluster has its leaders from about 0.2 s.
    let mut events = vec![
        at(0, Fault::MessageFaults { rates: loss }),
        at(
            1_200,
            Fault::MessageFaults {
                rates: Default::default(),
            },
        ),
    ];
    for i in 0..5 {
        events.push(at(
            400 + i * 150,
            Fault::Crash {
                host: "target".into(),
            },
        ));
        events.push(at(
            430 + i * 150,
            Fault::Restart {
                host: "target".into(),
            },
        ));
    }
    events.push(at(
        960,
        Fault::Crash {
            host: "target-2".into(),
        },
    ));
    events.push(at(
        990,
        Fault::Restart {
            host: "target-2".into(),
        },
    ));
    world.set_plan(FaultPlan::from_events(events));
    world.run_until(SimTime::from_secs(4), |_| false).unwrap();
    let trace = world.trace().events();
    let duplicates = trace.iter().filter(|e| e.kind == "inbox-duplicate").count();
    assert!(
        duplicates > 0,
        "an uncommitted offset means redelivery, absorbed by the inbox"
    );
    // Every create was welcomed exactly once, as the notification service saw it: no
    // customer missing, none twice.
    let history = recorder.finish(Rows::new(), Rows::new(), SimTime::ZERO, SimTime::ZERO);
    let mut welcomes: BTreeMap<CustomerId, usize> = BTreeMap::new();
    for effect in &history.effects {
        *welcomes.entry(effect.customer).or_default() += 1;
    }
    let twice: Vec<_> = welcomes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "welcomed more than once: {twice:?}");
    assert_eq!(welcomes.len(), 60, "every created customer welcomed");
}

/// A commit the group coordinator cannot take because it is moving (its broker shuts
/// down under control, and `__consumer_offsets` gets a new leader) is sent again, as
/// `commitSync` retries `NOT_COORDINATOR`, and stored by the new coordinator: every
/// refused commit is followed by the same commit answered `committed`.
#[test]
fn a_commit_refused_while_the_coordinator_moves_is_retried_at_the_new_one() {
    let (mut world, _) = outbox_inbox_world(Seed(2), creates(200, 5));
    let coordinator = format!("broker-{}", replicas(OFFSETS_TOPIC, 0, CLUSTER.brokers)[0]);
    world.set_plan(FaultPlan::from_events(vec![
        at(
            500,
            Fault::Stop {
                host: coordinator.clone(),
            },
        ),
        at(
            800,
            Fault::Crash {
                host: coordinator.clone(),
            },
        ),
        at(
            900,
            Fault::Restart {
                host: coordinator.clone(),
            },
        ),
    ]));
    world.run_until(SimTime::from_secs(3), |_| false).unwrap();
    // Each commit sent (its call and what it commits) and each call's answer.
    let trace = world.trace().events();
    let mut sent: Vec<(String, String, String)> = Vec::new();
    let mut answers: BTreeMap<(String, String), String> = BTreeMap::new();
    for e in trace.iter() {
        let host = e.host.to_string();
        let Some((call, rest)) = e.detail.split_once(' ') else {
            continue;
        };
        if e.kind == "send" && rest.contains(" commit target ") {
            let what = rest
                .split(" commit target ")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            sent.push((host, call.to_string(), what));
        } else if e.kind == "response" {
            answers.insert((host, call.to_string()), rest.to_string());
        }
    }
    let answer = |host: &str, call: &str| answers.get(&(host.to_string(), call.to_string())).cloned();
    let refused: Vec<&(String, String, String)> = sent
        .iter()
        .filter(|(host, call, _)| answer(host, call).as_deref() == Some("not leader"))
        .collect();
    assert!(
        !refused.is_empty(),
        "some commit met the moving coordinator (coordinator {coordinator})"
    );
    for (host, call, what) in refused {
        let stored_later = sent
            .iter()
            .skip_while(|s| &s.1 != call || &s.0 != host)
            .any(|(h, c, w)| {
                h == host && w == what && c != call && answer(h, c).as_deref() == Some("committed")
            });
        assert!(
            stored_later,
            "{host}'s commit {what} ({call}) was refused and never stored"
        );
    }
}

/// The payloads of partition `t/0`, in offset order, read back through a lossy network
/// (a failed fetch is tried again; at most about 1000).
/// Waits until the cluster serves partition `t`/0 and the offsets of group `g`: a new
/// cluster elects its leaders after the brokers' first heartbeats.
async fn cluster_ready(ctx: &faultline_sim::HostCtx) {
    let broker = BrokerClient::new(ctx, 1, Duration::from_millis(100));
    loop {
        let fetched = broker.fetch("t", 0, 0, 0).await;
        let offsets = broker.committed_offset("g", "t", 0).await;
        if matches!(fetched, Ok(_) | Err(BrokerError::OutOfRange { .. })) && offsets.is_ok() {
            return;
        }
        faultline_sim::timer::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_back(ctx: &faultline_sim::HostCtx) -> Vec<u64> {
    let broker = BrokerClient::new(ctx, 1, Duration::from_millis(100));
    let mut records = Vec::new();
    while records.len() < 1_000 {
        let Ok(batch) = broker.fetch("t", 0, records.len() as u64, 0).await else {
            continue;
        };
        if batch.is_empty() {
            break;
        }
        records.extend(batch.into_iter().map(|r| r.payload.parse::<u64>().unwrap()));
    }
    records
}

/// What a producer-under-lost-responses run does: the seed, the share of the broker's
/// responses lost (each a connection broken after the broker stored the batch) until
/// `heal_ms`, how long after sending the client reads the partition back, and when the
/// run ends.
struct LossyRun {
    seed: u64,
    lost_response: f64,
    heal_ms: u64,
    read_after_ms: u64,
    end_s: u64,
}

/// Runs `send` with a producer on a client host under `run`'s lost responses; returns
/// the payloads the partition holds, in offset order.
fn produce_under<F, Fut>(run: LossyRun, config: ProducerConfig, send: F) -> Vec<u64>
where
    F: Fn(Producer) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let stored: Rc<RefCell<Option<Vec<u64>>>> = Rc::default();
    let mut world = World::new(WorldConfig::new(Seed(run.seed)));
    install_cluster(&mut world, ONE_SYNCED_BROKER);
    let stored_in = Rc::clone(&stored);
    let send = Rc::new(send);
    world
        .host("client", move |ctx| {
            let (stored, send) = (Rc::clone(&stored_in), Rc::clone(&send));
            async move {
                cluster_ready(&ctx).await;
                send(Producer::new(&ctx, Duration::from_millis(100), config, 1)).await;
                faultline_sim::timer::sleep(Duration::from_millis(run.read_after_ms)).await;
                *stored.borrow_mut() = Some(read_back(&ctx).await);
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    let lossy = faultline_sim::MessageFaultRates {
        lost_response: run.lost_response,
        ..Default::default()
    };
    world.set_plan(FaultPlan::from_events(vec![
        at(0, Fault::MessageFaults { rates: lossy }),
        at(
            run.heal_ms,
            Fault::MessageFaults {
                rates: Default::default(),
            },
        ),
    ]));
    world.run_until(SimTime::from_secs(run.end_s), |_| false).unwrap();
    let records = stored
        .borrow()
        .clone()
        .expect("the client read the partition back");
    records
}

/// Sends 40 records one at a time while half the broker's responses are lost.
fn produce_through_lost_responses(config: ProducerConfig) -> Vec<u64> {
    let run = LossyRun {
        seed: 9,
        lost_response: 0.5,
        heal_ms: 6_000,
        read_after_ms: 1_500,
        end_s: 12,
    };
    produce_under(run, config, |producer| async move {
        for n in 0..40u64 {
            producer.send("t", 0, "k".into(), n.to_string()).await.unwrap();
        }
    })
}

#[test]
fn the_producer_retries_in_place_so_lost_acks_never_reorder_and_idempotence_drops_the_copies() {
    let idempotent = produce_through_lost_responses(KAFKA_PRODUCER);
    assert_eq!(
        idempotent,
        (0..40).collect::<Vec<u64>>(),
        "each record once, in order"
    );

    let plain = produce_through_lost_responses(CONNECT_SOURCE_PRODUCER);
    assert!(
        plain.len() > 40,
        "lost acks store copies without idempotence: {plain:?}"
    );
    let mut distinct = plain.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        (0..40).collect::<Vec<u64>>(),
        "copies sit next to their original: a retry in place never lands after a later record"
    );
}

#[test]
fn send_async_batches_what_accumulates_and_delivers_every_record_in_order() {
    type Acks = Rc<RefCell<Vec<u64>>>;
    let acks: Acks = Rc::default();
    let stored: Rc<RefCell<Vec<u64>>> = Rc::default();
    let mut world = World::new(WorldConfig::new(Seed(4)));
    install_cluster(&mut world, ONE_SYNCED_BROKER);
    let (acks_in, stored_in) = (Rc::clone(&acks), Rc::clone(&stored));
    world
        .host("client", move |ctx| {
            let (acks, stored) = (Rc::clone(&acks_in), Rc::clone(&stored_in));
            async move {
                cluster_ready(&ctx).await;
                let producer = Producer::new(&ctx, Duration::from_millis(100), KAFKA_PRODUCER, 1);
                // 300 records handed over 1 ms apart, faster than one round trip each.
                for n in 0..300u64 {
                    let delivery = producer.send_async("t", 0, "k".into(), n.to_string());
                    let acks = Rc::clone(&acks);
                    tokio::task::spawn_local(async move {
                        let offset = delivery.await.expect("delivered");
                        acks.borrow_mut().push(offset);
                    });
                    faultline_sim::timer::sleep(Duration::from_millis(1)).await;
                }
                faultline_sim::timer::sleep(Duration::from_millis(1_000)).await;
                *stored.borrow_mut() = read_back(&ctx).await;
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    world.run_until(SimTime::from_secs(3), |_| false).unwrap();
    assert_eq!(
        *stored.borrow(),
        (0..300).collect::<Vec<u64>>(),
        "each record once, in order"
    );
    let mut offsets = acks.borrow().clone();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (0..300).collect::<Vec<u64>>(),
        "every delivery resolved with its offset"
    );
    // Records handed in while a batch was in flight went out together.
    let produces = world
        .trace()
        .events()
        .iter()
        .filter(|e| e.kind == faultline_sim::trace::kind::SEND && e.detail.contains("produce"))
        .count();
    assert!(produces < 100, "{produces} produce requests for 300 records");
}

/// Hands 300 records to a producer 1 ms apart while the first 2 s lose a fifth of the
/// broker's responses.
fn pipeline_through_lost_responses(config: ProducerConfig) -> Vec<u64> {
    let run = LossyRun {
        seed: 5,
        lost_response: 0.2,
        heal_ms: 2_000,
        read_after_ms: 3_000,
        end_s: 8,
    };
    produce_under(run, config, |producer| async move {
        for n in 0..300u64 {
            drop(producer.send_async("t", 0, "k".into(), n.to_string()));
            faultline_sim::timer::sleep(Duration::from_millis(1)).await;
        }
    })
}

#[test]
fn five_requests_in_flight_keep_order_only_with_idempotence() {
    let idempotent = pipeline_through_lost_responses(KAFKA_PRODUCER);
    assert_eq!(
        idempotent,
        (0..300).collect::<Vec<u64>>(),
        "idempotent, 5 in flight: each record once, in order"
    );

    let plain = pipeline_through_lost_responses(ProducerConfig {
        idempotent: false,
        ..KAFKA_PRODUCER
    });
    let first_copies = first_seen(&plain);
    let mut all = first_copies.clone();
    all.sort_unstable();
    assert_eq!(all, (0..300).collect::<Vec<u64>>(), "nothing lost: {plain:?}");
    assert_ne!(
        first_copies, all,
        "plain, 5 in flight: batches failed with their connection are sent again newest first, so older records first land after newer ones: {plain:?}"
    );

    let one_in_flight = pipeline_through_lost_responses(ProducerConfig {
        idempotent: false,
        max_in_flight: 1,
        ..KAFKA_PRODUCER
    });
    assert!(
        one_in_flight.len() > 300,
        "lost acks store copies without idempotence"
    );
    assert_eq!(
        first_seen(&one_in_flight),
        (0..300).collect::<Vec<u64>>(),
        "plain, 1 in flight: a batch's copy follows the batch, before any later one: {one_in_flight:?}"
    );
}

/// The records in the order their first copy was stored.
fn first_seen(records: &[u64]) -> Vec<u64> {
    let mut seen = std::collections::BTreeSet::new();
    records.iter().copied().filter(|r| seen.insert(*r)).collect()
}

#[test]
fn the_broker_answers_a_retry_of_its_last_five_batches_as_stored_and_refuses_the_rest_even_after_a_restart() {
    type Answers = Rc<RefCell<Vec<(&'static str, Result<u64, BrokerError>)>>>;
    let answers: Answers = Rc::default();
    let mut world = World::new(WorldConfig::new(Seed(2)));
    install_cluster(&mut world, ONE_SYNCED_BROKER);
    let answers_in = Rc::clone(&answers);
    world
        .host("client", move |ctx| {
            let answers = Rc::clone(&answers_in);
            async move {
                cluster_ready(&ctx).await;
                let broker = BrokerClient::new(&ctx, 1, Duration::from_millis(200));
                // Sent until the broker answers (a connection from before its
                // restart fails first).
                let produce = |producer: u64, seq: u64| {
                    let broker = broker.clone();
                    async move {
                        let batch = vec![("k".to_string(), seq.to_string())];
                        let seq = faultline_patterns::systems::broker::ProducerSeq { producer, seq };
                        loop {
                            match broker.produce("t", 0, batch.clone(), Some(seq)).await {
                                Err(BrokerError::Call(_)) => continue,
                                answer => return answer,
                            }
                        }
                    }
                };
                // Seven batches of one record, offsets 0..7: the broker keeps seq 2..=6.
                for seq in 0..7 {
                    produce(1, seq).await.unwrap();
                }
                for (what, producer, seq) in [
                    ("retry of seq 6", 1, 6),
                    ("retry of seq 2", 1, 2),
                    ("retry of seq 1", 1, 1),
                    ("gap: seq 8", 1, 8),
                    ("new producer at seq 5", 2, 5),
                ] {
                    let answer = produce(producer, seq).await;
                    answers.borrow_mut().push((what, answer));
                }
                // The broker restarts at 1 s and rebuilds the window from its log.
                faultline_sim::timer::sleep(Duration::from_millis(2_000)).await;
                for (what, seq) in [("after restart: retry of seq 3", 3), ("after restart: seq 7", 7)] {
                    let answer = produce(1, seq).await;
                    answers.borrow_mut().push((what, answer));
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    world.set_plan(FaultPlan::from_events(vec![
        at(
            1_000,
            Fault::Crash {
                host: "broker-1".into(),
            },
        ),
        at(
            1_100,
            Fault::Restart {
                host: "broker-1".into(),
            },
        ),
    ]));
    world.run_until(SimTime::from_secs(4), |_| false).unwrap();
    let out_of_order = Err(BrokerError::OutOfOrderSequence { expected: 7 });
    assert_eq!(
        *answers.borrow(),
        vec![
            ("retry of seq 6", Ok(6)),
            ("retry of seq 2", Ok(2)),
            ("retry of seq 1", out_of_order.clone()),
            ("gap: seq 8", out_of_order),
            ("new producer at seq 5", Ok(7)),
            ("after restart: retry of seq 3", Ok(3)),
            ("after restart: seq 7", Ok(8)),
        ]
    );
}

/// What the slot test saw after the source's restart.
#[derive(Debug, Default)]
struct SlotsSeen {
    behind: Option<LogGone>,
    below_start: Option<LogGone>,
    from_confirmed: Option<usize>,
    recreated_reads: Option<usize>,
}

/// Two slots bounded to 2 KiB, checkpoints every 100 ms, 60 commits: the slot whose
/// reader never confirms is invalidated and stays so across a restart; the one that
/// keeps up holds the log from its confirmed position, and what lies below is removed;
/// a slot created anew streams from the log's end.
#[test]
fn a_slot_past_its_bound_is_lost_for_good_and_the_log_no_live_slot_needs_is_removed() {
    let recorder = Recorder::new(Rows::new());
    let seen = Rc::new(RefCell::new(SlotsSeen::default()));
    let confirmed_at = Rc::new(RefCell::new(faultline_sim::LogPos(0)));
    let mut world = World::new(WorldConfig::new(Seed(5)));
    let (host_recorder, host_seen, host_confirmed) =
        (recorder.clone(), Rc::clone(&seen), Rc::clone(&confirmed_at));
    world
        .host("source", move |ctx| {
            let (recorder, seen, confirmed_at) = (
                host_recorder.clone(),
                Rc::clone(&host_seen),
                Rc::clone(&host_confirmed),
            );
            async move {
                let config = SourceConfig {
                    sync: SyncPolicy::OnCommit,
                    outbox: false,
                    outbox_events: OutboxEvents::PerAggregate,
                    stamp_writes: false,
                    workers: 1,
                    log_retention: LogRetention {
                        slot_max_keep_bytes: Some(2_000),
                        checkpoint_ms: 100,
                    },
                    bugs: BugSet::NONE,
                };
                let source = Source::recover(&ctx, config, recorder).await;
                let checkpointer = source.clone();
                tokio::task::spawn_local(async move { checkpointer.run_checkpoints().await });
                if ctx.incarnation() == 0 {
                    // The reader that keeps up confirms everything durable every 20 ms.
                    let reader = source.clone();
                    let confirmed = Rc::clone(&confirmed_at);
                    tokio::task::spawn_local(async move {
                        loop {
                            faultline_sim::timer::sleep(Duration::from_millis(20)).await;
                            let (_, end) = reader
                                .read_log("keeping-up", *confirmed.borrow(), usize::MAX)
                                .unwrap();
                            reader.confirm_slot("keeping-up", end);
                            *confirmed.borrow_mut() = end;
                        }
                    });
                    source.run_workload(creates(60, 10), None, |_| {}).await;
                } else {
                    let at = *confirmed_at.borrow();
                    let origin = faultline_sim::LogPos(0);
                    {
                        let mut seen = seen.borrow_mut();
                        seen.behind = source.read_log("behind", origin, 10).err();
                        seen.below_start = source.read_log("keeping-up", origin, 10).err();
                        // The slot went back at most to its last checkpoint: still readable.
                        seen.from_confirmed = source
                            .read_log("keeping-up", at, usize::MAX)
                            .ok()
                            .map(|r| r.0.len());
                    }
                    let start = source.create_slot("behind").await.unwrap();
                    let recreated = source
                        .read_log("behind", start, usize::MAX)
                        .ok()
                        .map(|r| r.0.len());
                    seen.borrow_mut().recreated_reads = recreated;
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    install_slots(world.disk("source").unwrap(), &["behind", "keeping-up"]);
    world.set_plan(FaultPlan::from_events(vec![
        at(
            800,
            Fault::Crash {
                host: "source".into(),
            },
        ),
        at(
            850,
            Fault::Restart {
                host: "source".into(),
            },
        ),
    ]));
    world.run_until(SimTime::from_millis(1_000), |_| false).unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.behind, Some(LogGone::SlotLost("behind".into())), "{seen:?}");
    assert!(
        matches!(seen.below_start, Some(LogGone::Removed { start, .. }) if start.0 > 0),
        "{seen:?}"
    );
    assert_eq!(
        seen.from_confirmed,
        Some(0),
        "everything up to the confirmed position was read: {seen:?}"
    );
    assert_eq!(
        seen.recreated_reads,
        Some(0),
        "a new slot streams from the end: {seen:?}"
    );
    let history = recorder.finish(
        Rows::new(),
        Rows::new(),
        SimTime::from_millis(1_000),
        SimTime::ZERO,
    );
    assert!(
        history.source_log_retained_max.unwrap() > 2_000,
        "{:?}",
        history.source_log_retained_max
    );
}

/// The controller's leader elections of partition `t/0`, as the trace details them.
fn elections_of_t0(world: &World) -> Vec<String> {
    world
        .trace()
        .events()
        .iter()
        .filter(|e| e.kind == "leader-elected" && e.detail.starts_with("t/0"))
        .map(|e| e.detail.to_string())
        .collect()
}

/// The replicas of the test topic's partition, as the plan of a failover names them:
/// its preferred leader and its two followers.
struct Replicas {
    leader: String,
    follower: String,
    other: String,
}

/// What a producer had acknowledged and what the partition held once every retry had
/// settled, with the faults `plan` puts on the partition's replicas, and the partition's
/// leader elections.
fn failover_run(
    cluster: ClusterConfig,
    plan: impl Fn(&Replicas) -> Vec<FaultEvent>,
) -> (Vec<u64>, Vec<u64>, Vec<String>) {
    let run = failover_run_with_isr_changes(cluster, plan);
    (run.acked, run.stored, run.elections)
}

/// What a failover run yields: see [`failover_run`]; `isr_changes` are the ISR changes
/// asked of the controller for the partition (`alter-partition` requests sent) and made
/// by it (`isr-changed`), with when (ms).
struct FailoverRun {
    acked: Vec<u64>,
    stored: Vec<u64>,
    elections: Vec<String>,
    isr_changes: Vec<(u64, String)>,
}

/// [`failover_run`], with the partition's ISR changes.
fn failover_run_with_isr_changes(
    cluster: ClusterConfig,
    plan: impl Fn(&Replicas) -> Vec<FaultEvent>,
) -> FailoverRun {
    let acked: Rc<RefCell<Vec<u64>>> = Rc::default();
    let stored: Rc<RefCell<Option<Vec<u64>>>> = Rc::default();
    let mut world = World::new(WorldConfig::new(Seed(3)));
    install_cluster(&mut world, cluster);
    let (acked_in, stored_in) = (Rc::clone(&acked), Rc::clone(&stored));
    world
        .host("client", move |ctx| {
            let (acked, stored) = (Rc::clone(&acked_in), Rc::clone(&stored_in));
            async move {
                cluster_ready_on(&ctx, cluster.brokers).await;
                let producer =
                    Producer::new(&ctx, Duration::from_millis(100), KAFKA_PRODUCER, cluster.brokers);
                for n in 0..150u64 {
                    let delivery = producer.send_async("t", 0, "k".into(), n.to_string());
                    let acked = Rc::clone(&acked);
                    tokio::task::spawn_local(async move {
                        if delivery.await.is_ok() {
                            acked.borrow_mut().push(n);
                        }
                    });
                    faultline_sim::timer::sleep(Duration::from_millis(10)).await;
                }
                // Until every retry has settled (the producer backs off up to 1 s).
                faultline_sim::timer::sleep(Duration::from_millis(6_000)).await;
                let broker = BrokerClient::new(&ctx, cluster.brokers, Duration::from_millis(300));
                let mut records = Vec::new();
                loop {
                    match broker.fetch("t", 0, records.len() as u64, 0).await {
                        Ok(batch) if batch.is_empty() => break,
                        Ok(batch) => {
                            records.extend(batch.into_iter().map(|r| r.payload.parse::<u64>().unwrap()))
                        }
                        Err(_) => faultline_sim::timer::sleep(Duration::from_millis(50)).await,
                    }
                }
                *stored.borrow_mut() = Some(records);
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    let order = replicas("t", 0, cluster.brokers);
    let host = |b: u32| format!("broker-{b}");
    world.set_plan(FaultPlan::from_events(plan(&Replicas {
        leader: host(order[0]),
        follower: host(order[1]),
        other: host(order[2]),
    })));
    world.run_until(SimTime::from_secs(9), |_| false).unwrap();
    let elections = elections_of_t0(&world);
    let isr_changes: Vec<(u64, String)> = world
        .trace()
        .events()
        .iter()
        .filter(|e| {
            (e.kind == "isr-changed" && e.detail.starts_with("t/0"))
                || (e.kind == "send" && e.detail.contains("alter-partition t/0 "))
        })
        .map(|e| (e.at.as_millis(), format!("{} {}", e.kind, e.detail)))
        .collect();
    let acked = acked.borrow().clone();
    let stored = stored
        .borrow()
        .clone()
        .expect("the client read the partition back");
    FailoverRun {
        acked,
        stored,
        elections,
        isr_changes,
    }
}

async fn cluster_ready_on(ctx: &faultline_sim::HostCtx, brokers: u32) {
    let broker = BrokerClient::new(ctx, brokers, Duration::from_millis(100));
    while broker.fetch("t", 0, 0, 0).await.is_err() {
        faultline_sim::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// With acks=all, a record is acknowledged once every in-sync replica has it: when the
/// leader loses power while records flow, an in-sync follower takes over in a clean
/// election and every acknowledged record is there; the old leader comes back as a
/// follower and cuts what only it had.
#[test]
fn a_leader_failover_keeps_every_record_acknowledged_with_acks_all() {
    let (acked, stored, elections) = failover_run(CLUSTER, |r| {
        vec![
            at(
                800,
                Fault::PowerLoss {
                    host: r.leader.clone(),
                },
            ),
            at(
                1_600,
                Fault::Restart {
                    host: r.leader.clone(),
                },
            ),
        ]
    });
    assert!(
        acked.len() > 100,
        "most records were acknowledged: {}",
        acked.len()
    );
    let missing: Vec<&u64> = acked.iter().filter(|n| !stored.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged records lost: {missing:?}; elections {elections:?}"
    );
    assert!(
        elections.iter().any(|e| e.contains("(clean)")),
        "the leadership moved: {elections:?}"
    );
}

/// A follower asked to stop (a rolling restart) is taken out of the ISR by the
/// controller and keeps fetching until it is killed. The leader does not propose it
/// back while the image shows it shutting down (Kafka's `isReplicaIsrEligible`): no
/// ISR change is asked or made; once it has restarted and caught up, it rejoins.
#[test]
fn a_follower_shutting_down_is_not_proposed_back_into_the_isr_until_it_has_restarted() {
    let FailoverRun {
        acked,
        stored,
        isr_changes,
        ..
    } = failover_run_with_isr_changes(CLUSTER, |r| {
        vec![
            at(
                600,
                Fault::Stop {
                    host: r.follower.clone(),
                },
            ),
            at(
                1_400,
                Fault::Crash {
                    host: r.follower.clone(),
                },
            ),
            at(
                1_600,
                Fault::Restart {
                    host: r.follower.clone(),
                },
            ),
        ]
    });
    let missing: Vec<&u64> = acked.iter().filter(|n| !stored.contains(n)).collect();
    assert!(missing.is_empty(), "acknowledged records lost: {missing:?}");
    let while_stopping: Vec<&(u64, String)> = isr_changes
        .iter()
        .filter(|(at, _)| (600..1_400).contains(at))
        .collect();
    assert!(
        while_stopping.is_empty(),
        "ISR changes asked or made while the follower shut down: {while_stopping:?}"
    );
    let rejoined = isr_changes
        .iter()
        .any(|(at, detail)| *at >= 1_600 && detail.starts_with("isr-changed t/0 isr=1,2,3"));
    assert!(
        rejoined,
        "the follower rejoined after its restart: {isr_changes:?}"
    );
}

/// An operator's purge on the leader (a shorter `log.retention.ms` there) deletes on
/// every replica: each follower takes the leader's log start from its fetch answers
/// (Kafka's `LeaderOffsetIncremented`), so when the leader dies its successor does not
/// serve what was deleted, and a consumer below the log start is out of range there too.
#[test]
fn a_purge_on_the_leader_deletes_on_the_followers_and_survives_a_failover() {
    type Read = Result<Vec<u64>, BrokerError>;
    let read: Rc<RefCell<Option<Read>>> = Rc::default();
    let mut world = World::new(WorldConfig::new(Seed(5)));
    install_cluster(&mut world, CLUSTER);
    let read_in = Rc::clone(&read);
    world
        .host("client", move |ctx| {
            let read = Rc::clone(&read_in);
            async move {
                cluster_ready_on(&ctx, CLUSTER.brokers).await;
                let producer =
                    Producer::new(&ctx, Duration::from_millis(100), KAFKA_PRODUCER, CLUSTER.brokers);
                for n in 0..40u64 {
                    // Queued at once; its delivery is not awaited.
                    drop(producer.send_async("t", 0, "k".into(), n.to_string()));
                    faultline_sim::timer::sleep(Duration::from_millis(10)).await;
                }
                // Past the purge, the leader's death and its successor's election.
                faultline_sim::timer::sleep(Duration::from_millis(4_000)).await;
                let broker = BrokerClient::new(&ctx, CLUSTER.brokers, Duration::from_millis(300));
                let answer = loop {
                    match broker.fetch("t", 0, 0, 0).await {
                        Err(BrokerError::Call(_) | BrokerError::NotLeader) => {
                            faultline_sim::timer::sleep(Duration::from_millis(50)).await
                        }
                        other => break other,
                    }
                };
                *read.borrow_mut() = Some(answer.map(|records| records.iter().map(|r| r.offset).collect()));
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    let leader = format!("broker-{}", replicas("t", 0, CLUSTER.brokers)[0]);
    world.set_plan(FaultPlan::from_events(vec![
        at(
            1_500,
            Fault::Purge {
                host: leader.clone(),
                keep_ms: 200,
            },
        ),
        at(2_500, Fault::Crash { host: leader.clone() }),
    ]));
    world.run_until(SimTime::from_secs(6), |_| false).unwrap();
    let elected = elections_of_t0(&world);
    assert!(
        !elected.is_empty(),
        "a follower took over from the crashed leader"
    );
    let answer = read.borrow().clone().expect("the client read the partition");
    let Err(BrokerError::OutOfRange { start, end }) = answer else {
        panic!("the new leader served records the purge deleted: {answer:?} (elections {elected:?})");
    };
    assert_eq!(
        (start, end),
        (40, 40),
        "every record was older than the purge kept"
    );
}

/// A follower cut off from the leader leaves the ISR after replica.lag.time.max.ms and
/// the leader acknowledges with the other; when both in-sync replicas lose power, an
/// unclean election makes the cut-off follower leader at once, and the records it never
/// had, acknowledged ones, are gone for good. With clean elections the partition waits
/// for an in-sync replica instead.
#[test]
fn unclean_leader_election_loses_acknowledged_records() {
    let plan = |r: &Replicas| {
        vec![
            at(
                300,
                Fault::Partition {
                    a: r.leader.clone(),
                    b: r.follower.clone(),
                },
            ),
            at(
                2_900,
                Fault::PowerLoss {
                    host: r.other.clone(),
                },
            ),
            at(
                2_950,
                Fault::PowerLoss {
                    host: r.leader.clone(),
                },
            ),
            at(
                3_000,
                Fault::Heal {
                    a: r.leader.clone(),
                    b: r.follower.clone(),
                },
            ),
            at(
                4_500,
                Fault::Restart {
                    host: r.leader.clone(),
                },
            ),
            at(
                4_500,
                Fault::Restart {
                    host: r.other.clone(),
                },
            ),
        ]
    };
    let unclean = ClusterConfig {
        unclean_leader_election: true,
        ..CLUSTER
    };
    let (acked, stored, elections) = failover_run(unclean, plan);
    assert!(
        elections.iter().any(|e| e.contains("(unclean)")),
        "an out-of-sync replica was elected: {elections:?}"
    );
    let missing: Vec<&u64> = acked.iter().filter(|n| !stored.contains(n)).collect();
    assert!(
        !missing.is_empty(),
        "the unclean leader lacked acknowledged records"
    );
    let (_, _, elections) = failover_run(CLUSTER, plan);
    assert!(
        !elections.iter().any(|e| e.contains("(unclean)")),
        "clean elections only: {elections:?}"
    );
}

/// What a group member saw, in order.
type Log = Rc<RefCell<Vec<String>>>;

/// Joins group `g` on topic `t` (two partitions) as `member` until answered: the
/// generation and the partitions.
async fn join(broker: &BrokerClient, member: &str) -> (u64, Vec<u32>) {
    loop {
        if let Ok(Some(joined)) = broker.join_group("g", member, None, 2).await {
            return joined;
        }
        faultline_sim::timer::sleep(Duration::from_millis(HEARTBEAT_INTERVAL_MS)).await;
    }
}

/// A member stalled past its session (a long GC pause: its heartbeats are held) is
/// dropped; the group rebalances and the other member takes its partition. When the
/// stalled member wakes up it still believes it owns the partition: its commit is
/// refused (Kafka's CommitFailedException), and the group's offset is the new owner's.
#[test]
fn a_zombie_consumers_commit_is_rejected_after_a_rebalance() {
    let mut world = World::new(WorldConfig::new(Seed(11)));
    install_cluster(&mut world, ONE_SYNCED_BROKER);
    let log: Log = Rc::default();
    let zombie_log = Rc::clone(&log);
    world
        .host("zombie", move |ctx| {
            let log = Rc::clone(&zombie_log);
            async move {
                cluster_ready(&ctx).await;
                let broker = BrokerClient::new(&ctx, 1, Duration::from_millis(100));
                let (generation, partitions) = join(&broker, "zombie").await;
                log.borrow_mut()
                    .push(format!("zombie gen={generation} {partitions:?}"));
                // It heartbeats on; from 600 ms its links are held for 3 s.
                let until = SimTime::from_millis(4_000);
                while ctx.now() < until {
                    let _ = broker.heartbeat("g", "zombie", generation).await;
                    faultline_sim::timer::sleep(Duration::from_millis(HEARTBEAT_INTERVAL_MS)).await;
                }
                // It handled records 0..7 of its partition and commits, as of its
                // generation.
                let committed = broker
                    .commit_offset("g", Some(("zombie", generation)), "t", partitions[0], 7)
                    .await;
                log.borrow_mut().push(format!("zombie commit {committed:?}"));
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    let survivor_log = Rc::clone(&log);
    world
        .host("survivor", move |ctx| {
            let log = Rc::clone(&survivor_log);
            async move {
                cluster_ready(&ctx).await;
                let broker = BrokerClient::new(&ctx, 1, Duration::from_millis(100));
                let (mut generation, mut partitions) = join(&broker, "survivor").await;
                let mut read = false;
                log.borrow_mut()
                    .push(format!("survivor gen={generation} {partitions:?}"));
                loop {
                    faultline_sim::timer::sleep(Duration::from_millis(HEARTBEAT_INTERVAL_MS)).await;
                    if !read && ctx.now() >= SimTime::from_millis(5_000) {
                        // After the zombie's attempt: whose offset the group holds.
                        if let Ok(Some(offset)) = broker.committed_offset("g", "t", 1).await {
                            log.borrow_mut().push(format!("group offset of t/1: {offset}"));
                            read = true;
                        }
                    }
                    if let Err(BrokerError::Fenced(Fenced::RebalanceInProgress)) =
                        broker.heartbeat("g", "survivor", generation).await
                    {
                        (generation, partitions) = join(&broker, "survivor").await;
                        log.borrow_mut()
                            .push(format!("survivor gen={generation} {partitions:?}"));
                        // The new owner resumes the zombie's partition (1) from its
                        // committed offset and commits what it handled.
                        let committed = broker
                            .commit_offset("g", Some(("survivor", generation)), "t", 1, 3)
                            .await;
                        log.borrow_mut().push(format!("survivor commit {committed:?}"));
                    }
                }
            }
        })
        .unwrap();
    world.set_plan(FaultPlan::from_events(vec![
        at(
            600,
            Fault::Pause {
                host: "zombie".into(),
            },
        ),
        at(
            3_600,
            Fault::Resume {
                host: "zombie".into(),
            },
        ),
    ]));
    world.run_until(SimTime::from_secs(6), |_| false).unwrap();
    let log = log.borrow().clone();
    let at_start: Vec<&String> = log.iter().take(2).collect();
    assert!(
        at_start.contains(&&"zombie gen=1 [1]".to_string())
            && at_start.contains(&&"survivor gen=1 [0]".to_string()),
        "generation 1 shares the partitions: {log:?}"
    );
    assert!(
        log.contains(&"survivor gen=2 [0, 1]".to_string()),
        "the zombie was dropped and the survivor took its partition: {log:?}"
    );
    assert!(
        log.contains(&"survivor commit Ok(())".to_string()),
        "the new owner commits: {log:?}"
    );
    assert!(
        log.contains(&"zombie commit Err(Fenced(UnknownMember))".to_string()),
        "the zombie's commit is refused: {log:?}"
    );
    let dropped = world
        .trace()
        .events()
        .iter()
        .any(|e| e.kind == "group-member-dropped" && e.detail == "g member=zombie");
    assert!(dropped, "the coordinator dropped the stalled member");
    assert!(
        log.contains(&"group offset of t/1: 3".to_string()),
        "the group's offset is the new owner's, not the zombie's: {log:?}"
    );
}
