//! A tiny system for world tests: a server that counts and logs calls to its disk, and a
//! client that calls it on a fixed schedule and records what it saw.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{
    serve, FaultPlan, HostCtx, LogFile, RpcClient, RpcMessage, Seed, SimTime, World, WorldConfig,
};
use serde::{Deserialize, Serialize};

pub const PORT: u16 = 7000;
pub const TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bump {
    pub n: u64,
}

impl RpcMessage for Bump {
    fn label(&self) -> String {
        format!("bump {}", self.n)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Count {
    pub n: u64,
    pub total: u64,
    pub incarnation: u32,
}

impl RpcMessage for Count {
    fn label(&self) -> String {
        format!("count {} total={}", self.n, self.total)
    }
}

/// What the client saw for one call.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub n: u64,
    pub sent: SimTime,
    pub done: SimTime,
    pub reply: Option<Count>,
}

/// What the server handled, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Handled {
    pub n: u64,
    pub at: SimTime,
    pub incarnation: u32,
}

#[derive(Default)]
pub struct Observed {
    pub seen: Vec<Seen>,
    pub handled: Vec<Handled>,
    pub wall_clock_skew_us: Vec<(SimTime, i64)>,
}

pub type Shared = Rc<RefCell<Observed>>;

/// Server: counts calls in memory (lost on crash), logs each to disk (synced when
/// `sync` is set), and answers with the count.
pub async fn server(ctx: HostCtx, obs: Shared, sync: bool) -> faultline_sim::HostResult {
    let (log, _recovered) = LogFile::open(ctx.disk(), "calls.log");
    let total = Rc::new(RefCell::new(0u64));
    // One writer at a time, so that cutting back after a failed fsync drops only the
    // record whose sync failed.
    let writer = Rc::new(tokio::sync::Mutex::new(()));
    let incarnation = ctx.incarnation();
    let handler_ctx = ctx.clone();
    serve(ctx, PORT, move |req: Bump| {
        let total = Rc::clone(&total);
        let obs = Rc::clone(&obs);
        let log = log.clone();
        let ctx = handler_ctx.clone();
        let writer = Rc::clone(&writer);
        async move {
            *total.borrow_mut() += 1;
            {
                let _writing = writer.lock().await;
                let appended = log.append(&req.n.to_le_bytes()).await.is_ok();
                if appended && sync && log.sync().await.is_err() {
                    log.discard_unsynced();
                }
            }
            // Handled once its write returned, whatever it returned.
            obs.borrow_mut().handled.push(Handled {
                n: req.n,
                at: ctx.now(),
                incarnation,
            });
            Count {
                n: req.n,
                total: *total.borrow(),
                incarnation,
            }
        }
    })
    .await?;
    Ok(())
}

/// Client: sends `calls` bumps, one every `every`, each in its own task so that they
/// can overlap; also samples its wall clock once per call.
pub async fn client(ctx: HostCtx, obs: Shared, calls: u64, every: Duration) -> faultline_sim::HostResult {
    let rpc: RpcClient<Bump, Count> = RpcClient::new(&ctx, "server", PORT, TIMEOUT);
    let mut tasks = Vec::new();
    for n in 0..calls {
        let rpc = rpc.clone();
        let task_obs = Rc::clone(&obs);
        let task_ctx = ctx.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let sent = task_ctx.now();
            let reply = rpc.call(&Bump { n }).await.ok();
            task_obs.borrow_mut().seen.push(Seen {
                n,
                sent,
                done: task_ctx.now(),
                reply,
            });
        }));
        let skew = ctx.wall_clock().as_unix_micros()
            - faultline_sim::HostClock::default()
                .read(ctx.now())
                .as_unix_micros();
        obs.borrow_mut().wall_clock_skew_us.push((ctx.now(), skew));
        faultline_sim::timer::sleep(every).await;
    }
    // A host whose start function returns is no longer stepped: wait for the calls.
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// Builds the two-host world with `plan` and runs it for `run_ms`.
pub fn run(
    seed: u64,
    plan: FaultPlan,
    calls: u64,
    every_ms: u64,
    sync: bool,
    run_ms: u64,
) -> (Observed, World) {
    let obs: Shared = Rc::default();
    let mut world = World::new(WorldConfig::new(Seed(seed)));
    let server_obs = Rc::clone(&obs);
    world
        .host("server", move |ctx| server(ctx, Rc::clone(&server_obs), sync))
        .unwrap();
    let client_obs = Rc::clone(&obs);
    world
        .host("client", move |ctx| {
            client(
                ctx,
                Rc::clone(&client_obs),
                calls,
                Duration::from_millis(every_ms),
            )
        })
        .unwrap();
    world.set_plan(plan);
    world.run_until(SimTime::from_millis(run_ms), |_| false).unwrap();
    let observed = std::mem::take(&mut *obs.borrow_mut());
    (observed, world)
}

pub fn ok_count(obs: &Observed) -> usize {
    obs.seen.iter().filter(|s| s.reply.is_some()).count()
}
