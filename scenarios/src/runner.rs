//! The runner: from a [`RunSpec`] (variant, scenario, faults, seed, planted bugs) to an
//! [`Outcome`].
//!
//! It builds the world, draws the workload and (for a profile) the fault plan from the
//! seed's named streams, installs the variant, steps the world until the integration has
//! settled after the last fault (or the deadline), reads both final states back from the
//! disks, and hands the history to the invariants.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use faultline_patterns::bugs::BugSet;
use faultline_patterns::history::Recorder;
use faultline_patterns::{hosts, Setup, Variant};
use faultline_sim::trace::kind;
use faultline_sim::{
    CaughtPanic, Ended, FaultPlan, Profile, RunSummary, Seed, SimTime, TraceEvent, TraceHash, World,
    WorldConfig, WorldError,
};
use serde::{Deserialize, Serialize};

use crate::invariants::{check_all, Violation};
use crate::metrics::{compute, Metrics, TraceCounts};
use crate::scenario::{Scenario, ScheduledAction};
use crate::workload;

/// Where a run's faults come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Faults {
    /// Drawn from the seed by a profile.
    Profile(Profile),
    /// Written out explicitly (a suite's `faults`, or a shrunk counterexample).
    Plan(FaultPlan),
}

impl Faults {
    /// The profile's name, or `explicit`.
    pub fn name(&self) -> &'static str {
        match self {
            Faults::Profile(p) => p.name(),
            Faults::Plan(_) => "explicit",
        }
    }
}

/// The program repro commands name: `faultline`, or a binary that registers patterns of
/// its own and runs the same command line ([`set_command_name`]).
static COMMAND_NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the program in every repro command this process prints (once, at start-up).
pub fn set_command_name(name: &'static str) {
    let _ = COMMAND_NAME.set(name);
}

/// The program repro commands name.
pub fn command_name() -> &'static str {
    COMMAND_NAME.get().copied().unwrap_or("faultline")
}

/// Everything that fixes a run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The pattern variant.
    pub variant: &'static Variant,
    /// The scenario.
    pub scenario: Scenario,
    /// The faults.
    pub faults: Faults,
    /// The seed.
    pub seed: Seed,
    /// Planted bugs switched on.
    pub bugs: BugSet,
    /// The suite file the scenario comes from, if any (for the repro command).
    pub suite: Option<PathBuf>,
}

impl RunSpec {
    /// A run of a built-in scenario under a profile, with no bugs.
    pub fn new(variant: &'static Variant, scenario: Scenario, profile: Profile, seed: Seed) -> Self {
        RunSpec {
            variant,
            scenario,
            faults: Faults::Profile(profile),
            seed,
            bugs: BugSet::NONE,
            suite: None,
        }
    }

    /// The one command line that replays this run.
    pub fn repro_command(&self) -> String {
        let mut cmd = match &self.suite {
            Some(suite) => format!(
                "{} repro --suite {} --scenario {:?} --pattern {}",
                command_name(),
                suite.display(),
                self.scenario.name,
                self.variant.name
            ),
            None => {
                let scenario = if self.scenario.name == "standard" {
                    String::new()
                } else {
                    format!(" --scenario {}", self.scenario.name)
                };
                format!(
                    "{} repro --pattern {} --profile {}{scenario}",
                    command_name(),
                    self.variant.portable_name(),
                    self.faults.name()
                )
            }
        };
        cmd.push_str(&format!(" --seed {}", self.seed.0));
        for bug in self.bugs.bugs() {
            cmd.push_str(&format!(" --bug {}", bug.name()));
        }
        cmd
    }

    /// The fault plan this run applies.
    pub fn plan(&self) -> FaultPlan {
        match &self.faults {
            Faults::Profile(profile) => {
                let streams = faultline_sim::RngStreams::new(self.seed);
                profile.generate(&streams, &self.variant.hosts(), self.scenario.fault_window())
            }
            Faults::Plan(plan) => plan.clone(),
        }
    }
}

/// What one run found.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The variant's name.
    pub pattern: &'static str,
    /// The scenario's name.
    pub scenario: String,
    /// The fault profile (`explicit` for a written-out plan).
    pub profile: &'static str,
    /// The seed.
    pub seed: u64,
    /// Planted bugs that were on.
    pub bugs: Vec<&'static str>,
    /// The run's fingerprint.
    pub trace_hash: TraceHash,
    /// Every invariant violation.
    pub violations: Vec<Violation>,
    /// Customers created and deleted at the source that the target never held (so never
    /// welcomed): a property of the pattern's observation, not a violation.
    pub unobserved: Vec<String>,
    /// Kafka-level anomalies the clients saw, by Jepsen's names ([`crate::kafka`]):
    /// how many of each.
    pub kafka_anomalies: BTreeMap<String, u64>,
    /// Numbers beside the verdict.
    pub metrics: Metrics,
    /// What ended the run: its sides agreed (`settled`), nothing could change any more
    /// (`idle`: judged as at its deadline, `metrics.end_ms`), or the deadline.
    pub ended: Ended,
    /// The simulated instant the run stopped at (before `metrics.end_ms` for an idle
    /// run).
    pub stopped_at_ms: u64,
    /// Which fault landed in which operation window, and how often (see
    /// `faultline_sim::coverage`).
    pub coverage: BTreeMap<String, u64>,
    /// Per invariant, how many violations are traced to each fault window
    /// ([`crate::causes`]).
    pub causes: crate::causes::Causes,
    /// Trace events recorded, by kind (kept or not).
    pub events_by_kind: BTreeMap<String, u64>,
    /// The command that replays the run.
    pub repro: String,
    /// The fault plan that ran.
    #[serde(skip)]
    pub plan: FaultPlan,
    /// How the world's run ended.
    #[serde(skip)]
    pub summary: RunSummary,
    /// The trace's events, when kept.
    #[serde(skip)]
    pub trace: Vec<TraceEvent>,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Options that change what a run keeps, never what it does.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Keep every trace event in the outcome (for timelines and evidence).
    pub keep_trace: bool,
    /// Step every tick, idle or not: the same run, only slower (to measure the skipping
    /// of idle stretches, and to test that it changes nothing).
    pub step_every_tick: bool,
    /// Run to the deadline a run that can no longer progress, instead of ending it
    /// where nothing can change any more (its verdict is the same either way; its
    /// trace goes on with heartbeats and empty polls).
    pub run_to_deadline: bool,
}

/// Why a run gave no verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Code inside the run panicked (a pattern's task, a system, the world, a checker).
    Panic,
    /// The run passed its budget (a livelock or a flood) and was stopped.
    Budget,
    /// The world could not run it (an invalid fault plan, a host's start failed).
    World,
}

impl FailureKind {
    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Panic => "panic",
            FailureKind::Budget => "budget",
            FailureKind::World => "world",
        }
    }
}

/// A run that failed instead of giving a verdict: what it was, what went wrong, where
/// and when, and how to replay it.
#[derive(Clone, Debug, Serialize)]
pub struct RunFailure {
    /// The variant's name.
    pub pattern: &'static str,
    /// The scenario's name.
    pub scenario: String,
    /// The fault profile (`explicit` for a written-out plan).
    pub profile: &'static str,
    /// The seed.
    pub seed: u64,
    /// Planted bugs that were on.
    pub bugs: Vec<&'static str>,
    /// Why.
    pub kind: FailureKind,
    /// The panic's message, or what the world said.
    pub message: String,
    /// Where the panic was raised (`file:line:column`), when known.
    pub location: Option<String>,
    /// Simulated time it happened at; none when it happened outside the world's steps.
    pub at: Option<SimTime>,
    /// The command that replays it.
    pub repro: String,
    /// The fingerprint of the trace up to the failure, when the world ran.
    pub trace_hash: Option<TraceHash>,
    /// The trace's events up to the failure, when kept.
    #[serde(skip)]
    pub trace: Vec<TraceEvent>,
}

impl RunFailure {
    fn new(spec: &RunSpec, kind: FailureKind, message: String) -> RunFailure {
        RunFailure {
            pattern: spec.variant.name,
            scenario: spec.scenario.name.clone(),
            profile: spec.faults.name(),
            seed: spec.seed.0,
            bugs: spec.bugs.bugs().into_iter().map(|b| b.name()).collect(),
            kind,
            message,
            location: None,
            at: None,
            repro: spec.repro_command(),
            trace_hash: None,
            trace: Vec::new(),
        }
    }

    fn from_panic(spec: &RunSpec, panic: CaughtPanic, at: Option<SimTime>) -> RunFailure {
        let kind = if panic.budget.is_some() {
            FailureKind::Budget
        } else {
            FailureKind::Panic
        };
        RunFailure {
            location: panic.location,
            at,
            ..RunFailure::new(spec, kind, panic.message)
        }
    }

    fn from_world(spec: &RunSpec, error: WorldError) -> RunFailure {
        match error {
            WorldError::Panicked { panic, at } => RunFailure::from_panic(spec, panic, Some(at)),
            other => RunFailure::new(spec, FailureKind::World, other.to_string()),
        }
    }
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            FailureKind::Panic => "panicked",
            FailureKind::Budget => "stopped",
            FailureKind::World => "could not run",
        };
        f.write_str(what)?;
        if let Some(at) = self.at {
            write!(f, " at {at}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(location) = &self.location {
            write!(f, " (at {location})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RunFailure {}

/// A run of a cell that failed instead of giving a verdict (a panic, a passed budget).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedRun {
    /// The seed.
    pub seed: u64,
    /// Why: `panic`, `budget` or `world`.
    pub kind: FailureKind,
    /// The panic's message, or what the world said.
    pub message: String,
    /// Where the panic was raised, when known.
    pub location: Option<String>,
    /// Simulated time it happened at (ms), when inside the world's steps.
    pub at_ms: Option<u64>,
    /// The command that replays it.
    pub repro: String,
}

impl FailedRun {
    /// What a cell keeps of a failed run.
    pub fn of(failure: &RunFailure) -> FailedRun {
        FailedRun {
            seed: failure.seed,
            kind: failure.kind,
            message: failure.message.clone(),
            location: failure.location.clone(),
            at_ms: failure.at.map(|t| t.as_millis()),
            repro: failure.repro.clone(),
        }
    }
}

/// Runs one spec. This is the run boundary: a panic anywhere inside (a pattern's task,
/// a system, the world, a checker) or a passed budget comes back as a [`RunFailure`],
/// never as an unwind into the caller's sweep.
pub fn run(spec: &RunSpec, options: RunOptions) -> Result<Outcome, Box<RunFailure>> {
    match faultline_sim::panic::capture(|| run_inside(spec, options)) {
        Ok(result) => result,
        // Outside the world's steps (installing, checking): no simulated instant.
        Err(panic) => Err(Box::new(RunFailure::from_panic(spec, panic, None))),
    }
}

fn run_inside(spec: &RunSpec, options: RunOptions) -> Result<Outcome, Box<RunFailure>> {
    let scenario = &spec.scenario;
    let variant = spec.variant;
    let config = WorldConfig {
        latency_min: Duration::from_millis(scenario.latency_min_ms),
        latency_max: Duration::from_millis(scenario.latency_max_ms),
        keep_trace_events: options.keep_trace,
        capture_tracing: false,
        trace_events_max: scenario.trace_events_max,
        skip_idle: !options.step_every_tick,
        disk: if scenario.instant_io {
            faultline_sim::DiskConfig::instant()
        } else {
            faultline_sim::DiskConfig::default()
        },
        ..WorldConfig::new(spec.seed)
    };
    let mut world = World::new(config);
    let streams = world.streams();
    let initial = Rc::new(workload::initial_rows(scenario.customers));
    let schedule = Rc::new(match &scenario.schedule {
        Some(list) => list.iter().map(ScheduledAction::to_request).collect(),
        None => workload::schedule(scenario, &streams),
    });
    let bootstrap = scenario.bootstrap.then(|| variant.bootstrap());
    let target_initial = if bootstrap.is_some() {
        faultline_patterns::history::Rows::new()
    } else {
        (*initial).clone()
    };
    let recorder = Recorder::starting((*initial).clone(), target_initial);
    recorder.set_actions_scheduled(schedule.len() as u64);
    let setup = Setup {
        recorder: recorder.clone(),
        initial: Rc::clone(&initial),
        bootstrap,
        schedule,
        source: variant.source_config(scenario.source_sync, scenario.source_workers as usize, spec.bugs),
        bugs: spec.bugs,
        kafka: Default::default(),
    };
    // The run's identity opens its trace, so the fingerprint tells variants apart even
    // where their behaviour happens to coincide.
    let bugs: Vec<&str> = spec.bugs.bugs().into_iter().map(|b| b.name()).collect();
    let header = format!(
        "pattern={} faults={} scenario={} bugs={}",
        variant.name,
        spec.faults.name(),
        scenario.name,
        bugs.join(",")
    );
    world.trace().record(
        SimTime::ZERO,
        &std::sync::Arc::from(faultline_sim::world::WORLD_HOST),
        "run",
        header,
    );
    variant
        .install(&mut world, &setup)
        .map_err(|e| Box::new(RunFailure::from_world(spec, e)))?;
    let plan = spec.plan();
    let last_fault_at = plan.last_event_at();
    world.set_plan(plan.clone());

    let quiet_from = scenario.workload_end().max(last_fault_at);
    let settle = Duration::from_millis(scenario.settle_ms);
    // An explicit plan may reach past the scenario's fault window: quiesce after it too.
    let deadline = scenario
        .deadline()
        .max(last_fault_at + Duration::from_millis(scenario.quiesce_ms));
    if !options.run_to_deadline {
        // Not when the sides agree (the settled predicate ends such a run), nor while a
        // sync still to come would change the durable state the checker reads.
        let agreeing = recorder.clone();
        let judged = [hosts::SOURCE, hosts::TARGET].map(|host| {
            world
                .disk(host)
                .expect("the variant registered its hosts")
                .clone()
        });
        world.end_when_idle_from(quiet_from + settle, move || {
            agreeing.agreed_since().is_some() || judged.iter().any(|disk| disk.unsynced().is_some())
        });
    }
    let summary = world
        .run_until(deadline, |now| {
            now >= quiet_from + settle && recorder.agreed_since().is_some_and(|since| now >= since + settle)
        })
        .map_err(|e| {
            Box::new(RunFailure {
                trace_hash: Some(world.trace().hash()),
                trace: world.trace().take_events(),
                ..RunFailure::from_world(spec, e)
            })
        })?;

    let disk = |host| world.disk(host).expect("the variant registered its hosts");
    let final_source = crate::durable::source_rows(disk(hosts::SOURCE));
    let final_target = crate::durable::target_rows(disk(hosts::TARGET));
    // A run that ended because nothing could change any more is judged as at its
    // deadline: what a reader of the target would have seen by then is what it saw.
    let judged_at = match summary.ended {
        Ended::Idle => deadline,
        Ended::Settled | Ended::Deadline => summary.end,
    };
    let mut history = recorder.finish(final_source, final_target, judged_at, last_fault_at);
    history.staleness_bound = Some(Duration::from_millis(scenario.staleness_bound_ms));
    let unobserved = crate::invariants::unobserved_customers(&history)
        .into_iter()
        .map(|c| format!("customer/{}", c.0))
        .collect();
    let mut violations: Vec<Violation> = check_all(&history)
        .into_iter()
        .filter(|v| {
            scenario
                .invariants
                .as_ref()
                .is_none_or(|only| only.iter().any(|i| i == v.invariant))
        })
        .collect();
    let anomalies = crate::kafka::anomalies(&history);
    crate::kafka::annotate(&mut violations, &anomalies);
    let mut kafka_anomalies: BTreeMap<String, u64> = BTreeMap::new();
    for a in &anomalies {
        *kafka_anomalies.entry(a.name.to_string()).or_default() += 1;
    }
    let trace = world.trace();
    let causes = crate::causes::attribute(&violations, &trace.coverage().timeline());
    let counts = TraceCounts {
        calls: trace.count_of(kind::SEND),
        duplicates_absorbed: trace.count_of(faultline_patterns::systems::target::INBOX_DUPLICATE),
        duplicates_injected: trace.count_of(kind::DUPLICATE),
    };
    Ok(Outcome {
        pattern: variant.name,
        scenario: scenario.name.clone(),
        profile: spec.faults.name(),
        seed: spec.seed.0,
        bugs: spec.bugs.bugs().into_iter().map(|b| b.name()).collect(),
        trace_hash: summary.trace_hash,
        violations,
        unobserved,
        kafka_anomalies,
        metrics: compute(&history, counts),
        ended: summary.ended,
        stopped_at_ms: summary.end.as_millis(),
        coverage: trace.coverage().hits(),
        causes,
        events_by_kind: trace.counts_by_kind(),
        repro: spec.repro_command(),
        plan,
        summary,
        trace: world.trace().take_events(),
    })
}
