//! The runner: from `(variant, scenario, profile, seed)` to an [`Outcome`].
//!
//! It builds the world, draws the workload and the fault plan from the seed's named
//! streams, installs the variant, steps the world until the integration has settled
//! after the last fault (or the deadline), reads both final states back from the disks,
//! and hands the history to the invariants.

use std::rc::Rc;
use std::time::Duration;

use faultline_patterns::history::Recorder;
use faultline_patterns::systems::{source, target};
use faultline_patterns::{hosts, Setup, Variant};
use faultline_sim::trace::kind;
use faultline_sim::{
    FaultPlan, Profile, RunSummary, Seed, TraceEvent, TraceHash, World, WorldConfig, WorldError,
};
use serde::Serialize;

use crate::invariants::{check_all, Violation};
use crate::metrics::{compute, Metrics, TraceCounts};
use crate::scenario::Scenario;
use crate::workload;

/// What one run found.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The variant's name.
    pub pattern: &'static str,
    /// The scenario's name.
    pub scenario: String,
    /// The fault profile.
    pub profile: &'static str,
    /// The seed.
    pub seed: u64,
    /// The run's fingerprint.
    pub trace_hash: TraceHash,
    /// Every invariant violation.
    pub violations: Vec<Violation>,
    /// Numbers beside the verdict.
    pub metrics: Metrics,
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
}

/// Runs one variant under one profile and seed.
pub fn run(
    variant: &Variant,
    scenario: &Scenario,
    profile: Profile,
    seed: Seed,
    options: RunOptions,
) -> Result<Outcome, WorldError> {
    let config = WorldConfig {
        latency_min: Duration::from_millis(scenario.latency_min_ms),
        latency_max: Duration::from_millis(scenario.latency_max_ms),
        keep_trace_events: options.keep_trace,
        capture_tracing: false,
        ..WorldConfig::new(seed)
    };
    let mut world = World::new(config);
    let streams = world.streams();
    let initial = Rc::new(workload::initial_rows(scenario.customers));
    let schedule = Rc::new(workload::schedule(scenario, &mut streams.stream("workload")));
    let recorder = Recorder::new((*initial).clone());
    recorder.set_actions_scheduled(schedule.len() as u64);
    let setup = Setup {
        recorder: recorder.clone(),
        initial: Rc::clone(&initial),
        schedule,
        source: variant.source_config(scenario.source_sync),
    };
    variant.install(&mut world, &setup)?;
    let plan = profile.generate(&streams, &variant.hosts(), scenario.fault_window());
    let last_fault_at = plan.last_event_at();
    world.set_plan(plan.clone());

    let quiet_from = scenario.workload_end().max(last_fault_at);
    let settle = Duration::from_millis(scenario.settle_ms);
    let summary = world.run_until(scenario.deadline(), |now| {
        now >= quiet_from + settle && recorder.agreed_since().is_some_and(|since| now >= since + settle)
    })?;

    let disk = |host| world.disk(host).expect("the variant registered its hosts");
    let final_source = source::durable_rows(disk(hosts::SOURCE), &initial);
    let final_target = target::durable_rows(disk(hosts::TARGET), &initial);
    let mut history = recorder.finish(final_source, final_target, summary.end, last_fault_at);
    history.staleness_bound = Some(Duration::from_millis(scenario.staleness_bound_ms));
    let violations = check_all(&history);
    let trace = world.trace();
    let counts = TraceCounts {
        calls: trace.count_of(kind::SEND),
        duplicates_absorbed: trace.count_of(faultline_patterns::systems::target::INBOX_DUPLICATE),
        duplicates_injected: trace.count_of(kind::DUPLICATE),
    };
    let metrics = compute(&history, counts);
    Ok(Outcome {
        pattern: variant.name,
        scenario: scenario.name.clone(),
        profile: profile.name(),
        seed: seed.0,
        trace_hash: summary.trace_hash,
        violations,
        metrics,
        plan,
        summary,
        trace: world.trace().take_events(),
    })
}

/// The command line that replays a run.
pub fn repro_command(pattern: &str, profile: &str, seed: u64, scenario: &str) -> String {
    let scenario_flag = if scenario == "standard" {
        String::new()
    } else {
        format!(" --scenario {scenario}")
    };
    format!("faultline repro --pattern {pattern} --profile {profile} --seed {seed}{scenario_flag}")
}
