//! Shrinking: cutting a failing run down to the few actions and faults that still break
//! it the same way (same invariant, same kind of violation), or, for a run that failed
//! instead of giving a verdict, that still fails the same way (a panic with the same
//! message, a passed budget).
//!
//! The run's workload and fault plan are first written out as explicit lists. Two cheap
//! steps go first: keep only the actions on the violated row's customer, and keep the
//! shortest prefix of actions that still fails. Then delta debugging (ddmin) takes away
//! fault events and actions, alternating, until neither list loses anything more. A
//! candidate plan that is no longer valid (a restart without its crash), or that leaves
//! a fault unhealed where the original healed everything, does not count as failing.

use faultline_patterns::domain::CustomerId;
use faultline_sim::{FaultEvent, FaultPlan};

use crate::invariants::Violation;
use crate::runner::{run, FailureKind, Faults, Outcome, RunFailure, RunOptions, RunSpec};
use crate::scenario::ScheduledAction;
use crate::workload;

/// Candidate runs one shrink may try, at most.
pub const SHRINK_RUNS_MAX: usize = 4_000;

/// What the shrinker keeps failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A violation of this invariant, of this kind.
    Violation {
        /// The invariant.
        invariant: &'static str,
        /// The kind of violation.
        kind: &'static str,
    },
    /// A failed run: a panic with this message, or a passed budget.
    Failure {
        /// Panic or budget.
        kind: FailureKind,
        /// The panic's message.
        message: String,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Violation { invariant, kind } => write!(f, "{invariant} / {kind}"),
            Target::Failure { kind, message } => write!(f, "{}: {message}", kind.name()),
        }
    }
}

impl Target {
    /// Whether a run's result shows the same failure.
    fn hit(&self, result: &Result<Outcome, Box<RunFailure>>) -> bool {
        match (self, result) {
            (Target::Violation { invariant, kind }, Ok(o)) => o
                .violations
                .iter()
                .any(|v| v.invariant == *invariant && v.kind == *kind),
            (Target::Failure { kind, message }, Err(f)) => f.kind == *kind && f.message == *message,
            _ => false,
        }
    }
}

/// Why a run could not be shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The run breaks nothing (or not the asked invariant).
    #[error("{0}")]
    NotFailing(String),
    /// The world could not run it at all (an invalid plan).
    #[error("the run failed: {0}")]
    Run(Box<RunFailure>),
}

/// A shrunk run.
#[derive(Debug)]
pub struct Shrunk {
    /// What stayed broken.
    pub target: Target,
    /// Actions and fault events before shrinking.
    pub before: (usize, usize),
    /// The minimal run, with explicit actions and faults.
    pub spec: RunSpec,
    /// Its result, trace kept: an outcome with the violation, or the failure.
    pub result: Result<Outcome, Box<RunFailure>>,
    /// The violation it still shows (none for a failed run).
    pub violation: Option<Violation>,
    /// Candidate runs tried.
    pub runs: usize,
}

struct Shrinker<'a> {
    base: &'a RunSpec,
    target: Target,
    runs: usize,
    /// Whether candidates must leave every fault healed (they must when the original
    /// plan did: a permanent outage is another scenario, not a smaller one).
    must_heal: bool,
}

impl Shrinker<'_> {
    fn spec(&self, actions: &[ScheduledAction], faults: &[FaultEvent]) -> RunSpec {
        let mut spec = self.base.clone();
        spec.scenario.schedule = Some(actions.to_vec());
        if let Target::Violation { invariant, .. } = &self.target {
            spec.scenario.invariants = Some(vec![invariant.to_string()]);
        }
        spec.faults = Faults::Plan(FaultPlan::from_events(faults.to_vec()));
        spec.suite = None;
        spec
    }

    fn fails(&mut self, actions: &[ScheduledAction], faults: &[FaultEvent]) -> bool {
        if self.runs >= SHRINK_RUNS_MAX {
            return false;
        }
        let spec = self.spec(actions, faults);
        if self.must_heal && !spec.plan().unhealed().is_empty() {
            return false;
        }
        self.runs += 1;
        self.target.hit(&run(&spec, RunOptions::default()))
    }
}

/// Zeller's ddmin: the smallest sublist (1-minimal) for which `fails` still holds.
fn ddmin<T: Clone>(mut items: Vec<T>, mut fails: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut n = 2;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(n);
        let chunks: Vec<Vec<T>> = items.chunks(chunk).map(<[T]>::to_vec).collect();
        let mut reduced = false;
        for (i, part) in chunks.iter().enumerate() {
            if fails(part) {
                items = part.clone();
                n = 2;
                reduced = true;
                break;
            }
            let complement: Vec<T> = chunks
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, c)| c.clone())
                .collect();
            if chunks.len() > 2 && fails(&complement) {
                items = complement;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if n >= items.len() {
                break;
            }
            n = (n * 2).min(items.len());
        }
    }
    if items.len() == 1 && fails(&[]) {
        items.clear();
    }
    items
}

/// Shrinks `spec`'s run, keeping `invariant` (or its first violation's) broken the same way.
pub fn shrink(spec: &RunSpec, invariant: Option<&str>) -> Result<Shrunk, ShrinkError> {
    let (target, key) = match run(spec, RunOptions::default()) {
        Err(failure) if failure.kind == FailureKind::World => return Err(ShrinkError::Run(failure)),
        Err(failure) => (
            Target::Failure {
                kind: failure.kind,
                message: failure.message,
            },
            None,
        ),
        Ok(original) => {
            let first = original
                .violations
                .iter()
                .find(|v| invariant.is_none_or(|i| v.invariant == i))
                .ok_or_else(|| {
                    ShrinkError::NotFailing(match invariant {
                        Some(i) => format!("seed {} does not break {i}: nothing to shrink", spec.seed),
                        None => format!("seed {} breaks no invariant: nothing to shrink", spec.seed),
                    })
                })?;
            let target = Target::Violation {
                invariant: first.invariant,
                kind: first.kind,
            };
            (target, Some(first.key.clone()))
        }
    };
    let mut actions: Vec<ScheduledAction> = match &spec.scenario.schedule {
        Some(list) => list.clone(),
        None => {
            let streams = faultline_sim::RngStreams::new(spec.seed);
            workload::schedule(&spec.scenario, &streams)
                .iter()
                .map(|(at, r)| ScheduledAction::from_request(*at, r))
                .collect()
        }
    };
    let mut faults = spec.plan().events;
    let before = (actions.len(), faults.len());
    let must_heal = FaultPlan::from_events(faults.clone()).unhealed().is_empty();
    let mut s = Shrinker {
        base: spec,
        target: target.clone(),
        runs: 0,
        must_heal,
    };

    // Cheap first: the violated customer's actions alone, then the shortest prefix.
    let customer = key
        .as_deref()
        .and_then(|k| k.rsplit('/').next())
        .and_then(|id| id.parse::<u64>().ok());
    if let Some(customer) = customer {
        let own: Vec<ScheduledAction> = actions
            .iter()
            .filter(|a| a.action.customers().contains(&CustomerId(customer)))
            .cloned()
            .collect();
        if own.len() < actions.len() && s.fails(&own, &faults) {
            actions = own;
        }
    }
    let (mut low, mut high) = (0, actions.len());
    while low < high {
        let mid = (low + high) / 2;
        if s.fails(&actions[..mid], &faults) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    actions.truncate(high);

    loop {
        let sizes = (actions.len(), faults.len());
        let a = actions.clone();
        faults = ddmin(faults, |f| s.fails(&a, f));
        let f = faults.clone();
        actions = ddmin(actions, |a| s.fails(a, &f));
        if (actions.len(), faults.len()) == sizes {
            break;
        }
    }
    let spec = s.spec(&actions, &faults);
    let result = run(
        &spec,
        RunOptions {
            keep_trace: true,
            ..RunOptions::default()
        },
    );
    if !target.hit(&result) {
        return Err(ShrinkError::NotFailing(
            "the shrunk run no longer fails (the shrink budget ran out mid-way)".into(),
        ));
    }
    let violation = match (&target, &result) {
        (Target::Violation { invariant, kind }, Ok(outcome)) => outcome
            .violations
            .iter()
            .find(|v| v.invariant == *invariant && v.kind == *kind)
            .cloned(),
        _ => None,
    };
    Ok(Shrunk {
        target,
        before,
        spec,
        result,
        violation,
        runs: s.runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddmin_finds_the_one_minimal_culprits() {
        // Fails whenever both 3 and 7 are present.
        let items: Vec<u32> = (0..20).collect();
        let mut tests = 0;
        let min = ddmin(items, |s| {
            tests += 1;
            s.contains(&3) && s.contains(&7)
        });
        assert_eq!(min, vec![3, 7]);
        assert!(tests < 100, "{tests} tests");
    }

    #[test]
    fn ddmin_empties_the_list_when_nothing_is_needed() {
        assert!(ddmin(vec![1, 2, 3], |_| true).is_empty());
    }
}

#[derive(serde::Serialize)]
struct SuiteFile<'a> {
    suite: SuiteHeader,
    scenario: Vec<ScenarioFile<'a>>,
}

#[derive(serde::Serialize)]
struct SuiteHeader {
    name: String,
    description: String,
}

#[derive(serde::Serialize)]
struct ScenarioFile<'a> {
    name: &'static str,
    patterns: Vec<String>,
    seeds: String,
    customers: u64,
    latency_min_ms: u64,
    latency_max_ms: u64,
    quiesce_ms: u64,
    staleness_bound_ms: u64,
    trace_events_max: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    invariants: Option<Vec<&'static str>>,
    bugs: Vec<&'static str>,
    faults: &'a [FaultEvent],
    schedule: &'a [ScheduledAction],
    expect: std::collections::BTreeMap<String, Expect>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Expect {
    Pass(&'static str),
    Breaks(Vec<&'static str>),
}

impl Shrunk {
    /// The minimal run as a suite file that `faultline run` replays (and expects to fail
    /// the same way).
    pub fn to_suite_toml(&self, origin: &str) -> String {
        let scenario = &self.spec.scenario;
        let Faults::Plan(plan) = &self.spec.faults else {
            unreachable!("a shrunk run has an explicit plan")
        };
        // A failed run has no verdict to expect: the suite expects a pass, and replaying
        // it reports the failure as an error (exit 3), as any failed run is.
        let (invariants, expect, note) = match &self.target {
            Target::Violation { invariant, .. } => (
                Some(vec![*invariant]),
                Expect::Breaks(vec![*invariant]),
                String::new(),
            ),
            Target::Failure { .. } => (
                None,
                Expect::Pass("pass"),
                format!(
                    "# Replaying it fails the run ({}): {} run exits 3.\n",
                    self.target,
                    crate::runner::command_name()
                ),
            ),
        };
        // The preset and its overrides: the shrunk suite replays without the suite that
        // defined the variant.
        let pattern = self.spec.variant.portable_name();
        let file = SuiteFile {
            suite: SuiteHeader {
                name: "shrunk".to_string(),
                description: format!("{origin}, shrunk to keep {}", self.target),
            },
            scenario: vec![ScenarioFile {
                name: "shrunk",
                patterns: vec![pattern.clone()],
                seeds: self.spec.seed.0.to_string(),
                customers: scenario.customers,
                latency_min_ms: scenario.latency_min_ms,
                latency_max_ms: scenario.latency_max_ms,
                quiesce_ms: scenario.quiesce_ms,
                staleness_bound_ms: scenario.staleness_bound_ms,
                trace_events_max: scenario.trace_events_max,
                invariants,
                bugs: self.spec.bugs.bugs().into_iter().map(|b| b.name()).collect(),
                faults: &plan.events,
                schedule: scenario.schedule.as_deref().unwrap_or_default(),
                expect: [(pattern, expect)].into_iter().collect(),
            }],
        };
        let file_text = toml::to_string(&file).expect("suite files serialise");
        let command = crate::runner::command_name();
        format!("# Written by {command} shrink: {origin}.\n{note}{file_text}")
    }
}
