//! The world's overhead over bare turmoil, as ratios read from one group each:
//! idle stepping of five hosts, and a hundred sequential RPC round trips.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use faultline_sim::{serve, RpcClient, RpcMessage, Seed, SimTime, World, WorldConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTS: usize = 5;
const CALLS: u64 = 100;
const PORT: u16 = 7000;

fn bare_sim() -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .epoch(UNIX_EPOCH + Duration::from_secs(1_704_067_200))
        .rng_seed(1)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(3600))
        .build()
}

fn world() -> World {
    World::new(WorldConfig {
        keep_trace_events: false,
        ..WorldConfig::new(Seed(1))
    })
}

fn idle_stepping(c: &mut Criterion) {
    let mut group = c.benchmark_group("idle_5_hosts_1s");
    group.bench_function("bare_turmoil", |b| {
        b.iter(|| {
            let mut sim = bare_sim();
            for i in 0..HOSTS {
                sim.host(format!("h{i}"), || async {
                    std::future::pending::<()>().await;
                    Ok(())
                });
            }
            for _ in 0..1000 {
                sim.step().unwrap();
            }
        })
    });
    group.bench_function("faultline", |b| {
        b.iter(|| {
            let mut w = world();
            for i in 0..HOSTS {
                w.host(&format!("h{i}"), |_| async {
                    std::future::pending::<()>().await;
                    Ok(())
                })
                .unwrap();
            }
            w.run_until(SimTime::from_secs(1), |_| false).unwrap();
        })
    });
    group.finish();
}

#[derive(Serialize, Deserialize)]
struct Ping {
    n: u64,
    payload: String,
}

impl RpcMessage for Ping {
    fn label(&self) -> String {
        format!("ping {}", self.n)
    }
}

async fn bare_frame_write(stream: &mut turmoil::net::TcpStream, ping: &Ping) {
    let bytes = serde_json::to_vec(ping).unwrap();
    let mut buf = (bytes.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(&bytes);
    stream.write_all(&buf).await.unwrap();
}

async fn bare_frame_read(stream: &mut turmoil::net::TcpStream) -> Option<Ping> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.ok()?;
    serde_json::from_slice(&buf).ok()
}

fn ping(n: u64) -> Ping {
    Ping {
        n,
        payload: "x".repeat(150),
    }
}

fn rpc_round_trips(c: &mut Criterion) {
    let mut group = c.benchmark_group("rpc_100_round_trips");
    group.bench_function("bare_turmoil", |b| {
        b.iter(|| {
            let mut sim = bare_sim();
            sim.host("server", || async {
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
                loop {
                    let (mut stream, _) = listener.accept().await?;
                    tokio::task::spawn_local(async move {
                        while let Some(p) = bare_frame_read(&mut stream).await {
                            bare_frame_write(&mut stream, &p).await;
                        }
                    });
                }
            });
            let done = Rc::new(Cell::new(false));
            let flag = Rc::clone(&done);
            sim.host("client", move || {
                let flag = Rc::clone(&flag);
                async move {
                    let mut stream = turmoil::net::TcpStream::connect(("server", PORT)).await?;
                    for n in 0..CALLS {
                        bare_frame_write(&mut stream, &ping(n)).await;
                        bare_frame_read(&mut stream).await.unwrap();
                    }
                    flag.set(true);
                    std::future::pending::<()>().await;
                    Ok(())
                }
            });
            while !done.get() {
                sim.step().unwrap();
            }
        })
    });
    group.bench_function("faultline", |b| {
        b.iter(|| {
            let mut w = world();
            w.host("server", |ctx| async move {
                serve(ctx, PORT, |p: Ping| async move { p }).await?;
                Ok(())
            })
            .unwrap();
            let done = Rc::new(Cell::new(false));
            let flag = Rc::clone(&done);
            w.host("client", move |ctx| {
                let flag = Rc::clone(&flag);
                async move {
                    let rpc: RpcClient<Ping, Ping> =
                        RpcClient::new(&ctx, "server", PORT, Duration::from_secs(1));
                    for n in 0..CALLS {
                        rpc.call(&ping(n)).await.unwrap();
                    }
                    flag.set(true);
                    std::future::pending::<()>().await;
                    Ok(())
                }
            })
            .unwrap();
            w.run_until(SimTime::from_secs(3600), |_| done.get()).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, idle_stepping, rpc_round_trips);
criterion_main!(benches);
