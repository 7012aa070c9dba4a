//! The world: a turmoil simulation plus faultline's disks, clocks, trace and fault plan.
//!
//! [`World`] is the one driver: build it from a seed, register hosts by name with a start
//! function, give it a fault plan, and step it to a deadline. The start function receives
//! a [`HostCtx`] (the host's disk, clock, random streams and trace) and runs again after
//! every restart; the disk, owned by the world, is the only thing that outlives a crash.
//! Faults are applied between steps, at the first step at or after their instant.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rand::Rng;

use crate::capture;
use crate::clock::{HostClock, WallTime, EPOCH_UNIX_SECS};
use crate::disk::{Disk, DiskConfig};
use crate::fault::{Fault, FaultPlan, MessageFaultRates, PlanError};
use crate::panic::CaughtPanic;
use crate::progress::Ended;
use crate::rng::{RngStreams, Seed, SimRng};
use crate::time::SimTime;
use crate::timer::{self, Timers};
use crate::trace::{kind, EventId, Trace, TraceHash};

/// What a host's start function returns; an `Err` stops the run with [`WorldError::Host`].
pub type HostResult = turmoil::Result;

/// Servers listen below this port; clients' ephemeral ports are this and above.
pub const EPHEMERAL_PORT_MIN: u16 = 10_000;

/// Connection attempts a listener queues before turmoil gives up (it panics, where real
/// TCP drops the SYN). Bounded in practice by every client's call timeout.
pub const ACCEPT_BACKLOG_MAX: usize = 4_096;

/// The default run budget in trace events: about a hundred times what the busiest
/// standard run records under `chaos` (some 12,000), so only a runaway reaches it.
pub const TRACE_EVENTS_MAX_DEFAULT: u64 = 1_000_000;

/// The name under which the world records its own actions in the trace.
pub const WORLD_HOST: &str = "world";

/// Settings of a world. Units are in the names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorldConfig {
    /// The run seed; every random choice derives from it.
    pub seed: Seed,
    /// Simulated time per step. Network deliveries happen on step boundaries.
    pub tick: Duration,
    /// Smallest one-way network latency.
    pub latency_min: Duration,
    /// Largest one-way network latency.
    pub latency_max: Duration,
    /// How every host's disk behaves.
    pub disk: DiskConfig,
    /// Keep every trace event (for export and evidence), or only the hash and count.
    pub keep_trace_events: bool,
    /// Capture `tracing` events from host code into the trace.
    pub capture_tracing: bool,
    /// The run's budget in trace events: a run that records more is stopped as a
    /// runaway ([`WorldError::Panicked`] with a budget).
    pub trace_events_max: u64,
    /// Cross stretches in which nothing can happen in one step. The run is the same
    /// either way (same trace, same hash); only the number of steps differs.
    pub skip_idle: bool,
}

impl WorldConfig {
    /// Defaults: 1 ms tick, 1–10 ms latency, events kept, `tracing` captured, a budget
    /// of [`TRACE_EVENTS_MAX_DEFAULT`] trace events, idle stretches skipped.
    pub fn new(seed: Seed) -> Self {
        WorldConfig {
            seed,
            tick: Duration::from_millis(1),
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(10),
            disk: DiskConfig::default(),
            keep_trace_events: true,
            capture_tracing: true,
            trace_events_max: TRACE_EVENTS_MAX_DEFAULT,
            skip_idle: true,
        }
    }
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The fault plan cannot be applied to this world.
    #[error("invalid fault plan: {0}")]
    Plan(#[from] PlanError),
    /// A host's start function returned an error.
    #[error("host software failed: {0}")]
    Host(String),
    /// Code inside the run panicked, or the run passed its budget; the run stopped there.
    #[error("{} at {at}: {panic}", if panic.budget.is_some() { "stopped" } else { "panicked" })]
    Panicked {
        /// The panic, with its message and location.
        panic: CaughtPanic,
        /// Simulated time when it happened.
        at: SimTime,
    },
    /// A host was registered twice, or a reserved name was used.
    #[error("cannot register host {0:?}: {1}")]
    Registration(String, &'static str),
}

/// State shared by the world and every host context.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) trace: Trace,
    pub(crate) streams: RngStreams,
    clocks: RefCell<BTreeMap<String, HostClock>>,
    /// Hosts running a deployed defect.
    defective: RefCell<BTreeSet<String>>,
    /// Hosts under a purge, and how much data they keep (ms).
    purged: RefCell<BTreeMap<String, u64>>,
    message_faults: Cell<MessageFaultRates>,
    /// Per-link rates (caller, server), over `message_faults`.
    link_message_faults: RefCell<BTreeMap<(String, String), MessageFaultRates>>,
    /// Each host's current process life's stop request.
    stops: RefCell<BTreeMap<String, Rc<StopRequest>>>,
    /// Each host's current process life (its incarnation), once it started.
    lives: RefCell<BTreeMap<String, u32>>,
    /// What each host's components report of their pending work, kept only when the
    /// run may end as idle ([`World::end_when_idle_from`]).
    progress: crate::progress::Probes,
    keep_probes: Cell<bool>,
}

/// A process life's stop request ([`Fault::Stop`]).
#[derive(Debug, Default)]
struct StopRequest {
    requested: Cell<bool>,
    notify: tokio::sync::Notify,
}

/// What a host's software gets from the world: its name, disk, clock, randomness and
/// trace. A new context (with the next incarnation number) is made on every restart.
#[derive(Clone, Debug)]
pub struct HostCtx {
    name: Arc<str>,
    disk: Disk,
    incarnation: u32,
    shared: Rc<Shared>,
    /// RPC clients made by this incarnation so far (numbers their calls apart).
    clients: Rc<Cell<u32>>,
    stop: Rc<StopRequest>,
}

impl HostCtx {
    /// The host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's name as a shared string (what trace events carry).
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// Marks an operation window on this host until the guard drops: a crash or power
    /// loss while it is open counts as `crash/<window>` or `power-loss/<window>` in the
    /// run's coverage.
    pub fn window(&self, window: &'static str) -> crate::coverage::WindowGuard {
        self.shared.trace.coverage().open(&self.name, window)
    }

    /// Registers a probe of `component`'s pending work on this host, for this process
    /// life: `Some(what)` while it holds work that can still change what the systems
    /// hold. A host that registers none keeps every run to its deadline or agreement
    /// ([`crate::progress`]). The probe must read state only (no clock, randomness or
    /// trace) and hold its component weakly: a probe that kept a dead life's component
    /// alive would keep its connections open, and change the run.
    pub fn report_progress(&self, component: &'static str, probe: impl Fn() -> Option<String> + 'static) {
        // A run that cannot end as idle drops its probes at once: a world without
        // them, which a test compares with one that keeps them.
        if self.shared.keep_probes.get() {
            self.shared
                .progress
                .register(&self.name, self.incarnation, component, Box::new(probe));
        }
    }

    /// Counts one hit of a window the component saw a fault land in itself.
    pub fn cover(&self, window: &str) {
        self.shared.trace.coverage().hit(self.now(), window);
    }

    /// The host's disk: the only state that survives a crash.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// How many times the host has started before this one (0 on first start).
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// Simulated time now.
    pub fn now(&self) -> SimTime {
        SimTime::now()
    }

    /// The host's wall clock now: simulated time through its skew and drift.
    pub fn wall_clock(&self) -> WallTime {
        let clock = self
            .shared
            .clocks
            .borrow()
            .get(&*self.name)
            .copied()
            .unwrap_or_default();
        clock.read(self.now())
    }

    /// Whether the host runs a deployed defect ([`crate::Fault::Defect`]): its code then
    /// fails the inputs it finds poison.
    pub fn defective(&self) -> bool {
        self.shared.defective.borrow().contains(&*self.name)
    }

    /// How much of its data the host keeps while an operator purges it
    /// ([`crate::Fault::Purge`]), in ms; `None` when no purge is on.
    pub fn purge_keep_ms(&self) -> Option<u64> {
        self.shared.purged.borrow().get(&*self.name).copied()
    }

    /// A random stream for `purpose`, private to this host and incarnation.
    pub fn rng(&self, purpose: &str) -> SimRng {
        self.shared
            .streams
            .stream(&format!("host/{}/{}/{purpose}", self.name, self.incarnation))
    }

    /// Records a component event in the trace, at this host and instant.
    pub fn record(&self, kind: &'static str, detail: impl Into<String>) -> EventId {
        self.shared.trace.record(self.now(), &self.name, kind, detail)
    }

    /// As [`HostCtx::record`] with `format_args!`: the detail is formatted only if the
    /// run keeps its events (otherwise it is hashed as it is written).
    pub fn record_fmt(&self, kind: &'static str, detail: std::fmt::Arguments<'_>) -> EventId {
        self.shared.trace.record_fmt(self.now(), &self.name, kind, detail)
    }

    /// The run's trace.
    pub fn trace(&self) -> &Trace {
        &self.shared.trace
    }

    /// Completes once this process life is asked to stop ([`Fault::Stop`], a deploy's
    /// SIGTERM): the moment for shutdown hooks. The plan kills the process later.
    pub async fn stop_requested(&self) {
        // Registered before the check: a request in between still wakes it.
        let notified = self.stop.notify.notified();
        if self.stop.requested.get() {
            return;
        }
        notified.await;
    }

    /// A number for a new RPC client, unique within this host's incarnation.
    pub(crate) fn next_client_number(&self) -> u32 {
        let n = self.clients.get();
        self.clients.set(n + 1);
        n
    }

    /// The message-fault rates in force now for calls from this host to `to`: the
    /// link's own, or else every call's.
    pub(crate) fn message_faults(&self, to: &str) -> MessageFaultRates {
        let links = self.shared.link_message_faults.borrow();
        if !links.is_empty() {
            if let Some(rates) = links.get(&(self.name().to_string(), to.to_string())) {
                return *rates;
            }
        }
        self.shared.message_faults.get()
    }
}

/// Why a directed link is cut.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CutReason {
    Plan,
    PowerLoss(String),
}

/// Why a pair of hosts is held.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HoldReason {
    Plan,
    Pause(String),
}

/// Tracks every reason a link is cut or held, so that overlapping faults compose: a
/// heal from the plan must not reconnect a powered-off host, a release must not end a
/// pause. turmoil is told only the net state of each link.
#[derive(Debug, Default)]
struct Links {
    cuts: BTreeMap<(String, String), BTreeSet<CutReason>>,
    holds: BTreeMap<(String, String), BTreeSet<HoldReason>>,
    applied: BTreeMap<(String, String), (bool, bool, bool)>,
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Links {
    fn cut(&mut self, from: &str, to: &str, reason: CutReason, on: bool) {
        let reasons = self.cuts.entry((from.to_string(), to.to_string())).or_default();
        if on {
            reasons.insert(reason);
        } else {
            reasons.remove(&reason);
        }
    }

    fn hold(&mut self, a: &str, b: &str, reason: HoldReason, on: bool) {
        let reasons = self.holds.entry(ordered(a, b)).or_default();
        if on {
            reasons.insert(reason);
        } else {
            reasons.remove(&reason);
        }
    }

    fn is_cut(&self, from: &str, to: &str) -> bool {
        self.cuts
            .get(&(from.to_string(), to.to_string()))
            .is_some_and(|r| !r.is_empty())
    }

    /// Brings turmoil's view of the link between `a` and `b` in line with the reasons.
    fn apply(&mut self, sim: &turmoil::Sim<'static>, a: &str, b: &str) {
        let (a, b) = ordered(a, b);
        let held = self
            .holds
            .get(&(a.clone(), b.clone()))
            .is_some_and(|r| !r.is_empty());
        let want = (self.is_cut(&a, &b), self.is_cut(&b, &a), held);
        let was = self
            .applied
            .get(&(a.clone(), b.clone()))
            .copied()
            .unwrap_or((false, false, false));
        if want == was {
            return;
        }
        if was.2 && !want.2 {
            sim.release(a.as_str(), b.as_str());
        }
        sim.repair(a.as_str(), b.as_str());
        if want.2 {
            sim.hold(a.as_str(), b.as_str());
        }
        if want.0 {
            sim.partition_oneway(a.as_str(), b.as_str());
        }
        if want.1 {
            sim.partition_oneway(b.as_str(), a.as_str());
        }
        self.applied.insert((a, b), want);
    }
}

/// Per-host bookkeeping of the world.
#[derive(Debug)]
struct HostEntry {
    disk: Disk,
    down: bool,
    powered_off: bool,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Simulated time when the run stopped.
    pub end: SimTime,
    /// Steps taken.
    pub steps: u64,
    /// What stopped the run: the settled predicate, nothing left to happen, or the
    /// deadline.
    pub ended: crate::progress::Ended,
    /// Fault events applied.
    pub faults_applied: usize,
    /// The trace's fingerprint.
    pub trace_hash: TraceHash,
    /// Trace events recorded.
    pub trace_events: u64,
}

/// The simulated world of one run.
pub struct World {
    config: WorldConfig,
    sim: turmoil::Sim<'static>,
    shared: Rc<Shared>,
    hosts: BTreeMap<String, HostEntry>,
    plan: FaultPlan,
    next_fault: usize,
    links: Links,
    world_host: Arc<str>,
    steps: u64,
    /// Deadlines of the timers host code waits on.
    timers: Rc<Timers>,
    /// From when a run with nothing left to happen ends, and unless what
    /// ([`World::end_when_idle_from`]).
    idle_from: Option<(SimTime, Box<dyn Fn() -> bool>)>,
}

impl World {
    /// A new world with no hosts.
    pub fn new(config: WorldConfig) -> Self {
        let streams = RngStreams::new(config.seed);
        let turmoil_seed: u64 = streams.stream("turmoil").gen();
        let sim = turmoil::Builder::new()
            .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_SECS))
            .rng_seed(turmoil_seed)
            .tick_duration(config.tick)
            .min_message_latency(config.latency_min)
            .max_message_latency(config.latency_max)
            // The world stops runs at its own deadline; turmoil's limit only applies to
            // client hosts, which faultline does not use.
            .simulation_duration(Duration::from_secs(u32::MAX.into()))
            // turmoil 0.7.2 keeps the socket of a connect that was refused or cancelled,
            // so each one holds an ephemeral port for the rest of the run: give clients
            // every port above the range servers listen on.
            .ephemeral_ports(EPHEMERAL_PORT_MIN..=u16::MAX)
            // turmoil panics where real TCP would drop a SYN past the accept backlog; a
            // released hold can deliver many parked SYNs in one tick.
            .tcp_capacity(ACCEPT_BACKLOG_MAX)
            .build();
        let trace = Trace::new(config.keep_trace_events);
        trace.set_events_max(config.trace_events_max);
        let shared = Rc::new(Shared {
            trace,
            streams,
            clocks: RefCell::new(BTreeMap::new()),
            defective: RefCell::new(BTreeSet::new()),
            purged: RefCell::new(BTreeMap::new()),
            message_faults: Cell::new(MessageFaultRates::default()),
            link_message_faults: RefCell::default(),
            stops: RefCell::default(),
            lives: RefCell::default(),
            progress: crate::progress::Probes::default(),
            keep_probes: Cell::new(false),
        });
        World {
            config,
            sim,
            shared,
            hosts: BTreeMap::new(),
            plan: FaultPlan::default(),
            next_fault: 0,
            links: Links::default(),
            world_host: Arc::from(WORLD_HOST),
            steps: 0,
            timers: Rc::default(),
            idle_from: None,
        }
    }

    /// Ends the run, from `from` on, at the first step boundary where nothing can
    /// change any more ([`crate::progress`]): every fault of the plan applied, nothing
    /// in motion, and every host that is up reporting no pending work; not while
    /// `unless` holds (a run its settled predicate is about to end). Without it a run
    /// ends only when settled or at its deadline. `unless` must read state only, as
    /// probes do.
    pub fn end_when_idle_from(&mut self, from: SimTime, unless: impl Fn() -> bool + 'static) {
        self.idle_from = Some((from, Box::new(unless)));
        self.shared.keep_probes.set(true);
    }

    /// What keeps the run from ending as idle now, if anything: a host's pending work,
    /// or a host that reported none.
    pub fn pending_work(&self) -> Option<String> {
        let lives = self.shared.lives.borrow();
        let up = self
            .hosts
            .iter()
            .filter(|(_, entry)| !entry.down)
            .map(|(name, _)| (name.as_str(), lives.get(name).copied().unwrap_or(0)));
        self.shared.progress.pending(up)
    }

    /// Whether the run can end as idle at `now` ([`World::end_when_idle_from`]).
    fn idle_end(&self, now: SimTime) -> bool {
        // Cheapest first; every condition only reads, so the order changes no run.
        let Some((from, unless)) = self.idle_from.as_ref() else {
            return false;
        };
        now >= *from
            && self.next_fault == self.plan.events.len()
            && self.sim.is_idle()
            && !unless()
            && self.pending_work().is_none()
    }

    /// Registers a host. `start` runs now and again after every restart, each time with a
    /// fresh [`HostCtx`]. The host runs only while `start`'s future is pending: when it
    /// returns, turmoil stops stepping the host and its spawned tasks freeze, so a
    /// long-lived service awaits its tasks (or serves forever) rather than returning.
    pub fn host<F, Fut>(&mut self, name: &str, start: F) -> Result<(), WorldError>
    where
        F: Fn(HostCtx) -> Fut + 'static,
        Fut: Future<Output = HostResult> + 'static,
    {
        if name == WORLD_HOST {
            return Err(WorldError::Registration(
                name.to_string(),
                "the name is reserved for the world",
            ));
        }
        if self.hosts.contains_key(name) {
            return Err(WorldError::Registration(
                name.to_string(),
                "a host of that name exists",
            ));
        }
        let host_name: Arc<str> = Arc::from(name);
        let disk_rng = self.shared.streams.stream(&format!("disk/{name}"));
        let disk = Disk::new(
            Arc::clone(&host_name),
            self.config.disk,
            disk_rng,
            self.shared.streams.stream(&format!("disk-latency/{name}")),
            self.shared.trace.clone(),
        );
        self.hosts.insert(
            name.to_string(),
            HostEntry {
                disk: disk.clone(),
                down: false,
                powered_off: false,
            },
        );
        let shared = Rc::clone(&self.shared);
        let incarnations = Cell::new(0u32);
        self.sim.host(name, move || {
            let incarnation = incarnations.get();
            incarnations.set(incarnation + 1);
            let stop = Rc::new(StopRequest::default());
            shared
                .stops
                .borrow_mut()
                .insert(host_name.to_string(), Rc::clone(&stop));
            shared
                .lives
                .borrow_mut()
                .insert(host_name.to_string(), incarnation);
            start(HostCtx {
                name: Arc::clone(&host_name),
                disk: disk.clone(),
                incarnation,
                shared: Rc::clone(&shared),
                clients: Rc::default(),
                stop,
            })
        });
        Ok(())
    }

    /// Sets the fault plan. It is validated when the run starts.
    pub fn set_plan(&mut self, plan: FaultPlan) {
        self.plan = plan;
        self.next_fault = 0;
    }

    /// The registered host names, in name order.
    pub fn host_names(&self) -> Vec<&str> {
        self.hosts.keys().map(String::as_str).collect()
    }

    /// Simulated time now.
    pub fn now(&self) -> SimTime {
        SimTime::from_duration(self.sim.elapsed())
    }

    /// The run's trace.
    pub fn trace(&self) -> &Trace {
        &self.shared.trace
    }

    /// The disk of host `name`.
    pub fn disk(&self, name: &str) -> Option<&Disk> {
        self.hosts.get(name).map(|h| &h.disk)
    }

    /// The run's random streams (for components outside hosts, like a workload).
    pub fn streams(&self) -> RngStreams {
        self.shared.streams
    }

    /// Whether host `name` is running now.
    pub fn is_up(&self, name: &str) -> bool {
        self.hosts.get(name).is_some_and(|h| !h.down)
    }

    /// Steps until `deadline`, applying the plan. After the plan's last event has been
    /// applied, `settled` is asked after every step; when it answers true the run stops
    /// early. A panic inside the world (a host's task included) or a passed budget stops
    /// the run with [`WorldError::Panicked`].
    ///
    /// `settled` must depend only on the instant it is given and on what the run has
    /// done so far: across a skipped idle stretch it is asked about instants the world
    /// has not stepped through one by one.
    pub fn run_until(
        &mut self,
        deadline: SimTime,
        settled: impl FnMut(SimTime) -> bool,
    ) -> Result<RunSummary, WorldError> {
        let names: Vec<&str> = self.host_names();
        self.plan.validate(&names, deadline)?;
        let trace = self.shared.trace.clone();
        let capture = self.config.capture_tracing;
        let _capture_guard = capture.then(|| capture::install(trace.clone()));
        let ended = match crate::panic::capture(|| self.step_until(deadline, settled)) {
            Ok(stepped) => stepped?,
            Err(panic) => {
                return Err(WorldError::Panicked {
                    panic,
                    at: self.now(),
                })
            }
        };
        Ok(RunSummary {
            end: self.now(),
            steps: self.steps,
            ended,
            faults_applied: self.next_fault,
            trace_hash: trace.hash(),
            trace_events: trace.len(),
        })
    }

    /// The stepping loop of [`World::run_until`]; answers what stopped it.
    fn step_until(
        &mut self,
        deadline: SimTime,
        mut settled: impl FnMut(SimTime) -> bool,
    ) -> Result<Ended, WorldError> {
        let _timers = timer::install(Rc::clone(&self.timers));
        loop {
            let now = self.now();
            // turmoil knows of tasks a restart started; whatever else a fault changed,
            // the step after it is an ordinary one.
            let faulted = self.apply_due_faults(now);
            if now >= deadline {
                return Ok(Ended::Deadline);
            }
            if self.next_fault == self.plan.events.len() && settled(now) {
                return Ok(Ended::Settled);
            }
            if self.idle_end(now) {
                return Ok(Ended::Idle);
            }
            let tick = if faulted {
                self.config.tick
            } else {
                self.next_tick(now, deadline, &mut settled)
            };
            // A host with no message, wake or start in the step is ticked only if one of
            // its timers is due by the step's end; stepping every tick ticks them all.
            let timers = Rc::clone(&self.timers);
            let end = now + tick;
            let every_tick = !self.config.skip_idle;
            let stepped = self
                .sim
                .step_by(tick, |host| every_tick || timers.due_by(host, end));
            // A task's panic that its runtime kept to itself still ends the run: a task
            // that died silently must not leave the run looking healthy.
            if let Some(panic) = crate::panic::take_unreported() {
                return Err(WorldError::Panicked {
                    panic,
                    at: self.now(),
                });
            }
            stepped.map_err(|e| WorldError::Host(e.to_string()))?;
            self.steps += 1;
        }
    }

    /// The length of the next step: one tick, or as many ticks as nothing can happen
    /// in.
    ///
    /// A stretch is idle when turmoil says nothing is in motion (no message on the
    /// network, no task woken or started), no timer is due before its end, no fault
    /// falls inside it and `settled` would not stop the run inside it.
    /// The step then ends on the tick grid at or before the earliest of them, so the
    /// world lands exactly where ordinary steps would have taken it, having done
    /// nothing on the way: the trace is the same either way.
    fn next_tick(
        &self,
        now: SimTime,
        deadline: SimTime,
        settled: &mut impl FnMut(SimTime) -> bool,
    ) -> Duration {
        let tick = self.config.tick;
        if !self.config.skip_idle || !self.sim.is_idle() {
            return tick;
        }
        let tick_us = tick.as_micros().max(1) as u64;
        let ticks_until = |at: SimTime, round_up: bool| {
            let gap = at.as_micros().saturating_sub(now.as_micros());
            if round_up {
                gap.div_ceil(tick_us)
            } else {
                gap / tick_us
            }
        };
        // A timer fires inside the step that ends at or after it: stop at or before it.
        let mut ticks = self
            .timers
            .next_due()
            .map_or(u64::MAX, |due| ticks_until(due, false));
        // Faults apply at the first step boundary at or after their instant, and the run
        // ends at the first one at or after its deadline.
        if let Some(event) = self.plan.events.get(self.next_fault) {
            ticks = ticks.min(ticks_until(event.at, true));
        }
        ticks = ticks.min(ticks_until(deadline, true));
        // The instant idle ends begin is a boundary in both stepping modes: nothing
        // changes inside a stretch, so probes answer the same at its start as inside.
        if let Some(from) = self
            .idle_from
            .as_ref()
            .map(|(from, _)| *from)
            .filter(|&from| from > now)
        {
            ticks = ticks.min(ticks_until(from, true));
        }
        if ticks <= 1 {
            return tick;
        }
        if self.next_fault == self.plan.events.len() {
            if let Some(first) = (1..ticks).find(|&n| settled(now + Duration::from_micros(tick_us * n))) {
                ticks = first;
            }
        }
        Duration::from_micros(tick_us.saturating_mul(ticks))
    }

    /// Applies the plan's events due by `now`; answers whether there were any.
    fn apply_due_faults(&mut self, now: SimTime) -> bool {
        let before = self.next_fault;
        while let Some(event) = self.plan.events.get(self.next_fault) {
            if event.at > now {
                break;
            }
            let fault = event.fault.clone();
            self.next_fault += 1;
            self.apply(now, &fault);
        }
        self.next_fault != before
    }

    fn apply(&mut self, now: SimTime, fault: &Fault) {
        self.shared
            .trace
            .record(now, &self.world_host, kind::FAULT, fault.to_string());
        match fault {
            Fault::Partition { a, b } => {
                self.links.cut(a, b, CutReason::Plan, true);
                self.links.cut(b, a, CutReason::Plan, true);
                self.links.apply(&self.sim, a, b);
            }
            Fault::PartitionOneway { from, to } => {
                self.links.cut(from, to, CutReason::Plan, true);
                self.links.apply(&self.sim, from, to);
            }
            Fault::Heal { a, b } => {
                self.links.cut(a, b, CutReason::Plan, false);
                self.links.cut(b, a, CutReason::Plan, false);
                self.links.apply(&self.sim, a, b);
            }
            Fault::Hold { a, b } | Fault::Release { a, b } => {
                self.links
                    .hold(a, b, HoldReason::Plan, matches!(fault, Fault::Hold { .. }));
                self.links.apply(&self.sim, a, b);
            }
            Fault::Pause { host } | Fault::Resume { host } => {
                let on = matches!(fault, Fault::Pause { .. });
                for other in self.others(host) {
                    self.links.hold(host, &other, HoldReason::Pause(host.clone()), on);
                    self.links.apply(&self.sim, host, &other);
                }
            }
            Fault::Stop { host } => {
                self.record_host(now, host, kind::STOP, "asked to stop");
                // The wake comes from outside the host: it must not lag behind it.
                self.sim.catch_up_host(host.as_str());
                if let Some(stop) = self.shared.stops.borrow().get(host) {
                    stop.requested.set(true);
                    stop.notify.notify_waiters();
                }
            }
            Fault::Crash { host } => {
                self.shared.trace.coverage().landed(now, "crash", host);
                self.sim.crash(host.as_str());
                self.mark_down(host, false);
                self.record_host(now, host, kind::CRASH, "process killed");
            }
            Fault::PowerLoss { host } => {
                // Cut the links first, so that the sockets the crash drops say no goodbye.
                for other in self.others(host) {
                    self.links
                        .cut(host, &other, CutReason::PowerLoss(host.clone()), true);
                    self.links
                        .cut(&other, host, CutReason::PowerLoss(host.clone()), true);
                    self.links.apply(&self.sim, host, &other);
                }
                self.shared.trace.coverage().landed(now, "power-loss", host);
                self.sim.crash(host.as_str());
                self.mark_down(host, true);
                self.record_host(now, host, kind::CRASH, "power lost");
                self.hosts[host].disk.lose_power(now);
            }
            Fault::Restart { host } => {
                let entry = self.hosts.get_mut(host).expect("validated host");
                let powered_off = entry.powered_off;
                entry.down = false;
                entry.powered_off = false;
                if powered_off {
                    for other in self.others(host) {
                        self.links
                            .cut(host, &other, CutReason::PowerLoss(host.clone()), false);
                        self.links
                            .cut(&other, host, CutReason::PowerLoss(host.clone()), false);
                        self.links.apply(&self.sim, host, &other);
                    }
                }
                self.record_host(now, host, kind::RESTART, "");
                self.sim.bounce(host.as_str());
            }
            Fault::DiskFault { host, kind } | Fault::DiskHeal { host, kind } => {
                self.hosts[host]
                    .disk
                    .set_fault(*kind, matches!(fault, Fault::DiskFault { .. }));
            }
            Fault::Defect { host } => {
                self.shared.defective.borrow_mut().insert(host.clone());
            }
            Fault::DefectFixed { host } => {
                self.shared.defective.borrow_mut().remove(host);
            }
            Fault::Purge { host, keep_ms } => {
                self.shared.purged.borrow_mut().insert(host.clone(), *keep_ms);
            }
            Fault::PurgeLifted { host } => {
                self.shared.purged.borrow_mut().remove(host);
            }
            Fault::ClockSkew {
                host,
                skew_ms,
                drift_ppm,
            } => {
                let clock = HostClock {
                    skew_us: skew_ms * 1_000,
                    drift_ppm: *drift_ppm,
                };
                self.shared.clocks.borrow_mut().insert(host.clone(), clock);
            }
            Fault::MessageFaults { rates } => self.shared.message_faults.set(*rates),
            Fault::LinkMessageFaults { from, to, rates } => {
                let mut links = self.shared.link_message_faults.borrow_mut();
                let link = (from.clone(), to.clone());
                if rates.any() {
                    links.insert(link, *rates);
                } else {
                    links.remove(&link);
                }
            }
        }
    }

    fn others(&self, host: &str) -> Vec<String> {
        self.hosts
            .keys()
            .filter(|h| h.as_str() != host)
            .cloned()
            .collect()
    }

    fn mark_down(&mut self, host: &str, powered_off: bool) {
        let entry = self.hosts.get_mut(host).expect("validated host");
        entry.down = true;
        entry.powered_off = powered_off;
    }

    fn record_host(&self, now: SimTime, host: &str, kind: &'static str, detail: &str) {
        let name: Arc<str> = Arc::from(host);
        self.shared.trace.record(now, &name, kind, detail);
    }
}
