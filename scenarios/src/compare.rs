//! `compare`: the patterns side by side under the same faults and seeds.
//!
//! A comparison is a grid: columns are a suite's scenarios (one per fault profile in the
//! review suite), rows are pattern variants, and each cell aggregates its seeds. Every
//! aggregate is *mergeable* (counts, sums, a fixed-bucket histogram, the lowest failing
//! seed), so shards of a sweep combine into exactly what the unsharded sweep gives.
//! Each failing cell gets a counterexample: its lowest failing seed, run again with the
//! full trace, keeping the events that tell the violated row's story.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::AtomicBool;

use faultline_patterns::bugs::BugSet;
use faultline_patterns::Variant;
use faultline_sim::{Profile, Seed, TraceEvent};
use serde::{Deserialize, Serialize};

use crate::invariants::{Violation, INVARIANTS};
use crate::magnitudes::{delivery_semantics, Spread};
use crate::metrics::{histogram_percentile_ms, Metrics, STALENESS_BUCKETS_MS};
pub use crate::runner::FailedRun;
use crate::runner::{run, Faults, Outcome, RunFailure, RunOptions, RunSpec};
use crate::scenario::Scenario;
use crate::shard::Shard;
use crate::suite::Suite;
use crate::sweep::sweep_fold;

/// The version of the comparison's JSON form; bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 5;
/// Failed runs a cell lists (its lowest seeds); `runs_failed` counts them all.
pub const FAILED_RUNS_KEPT_MAX: usize = 10;
/// How far a story runs past the violation's last evidence.
const STORY_AFTER_US: u64 = 500_000;
/// Trace events a counterexample keeps at most.
pub const STORY_EVENTS_MAX: usize = 60;

/// One column of the grid: a scenario with its faults.
#[derive(Clone, Debug)]
pub struct Column {
    /// The scenario's name (the profile's name in the review suite).
    pub name: String,
    /// A template run (variant and seed are filled in per cell and seed).
    pub template: RunSpec,
    /// The seeds each cell runs.
    pub seeds: Range<u64>,
}

/// What to compare.
#[derive(Clone, Debug)]
pub struct ComparePlan {
    /// The suite the columns come from.
    pub suite: String,
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows.
    pub patterns: Vec<&'static Variant>,
}

impl ComparePlan {
    /// The suite's scenarios as columns, optionally narrowed: only these patterns; one
    /// standard-scenario column per given profile instead of the suite's; these seeds.
    pub fn new(
        suite: &Suite,
        patterns: Option<Vec<&'static Variant>>,
        profiles: Option<Vec<Profile>>,
        seeds: Option<Range<u64>>,
    ) -> ComparePlan {
        let mut columns: Vec<Column> = match profiles {
            Some(profiles) => profiles
                .into_iter()
                .map(|p| Column {
                    name: p.name().to_string(),
                    template: RunSpec::new(
                        &faultline_patterns::VARIANTS[0],
                        Scenario::standard(),
                        p,
                        Seed(0),
                    ),
                    seeds: suite.scenarios.first().map_or(0..10, |s| s.seeds.clone()),
                })
                .collect(),
            None => suite
                .scenarios
                .iter()
                .map(|s| {
                    // A column that is just the standard scenario under a profile replays
                    // without the suite file: `--pattern … --profile … --seed …`.
                    let standard = Scenario {
                        name: s.scenario.name.clone(),
                        ..Scenario::standard()
                    };
                    let plain = s.scenario == standard
                        && s.bugs == BugSet::NONE
                        && matches!(s.faults, Faults::Profile(_));
                    let template = RunSpec {
                        variant: &faultline_patterns::VARIANTS[0],
                        scenario: if plain {
                            Scenario::standard()
                        } else {
                            s.scenario.clone()
                        },
                        faults: s.faults.clone(),
                        seed: Seed(0),
                        bugs: s.bugs,
                        suite: (!plain).then(|| suite.path.clone()),
                    };
                    Column {
                        name: s.name.clone(),
                        template,
                        seeds: s.seeds.clone(),
                    }
                })
                .collect(),
        };
        if let Some(seeds) = seeds {
            for c in &mut columns {
                c.seeds = seeds.clone();
            }
        }
        let patterns = patterns.unwrap_or_else(|| {
            let mut all: Vec<&'static Variant> = Vec::new();
            for s in &suite.scenarios {
                for v in &s.patterns {
                    if !all.iter().any(|a| a.name == v.name) {
                        all.push(v);
                    }
                }
            }
            all
        });
        ComparePlan {
            suite: suite.name.clone(),
            columns,
            patterns,
        }
    }

    /// Switches `bugs` on in every column, beside the bugs a column already has.
    pub fn add_bugs(&mut self, bugs: BugSet) {
        for column in &mut self.columns {
            let mut all = column.template.bugs.bugs();
            all.extend(bugs.bugs());
            column.template.bugs = BugSet::of(&all);
        }
    }

    /// How many runs the plan has.
    pub fn run_count(&self) -> usize {
        self.columns
            .iter()
            .map(|c| self.patterns.len() * c.seeds.clone().count())
            .sum()
    }

    /// Where run `i` of the plan sits (order: column, pattern, seed): its column, its
    /// pattern and its seed.
    fn locate(&self, mut i: usize) -> (usize, usize, u64) {
        for (c, column) in self.columns.iter().enumerate() {
            let seeds = column.seeds.clone().count();
            let in_column = self.patterns.len() * seeds;
            if i < in_column {
                return (c, i / seeds, column.seeds.start + (i % seeds) as u64);
            }
            i -= in_column;
        }
        panic!("run index past the plan's {} runs", self.run_count())
    }

    /// Run `i` of the plan.
    pub fn run_at(&self, i: usize) -> RunSpec {
        let (c, p, seed) = self.locate(i);
        RunSpec {
            variant: self.patterns[p],
            seed: Seed(seed),
            ..self.columns[c].template.clone()
        }
    }

    /// The grid cell (column-major, as [`Comparison::cells`]) of run `i`.
    pub fn cell_of(&self, i: usize) -> usize {
        let (c, p, _) = self.locate(i);
        c * self.patterns.len() + p
    }

    /// Every run, in order: column, pattern, seed (for small plans; sweeps use
    /// [`ComparePlan::run_at`]).
    pub fn specs(&self) -> Vec<RunSpec> {
        (0..self.run_count()).map(|i| self.run_at(i)).collect()
    }
}

/// What one run leaves for the comparison.
#[derive(Clone, Debug)]
pub struct RunDigest {
    seed: u64,
    first_violation: Option<Violation>,
    violated: Vec<&'static str>,
    metrics: Metrics,
    coverage: BTreeMap<String, u64>,
    causes: crate::causes::Causes,
    error: Option<FailedRun>,
}

/// Shrinks an outcome to what the comparison keeps.
pub fn digest(spec: &RunSpec, outcome: Result<Outcome, Box<RunFailure>>) -> RunDigest {
    match outcome {
        Ok(o) => {
            let mut violated: Vec<&'static str> = o.violations.iter().map(|v| v.invariant).collect();
            violated.sort_unstable();
            violated.dedup();
            RunDigest {
                seed: o.seed,
                first_violation: o.violations.first().cloned(),
                violated,
                metrics: o.metrics,
                coverage: o.coverage,
                causes: o.causes,
                error: None,
            }
        }
        Err(failure) => RunDigest {
            seed: spec.seed.0,
            first_violation: None,
            violated: Vec::new(),
            metrics: Metrics::default(),
            coverage: BTreeMap::new(),
            causes: BTreeMap::new(),
            error: Some(FailedRun::of(&failure)),
        },
    }
}

impl FirstFailure {
    /// A violation of run `seed`, as a cell keeps it.
    pub fn of(seed: u64, v: &Violation) -> FirstFailure {
        FirstFailure {
            seed,
            invariant: v.invariant.to_string(),
            kind: v.kind.to_string(),
            key: v.key.clone(),
            at_ms: v.at.as_millis(),
            story: v.story.clone(),
        }
    }
}

/// The first failure of a cell (its lowest failing seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FirstFailure {
    /// The seed.
    pub seed: u64,
    /// Invariant, kind, key, instant and story of its first violation.
    pub invariant: String,
    /// The violation's kind.
    pub kind: String,
    /// The row.
    pub key: String,
    /// When, in ms.
    pub at_ms: u64,
    /// What happened.
    pub story: String,
}

/// The fault windows a sweep should reach (the components' windows and the world's).
pub fn expected_windows() -> &'static [&'static str] {
    faultline_patterns::windows::EXPECTED
}

/// `changes` per 1000 of `of`, rounded to a tenth (0 when `of` is 0).
fn per_1000(changes: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        (changes as f64 * 10_000.0 / of as f64).round() / 10.0
    }
}

/// How many times each change was applied (Jepsen's duplicate distribution), and
/// side effects performed more than once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DuplicateDeliveries {
    /// Changes applied once.
    pub once: u64,
    /// Changes applied twice.
    pub twice: u64,
    /// Changes applied three times.
    pub thrice: u64,
    /// Changes applied four times or more.
    pub more: u64,
    /// Welcomes beyond the one each customer should get.
    pub doubled_effects: u64,
    /// Customers durably created (the welcomes due).
    pub customers_created: u64,
    /// `doubled_effects` per 1000 `customers_created`.
    pub doubled_effects_per_1000_customers: f64,
}

impl DuplicateDeliveries {
    /// The counts once, twice, thrice, more.
    pub fn applied_times(&self) -> [u64; 4] {
        [self.once, self.twice, self.thrice, self.more]
    }

    fn applied_times_mut(&mut self) -> [&mut u64; 4] {
        [&mut self.once, &mut self.twice, &mut self.thrice, &mut self.more]
    }
}

/// How long readers saw broken states, per invariant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FractureWindows {
    /// A business action half applied.
    #[serde(rename = "atomic-actions")]
    pub atomic_actions: Spread,
    /// A child row without its customer.
    pub referential: Spread,
}

/// One pattern under one column, over all its seeds. Every field merges by addition
/// (spreads by histogram and maximum), except `first_failure`, which keeps the lowest
/// seed, and the figures derived from the sums (`lost_per_1000`, the per-1000 shares,
/// `delivery_semantics`), recomputed after each fold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The column.
    pub column: String,
    /// The variant.
    pub pattern: String,
    /// Whether the variant can feel the column's faults at all (`false`: a clock-skew
    /// column for a variant that reads no wall clock; reports show "n/a", not a pass).
    pub applicable: bool,
    /// Seeds run.
    pub seeds_run: u64,
    /// Seeds with at least one violation.
    pub seeds_failing: u64,
    /// Runs that failed instead of giving a verdict (panics, passed budgets); their
    /// seeds count in `seeds_run` but in no other aggregate.
    pub runs_failed: u64,
    /// The failed runs with the lowest seeds, at most [`FAILED_RUNS_KEPT_MAX`].
    pub failed_runs: Vec<FailedRun>,
    /// Per invariant, the seeds that broke it.
    pub seeds_by_invariant: BTreeMap<String, u64>,
    /// Commit-to-visible delays over all seeds.
    pub staleness_ms: Spread,
    /// From the last fault healing to agreement, over the seeds that agreed.
    pub recovery_ms: Spread,
    /// Row changes of durable source commits, over all seeds.
    pub changes_committed: u64,
    /// Of those, changes the target did not hold at quiesce (nor anything newer).
    pub changes_lost: u64,
    /// `changes_lost` per 1000 `changes_committed`.
    pub lost_per_1000: f64,
    /// How many times each change was applied, and doubled effects.
    pub duplicate_deliveries: DuplicateDeliveries,
    /// How long readers saw a fractured action (`atomic-actions`) or an orphan
    /// (`referential`).
    pub fracture_window_ms: FractureWindows,
    /// The delivery semantics observed: `effectively-once` (nothing lost, nothing
    /// applied twice), `at-least-once` (duplicates, no loss), `at-most-once` (losses,
    /// no duplicates), `neither`, or `unknown` when no seed gave a verdict.
    pub delivery_semantics: String,
    /// Actions scheduled, over all seeds.
    pub actions: u64,
    /// Actions attempted (not rejected by business rules).
    pub actions_attempted: u64,
    /// Actions that failed because of the integration.
    pub actions_failed_integration: u64,
    /// Integration calls, over all seeds.
    pub calls: u64,
    /// Committed row versions never visible at the target, over all seeds.
    pub never_visible: u64,
    /// Customers created and deleted between two observations of the target, over all
    /// seeds (never held there, so never welcomed).
    pub unobserved_customers: u64,
    /// The most log the source's replication slots held back in any run, in bytes
    /// (absent for patterns that stream no log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_log_retained_max_bytes: Option<u64>,
    /// Runs in which a component stopped on an error (a connector whose log position is
    /// gone): the loud failures, as opposed to silent loss.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub runs_with_failed_components: u64,
    /// Which fault landed in which operation window, over all seeds (see
    /// `faultline_sim::coverage`).
    pub coverage: BTreeMap<String, u64>,
    /// Per invariant, how many of its violations (over all seeds) are traced to each
    /// fault window (`crate::causes`: the window hit nearest to each violation,
    /// `(no window hit)` when none was).
    pub causes: crate::causes::Causes,
    /// The lowest failing seed's first violation.
    pub first_failure: Option<FirstFailure>,
}

impl Cell {
    fn new(column: &str, pattern: &str, applicable: bool) -> Cell {
        Cell {
            column: column.to_string(),
            pattern: pattern.to_string(),
            applicable,
            seeds_run: 0,
            seeds_failing: 0,
            runs_failed: 0,
            failed_runs: Vec::new(),
            seeds_by_invariant: BTreeMap::new(),
            staleness_ms: Spread::default(),
            recovery_ms: Spread::default(),
            changes_committed: 0,
            changes_lost: 0,
            lost_per_1000: 0.0,
            duplicate_deliveries: DuplicateDeliveries::default(),
            fracture_window_ms: FractureWindows::default(),
            delivery_semantics: "unknown".to_string(),
            actions: 0,
            actions_attempted: 0,
            actions_failed_integration: 0,
            calls: 0,
            never_visible: 0,
            unobserved_customers: 0,
            source_log_retained_max_bytes: None,
            runs_with_failed_components: 0,
            coverage: BTreeMap::new(),
            causes: BTreeMap::new(),
            first_failure: None,
        }
    }

    fn add(&mut self, run: &RunDigest) {
        self.seeds_run += 1;
        if let Some(failed) = &run.error {
            self.runs_failed += 1;
            self.keep_failed(std::slice::from_ref(failed));
            return;
        }
        let m = &run.metrics;
        let staleness_max = (m.staleness_histogram.iter().sum::<u64>() > 0).then_some(m.staleness_max_ms);
        self.staleness_ms
            .merge(&Spread::from_histogram(&m.staleness_histogram, staleness_max));
        self.recovery_ms.merge(&Spread::of(m.recovery_ms));
        let g = &m.magnitudes;
        self.changes_committed += g.changes_committed;
        self.changes_lost += g.changes_lost;
        let d = &mut self.duplicate_deliveries;
        for (mine, n) in d.applied_times_mut().into_iter().zip(g.applied_times) {
            *mine += n;
        }
        d.doubled_effects += g.doubled_effects;
        d.customers_created += g.customers_created;
        self.fracture_window_ms
            .atomic_actions
            .merge(&g.fracture_window_ms);
        self.fracture_window_ms.referential.merge(&g.orphan_window_ms);
        self.actions += m.actions;
        self.actions_attempted += m.actions - m.actions_rejected;
        self.actions_failed_integration += m.actions_failed_integration;
        self.calls += m.calls;
        self.never_visible += m.never_visible;
        self.unobserved_customers += m.unobserved_customers;
        self.source_log_retained_max_bytes = self
            .source_log_retained_max_bytes
            .max(m.source_log_retained_max_bytes);
        self.runs_with_failed_components += u64::from(!m.component_failures.is_empty());
        for (window, n) in &run.coverage {
            *self.coverage.entry(window.clone()).or_insert(0) += n;
        }
        crate::causes::add(&mut self.causes, &run.causes);
        if let Some(v) = &run.first_violation {
            self.seeds_failing += 1;
            for inv in &run.violated {
                *self.seeds_by_invariant.entry(inv.to_string()).or_insert(0) += 1;
            }
            let failure = FirstFailure {
                seed: run.seed,
                invariant: v.invariant.to_string(),
                kind: v.kind.to_string(),
                key: v.key.clone(),
                at_ms: v.at.as_millis(),
                story: v.story.clone(),
            };
            if self.first_failure.as_ref().is_none_or(|f| f.seed > failure.seed) {
                self.first_failure = Some(failure);
            }
        }
        self.refresh();
    }

    /// Recomputes the figures derived from the sums (shares per 1000, the semantics
    /// class), so a merged cell equals the cell of the whole sweep.
    fn refresh(&mut self) {
        self.lost_per_1000 = per_1000(self.changes_lost, self.changes_committed);
        let d = &mut self.duplicate_deliveries;
        d.doubled_effects_per_1000_customers = per_1000(d.doubled_effects, d.customers_created);
        self.delivery_semantics = if self.seeds_run == self.runs_failed {
            // No seed gave a verdict: nothing was observed.
            "unknown".to_string()
        } else {
            delivery_semantics(self.changes_lost, &d.applied_times(), d.doubled_effects).to_string()
        };
    }

    /// Folds another shard's cell of the same column and pattern into this one.
    pub fn merge(&mut self, other: &Cell) {
        debug_assert_eq!(
            (&self.column, &self.pattern, self.applicable),
            (&other.column, &other.pattern, other.applicable)
        );
        self.seeds_run += other.seeds_run;
        self.seeds_failing += other.seeds_failing;
        self.runs_failed += other.runs_failed;
        self.keep_failed(&other.failed_runs);
        for (inv, n) in &other.seeds_by_invariant {
            *self.seeds_by_invariant.entry(inv.clone()).or_insert(0) += n;
        }
        self.staleness_ms.merge(&other.staleness_ms);
        self.recovery_ms.merge(&other.recovery_ms);
        self.changes_committed += other.changes_committed;
        self.changes_lost += other.changes_lost;
        let d = &mut self.duplicate_deliveries;
        let theirs = &other.duplicate_deliveries;
        for (mine, n) in d.applied_times_mut().into_iter().zip(theirs.applied_times()) {
            *mine += n;
        }
        d.doubled_effects += theirs.doubled_effects;
        d.customers_created += theirs.customers_created;
        self.fracture_window_ms
            .atomic_actions
            .merge(&other.fracture_window_ms.atomic_actions);
        self.fracture_window_ms
            .referential
            .merge(&other.fracture_window_ms.referential);
        self.actions += other.actions;
        self.actions_attempted += other.actions_attempted;
        self.actions_failed_integration += other.actions_failed_integration;
        self.calls += other.calls;
        self.never_visible += other.never_visible;
        self.unobserved_customers += other.unobserved_customers;
        self.source_log_retained_max_bytes = self
            .source_log_retained_max_bytes
            .max(other.source_log_retained_max_bytes);
        self.runs_with_failed_components += other.runs_with_failed_components;
        for (window, n) in &other.coverage {
            *self.coverage.entry(window.clone()).or_insert(0) += n;
        }
        crate::causes::add(&mut self.causes, &other.causes);
        if let Some(f) = &other.first_failure {
            if self.first_failure.as_ref().is_none_or(|mine| mine.seed > f.seed) {
                self.first_failure = Some(f.clone());
            }
        }
        self.refresh();
    }

    /// Adds failed runs to the list, keeping the lowest seeds: the same list whatever
    /// order runs and shards arrive in.
    fn keep_failed(&mut self, runs: &[FailedRun]) {
        self.failed_runs.extend_from_slice(runs);
        self.failed_runs.sort_by_key(|r| r.seed);
        self.failed_runs.truncate(FAILED_RUNS_KEPT_MAX);
    }

    /// Seeds that gave a verdict (run, and did not fail).
    pub fn seeds_judged(&self) -> u64 {
        self.seeds_run - self.runs_failed
    }

    /// Share of judged seeds that broke `invariant` (0.0 to 1.0).
    pub fn share(&self, invariant: &str) -> f64 {
        let n = self.seeds_by_invariant.get(invariant).copied().unwrap_or(0);
        match self.seeds_judged() {
            0 => 0.0,
            judged => n as f64 / judged as f64,
        }
    }

    /// Share of judged seeds with any violation.
    pub fn failing_share(&self) -> f64 {
        match self.seeds_judged() {
            0 => 0.0,
            judged => self.seeds_failing as f64 / judged as f64,
        }
    }

    /// Staleness percentile (a bucket bound, in ms).
    pub fn staleness_percentile_ms(&self, pct: u64) -> Option<u64> {
        histogram_percentile_ms(&self.staleness_ms.histogram, pct)
    }

    /// Share of attempted actions that did not fail because of the integration.
    pub fn availability(&self) -> f64 {
        if self.actions_attempted == 0 {
            1.0
        } else {
            1.0 - self.actions_failed_integration as f64 / self.actions_attempted as f64
        }
    }

    /// Integration calls per scheduled action.
    pub fn calls_per_action(&self) -> f64 {
        if self.actions == 0 {
            0.0
        } else {
            self.calls as f64 / self.actions as f64
        }
    }
}

/// A trace event as a counterexample keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoryEvent {
    /// Its id in the run's trace.
    pub id: u64,
    /// When, in microseconds.
    pub at_us: u64,
    /// Where.
    pub host: String,
    /// What.
    pub kind: String,
    /// Detail.
    pub detail: String,
}

/// A failing cell's lowest seed, told in full.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counterexample {
    /// The column.
    pub column: String,
    /// The variant.
    pub pattern: String,
    /// The seed.
    pub seed: u64,
    /// The command that replays it.
    pub repro: String,
    /// Its trace hash.
    pub trace_hash: String,
    /// The fault plan, one event per line.
    pub faults: Vec<String>,
    /// The violation it is about.
    pub violation: FirstFailure,
    /// The trace events that touch the violated row's customer, and the faults.
    pub events: Vec<StoryEvent>,
}

/// A column as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// The column's name.
    pub name: String,
    /// The profile's name, or `explicit`.
    pub faults: String,
    /// The seed range, `A..B`.
    pub seeds: String,
}

/// The whole comparison: what `report.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The suite compared.
    pub suite: String,
    /// Columns, in order.
    pub columns: Vec<ColumnInfo>,
    /// Rows, in order.
    pub patterns: Vec<String>,
    /// What each row is: its preset and the settings changed from it, in row order.
    #[serde(default)]
    pub variants: Vec<VariantInfo>,
    /// Invariant names, in report order.
    pub invariants: Vec<String>,
    /// Staleness bucket bounds (ms); the last is open.
    pub staleness_buckets_ms: Vec<u64>,
    /// Every cell, column-major.
    pub cells: Vec<Cell>,
    /// Counterexamples of the failing cells.
    pub counterexamples: Vec<Counterexample>,
    /// Runs planned.
    pub runs_planned: u64,
    /// Runs done (less than planned when the sweep was stopped).
    pub runs_done: u64,
    /// Which shard of the sweep this is, from 1 (1 of 1 for a whole sweep).
    pub shard_index: u32,
    /// How many shards the sweep was split into.
    pub shard_count: u32,
    /// The requirements the cells are judged against (`--require`), in canonical form;
    /// empty when none were given.
    #[serde(default)]
    pub requirements: Vec<String>,
}

/// A row's variant: the preset it starts from and the settings it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantInfo {
    /// The row's name.
    pub name: String,
    /// The built-in preset.
    pub preset: String,
    /// One line on what it does.
    pub description: String,
    /// The settings changed from the preset, `key=value`, in the order given.
    pub settings: Vec<String>,
}

impl VariantInfo {
    fn of(v: &Variant) -> VariantInfo {
        VariantInfo {
            name: v.name.to_string(),
            preset: v.preset.to_string(),
            description: v.description.to_string(),
            settings: v.overrides.iter().map(ToString::to_string).collect(),
        }
    }
}

impl Comparison {
    /// Every fault window reached, summed over the cells.
    pub fn coverage(&self) -> BTreeMap<String, u64> {
        let mut total = BTreeMap::new();
        for cell in &self.cells {
            for (window, n) in &cell.coverage {
                *total.entry(window.clone()).or_insert(0) += n;
            }
        }
        total
    }

    /// The windows every sweep should reach that this one never did: holes in what its
    /// verdicts can say.
    pub fn coverage_missing(&self) -> Vec<&'static str> {
        let reached = self.coverage();
        expected_windows()
            .iter()
            .copied()
            .filter(|w| !reached.contains_key(*w))
            .collect()
    }

    /// Whether the sweep was stopped before every run was done.
    pub fn partial(&self) -> bool {
        self.runs_done < self.runs_planned
    }

    /// Runs that failed instead of giving a verdict, over every cell.
    pub fn runs_failed(&self) -> u64 {
        self.cells.iter().map(|c| c.runs_failed).sum()
    }

    /// The cell of `column` and `pattern`.
    pub fn cell(&self, column: &str, pattern: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.column == column && c.pattern == pattern)
    }
}

/// An empty comparison of `plan`'s grid.
pub fn empty(plan: &ComparePlan) -> Comparison {
    let mut cells = Vec::new();
    for column in &plan.columns {
        for variant in &plan.patterns {
            // An explicit plan may hold anything: only a profile says what it cannot reach.
            let applicable = match &column.template.faults {
                Faults::Profile(profile) => variant.feels(*profile),
                Faults::Plan(_) => true,
            };
            cells.push(Cell::new(&column.name, variant.name, applicable));
        }
    }
    Comparison {
        schema_version: SCHEMA_VERSION,
        suite: plan.suite.clone(),
        columns: plan
            .columns
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.clone(),
                faults: c.template.faults.name().to_string(),
                seeds: format!("{}..{}", c.seeds.start, c.seeds.end),
            })
            .collect(),
        patterns: plan.patterns.iter().map(|v| v.name.to_string()).collect(),
        variants: plan.patterns.iter().map(|v| VariantInfo::of(v)).collect(),
        invariants: INVARIANTS.iter().map(|i| i.name.to_string()).collect(),
        staleness_buckets_ms: STALENESS_BUCKETS_MS.to_vec(),
        cells,
        counterexamples: Vec::new(),
        runs_planned: plan.run_count() as u64,
        runs_done: 0,
        shard_index: 1,
        shard_count: 1,
        requirements: Vec::new(),
    }
}

/// Runs the plan on `jobs` threads, then tells each failing cell's first counterexample.
pub fn compare(
    plan: &ComparePlan,
    jobs: usize,
    progress: impl Fn(usize) + Sync,
    stop: &AtomicBool,
) -> Comparison {
    compare_shard(plan, Shard::ALL, jobs, progress, stop)
}

/// Runs one shard of the plan: its slice of the runs, aggregated into the full grid, so
/// that [`merge`] of all shards equals [`compare`] of the whole.
pub fn compare_shard(
    plan: &ComparePlan,
    shard: Shard,
    jobs: usize,
    progress: impl Fn(usize) + Sync,
    stop: &AtomicBool,
) -> Comparison {
    // The shard's k-th run is the plan's run number (index - 1) + k * count.
    let first = (shard.index - 1) as usize;
    let stride = shard.count as usize;
    let owned = plan.run_count().saturating_sub(first).div_ceil(stride);
    let mut comparison = empty(plan);
    comparison.runs_planned = owned as u64;
    comparison.shard_index = shard.index;
    comparison.shard_count = shard.count;
    let cells = &mut comparison.cells;
    let done = sweep_fold(
        owned,
        jobs,
        RunOptions::default(),
        |k| plan.run_at(first + k * stride),
        digest,
        |k, run| cells[plan.cell_of(first + k * stride)].add(&run),
        progress,
        stop,
    );
    comparison.runs_done = done as u64;
    comparison.counterexamples = counterexamples(plan, &comparison);
    comparison
}

/// Why shard reports cannot be merged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(pub String);

/// Combines shard reports of one sweep (each named, for messages) into the report of
/// the whole sweep.
pub fn merge(reports: Vec<(String, Comparison)>) -> Result<Comparison, MergeError> {
    let mut reports = reports.into_iter();
    let Some((first_name, mut merged)) = reports.next() else {
        return Err(MergeError(
            "nothing to merge: give shard report.json files or directories holding them".into(),
        ));
    };
    if merged.schema_version != SCHEMA_VERSION {
        return Err(MergeError(format!(
            "{first_name} has schema version {}, this faultline reads {SCHEMA_VERSION}: merge with the version that wrote it",
            merged.schema_version
        )));
    }
    let mut seen = vec![merged.shard_index];
    for (name, report) in reports {
        if report.shard_count != merged.shard_count || seen.contains(&report.shard_index) {
            return Err(MergeError(format!(
                "{name} is shard {}/{}, but shard{} {} of {} already came: give each shard of one split once",
                report.shard_index,
                report.shard_count,
                if seen.len() > 1 { "s" } else { "" },
                seen.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
                merged.shard_count
            )));
        }
        seen.push(report.shard_index);
        if report.schema_version != merged.schema_version {
            return Err(MergeError(format!(
                "{name} has schema version {}, {first_name} has {}",
                report.schema_version, merged.schema_version
            )));
        }
        if report.requirements != merged.requirements {
            return Err(MergeError(format!(
                "{name} was judged against requirements [{}], {first_name} against [{}]: give every shard the same --require",
                report.requirements.join(", "),
                merged.requirements.join(", ")
            )));
        }
        let same_grid = report.suite == merged.suite
            && report.columns == merged.columns
            && report.patterns == merged.patterns
            && report.variants == merged.variants
            && report.invariants == merged.invariants
            && report.staleness_buckets_ms == merged.staleness_buckets_ms;
        if !same_grid {
            return Err(MergeError(format!(
                "{name} is from a different sweep than {first_name} (suite {:?} vs {:?}, or other columns, patterns, settings or seeds): merge only shards of one sweep",
                report.suite, merged.suite
            )));
        }
        for (mine, theirs) in merged.cells.iter_mut().zip(&report.cells) {
            mine.merge(theirs);
        }
        merged.runs_planned += report.runs_planned;
        merged.runs_done += report.runs_done;
        for ex in report.counterexamples {
            match merged
                .counterexamples
                .iter_mut()
                .find(|e| e.column == ex.column && e.pattern == ex.pattern)
            {
                Some(existing) if existing.seed > ex.seed => *existing = ex,
                Some(_) => {}
                None => merged.counterexamples.push(ex),
            }
        }
    }
    let missing: Vec<String> = (1..=merged.shard_count)
        .filter(|k| !seen.contains(k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(MergeError(format!(
            "shards {} of {} are missing: a merge of part of a sweep would not be the sweep's report",
            missing.join(", "),
            merged.shard_count
        )));
    }
    merged.shard_index = 1;
    merged.shard_count = 1;
    // Counterexamples in grid order, as an unsharded sweep lists them.
    let order: Vec<(String, String)> = merged
        .cells
        .iter()
        .map(|c| (c.column.clone(), c.pattern.clone()))
        .collect();
    merged
        .counterexamples
        .sort_by_key(|e| order.iter().position(|(c, p)| *c == e.column && *p == e.pattern));
    Ok(merged)
}

/// Re-runs each failing cell's lowest failing seed with its full trace.
pub fn counterexamples(plan: &ComparePlan, comparison: &Comparison) -> Vec<Counterexample> {
    let mut out = Vec::new();
    for column in &plan.columns {
        for variant in &plan.patterns {
            let Some(cell) = comparison.cell(&column.name, variant.name) else {
                continue;
            };
            let Some(first) = &cell.first_failure else {
                continue;
            };
            let spec = RunSpec {
                variant,
                seed: Seed(first.seed),
                ..column.template.clone()
            };
            if let Ok(outcome) = run(
                &spec,
                RunOptions {
                    keep_trace: true,
                    ..RunOptions::default()
                },
            ) {
                out.push(counterexample(&column.name, &outcome, first));
            }
        }
    }
    out
}

/// Tells `outcome` (run with its trace kept) as the counterexample of `first`.
pub fn counterexample(column: &str, outcome: &Outcome, first: &FirstFailure) -> Counterexample {
    let customer = first.key.rsplit('/').next().unwrap_or_default();
    // The story runs to the violation's last piece of evidence (a stale row's last
    // apply can come long after the commit it missed), and a little beyond.
    let evidence_end_us = outcome
        .violations
        .iter()
        .filter(|v| v.invariant == first.invariant && v.kind == first.kind && v.key == first.key)
        .flat_map(|v| v.evidence.iter())
        .filter_map(|id| outcome.trace.get(id.0 as usize))
        .map(|e| e.at.as_micros())
        .max()
        .unwrap_or(0);
    let horizon_us = evidence_end_us.max(first.at_ms * 1_000) + STORY_AFTER_US;
    let events = story_events(&outcome.trace, customer, horizon_us);
    Counterexample {
        column: column.to_string(),
        pattern: outcome.pattern.to_string(),
        seed: outcome.seed,
        repro: outcome.repro.clone(),
        trace_hash: outcome.trace_hash.to_string(),
        faults: outcome
            .plan
            .to_string()
            .lines()
            .map(|l| l.trim().to_string())
            .collect(),
        violation: first.clone(),
        events,
    }
}

/// Whether `detail` names customer `id` (as `customer/id`, `address/id`, `contact/id` or
/// `key=id`), not merely a number that starts with it or a partition that equals it.
fn mentions(detail: &str, id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    ["customer/", "address/", "contact/", "key="]
        .iter()
        .any(|prefix| names(detail, &format!("{prefix}{id}")))
}

/// Whether `detail` names `needle` whole: not followed by another digit
/// (`contact/23` is not in `contact/235`).
pub(crate) fn names(detail: &str, needle: &str) -> bool {
    detail.match_indices(needle).any(|(at, _)| {
        let after = detail[at + needle.len()..].chars().next();
        after.is_none_or(|c| !c.is_ascii_digit())
    })
}

/// The client host and call id of an RPC event (`call=ID to=…` on the client,
/// `call=ID from=CLIENT …` on the server).
pub fn call_key(event_host: &str, kind: &str, detail: &str) -> Option<(String, String)> {
    let rest = detail.strip_prefix("call=")?;
    let (id, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let client = match kind {
        "deliver" | "lost-response" => rest
            .strip_prefix("from=")
            .or_else(|| rest.strip_prefix("to="))?
            .split(' ')
            .next()?
            .to_string(),
        _ => event_host.to_string(),
    };
    Some((client, id.to_string()))
}

/// The events that tell a customer's story up to `horizon_us`:
/// those that name the customer, every RPC event of a call among them (its response
/// names no key), and the faults. The last [`STORY_EVENTS_MAX`] of them.
fn story_events(trace: &[TraceEvent], customer: &str, horizon_us: u64) -> Vec<StoryEvent> {
    let in_time: Vec<&TraceEvent> = trace.iter().filter(|e| e.at.as_micros() <= horizon_us).collect();
    let calls: std::collections::BTreeSet<(String, String)> = in_time
        .iter()
        .filter(|e| mentions(&e.detail, customer))
        .filter_map(|e| call_key(&e.host, e.kind, &e.detail))
        .collect();
    let relevant: Vec<&TraceEvent> = in_time
        .into_iter()
        .filter(|e| {
            matches!(e.kind, "fault" | "crash" | "restart")
                || mentions(&e.detail, customer)
                || call_key(&e.host, e.kind, &e.detail).is_some_and(|k| calls.contains(&k))
        })
        .collect();
    let skip = relevant.len().saturating_sub(STORY_EVENTS_MAX);
    relevant
        .into_iter()
        .skip(skip)
        .map(|e| StoryEvent {
            id: e.id.0,
            at_us: e.at.as_micros(),
            host: e.host.to_string(),
            kind: e.kind.to_string(),
            detail: e.detail.clone(),
        })
        .collect()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_matches_whole_ids_only() {
        assert!(mentions("PUT customer/17 v2", "17"));
        assert!(mentions("produce t/1 key=17", "17"));
        assert!(!mentions("PUT customer/170 v2", "17"));
        assert!(!mentions("call=1.17 bump", "17"));
        assert!(!mentions("fetch customer-changes/1@3", "1"));
    }

    #[test]
    fn call_keys_pair_client_and_server_events() {
        let send = call_key("source", "send", "call=0.7 to=target PUT customer/1 v2");
        let deliver = call_key("target", "deliver", "call=0.7 from=source PUT customer/1 v2");
        let lost = call_key("target", "lost-response", "call=0.7 to=source 200");
        let response = call_key("source", "response", "call=0.7 200");
        assert_eq!(send, Some(("source".into(), "0.7".into())));
        assert_eq!(deliver, send);
        assert_eq!(lost, send);
        assert_eq!(response, send);
        assert_eq!(call_key("target", "apply", "customer/1 v2"), None);
    }
}
