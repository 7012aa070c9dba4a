//! Determinism: the same seed gives the same trace hash; different seeds differ.
//!
//! The workload mixes everything that could leak nondeterminism: RPC over several
//! connections, disk appends and syncs, timers, and `select!` over two ready branches,
//! all under the `chaos` profile.

use std::time::Duration;

use faultline_sim::{
    FaultTarget, FaultWindow, LogFile, Profile, RpcClient, Seed, SimTime, TraceHash, World, WorldConfig,
};
use rand::Rng;

use crate::fixture::{self, Bump, Count, PORT};

const HOSTS: [&str; 3] = ["client", "server", "ticker"];

/// How the ticker's `select!` chooses between two ready branches.
#[derive(Clone, Copy)]
enum Choice {
    /// tokio's fair choice, drawn from its thread RNG: seeded, so the same seed gives
    /// the same run, but reseeded at every entry into a runtime, so stepping every
    /// tick and skipping idle stretches draw differently. The world's own software
    /// never does this (a test holds every `select!` in the workspace to `biased;`).
    Fair,
    /// The first ready branch, as every `select!` in the workspace chooses.
    Biased,
}

/// Which of the ticker's two waits finished first.
enum Ticked<R> {
    Paused,
    Replied(R),
}

async fn ticker(ctx: faultline_sim::HostCtx, choice: Choice) -> faultline_sim::HostResult {
    let rpc: RpcClient<Bump, Count> = RpcClient::new(&ctx, "server", PORT, fixture::TIMEOUT);
    let (log, _) = LogFile::open(ctx.disk(), "ticks.log");
    let mut rng = ctx.rng("ticks");
    let mut n = 1_000_000;
    loop {
        n += 1;
        let pause = Duration::from_millis(rng.gen_range(1..20));
        let bump = Bump { n };
        let ticked = match choice {
            Choice::Fair => tokio::select! {
                _ = faultline_sim::timer::sleep(pause) => Ticked::Paused,
                reply = rpc.call(&bump) => Ticked::Replied(reply),
            },
            Choice::Biased => tokio::select! {
                biased;
                _ = faultline_sim::timer::sleep(pause) => Ticked::Paused,
                reply = rpc.call(&bump) => Ticked::Replied(reply),
            },
        };
        match ticked {
            Ticked::Paused => {
                let _ = log.append(&n.to_le_bytes()).await;
                if rng.gen_bool(0.5) {
                    let _ = log.sync().await;
                }
            }
            Ticked::Replied(reply) => {
                ctx.record("ticker", format!("reply ok={}", reply.is_ok()));
                if reply.is_err() {
                    // Back off: a refused connect fails at once, and a tight loop would
                    // spin at one instant.
                    faultline_sim::timer::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

/// One chaos run of the three-host workload; returns its trace hash.
pub fn chaos_run(seed: u64) -> TraceHash {
    chaos_run_stepping(seed, true, Choice::Fair).0
}

/// One chaos run, skipping idle stretches or stepping every tick; returns its trace
/// hash and how many steps it took.
fn chaos_run_stepping(seed: u64, skip_idle: bool, choice: Choice) -> (TraceHash, u64) {
    let obs = fixture::Shared::default();
    let mut world = World::new(WorldConfig {
        keep_trace_events: false,
        skip_idle,
        ..WorldConfig::new(Seed(seed))
    });
    let server_obs = obs.clone();
    world
        .host("server", move |ctx| {
            fixture::server(ctx, server_obs.clone(), false)
        })
        .unwrap();
    let client_obs = obs.clone();
    world
        .host("client", move |ctx| {
            fixture::client(ctx, client_obs.clone(), 100, Duration::from_millis(7))
        })
        .unwrap();
    world.host("ticker", move |ctx| ticker(ctx, choice)).unwrap();
    let targets: Vec<FaultTarget> = HOSTS
        .iter()
        .map(|h| FaultTarget {
            name: h.to_string(),
            crashable: *h != "client",
            has_disk: true,
            handles_inputs: false,
            cluster: None,
        })
        .collect();
    let window = FaultWindow {
        start: SimTime::from_millis(50),
        end: SimTime::from_millis(1_200),
    };
    world.set_plan(Profile::Chaos.generate(&world.streams(), &targets, window));
    let summary = world.run_until(SimTime::from_millis(1_500), |_| false).unwrap();
    (summary.trace_hash, summary.steps)
}

#[test]
fn skipping_idle_stretches_leaves_every_trace_as_stepping_every_tick_for_50_seeds() {
    let (mut skipping, mut every_tick) = (0, 0);
    for seed in 0..50 {
        let (hash, steps) = chaos_run_stepping(seed, true, Choice::Biased);
        let (hash_every_tick, steps_every_tick) = chaos_run_stepping(seed, false, Choice::Biased);
        assert_eq!(
            hash, hash_every_tick,
            "seed {seed}: skipping idle stretches changed the run"
        );
        skipping += steps;
        every_tick += steps_every_tick;
    }
    assert_eq!(every_tick, 50 * 1_500, "one step per millisecond");
    assert!(
        skipping < every_tick,
        "the workload idles between calls, yet {skipping} steps of {every_tick} were taken"
    );
}

#[test]
fn determinism_same_seed_same_trace_hash_under_chaos_for_50_seeds() {
    let mut hashes = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let first = chaos_run(seed);
        let second = chaos_run(seed);
        assert_eq!(
            first, second,
            "non-determinism detected: seed {seed} gave {first} then {second}"
        );
        hashes.insert(first);
    }
    assert_eq!(hashes.len(), 50, "different seeds must give different traces");
}

#[test]
fn determinism_holds_across_threads() {
    let here = chaos_run(7);
    let there = std::thread::spawn(|| chaos_run(7)).join().unwrap();
    assert_eq!(here, there);
}
