//! Whole runs, the checker, the disk, and a faultline run next to a bare-turmoil run
//! doing the same amount of stepping and messaging.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faultline::patterns::domain::{ActionId, CustomerId, EntityKey, RowImage, Table, TxId, Version};
use faultline::patterns::history::{ApplyRecord, CommitRecord, History, RowState, RowVersion};
use faultline::patterns::{Variant, VARIANTS};
use faultline::scenarios::invariants::check_all;
use faultline::scenarios::{run, RunOptions, RunSpec, Scenario};
use faultline::sim::{Disk, DiskConfig, EventId, LogFile, Profile, RngStreams, Seed, SimTime, Trace};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn spec(variant: &'static Variant, profile: Profile, seed: u64) -> RunSpec {
    RunSpec::new(variant, Scenario::standard(), profile, Seed(seed))
}

/// One standard run per variant under chaos (seed 1).
fn standard_runs(c: &mut Criterion) {
    let mut group = c.benchmark_group("standard_run_chaos");
    group.sample_size(10);
    for variant in VARIANTS {
        group.bench_function(BenchmarkId::from_parameter(variant.name), |b| {
            b.iter(|| run(&spec(variant, Profile::Chaos, 1), RunOptions::default()).unwrap())
        });
    }
    group.finish();
}

/// A large recorded history: `n` commits of one row each over `n / 10` customers, each
/// applied once at the target, in order.
fn large_history(n: u64) -> History {
    let mut h = History::default();
    let mut versions = std::collections::BTreeMap::new();
    for i in 0..n {
        let key = EntityKey {
            table: Table::Customer,
            customer: CustomerId(i % (n / 10)),
        };
        let v = versions.entry(key).and_modify(|v| *v += 1).or_insert(1u64);
        let at = SimTime::from_micros(i * 100);
        let row = RowImage {
            key,
            version: Version(*v),
            data: Some(Default::default()),
            written_at: None,
        };
        h.commits.push(CommitRecord {
            tx: TxId(i),
            action: ActionId(i),
            at,
            rows: vec![row],
            event: EventId(2 * i),
        });
        h.applies.push(ApplyRecord {
            at: at + Duration::from_millis(5),
            rows: vec![RowVersion {
                key,
                version: Version(*v),
                deleted: false,
            }],
            event: EventId(2 * i + 1),
            recovery: false,
        });
    }
    for (key, v) in versions {
        let state = RowState {
            version: Version(v),
            data: Some(Default::default()),
        };
        h.final_source.insert(key, state.clone());
        h.final_target.insert(key, state);
    }
    h.staleness_bound = Some(Duration::from_secs(5));
    h
}

/// The checker alone, in history events (commits + applies) per second.
fn checker(c: &mut Criterion) {
    let mut group = c.benchmark_group("checker");
    group.sample_size(10);
    for n in [100_000u64, 400_000] {
        let history = large_history(n);
        group.throughput(Throughput::Elements(2 * n));
        group.bench_with_input(BenchmarkId::new("all_invariants", 2 * n), &history, |b, h| {
            b.iter(|| check_all(h))
        });
    }
    group.finish();
}

/// The output of a future that completes on its first poll (instant disk I/O).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => unreachable!("instant disk I/O never waits"),
    }
}

/// Disk: append a 200-byte log record and sync it.
fn disk(c: &mut Criterion) {
    let mut group = c.benchmark_group("disk");
    // Instant I/O: the bookkeeping's cost, not simulated latency (which costs no wall
    // time but would make the future wait for a runtime).
    let disk = Disk::new(
        Arc::from("h"),
        DiskConfig::instant(),
        RngStreams::new(Seed(1)).stream("d"),
        RngStreams::new(Seed(1)).stream("l"),
        Trace::new(false),
    );
    let (log, _) = LogFile::open(&disk, "log");
    let record = vec![7u8; 200];
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_sync_200b", |b| {
        b.iter(|| {
            ready(log.append(&record)).unwrap();
            ready(log.sync()).unwrap();
        })
    });
    group.finish();
}

#[derive(Serialize, Deserialize)]
struct Ping {
    n: u64,
    payload: String,
}

async fn write_frame(stream: &mut turmoil::net::TcpStream, ping: &Ping) {
    let bytes = serde_json::to_vec(ping).unwrap();
    let mut buf = (bytes.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(&bytes);
    stream.write_all(&buf).await.unwrap();
}

async fn read_frame(stream: &mut turmoil::net::TcpStream) -> Option<Ping> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.ok()?;
    serde_json::from_slice(&buf).ok()
}

/// A bare-turmoil run with `hosts` hosts that steps `sim` and makes `calls` round trips
/// from one host to another, evenly spread: the same stepping and messaging as a
/// faultline run, without faultline.
fn bare_equivalent(hosts: usize, sim: Duration, calls: u64) {
    let mut sim_world = turmoil::Builder::new()
        .epoch(UNIX_EPOCH + Duration::from_secs(1_704_067_200))
        .rng_seed(1)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(3600))
        .build();
    sim_world.host("server", || async {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 7000)).await?;
        loop {
            let (mut stream, _) = listener.accept().await?;
            tokio::task::spawn_local(async move {
                while let Some(p) = read_frame(&mut stream).await {
                    write_frame(&mut stream, &p).await;
                }
            });
        }
    });
    for i in 2..hosts {
        sim_world.host(format!("idle{i}"), || async {
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    let gap = sim / (calls.max(1) as u32);
    let done = Rc::new(Cell::new(false));
    let flag = Rc::clone(&done);
    sim_world.host("client", move || {
        let flag = Rc::clone(&flag);
        async move {
            let mut stream = turmoil::net::TcpStream::connect(("server", 7000)).await?;
            for n in 0..calls {
                write_frame(
                    &mut stream,
                    &Ping {
                        n,
                        payload: "x".repeat(150),
                    },
                )
                .await;
                read_frame(&mut stream).await.unwrap();
                faultline_sim::timer::sleep(gap.saturating_sub(Duration::from_millis(10))).await;
            }
            flag.set(true);
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let steps = sim.as_millis() as u64;
    for _ in 0..steps {
        sim_world.step().unwrap();
    }
}

/// The same work with and without faultline: the ratio is faultline's overhead.
fn equal_work(c: &mut Criterion) {
    let mut group = c.benchmark_group("equal_work_outbox_inbox_none");
    group.sample_size(10);
    let variant = Variant::by_name("outbox-inbox").unwrap();
    let outcome = run(&spec(variant, Profile::None, 0), RunOptions::default()).unwrap();
    let sim = outcome.summary.end.as_duration();
    let calls = outcome.metrics.calls;
    let hosts = variant.hosts().len();
    group.bench_function("faultline", |b| {
        b.iter(|| run(&spec(variant, Profile::None, 0), RunOptions::default()).unwrap())
    });
    // The same stepping as the bare run (every tick), for the overhead alone.
    let every_tick = RunOptions {
        step_every_tick: true,
        ..RunOptions::default()
    };
    group.bench_function("faultline_every_tick", |b| {
        b.iter(|| run(&spec(variant, Profile::None, 0), every_tick).unwrap())
    });
    group.bench_function("bare_turmoil", |b| b.iter(|| bare_equivalent(hosts, sim, calls)));
    group.finish();
}

criterion_group!(benches, standard_runs, checker, disk, equal_work);
criterion_main!(benches);
