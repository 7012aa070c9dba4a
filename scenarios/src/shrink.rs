//! Shrinking: cutting a failing run down to the few actions and faults that still break
//! it the same way (same invariant, same kind of violation).
//!
//! The run's workload and fault plan are first written out as explicit lists. Two cheap
//! steps go first: keep only the actions on the violated row's customer, and keep the
//! shortest prefix of actions that still fails. Then delta debugging (ddmin) takes away
//! fault events and actions, alternating, until neither list loses anything more. A
//! candidate plan that is no longer valid (a restart without its crash), or that leaves
//! a fault unhealed where the original healed everything, does not count as failing.

use faultline_sim::{FaultEvent, FaultPlan};

use crate::invariants::Violation;
use crate::runner::{run, Faults, Outcome, RunOptions, RunSpec};
use crate::scenario::ScheduledAction;
use crate::workload;

/// Candidate runs one shrink may try, at most.
pub const SHRINK_RUNS_MAX: usize = 4_000;

/// What the shrinker keeps failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The invariant.
    pub invariant: &'static str,
    /// The kind of violation.
    pub kind: &'static str,
}

/// Why a run could not be shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The run breaks nothing (or not the asked invariant).
    #[error("{0}")]
    NotFailing(String),
    /// The world could not run it.
    #[error("the run failed: {0}")]
    Run(#[from] faultline_sim::WorldError),
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
    /// Its outcome, trace kept.
    pub outcome: Outcome,
    /// The violation it still shows.
    pub violation: Violation,
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
        spec.scenario.invariants = Some(vec![self.target.invariant.to_string()]);
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
        run(&spec, RunOptions::default()).is_ok_and(|o| {
            o.violations
                .iter()
                .any(|v| v.invariant == self.target.invariant && v.kind == self.target.kind)
        })
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
    let original = run(spec, RunOptions::default())?;
    let first = original
        .violations
        .iter()
        .find(|v| invariant.is_none_or(|i| v.invariant == i))
        .cloned()
        .ok_or_else(|| {
            ShrinkError::NotFailing(match invariant {
                Some(i) => format!("seed {} does not break {i}: nothing to shrink", spec.seed),
                None => format!("seed {} breaks no invariant: nothing to shrink", spec.seed),
            })
        })?;
    let target = Target {
        invariant: first.invariant,
        kind: first.kind,
    };
    let mut actions: Vec<ScheduledAction> = match &spec.scenario.schedule {
        Some(list) => list.clone(),
        None => {
            let streams = faultline_sim::RngStreams::new(spec.seed);
            workload::schedule(&spec.scenario, &mut streams.stream("workload"))
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
    let customer = first.key.rsplit('/').next().and_then(|id| id.parse::<u64>().ok());
    if let Some(customer) = customer {
        let own: Vec<ScheduledAction> = actions
            .iter()
            .filter(|a| a.action.customer().0 == customer)
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
    let outcome = run(&spec, RunOptions { keep_trace: true })?;
    let violation = outcome
        .violations
        .iter()
        .find(|v| v.invariant == target.invariant && v.kind == target.kind)
        .cloned()
        .ok_or_else(|| {
            ShrinkError::NotFailing(
                "the shrunk run no longer fails (the shrink budget ran out mid-way)".into(),
            )
        })?;
    Ok(Shrunk {
        target,
        before,
        spec,
        outcome,
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
    patterns: Vec<&'static str>,
    seeds: String,
    customers: u64,
    latency_min_ms: u64,
    latency_max_ms: u64,
    quiesce_ms: u64,
    staleness_bound_ms: u64,
    invariants: Vec<&'static str>,
    bugs: Vec<&'static str>,
    faults: &'a [FaultEvent],
    schedule: &'a [ScheduledAction],
    expect: std::collections::BTreeMap<&'static str, Vec<&'static str>>,
}

impl Shrunk {
    /// The minimal run as a suite file that `faultline run` replays (and expects to fail
    /// the same way).
    pub fn to_suite_toml(&self, origin: &str) -> String {
        let scenario = &self.spec.scenario;
        let Faults::Plan(plan) = &self.spec.faults else {
            unreachable!("a shrunk run has an explicit plan")
        };
        let file = SuiteFile {
            suite: SuiteHeader {
                name: "shrunk".to_string(),
                description: format!(
                    "{origin}, shrunk to keep {} / {}",
                    self.target.invariant, self.target.kind
                ),
            },
            scenario: vec![ScenarioFile {
                name: "shrunk",
                patterns: vec![self.spec.variant.name],
                seeds: self.spec.seed.0.to_string(),
                customers: scenario.customers,
                latency_min_ms: scenario.latency_min_ms,
                latency_max_ms: scenario.latency_max_ms,
                quiesce_ms: scenario.quiesce_ms,
                staleness_bound_ms: scenario.staleness_bound_ms,
                invariants: vec![self.target.invariant],
                bugs: self.spec.bugs.bugs().into_iter().map(|b| b.name()).collect(),
                faults: &plan.events,
                schedule: scenario.schedule.as_deref().unwrap_or_default(),
                expect: [(self.spec.variant.name, vec![self.target.invariant])]
                    .into_iter()
                    .collect(),
            }],
        };
        format!(
            "# Written by faultline shrink: {origin}.\n{}",
            toml::to_string(&file).expect("suite files serialise")
        )
    }
}
