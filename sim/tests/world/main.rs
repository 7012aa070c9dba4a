//! World tests: every fault kind acting on a real client/server pair over turmoil.
//! Each fault has a test where it fires and changes what the system sees; the
//! fault-free baseline shows the same system unharmed.

mod determinism;
mod fixture;

use faultline_sim::trace::kind;
use faultline_sim::{
    DiskFaultKind, Fault, FaultEvent, FaultPlan, MessageFaultRates, Seed, SimTime, World, WorldConfig,
    WorldError,
};
use fixture::{ok_count, run, Observed};

fn at(ms: u64, fault: Fault) -> FaultEvent {
    FaultEvent {
        at: SimTime::from_millis(ms),
        fault,
    }
}

fn plan(events: Vec<FaultEvent>) -> FaultPlan {
    FaultPlan::from_events(events)
}

fn host(h: &str) -> String {
    h.to_string()
}

fn calls_sent_between(obs: &Observed, from_ms: u64, to_ms: u64) -> Vec<&fixture::Seen> {
    obs.seen
        .iter()
        .filter(|s| s.sent >= SimTime::from_millis(from_ms) && s.sent < SimTime::from_millis(to_ms))
        .collect()
}

#[test]
fn baseline_without_faults_every_call_succeeds_once() {
    let (obs, world) = run(1, FaultPlan::default(), 20, 10, true, 1_000);
    assert_eq!(obs.seen.len(), 20);
    assert_eq!(ok_count(&obs), 20);
    assert_eq!(obs.handled.len(), 20);
    let kinds: Vec<_> = world.trace().events().iter().map(|e| e.kind).collect();
    for absent in [
        kind::DROP,
        kind::DUPLICATE,
        kind::LOST_RESPONSE,
        kind::TIMEOUT,
        kind::CRASH,
    ] {
        assert!(!kinds.contains(&absent), "fault-free run recorded {absent}");
    }
}

#[test]
fn partition_fails_calls_while_it_lasts_and_heal_restores_them() {
    let p = plan(vec![
        at(
            100,
            Fault::Partition {
                a: host("client"),
                b: host("server"),
            },
        ),
        at(
            300,
            Fault::Heal {
                a: host("client"),
                b: host("server"),
            },
        ),
    ]);
    let (obs, _) = run(2, p, 50, 10, true, 1_500);
    let during = calls_sent_between(&obs, 110, 290);
    assert!(
        !during.is_empty() && during.iter().all(|s| s.reply.is_none()),
        "calls in the partition must fail"
    );
    let after = calls_sent_between(&obs, 320, 10_000);
    assert!(
        !after.is_empty() && after.iter().all(|s| s.reply.is_some()),
        "calls after the heal must succeed"
    );
}

#[test]
fn partition_oneway_server_to_client_lets_requests_in_but_loses_every_answer() {
    // Open a pooled connection first, then cut only the answers.
    let p = plan(vec![
        at(
            100,
            Fault::PartitionOneway {
                from: host("server"),
                to: host("client"),
            },
        ),
        at(
            300,
            Fault::Heal {
                a: host("client"),
                b: host("server"),
            },
        ),
    ]);
    let (obs, _) = run(3, p, 50, 10, true, 1_500);
    let during: Vec<u64> = calls_sent_between(&obs, 110, 290).iter().map(|s| s.n).collect();
    assert!(!during.is_empty());
    for n in &during {
        let seen = obs.seen.iter().find(|s| s.n == *n).unwrap();
        assert!(seen.reply.is_none(), "call {n}: the answer must be lost");
    }
    let handled_during = obs.handled.iter().filter(|h| during.contains(&h.n)).count();
    assert!(
        handled_during > 0,
        "requests still reach the server over the intact direction"
    );
}

#[test]
fn hold_parks_messages_and_release_delivers_them_late() {
    let p = plan(vec![
        at(
            100,
            Fault::Hold {
                a: host("client"),
                b: host("server"),
            },
        ),
        at(
            180,
            Fault::Release {
                a: host("client"),
                b: host("server"),
            },
        ),
    ]);
    let (obs, _) = run(4, p, 30, 10, true, 1_000);
    let held = calls_sent_between(&obs, 100, 170);
    assert!(!held.is_empty());
    for s in held {
        assert!(
            s.reply.is_some(),
            "call {} must be delivered after release, within its timeout",
            s.n
        );
        assert!(
            s.done >= SimTime::from_millis(180),
            "call {} answered before the release",
            s.n
        );
    }
}

#[test]
fn crash_kills_the_process_loses_memory_and_restart_runs_start_again() {
    let p = plan(vec![
        at(100, Fault::Crash { host: host("server") }),
        at(300, Fault::Restart { host: host("server") }),
    ]);
    let (obs, world) = run(5, p, 50, 10, false, 1_500);
    let during = calls_sent_between(&obs, 110, 290);
    assert!(!during.is_empty() && during.iter().all(|s| s.reply.is_none()));
    assert!(obs
        .handled
        .iter()
        .all(|h| h.at < SimTime::from_millis(100) || h.at >= SimTime::from_millis(300)));
    let after: Vec<_> = calls_sent_between(&obs, 320, 10_000)
        .into_iter()
        .filter_map(|s| s.reply.clone())
        .collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|c| c.incarnation == 1),
        "restart starts incarnation 1"
    );
    assert!(
        after[0].total < 5,
        "the in-memory count restarted from zero: {}",
        after[0].total
    );
    // A process crash keeps written-but-unsynced data: the OS had it.
    let logged = world.disk("server").unwrap().len("calls.log") / 16; // 8-byte header + 8-byte payload
    assert_eq!(
        logged as usize,
        obs.handled.len(),
        "unsynced writes survive a process crash"
    );
}

#[test]
fn restart_of_a_running_host_is_rejected_before_the_run_starts() {
    let mut world = World::new(WorldConfig::new(Seed(1)));
    world.host("a", |_ctx| async { Ok(()) }).unwrap();
    world.set_plan(plan(vec![at(10, Fault::Restart { host: host("a") })]));
    let err = world.run_until(SimTime::from_millis(100), |_| false).unwrap_err();
    assert!(matches!(err, WorldError::Plan(_)), "{err}");
    assert!(
        err.to_string()
            .contains("only a crashed or powered-off host can restart"),
        "{err}"
    );
}

#[test]
fn power_loss_drops_unsynced_writes_and_peers_hang_instead_of_seeing_a_close() {
    let p = plan(vec![
        at(100, Fault::PowerLoss { host: host("server") }),
        at(400, Fault::Restart { host: host("server") }),
    ]);
    let (obs, world) = run(6, p, 60, 10, false, 1_500);
    let disk = world.disk("server").unwrap();
    let handled_before = obs
        .handled
        .iter()
        .filter(|h| h.at < SimTime::from_millis(100))
        .count() as u64;
    let handled_after = obs.handled.len() as u64 - handled_before;
    // Nothing was synced before the power loss: only the post-restart writes remain.
    let records = faultline_sim::LogFile::open(disk, "calls.log").1.records.len() as u64;
    assert_eq!(
        records, handled_after,
        "power loss dropped the {handled_before} unsynced records"
    );
    assert!(handled_before > 0);
    // A crash closes connections at once; power loss leaves peers to time out.
    let during = calls_sent_between(&obs, 110, 390);
    assert!(!during.is_empty());
    for s in during {
        assert!(s.reply.is_none());
    }
    // Never synced, not even its name: the whole file was undone.
    assert!(world.trace().events().iter().any(|e| e.kind == kind::NAME_UNDONE));
}

#[test]
fn synced_writes_survive_power_loss() {
    let p = plan(vec![
        at(100, Fault::PowerLoss { host: host("server") }),
        at(200, Fault::Restart { host: host("server") }),
    ]);
    let (obs, world) = run(7, p, 30, 10, true, 1_000);
    let records = faultline_sim::LogFile::open(world.disk("server").unwrap(), "calls.log")
        .1
        .records
        .len();
    assert_eq!(
        records,
        obs.handled.len(),
        "every handled call was synced before it was answered"
    );
}

#[test]
fn pause_stalls_a_host_and_resume_delivers_what_waited() {
    let p = plan(vec![
        at(100, Fault::Pause { host: host("server") }),
        at(150, Fault::Resume { host: host("server") }),
    ]);
    let (obs, _) = run(8, p, 30, 10, true, 1_000);
    let during = calls_sent_between(&obs, 100, 140);
    assert!(!during.is_empty());
    for s in during {
        assert!(
            s.reply.is_some(),
            "call {} waits out the pause within its timeout",
            s.n
        );
        assert!(s.done >= SimTime::from_millis(150));
    }
    let handled_in_pause = obs
        .handled
        .iter()
        .filter(|h| h.at >= SimTime::from_millis(101) && h.at < SimTime::from_millis(150))
        .count();
    assert_eq!(handled_in_pause, 0, "a paused host hears nothing");
}

#[test]
fn a_plan_heal_does_not_reconnect_a_powered_off_host() {
    // The heal of a plan partition must not undo the power loss's own cut.
    let p = plan(vec![
        at(
            50,
            Fault::Partition {
                a: host("client"),
                b: host("server"),
            },
        ),
        at(100, Fault::PowerLoss { host: host("server") }),
        at(
            150,
            Fault::Heal {
                a: host("client"),
                b: host("server"),
            },
        ),
        at(400, Fault::Restart { host: host("server") }),
    ]);
    let (obs, _) = run(9, p, 60, 10, true, 1_500);
    assert!(calls_sent_between(&obs, 160, 390)
        .iter()
        .all(|s| s.reply.is_none()));
    assert!(calls_sent_between(&obs, 420, 10_000)
        .iter()
        .all(|s| s.reply.is_some()));
}

fn disk_fault_window(kind: DiskFaultKind) -> (Observed, World) {
    let p = plan(vec![
        at(
            100,
            Fault::DiskFault {
                host: host("server"),
                kind,
            },
        ),
        at(
            200,
            Fault::DiskHeal {
                host: host("server"),
                kind,
            },
        ),
    ]);
    run(10, p, 30, 10, true, 1_000)
}

fn logged_calls(world: &World) -> usize {
    faultline_sim::LogFile::open(world.disk("server").unwrap(), "calls.log")
        .1
        .records
        .len()
}

#[test]
fn write_error_window_fails_the_writes_inside_it_only() {
    let (obs, world) = disk_fault_window(DiskFaultKind::WriteError);
    let failed = world
        .trace()
        .events()
        .iter()
        .filter(|e| e.kind == kind::WRITE_ERROR)
        .count();
    assert!(failed > 0);
    assert_eq!(logged_calls(&world), obs.handled.len() - failed);
}

#[test]
fn sync_error_window_loses_the_records_it_could_not_sync() {
    let (obs, world) = disk_fault_window(DiskFaultKind::SyncError);
    let lost = world
        .trace()
        .events()
        .iter()
        .filter(|e| e.kind == kind::SYNC_ERROR)
        .count();
    assert!(lost > 0);
    assert_eq!(logged_calls(&world), obs.handled.len() - lost);
}

#[test]
fn disk_full_window_refuses_appends_then_recovers() {
    let (obs, world) = disk_fault_window(DiskFaultKind::Full);
    let refused = world
        .trace()
        .events()
        .iter()
        .filter(|e| e.kind == kind::DISK_FULL)
        .count();
    assert!(refused > 0);
    assert_eq!(logged_calls(&world), obs.handled.len() - refused);
}

#[test]
fn clock_skew_shifts_the_hosts_wall_clock_while_it_lasts() {
    let p = plan(vec![
        at(
            100,
            Fault::ClockSkew {
                host: host("client"),
                skew_ms: -750,
                drift_ppm: 0,
            },
        ),
        at(
            200,
            Fault::ClockSkew {
                host: host("client"),
                skew_ms: 0,
                drift_ppm: 0,
            },
        ),
    ]);
    let (obs, _) = run(11, p, 30, 10, true, 1_000);
    for (t, skew) in &obs.wall_clock_skew_us {
        let inside = *t >= SimTime::from_millis(100) && *t < SimTime::from_millis(200);
        assert_eq!(*skew, if inside { -750_000 } else { 0 }, "at {t}");
    }
}

fn message_faults(rates: MessageFaultRates) -> Vec<FaultEvent> {
    vec![
        at(0, Fault::MessageFaults { rates }),
        at(
            2_000,
            Fault::MessageFaults {
                rates: MessageFaultRates::default(),
            },
        ),
    ]
}

#[test]
fn link_message_faults_touch_only_the_calls_of_their_link() {
    let link = |from: &str, to: &str, loss: f64| Fault::LinkMessageFaults {
        from: host(from),
        to: host(to),
        rates: MessageFaultRates {
            loss,
            ..Default::default()
        },
    };
    let dropped = |world: &World| {
        world
            .trace()
            .events()
            .iter()
            .filter(|e| e.kind == kind::DROP)
            .count()
    };
    // The server never calls the client: a bad server -> client link loses nothing.
    let (obs, world) = run(
        12,
        plan(vec![at(0, link("server", "client", 1.0))]),
        40,
        10,
        true,
        3_000,
    );
    assert_eq!((dropped(&world), ok_count(&obs)), (0, 40));
    // The client -> server link loses about half its calls while the episode lasts,
    // and none after it heals.
    let p = plan(vec![
        at(0, link("client", "server", 0.5)),
        at(200, link("client", "server", 0.0)),
    ]);
    let (obs, world) = run(12, p, 40, 10, true, 3_000);
    assert!(dropped(&world) > 3, "{} dropped", dropped(&world));
    assert!(calls_sent_between(&obs, 250, 3_000)
        .iter()
        .all(|s| s.reply.is_some()));
    assert!(FaultPlan::from_events(vec![at(0, link("client", "server", 0.5))])
        .unhealed()
        .contains(&"message faults are on client -> server".to_string()));
}

#[test]
fn lost_request_is_never_handled_and_the_caller_times_out() {
    let p = plan(message_faults(MessageFaultRates {
        loss: 0.5,
        ..Default::default()
    }));
    let (obs, world) = run(12, p, 40, 10, true, 3_000);
    let dropped = world
        .trace()
        .events()
        .iter()
        .filter(|e| e.kind == kind::DROP)
        .count();
    assert!(dropped > 5);
    assert_eq!(obs.handled.len(), 40 - dropped);
    assert_eq!(ok_count(&obs), 40 - dropped);
}

#[test]
fn lost_response_means_the_server_acted_but_the_caller_thinks_it_failed() {
    let p = plan(message_faults(MessageFaultRates {
        lost_response: 0.5,
        ..Default::default()
    }));
    let (obs, _) = run(13, p, 40, 10, true, 3_000);
    let failed: Vec<u64> = obs
        .seen
        .iter()
        .filter(|s| s.reply.is_none())
        .map(|s| s.n)
        .collect();
    assert!(failed.len() > 5);
    assert_eq!(
        obs.handled.len(),
        40,
        "every request was handled, answered or not"
    );
    for n in failed {
        assert!(
            obs.handled.iter().any(|h| h.n == n),
            "call {n} failed at the caller yet ran"
        );
    }
}

#[test]
fn duplicate_delivers_a_request_twice() {
    let p = plan(message_faults(MessageFaultRates {
        duplicate: 0.5,
        ..Default::default()
    }));
    let (obs, world) = run(14, p, 40, 10, true, 3_000);
    let duplicated = world
        .trace()
        .events()
        .iter()
        .filter(|e| e.kind == kind::DUPLICATE)
        .count();
    assert!(duplicated > 5);
    assert_eq!(ok_count(&obs), 40, "the caller sees each call answered once");
    assert_eq!(
        obs.handled.len(),
        40 + duplicated,
        "the server handled every copy"
    );
}

#[test]
fn delay_reorders_calls_across_connections() {
    let p = plan(message_faults(MessageFaultRates {
        delay: 0.5,
        delay_max_ms: 80,
        ..Default::default()
    }));
    // Calls 20 ms apart cannot overtake each other under 1–10 ms jitter alone.
    let (obs, _) = run(15, p, 40, 20, true, 3_000);
    assert_eq!(obs.handled.len(), 40);
    let order: Vec<u64> = obs.handled.iter().map(|h| h.n).collect();
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(inversions > 0, "delays must reorder some calls: {order:?}");
    let (baseline, _) = run(15, FaultPlan::default(), 40, 20, true, 3_000);
    let order: Vec<u64> = baseline.handled.iter().map(|h| h.n).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "without delays, calls 20 ms apart arrive in order"
    );
}

#[test]
fn a_request_delayed_past_its_callers_timeout_is_handled_after_the_caller_gave_up() {
    let p = plan(message_faults(MessageFaultRates {
        delay: 1.0,
        delay_max_ms: 20,
        ..Default::default()
    }));
    let (obs, world) = run(16, p, 60, 10, true, 3_000);
    let late: Vec<&fixture::Seen> = obs
        .seen
        .iter()
        .filter(|s| {
            obs.handled
                .iter()
                .any(|h| h.n == s.n && h.at > s.done && s.reply.is_none())
        })
        .collect();
    assert!(!late.is_empty(), "some delays exceed the 200 ms timeout");
    for s in &late {
        assert!(
            s.done.saturating_since(s.sent) >= fixture::TIMEOUT,
            "call {} gave up at its deadline",
            s.n
        );
    }
    let events = world.trace().events();
    assert!(events.iter().any(|e| e.kind == kind::LATE_ARRIVAL));
    assert!(world
        .trace()
        .coverage()
        .hits()
        .contains_key("timeout/late-arrival"));
    // Within its bound, a delay stays inside the deadline: most delayed calls succeed.
    assert!(ok_count(&obs) > 40, "{} of 60 answered", ok_count(&obs));
}

#[test]
fn a_duplicate_is_handled_before_its_call_completes_never_after_a_later_call() {
    let p = plan(message_faults(MessageFaultRates {
        duplicate: 0.5,
        ..Default::default()
    }));
    let (obs, _) = run(17, p, 40, 10, true, 3_000);
    for s in &obs.seen {
        let copies: Vec<&fixture::Handled> = obs.handled.iter().filter(|h| h.n == s.n).collect();
        for copy in copies {
            assert!(
                copy.at <= s.done,
                "call {}: a copy was handled after the call completed",
                s.n
            );
        }
    }
}

#[test]
fn tracing_events_from_host_code_are_captured_with_host_and_sim_time() {
    let mut world = World::new(WorldConfig::new(Seed(1)));
    world
        .host("logger", |_ctx| async {
            faultline_sim::timer::sleep(std::time::Duration::from_millis(42)).await;
            tracing::info!(target: "component", answer = 42, "something happened");
            std::future::pending::<()>().await;
            Ok(())
        })
        .unwrap();
    world.run_until(SimTime::from_millis(100), |_| false).unwrap();
    let events = world.trace().events();
    let e = events.iter().find(|e| e.kind == "component").expect("captured");
    assert_eq!(&*e.host, "logger");
    assert_eq!(e.at, SimTime::from_millis(42));
    assert_eq!(e.detail, "something happened answer=42");
}

#[test]
fn settled_predicate_stops_the_run_early_only_after_the_last_fault() {
    let mut world = World::new(WorldConfig::new(Seed(1)));
    world
        .host("a", |_ctx| async {
            std::future::pending::<()>().await;
            Ok(())
        })
        .unwrap();
    world
        .host("b", |_ctx| async {
            std::future::pending::<()>().await;
            Ok(())
        })
        .unwrap();
    world.set_plan(plan(vec![
        at(
            200,
            Fault::Partition {
                a: host("a"),
                b: host("b"),
            },
        ),
        at(
            300,
            Fault::Heal {
                a: host("a"),
                b: host("b"),
            },
        ),
    ]));
    let summary = world.run_until(SimTime::from_secs(10), |_| true).unwrap();
    assert_eq!(summary.ended, faultline_sim::Ended::Settled);
    assert_eq!(summary.end, SimTime::from_millis(300));
    assert_eq!(summary.faults_applied, 2);
}

/// A world ends early only once every host reports no pending work, after the given
/// instant and the last fault, and not while the caller's condition holds; a host that
/// reports nothing keeps the run going.
#[test]
fn a_run_ends_where_no_host_reports_pending_work() {
    fn world(report_on_b: bool, unless: bool) -> faultline_sim::RunSummary {
        let mut world = World::new(WorldConfig::new(Seed(1)));
        world
            .host("a", |ctx| async move {
                // Busy until a timer at 700 ms ends its work.
                let work = faultline_sim::progress::Work::default();
                ctx.report_progress("job", work.probe("job(s) running"));
                let job = work.start();
                faultline_sim::timer::sleep(std::time::Duration::from_millis(700)).await;
                drop(job);
                std::future::pending::<()>().await;
                Ok(())
            })
            .unwrap();
        world
            .host("b", move |ctx| async move {
                if report_on_b {
                    ctx.report_progress("idle", || None);
                }
                std::future::pending::<()>().await;
                Ok(())
            })
            .unwrap();
        world.set_plan(plan(vec![
            at(900, Fault::Crash { host: host("b") }),
            at(950, Fault::Restart { host: host("b") }),
        ]));
        world.end_when_idle_from(SimTime::from_millis(500), move || unless);
        world.run_until(SimTime::from_secs(10), |_| false).unwrap()
    }
    let ended = world(true, false);
    assert_eq!(ended.ended, faultline_sim::Ended::Idle);
    // After the job (700 ms) and the last fault (950 ms): the restarted host reports
    // in its first tick, so the first boundary with nothing pending is the next one.
    assert_eq!(ended.end, SimTime::from_millis(951));
    let silent = world(false, false);
    assert_eq!(
        silent.ended,
        faultline_sim::Ended::Deadline,
        "a host that reports nothing is busy"
    );
    let held = world(true, true);
    assert_eq!(
        held.ended,
        faultline_sim::Ended::Deadline,
        "the caller's condition holds it"
    );
}

/// Three calls 400 ms apart, each on a new connection (the accept completes the
/// client's connect without a message: the case that needs the hosts' woken flags).
fn sparse_calls(skip_idle: bool) -> (Vec<(SimTime, SimTime)>, faultline_sim::RunSummary) {
    let obs: fixture::Shared = Default::default();
    let mut world = World::new(WorldConfig {
        skip_idle,
        ..WorldConfig::new(Seed(7))
    });
    let server_obs = obs.clone();
    world
        .host("server", move |ctx| {
            fixture::server(ctx, server_obs.clone(), true)
        })
        .unwrap();
    let client_obs = obs.clone();
    world
        .host("client", move |ctx| {
            fixture::client(ctx, client_obs.clone(), 3, std::time::Duration::from_millis(400))
        })
        .unwrap();
    let summary = world.run_until(SimTime::from_millis(1_500), |_| false).unwrap();
    let calls = obs.borrow().seen.iter().map(|s| (s.sent, s.done)).collect();
    (calls, summary)
}

#[test]
fn idle_stretches_are_crossed_in_one_step_and_the_run_is_the_same() {
    let (calls, skipping) = sparse_calls(true);
    let (calls_every_tick, every_tick) = sparse_calls(false);
    assert_eq!(calls.len(), 3);
    assert_eq!(calls, calls_every_tick, "the same calls at the same instants");
    assert_eq!(skipping.trace_hash, every_tick.trace_hash);
    assert_eq!(skipping.end, every_tick.end);
    assert_eq!(every_tick.steps, 1_500);
    assert!(
        skipping.steps < 150,
        "three calls and their syncs need a few dozen steps, took {}",
        skipping.steps
    );
}
