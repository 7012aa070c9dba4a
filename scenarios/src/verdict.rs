//! Judging a suite: runs every scenario × pattern × seed and compares what broke with
//! what the suite expects.
//!
//! A cell (scenario × pattern) is a *surprise* when an invariant breaks that was not
//! expected to, or when an invariant expected to break held on every seed: a suite
//! whose expectations went stale fails just like one whose pattern regressed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::invariants::Violation;
use crate::runner::{FailedRun, RunFailure, RunOptions, RunSpec};
use crate::shard::Shard;
use crate::suite::{Expectation, Suite};
use crate::sweep::sweep_fold;

/// Failed runs a cell keeps (the lowest seeds).
pub const ERRORS_KEPT_MAX: usize = 10;
/// Violations kept per run as examples, one per kind first (a run can have hundreds).
pub const EXAMPLES_PER_RUN_MAX: usize = 8;

/// What one run contributed.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// The seed.
    pub seed: u64,
    /// The run's fingerprint (hex), or empty when the run failed.
    pub trace_hash: String,
    /// The invariants it broke.
    pub broken: BTreeSet<&'static str>,
    /// The invariants it broke, with the kind of violation.
    pub broken_kinds: BTreeSet<(&'static str, &'static str)>,
    /// A few of its violations, one per broken kind first.
    pub examples: Vec<Violation>,
    /// The command that replays it.
    pub repro: String,
    /// Why the run failed instead of giving a verdict, if it did.
    pub error: Option<FailedRun>,
}

/// What a scenario × pattern did, and whether that was expected.
#[derive(Clone, Debug, Serialize)]
pub struct CellResult {
    /// The scenario.
    pub scenario: String,
    /// The variant.
    pub pattern: &'static str,
    /// What the suite expects.
    #[serde(serialize_with = "expectation_text")]
    pub expected: Expectation,
    /// Seeds run.
    pub seeds_run: usize,
    /// Seeds with at least one violation.
    pub seeds_failing: usize,
    /// Each broken invariant with the first run that broke it.
    pub broken: BTreeMap<&'static str, RunResult>,
    /// Runs that failed instead of giving a verdict (panics, passed budgets).
    pub runs_failed: usize,
    /// The failed runs with the lowest seeds, at most [`ERRORS_KEPT_MAX`].
    pub errors: Vec<RunResult>,
    /// Every way this cell differs from its expectation, empty when it does not: each
    /// invariant (and kind) that broke unexpectedly, with the first seed that broke it,
    /// then each expected break that held on every seed. All of them, so that a suite
    /// maintainer re-pinning a cell sees its whole difference in one run.
    pub surprises: Vec<String>,
}

impl CellResult {
    /// Whether the cell differs from its expectation.
    pub fn is_surprise(&self) -> bool {
        !self.surprises.is_empty()
    }
}

fn expectation_text<S: serde::Serializer>(e: &Expectation, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Expectation::Pass => s.serialize_str("pass"),
        Expectation::Breaks(set) => s.collect_seq(set.iter().map(ToString::to_string)),
    }
}

/// The verdict on a whole suite.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteResult {
    /// The suite's name.
    pub suite: String,
    /// Every cell, in suite order.
    pub cells: Vec<CellResult>,
    /// Whether the run was stopped before every seed ran.
    pub partial: bool,
}

impl SuiteResult {
    /// Runs that failed instead of giving a verdict, over every cell.
    pub fn runs_failed(&self) -> usize {
        self.cells.iter().map(|c| c.runs_failed).sum()
    }

    /// Cells whose outcome surprised.
    pub fn surprises(&self) -> impl Iterator<Item = &CellResult> {
        self.cells.iter().filter(|c| c.is_surprise())
    }
}

/// Every run of the suite, in order: scenario, pattern, seed.
pub fn specs(suite: &Suite) -> Vec<RunSpec> {
    let mut out = Vec::new();
    for s in &suite.scenarios {
        for variant in &s.patterns {
            for seed in s.seeds.clone() {
                out.push(RunSpec {
                    variant,
                    scenario: s.scenario.clone(),
                    faults: s.faults.clone(),
                    seed: faultline_sim::Seed(seed),
                    bugs: s.bugs,
                    suite: Some(suite.path.clone()),
                });
            }
        }
    }
    out
}

/// Runs the suite on `jobs` threads and judges it.
pub fn judge(
    suite: &Suite,
    jobs: usize,
    progress: impl Fn(usize, usize) + Sync,
    stop: &AtomicBool,
) -> SuiteResult {
    judge_shard(suite, Shard::ALL, jobs, progress, stop)
}

/// Runs one shard of the suite and judges it. A break that is not expected is a surprise
/// on any shard; whether an expected break still happens needs every seed, so a shard
/// of a split sweep does not judge that (the whole suite, or `compare` and `merge`, do).
pub fn judge_shard(
    suite: &Suite,
    shard: Shard,
    jobs: usize,
    progress: impl Fn(usize, usize) + Sync,
    stop: &AtomicBool,
) -> SuiteResult {
    let all = specs(suite);
    // Which cell each run belongs to, in spec order.
    let cell_of: Vec<usize> = suite
        .scenarios
        .iter()
        .flat_map(|s| s.patterns.iter().map(move |_| s.seeds.clone().count()))
        .enumerate()
        .flat_map(|(cell, seeds)| std::iter::repeat_n(cell, seeds))
        .collect();
    let owned: Vec<usize> = (0..all.len()).filter(|i| shard.owns(*i)).collect();
    let total = owned.len();
    let cell_count: usize = suite.scenarios.iter().map(|s| s.patterns.len()).sum();
    let mut tallies: Vec<Tally> = (0..cell_count).map(|_| Tally::default()).collect();
    let done = sweep_fold(
        total,
        jobs,
        RunOptions::default(),
        |k| all[owned[k]].clone(),
        summarise,
        |k, run| tallies[cell_of[owned[k]]].add(run),
        |done| progress(done, total),
        stop,
    );
    let partial = done < total;
    let whole = shard == Shard::ALL && !partial;
    let mut tallies = tallies.into_iter();
    let mut cells = Vec::new();
    for s in &suite.scenarios {
        for variant in &s.patterns {
            let tally = tallies.next().expect("a tally per cell");
            cells.push(tally.judge(&s.name, variant.name, s.expect[variant.name].clone(), whole));
        }
    }
    SuiteResult {
        suite: suite.name.clone(),
        cells,
        partial,
    }
}

/// What a cell's runs add up to, whatever order they finish in.
#[derive(Default)]
struct Tally {
    seeds_run: usize,
    seeds_failing: usize,
    /// Per broken invariant, the lowest-seed run that broke it.
    broken: BTreeMap<&'static str, RunResult>,
    /// Per broken invariant and kind, the lowest-seed run that broke it so.
    broken_kinds: BTreeMap<(&'static str, &'static str), RunResult>,
    /// Runs that failed instead of giving a verdict.
    runs_failed: usize,
    /// The lowest-seed runs that failed.
    errors: Vec<RunResult>,
}

impl Tally {
    fn add(&mut self, run: RunResult) {
        self.seeds_run += 1;
        if !run.broken.is_empty() {
            self.seeds_failing += 1;
        }
        for inv in &run.broken {
            let keep = self.broken.get(inv).is_none_or(|kept| kept.seed > run.seed);
            if keep {
                self.broken.insert(inv, run.clone());
            }
        }
        for pair in &run.broken_kinds {
            let keep = self
                .broken_kinds
                .get(pair)
                .is_none_or(|kept| kept.seed > run.seed);
            if keep {
                self.broken_kinds.insert(*pair, run.clone());
            }
        }
        if run.error.is_some() {
            self.runs_failed += 1;
            self.errors.push(run);
            self.errors.sort_by_key(|r| r.seed);
            self.errors.truncate(ERRORS_KEPT_MAX);
        }
    }

    fn judge(self, scenario: &str, pattern: &'static str, expected: Expectation, whole: bool) -> CellResult {
        let broken = &self.broken;
        // A failed run is an error of its own (reported beside the verdict, exit 3), not
        // a surprise; with seeds missing, "held on every seed" cannot be judged.
        let every_seed_judged = whole && self.runs_failed == 0;
        let mut surprises = Vec::new();
        match &expected {
            Expectation::Pass => {
                for (inv, run) in broken {
                    surprises.push(format!(
                        "expected pass, but {inv} broke on seed {} ({}); repro: {}",
                        run.seed,
                        story(run, inv),
                        run.repro
                    ));
                }
            }
            Expectation::Breaks(expected) => {
                let kinds = &self.broken_kinds;
                let unexpected = kinds
                    .iter()
                    .filter(|((inv, kind), _)| !expected.iter().any(|e| e.covers(inv, kind)));
                for ((inv, kind), run) in unexpected {
                    surprises.push(format!(
                        "{inv}/{kind} broke on seed {} but is not expected to ({}); repro: {}",
                        run.seed,
                        story_of_kind(run, inv, kind),
                        run.repro
                    ));
                }
                if every_seed_judged {
                    let stale = expected
                        .iter()
                        .filter(|e| !kinds.keys().any(|(inv, kind)| e.covers(inv, kind)));
                    for e in stale {
                        surprises.push(format!(
                            "expected {e} to break, but it held on all {} seeds: the expectation is stale",
                            self.seeds_run
                        ));
                    }
                }
            }
        }
        CellResult {
            scenario: scenario.to_string(),
            pattern,
            expected,
            seeds_run: self.seeds_run,
            seeds_failing: self.seeds_failing,
            broken: self.broken,
            runs_failed: self.runs_failed,
            errors: self.errors,
            surprises,
        }
    }
}

fn summarise(spec: &RunSpec, outcome: Result<crate::Outcome, Box<RunFailure>>) -> RunResult {
    match outcome {
        Ok(o) => {
            let broken: BTreeSet<&'static str> = o.violations.iter().map(|v| v.invariant).collect();
            let broken_kinds: BTreeSet<(&'static str, &'static str)> =
                o.violations.iter().map(|v| (v.invariant, v.kind)).collect();
            let mut examples: Vec<Violation> = Vec::new();
            for (inv, kind) in &broken_kinds {
                examples.extend(
                    o.violations
                        .iter()
                        .find(|v| v.invariant == *inv && v.kind == *kind)
                        .cloned(),
                );
            }
            examples.truncate(EXAMPLES_PER_RUN_MAX);
            RunResult {
                seed: o.seed,
                trace_hash: o.trace_hash.to_string(),
                broken,
                broken_kinds,
                examples,
                repro: o.repro,
                error: None,
            }
        }
        Err(e) => RunResult {
            seed: spec.seed.0,
            trace_hash: String::new(),
            broken: BTreeSet::new(),
            broken_kinds: BTreeSet::new(),
            examples: Vec::new(),
            repro: spec.repro_command(),
            error: Some(FailedRun::of(&e)),
        },
    }
}

fn story_of_kind(run: &RunResult, invariant: &str, kind: &str) -> String {
    run.examples
        .iter()
        .find(|v| v.invariant == invariant && v.kind == kind)
        .map_or_else(String::new, |v| format!("on {} at {}: {}", v.key, v.at, v.story))
}

fn story(run: &RunResult, invariant: &str) -> String {
    run.examples
        .iter()
        .find(|v| v.invariant == invariant)
        .map_or_else(String::new, |v| {
            format!("{} on {} at {}: {}", v.kind, v.key, v.at, v.story)
        })
}
