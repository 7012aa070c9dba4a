//! Suite files: what each pattern must (or is known not to) guarantee, as TOML.
//!
//! ```toml
//! [suite]
//! name = "ci"
//! description = "..."
//!
//! [[scenario]]
//! name = "chaos"
//! patterns = ["outbox-inbox", "push"]   # or "all"
//! profile = "chaos"                     # or faults = [{ at_ms = 500, fault = "crash", host = "source" }, ...]
//! seeds = "0..20"
//! # optional: base = "standard", customers, actions, actions_per_sec, source_workers,
//! # long_transaction_pct, long_transaction_ms, cross_customer_pct, latency_min_ms, latency_max_ms,
//! # quiesce_ms, staleness_bound_ms, trace_events_max (the run's budget),
//! # bootstrap = true (the target starts empty), invariants = [...], bugs = [...]
//!
//! [scenario.expect]
//! outbox-inbox = "pass"
//! push = ["convergence", "liveness"]    # the invariants it is known to break
//! queue-after-commit = ["convergence/missing"]   # or just one kind of an invariant
//!
//! [[variant]]                           # a variant of your own: a preset and settings
//! name = "outbox-inbox-slow-flush"
//! preset = "outbox-inbox"
//! description = "..."                   # optional
//! settings = { "connect.offset.flush.interval.ms" = 60000, "producer.linger.ms" = 0 }
//! ```
//!
//! A scenario's patterns are presets, the suite's own variants, or either with settings
//! appended (`"outbox-inbox+producer.linger.ms=0"`); `"all"` is every built-in preset and
//! every variant the suite defines (a pattern a binary registers is named explicitly).
//!
//! Loading checks everything a run would trip over later (names, ranges, fault plans
//! against each pattern's hosts) and reports the first problem with the file, line,
//! column, and what would be valid.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use faultline_patterns::bugs::{Bug, BugSet};
use faultline_patterns::settings::SettingError;
use faultline_patterns::Variant;
use faultline_sim::{FaultEvent, FaultPlan, Profile};
use serde::Deserialize;
use toml::Spanned;

use crate::invariants::INVARIANTS;
use crate::runner::Faults;
use crate::scenario::Scenario;

/// The most seeds one scenario may ask for (a bound on every loop).
pub const SEEDS_MAX: u64 = 10_000_000;

/// A suite file that cannot be used, with where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}{}", path.display(), hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct SuiteError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// What a pattern is expected to do in a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// Every checked invariant holds on every seed.
    Pass,
    /// Exactly these break (each on at least one seed; nothing else breaks).
    Breaks(BTreeSet<ExpectedBreak>),
}

/// One expected break: an invariant in any of its kinds (`convergence`), or one kind
/// of it (`convergence/phantom`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedBreak {
    /// The invariant.
    pub invariant: &'static str,
    /// The kind, when only one kind is expected.
    pub kind: Option<&'static str>,
}

impl ExpectedBreak {
    /// Whether a violation of `invariant` of `kind` is this expected break.
    pub fn covers(&self, invariant: &str, kind: &str) -> bool {
        self.invariant == invariant && self.kind.is_none_or(|k| k == kind)
    }
}

impl std::fmt::Display for ExpectedBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            Some(kind) => write!(f, "{}/{kind}", self.invariant),
            None => f.write_str(self.invariant),
        }
    }
}

/// One validated scenario of a suite.
#[derive(Clone, Debug)]
pub struct SuiteScenario {
    /// Its name, unique in the suite.
    pub name: String,
    /// The scenario (workload, timing, checked invariants).
    pub scenario: Scenario,
    /// The variants it runs.
    pub patterns: Vec<&'static Variant>,
    /// Profile or explicit plan.
    pub faults: Faults,
    /// The seeds.
    pub seeds: Range<u64>,
    /// Planted bugs switched on.
    pub bugs: BugSet,
    /// The expectation per variant name.
    pub expect: BTreeMap<&'static str, Expectation>,
}

/// A loaded, validated suite.
#[derive(Clone, Debug)]
pub struct Suite {
    /// The suite's name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The variants it defines (`[[variant]]`), in file order.
    pub variants: Vec<&'static Variant>,
    /// Its scenarios, in file order.
    pub scenarios: Vec<SuiteScenario>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    suite: RawHeader,
    #[serde(rename = "variant", default)]
    variants: Vec<RawVariant>,
    #[serde(rename = "scenario", default)]
    scenarios: Vec<RawScenario>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: Spanned<String>,
    preset: Spanned<String>,
    description: Option<String>,
    // Values are not spanned: toml gives a table made by dotted keys no span.
    settings: Option<Spanned<BTreeMap<Spanned<String>, RawSetting>>>,
}

/// A setting's value as written; a table is what unquoted dotted keys make.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a setting takes a whole number, true or false, or a word in quotes"
)]
enum RawSetting {
    Bool(bool),
    Whole(i64),
    Fraction(f64),
    Text(String),
    Table(BTreeMap<String, RawSetting>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    #[serde(default)]
    description: String,
}

/// A word or a list of names. (`Spanned` cannot sit inside an untagged enum, so the span
/// is taken around it, and errors point at the whole value.)
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "patterns are \"all\" or a list of pattern names, e.g. [\"outbox-inbox\", \"push\"]"
)]
enum WordOrList {
    Word(String),
    List(Vec<String>),
}

/// An expectation as written: the same shapes as [`WordOrList`], with its own message.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "an expectation is \"pass\" or the list of invariants the pattern is known to break, e.g. [\"convergence\", \"convergence/phantom\"]"
)]
enum ExpectValue {
    Word(String),
    List(Vec<String>),
}

impl ExpectValue {
    fn as_word_or_list(&self) -> WordOrList {
        match self {
            ExpectValue::Word(w) => WordOrList::Word(w.clone()),
            ExpectValue::List(l) => WordOrList::List(l.clone()),
        }
    }
}

/// A serde message in the suite's words rather than Rust's.
fn plain(message: &str) -> String {
    message
        .replace("invalid type: ", "found ")
        .replace("expected u64", "expected a whole number, e.g. 200")
        .replace("expected f64", "expected a number, e.g. 0.5")
        .replace("expected i64", "expected a whole number, e.g. -250")
        .replace("expected a string", "expected text in quotes")
        .replace(
            "expected struct RawHeader",
            "expected a [suite] table with name and description",
        )
        .replace("expected struct RawScenario", "expected a [[scenario]] table")
        .replace(
            "expected struct RawVariant",
            "expected a [[variant]] table with name, preset and settings",
        )
        .replace("expected struct RawSuite", "expected a suite file")
        .replace(
            "expected a sequence",
            "expected a list in brackets, e.g. [\"a\", \"b\"]",
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    patterns: Spanned<WordOrList>,
    profile: Option<Spanned<String>>,
    faults: Option<Spanned<Vec<FaultEvent>>>,
    seeds: Spanned<String>,
    base: Option<Spanned<String>>,
    customers: Option<u64>,
    actions: Option<u64>,
    actions_per_sec: Option<u64>,
    source_workers: Option<u64>,
    long_transaction_pct: Option<u64>,
    long_transaction_ms: Option<u64>,
    cross_customer_pct: Option<u64>,
    latency_min_ms: Option<u64>,
    latency_max_ms: Option<u64>,
    quiesce_ms: Option<u64>,
    staleness_bound_ms: Option<u64>,
    trace_events_max: Option<u64>,
    #[serde(default)]
    bootstrap: bool,
    invariants: Option<Vec<Spanned<String>>>,
    schedule: Option<Spanned<Vec<crate::scenario::ScheduledAction>>>,
    #[serde(default)]
    bugs: Vec<Spanned<String>>,
    expect: Spanned<BTreeMap<String, Spanned<ExpectValue>>>,
}

/// Turns byte offsets into line and column for one file.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) -> SuiteError {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        SuiteError {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
            hint,
        }
    }

    fn unknown(&self, what: &str, value: &Spanned<String>, valid: &[&str]) -> SuiteError {
        self.unknown_at(value.span(), what, value.get_ref(), valid)
    }

    fn unknown_at(&self, span: Range<usize>, what: &str, value: &str, valid: &[&str]) -> SuiteError {
        self.error(
            span,
            format!("unknown {what} {value:?}"),
            Some(format!("valid {what}s are: {}", valid.join(", "))),
        )
    }
}

/// Parses `A..B` (B exclusive) or a single seed.
fn parse_seeds(loc: &Locator, raw: &Spanned<String>) -> Result<Range<u64>, SuiteError> {
    let text = raw.get_ref().trim();
    let bad = |message: String| {
        loc.error(
            raw.span(),
            message,
            Some("write seeds as \"A..B\" (B exclusive), e.g. \"0..100\"".into()),
        )
    };
    let range = match text.split_once("..") {
        Some((a, b)) => {
            let a: u64 = a
                .trim()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a seed range", text)))?;
            let b: u64 = b
                .trim()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a seed range", text)))?;
            a..b
        }
        None => {
            let a: u64 = text
                .parse()
                .map_err(|_| bad(format!("{:?} is not a seed range", text)))?;
            a..a.saturating_add(1)
        }
    };
    if range.start > range.end {
        return Err(bad(format!("seed range {text:?} is reversed")));
    }
    if range.is_empty() {
        return Err(bad(format!("seed range {text:?} is empty")));
    }
    if range.end - range.start > SEEDS_MAX {
        return Err(bad(format!(
            "seed range {text:?} has more than {SEEDS_MAX} seeds"
        )));
    }
    Ok(range)
}

fn invariant_name(loc: &Locator, raw: &Spanned<String>) -> Result<&'static str, SuiteError> {
    invariant_name_at(loc, raw.span(), raw.get_ref())
}

fn invariant_name_at(loc: &Locator, span: Range<usize>, name: &str) -> Result<&'static str, SuiteError> {
    let names: Vec<&str> = INVARIANTS.iter().map(|i| i.name).collect();
    INVARIANTS
        .iter()
        .find(|i| i.name == name)
        .map(|i| i.name)
        .ok_or_else(|| loc.unknown_at(span, "invariant", name, &names))
}

/// An expected break as a suite writes it: `invariant` or `invariant/kind`.
fn expected_break_at(loc: &Locator, span: Range<usize>, text: &str) -> Result<ExpectedBreak, SuiteError> {
    let (name, kind) = match text.split_once('/') {
        Some((name, kind)) => (name, Some(kind)),
        None => (text, None),
    };
    let invariant = invariant_name_at(loc, span.clone(), name)?;
    let info = INVARIANTS
        .iter()
        .find(|i| i.name == invariant)
        .expect("a known invariant");
    let kind = match kind {
        None => None,
        Some(kind) => Some(info.kinds.iter().copied().find(|k| *k == kind).ok_or_else(|| {
            let valid: Vec<String> = info.kinds.iter().map(|k| format!("{invariant}/{k}")).collect();
            loc.error(
                span,
                format!("{invariant} has no kind {kind:?}"),
                Some(format!(
                    "write {invariant} for any kind, or one of: {}",
                    valid.join(", ")
                )),
            )
        })?),
    };
    Ok(ExpectedBreak { invariant, kind })
}

impl Suite {
    /// Loads and validates the suite at `path`.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|e| SuiteError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the suite: {e}"),
            hint: None,
        })?;
        Suite::parse(path, &text)
    }

    /// Validates suite text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Suite, SuiteError> {
        let loc = Locator { path, text };
        let raw: RawSuite = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            loc.error(
                span,
                plain(e.message().trim()),
                Some("see the format in scenarios/suites/ci.toml".into()),
            )
        })?;
        if raw.scenarios.is_empty() {
            return Err(loc.error(
                0..0,
                "the suite has no [[scenario]]",
                Some("add at least one [[scenario]] table".into()),
            ));
        }
        let mut variants: Vec<&'static Variant> = Vec::new();
        for v in &raw.variants {
            if variants.iter().any(|d| d.name == v.name.get_ref()) {
                return Err(loc.error(
                    v.name.span(),
                    format!("variant {:?} is defined twice", v.name.get_ref()),
                    Some("give each [[variant]] its own name".into()),
                ));
            }
            variants.push(define_variant(&loc, v)?);
        }
        let mut names = BTreeSet::new();
        let mut scenarios = Vec::new();
        for s in &raw.scenarios {
            if !names.insert(s.name.get_ref().clone()) {
                return Err(loc.error(
                    s.name.span(),
                    format!("scenario {:?} appears twice", s.name.get_ref()),
                    Some("give each scenario its own name".into()),
                ));
            }
            scenarios.push(validate_scenario(&loc, s, &variants)?);
        }
        Ok(Suite {
            name: raw.suite.name,
            description: raw.suite.description,
            path: path.to_path_buf(),
            variants,
            scenarios,
        })
    }

    /// The variant `name` stands for in this suite: a preset, one of the suite's own,
    /// or either with `+key=value` settings.
    pub fn variant(&self, name: &str) -> Result<&'static Variant, SettingError> {
        Variant::resolve(name, &self.variants)
    }

    /// Every name a scenario's `patterns` may use without settings.
    pub fn variant_names(&self) -> Vec<&'static str> {
        variant_names(&self.variants)
    }

    /// The scenario called `name`.
    pub fn scenario(&self, name: &str) -> Option<&SuiteScenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }
}

fn variant_names(defined: &[&'static Variant]) -> Vec<&'static str> {
    let mut names = Variant::names();
    names.extend(defined.iter().map(|v| v.name));
    names
}

/// A `[[variant]]` table as a variant, or the error at the key or value at fault.
fn define_variant(loc: &Locator, raw: &RawVariant) -> Result<&'static Variant, SuiteError> {
    let mut settings: Vec<(String, Range<usize>, String)> = Vec::new();
    for (key, value) in raw.settings.iter().flat_map(|table| table.get_ref()) {
        flatten(loc, key.get_ref(), key.span(), value, &mut settings)?;
    }
    let pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, _, v)| (k.as_str(), v.as_str()))
        .collect();
    Variant::define(
        raw.name.get_ref(),
        raw.preset.get_ref(),
        &pairs,
        raw.description.as_deref(),
    )
    .map_err(|e| {
        let key_span = |key: &str| settings.iter().find(|s| s.0 == key).map(|s| s.1.clone());
        let span = match &e {
            SettingError::UnknownPreset { .. } => Some(raw.preset.span()),
            SettingError::BadName { .. } => Some(raw.name.span()),
            SettingError::BadValue { key, .. } | SettingError::UnknownSetting { key, .. } => key_span(key),
            SettingError::NotApplicable { key, .. } | SettingError::SetTwice { key } => key_span(key),
            SettingError::Conflict { .. } | SettingError::Malformed { .. } => None,
        };
        let span = span
            .or_else(|| raw.settings.as_ref().map(Spanned::span))
            .unwrap_or_else(|| raw.name.span());
        loc.error(
            span,
            format!("variant {:?}: {e}", raw.name.get_ref()),
            Some(e.hint()),
        )
    })
}

/// A setting as text with the span of its key; a nested table (`producer.linger.ms = 0`
/// unquoted) is read as the dotted key it stands for.
fn flatten(
    loc: &Locator,
    key: &str,
    key_span: Range<usize>,
    value: &RawSetting,
    out: &mut Vec<(String, Range<usize>, String)>,
) -> Result<(), SuiteError> {
    let text = match value {
        RawSetting::Table(table) => {
            for (inner, value) in table {
                let dotted = format!("{key}.{inner}");
                flatten(loc, &dotted, key_span.clone(), value, out)?;
            }
            return Ok(());
        }
        RawSetting::Whole(n) => n.to_string(),
        RawSetting::Bool(b) => b.to_string(),
        RawSetting::Text(s) => s.clone(),
        RawSetting::Fraction(x) => {
            return Err(loc.error(
                key_span,
                format!("{key} = {x}: a setting takes a whole number, true or false, or a word in quotes"),
                Some("see `faultline list --settings` for each setting's values".into()),
            ))
        }
    };
    out.push((key.to_string(), key_span, text));
    Ok(())
}

fn validate_scenario(
    loc: &Locator,
    s: &RawScenario,
    defined: &[&'static Variant],
) -> Result<SuiteScenario, SuiteError> {
    let mut scenario = match &s.base {
        Some(base) => Scenario::by_name(base.get_ref())
            .ok_or_else(|| loc.unknown("scenario", base, &Scenario::names()))?,
        None => Scenario::standard(),
    };
    scenario.name = s.name.get_ref().clone();
    let overrides = [
        (&mut scenario.customers, s.customers),
        (&mut scenario.actions, s.actions),
        (&mut scenario.actions_per_sec, s.actions_per_sec),
        (&mut scenario.source_workers, s.source_workers),
        (&mut scenario.long_transaction_pct, s.long_transaction_pct),
        (&mut scenario.long_transaction_ms, s.long_transaction_ms),
        (&mut scenario.cross_customer_pct, s.cross_customer_pct),
        (&mut scenario.latency_min_ms, s.latency_min_ms),
        (&mut scenario.latency_max_ms, s.latency_max_ms),
        (&mut scenario.quiesce_ms, s.quiesce_ms),
        (&mut scenario.staleness_bound_ms, s.staleness_bound_ms),
        (&mut scenario.trace_events_max, s.trace_events_max),
    ];
    for (field, value) in overrides {
        if let Some(v) = value {
            *field = v;
        }
    }
    scenario.bootstrap = s.bootstrap;
    if scenario.trace_events_max == 0 {
        return Err(loc.error(
            s.name.span(),
            "trace_events_max is the run's budget and must be positive (the default is 1000000)",
            None,
        ));
    }
    if !(1..=64).contains(&scenario.source_workers)
        || scenario.long_transaction_pct > 100
        || scenario.cross_customer_pct > 100
    {
        return Err(loc.error(
            s.name.span(),
            "source_workers must be 1 to 64, and long_transaction_pct and cross_customer_pct at most 100",
            None,
        ));
    }
    if scenario.actions_per_sec == 0 || scenario.latency_min_ms > scenario.latency_max_ms {
        return Err(loc.error(
            s.name.span(),
            "actions_per_sec must be positive and latency_min_ms at most latency_max_ms",
            None,
        ));
    }

    let patterns: Vec<&'static Variant> = match s.patterns.get_ref() {
        // The built-in presets and the suite's own: a suite's expectations cannot cover
        // patterns a binary registers, which it names explicitly.
        WordOrList::Word(word) if word == "all" => faultline_patterns::VARIANTS
            .iter()
            .chain(defined.iter().copied())
            .collect(),
        WordOrList::Word(word) => {
            let hint = Some("write a list of variant names, or \"all\"".to_string());
            return Err(loc.error(s.patterns.span(), format!("patterns = {word:?}"), hint));
        }
        WordOrList::List(list) if list.is_empty() => {
            let hint = Some("name at least one variant".to_string());
            return Err(loc.error(s.patterns.span(), "the scenario runs no pattern", hint));
        }
        WordOrList::List(list) => list
            .iter()
            .map(|p| {
                Variant::resolve(p, defined).map_err(|e| match e {
                    SettingError::UnknownPreset { name } => {
                        loc.unknown_at(s.patterns.span(), "pattern", &name, &variant_names(defined))
                    }
                    e => loc.error(s.patterns.span(), format!("pattern {p:?}: {e}"), Some(e.hint())),
                })
            })
            .collect::<Result<_, _>>()?,
    };

    let faults = match (&s.profile, &s.faults) {
        (Some(_), Some(f)) => {
            return Err(loc.error(
                f.span(),
                "a scenario takes a profile or an explicit fault plan, not both",
                Some("remove `profile` or `faults`".into()),
            ))
        }
        (None, None) => {
            return Err(loc.error(
                s.name.span(),
                format!("scenario {:?} has no faults", s.name.get_ref()),
                Some("add `profile = \"none\"` or an explicit `faults = [...]`".into()),
            ))
        }
        (Some(p), None) => Faults::Profile(
            Profile::from_name(p.get_ref()).ok_or_else(|| loc.unknown("profile", p, &Profile::names()))?,
        ),
        (None, Some(events)) => {
            let plan = FaultPlan::from_events(events.get_ref().clone());
            for variant in &patterns {
                let hosts: Vec<String> = variant.hosts().into_iter().map(|h| h.name).collect();
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                if let Err(e) = plan.validate(&hosts, scenario.deadline()) {
                    return Err(loc.error(
                        events.span(),
                        format!("invalid fault plan for {}: {e}", variant.name),
                        None,
                    ));
                }
            }
            Faults::Plan(plan)
        }
    };

    if let Some(schedule) = &s.schedule {
        let list = schedule.get_ref();
        if list.windows(2).any(|w| w[0].at_ms > w[1].at_ms) {
            return Err(loc.error(
                schedule.span(),
                "the schedule is not in time order",
                Some("list actions by at_ms".into()),
            ));
        }
        scenario.schedule = Some(list.clone());
    }
    let seeds = parse_seeds(loc, &s.seeds)?;
    if let Some(list) = &s.invariants {
        scenario.invariants = Some(
            list.iter()
                .map(|i| invariant_name(loc, i).map(str::to_string))
                .collect::<Result<_, _>>()?,
        );
    }
    let bugs: Vec<Bug> = s
        .bugs
        .iter()
        .map(|b| Bug::from_name(b.get_ref()).ok_or_else(|| loc.unknown("bug", b, &Bug::names())))
        .collect::<Result<_, _>>()?;

    let mut expect = BTreeMap::new();
    for (pattern, raw) in s.expect.get_ref() {
        let variant = patterns.iter().find(|v| v.name == pattern).ok_or_else(|| {
            let listed: Vec<&str> = patterns.iter().map(|v| v.name).collect();
            loc.error(
                s.expect.span(),
                format!("expect.{pattern}: {pattern:?} is not one of this scenario's patterns"),
                Some(format!("the scenario runs: {}", listed.join(", "))),
            )
        })?;
        let expectation = match raw.get_ref().as_word_or_list() {
            WordOrList::Word(w) if w == "pass" => Expectation::Pass,
            WordOrList::Word(w) => {
                let hint = Some("write \"pass\" or the list of invariants it is known to break".to_string());
                return Err(loc.error(raw.span(), format!("expect.{pattern} = {w:?}"), hint));
            }
            WordOrList::List(list) if list.is_empty() => {
                let hint = Some("write \"pass\" when nothing breaks".to_string());
                return Err(loc.error(raw.span(), format!("expect.{pattern} is an empty list"), hint));
            }
            WordOrList::List(list) => Expectation::Breaks(
                list.iter()
                    .map(|i| expected_break_at(loc, raw.span(), i))
                    .collect::<Result<_, _>>()?,
            ),
        };
        if let (Expectation::Breaks(set), Some(checked)) = (&expectation, &scenario.invariants) {
            if let Some(unchecked) = set
                .iter()
                .map(|b| b.invariant)
                .find(|i| !checked.iter().any(|c| c == i))
            {
                return Err(loc.error(
                    s.expect.span(),
                    format!("expect.{pattern} lists {unchecked}, which the scenario does not check"),
                    Some("add it to `invariants`".into()),
                ));
            }
        }
        expect.insert(variant.name, expectation);
    }
    if let Some(missing) = patterns.iter().find(|v| !expect.contains_key(v.name)) {
        return Err(loc.error(
            s.expect.span(),
            format!("no expectation for {}", missing.name),
            Some(format!(
                "add `{} = \"pass\"` or the invariants it breaks to [scenario.expect]",
                missing.name
            )),
        ));
    }
    Ok(SuiteScenario {
        name: s.name.get_ref().clone(),
        scenario,
        patterns,
        faults,
        seeds,
        bugs: BugSet::of(&bugs),
        expect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "[suite]\nname = \"t\"\n";

    fn scenario(body: &str) -> String {
        format!("{HEADER}\n[[scenario]]\nname = \"s\"\n{body}")
    }

    fn error(text: &str) -> String {
        Suite::parse(Path::new("suite.toml"), text)
            .unwrap_err()
            .to_string()
    }

    const OK_BODY: &str =
        "patterns = [\"push\"]\nprofile = \"none\"\nseeds = \"0..3\"\n[scenario.expect]\npush = \"pass\"\n";

    #[test]
    fn a_good_suite_loads() {
        let suite = Suite::parse(Path::new("suite.toml"), &scenario(OK_BODY)).unwrap();
        assert_eq!(suite.scenarios[0].seeds, 0..3);
        assert_eq!(suite.scenarios[0].expect["push"], Expectation::Pass);
    }

    const VARIANT: &str = "[[variant]]\nname = \"slow-flush\"\npreset = \"outbox-logtail\"\n";

    fn with_variant(settings: &str, patterns: &str) -> String {
        format!(
            "{HEADER}\n{VARIANT}settings = {settings}\n\n[[scenario]]\nname = \"s\"\npatterns = {patterns}\nprofile = \"none\"\nseeds = \"0..3\"\n[scenario.expect]\n\"slow-flush\" = \"pass\"\n"
        )
    }

    #[test]
    fn a_suite_defines_variants_as_presets_with_settings() {
        // Quoted keys and unquoted dotted keys are the same setting.
        for settings in [
            r#"{ "connect.offset.flush.interval.ms" = 5000, "producer.linger.ms" = "0" }"#,
            r#"{ connect.offset.flush.interval.ms = "5s", producer.linger.ms = 0 }"#,
        ] {
            let suite = Suite::parse(
                Path::new("suite.toml"),
                &with_variant(settings, r#"["slow-flush"]"#),
            )
            .unwrap();
            let v = suite.scenarios[0].patterns[0];
            assert_eq!(v.name, "slow-flush");
            assert_eq!(v.preset, "outbox-logtail");
            let overrides: Vec<String> = v.overrides.iter().map(|o| o.to_string()).collect();
            assert_eq!(
                overrides,
                ["connect.offset.flush.interval.ms=5000", "producer.linger.ms=0"]
            );
        }
        // "all" takes the suite's own variants too, and a name may carry settings.
        let text = with_variant(
            r#"{ "producer.linger.ms" = 0 }"#,
            r#"["slow-flush", "slow-flush+topic.partitions=2"]"#,
        )
        .replace(
            "[scenario.expect]\n",
            "[scenario.expect]\n\"slow-flush+topic.partitions=2\" = \"pass\"\n",
        );
        let suite = Suite::parse(Path::new("suite.toml"), &text).unwrap();
        assert_eq!(suite.scenarios[0].patterns[1].overrides.len(), 2);
        let all = with_variant(r#"{ "producer.linger.ms" = 0 }"#, r#""all""#);
        let missing = error(&all);
        assert!(missing.contains("no expectation for full-copy"), "{missing}");
    }

    #[test]
    fn bad_variants_point_at_the_setting() {
        insta::assert_snapshot!(error(&with_variant(r#"{ "producer.linger" = 0 }"#, r#"["slow-flush"]"#)), @r#"
            suite.toml:7:14: variant "slow-flush": unknown setting "producer.linger"
              hint: did you mean producer.linger.ms? outbox-logtail's settings are: producer.enable.idempotence, producer.max.in.flight.requests.per.connection, producer.acks, producer.linger.ms, producer.batch.size, producer.retry.backoff.ms, producer.retry.backoff.max.ms, producer.delivery.timeout.ms, consumer.offset.commit, consumer.auto.commit.interval.ms, consumer.auto.offset.reset, topic.retention.ms, topic.retention.bytes, topic.cleanup.policy, topic.delete.retention.ms, broker.offsets.retention.ms, topic.replication.factor, topic.min.insync.replicas, topic.unclean.leader.election.enable, broker.log.flush.interval.messages, broker.replica.lag.time.max.ms, consumer.fetch.max.wait.ms, consumer.retry.backoff.ms, consumer.error.policy, consumer.error.attempts, consumer.dead.letter.replay.ms, consumer.instances, consumer.group.instance.id, topic.partitions, connect.offset.flush.interval.ms, relay.source, relay.cursor, outbox.events, relay.instances, relay.lease.ms, relay.poll.interval.ms, relay.batch.size, source.max.slot.wal.keep.size, source.checkpoint.timeout.ms, target.apply.rule, target.inbox, target.inbox.cleanup.after.ms, target.welcome.key (see `faultline list --settings`)
            "#);
        insta::assert_snapshot!(error(&with_variant(r#"{ "producer.linger.ms" = -1 }"#, r#"["slow-flush"]"#)), @r#"
            suite.toml:7:14: variant "slow-flush": producer.linger.ms = "-1" is not valid: it takes milliseconds, 0 to 60000
              hint: e.g. producer.linger.ms = 5
            "#);
        insta::assert_snapshot!(error(&with_variant(r#"{ "push.concurrency" = 2 }"#, r#"["slow-flush"]"#)), @r#"
            suite.toml:7:14: variant "slow-flush": push.concurrency does not apply to outbox-logtail
              hint: it applies to: push, push-versioned, push-ordered, push-ordered-versioned, push-lww
            "#);
        insta::assert_snapshot!(error(&with_variant(r#"{ "target.inbox" = 1.5 }"#, r#"["slow-flush"]"#)), @r"
            suite.toml:7:14: target.inbox = 1.5: a setting takes a whole number, true or false, or a word in quotes
              hint: see `faultline list --settings` for each setting's values
            ");
        insta::assert_snapshot!(error(&with_variant(r#"{ "target.inbox" = true }"#, r#"["slow-flush+relay.source=kafka"]"#)), @r#"
            suite.toml:11:12: pattern "slow-flush+relay.source=kafka": relay.source = "kafka" is not valid: it takes one of poll-table, tail-log
              hint: e.g. relay.source = poll-table
            "#);
        insta::assert_snapshot!(error(&with_variant(r#"{ "target.inbox" = true }"#, r#"["slow-flsh"]"#)), @r#"
            suite.toml:11:12: unknown pattern "slow-flsh"
              hint: valid patterns are: full-copy, full-copy-inplace, push, push-versioned, push-ordered, push-ordered-versioned, push-lww, notify-pull, notify-pull-dedup, queue-after-commit, queue-fail-op, outbox, outbox-inbox, outbox-last-id, outbox-logtail, cdc-row, cdc-tx, slow-flush
            "#);
        insta::assert_snapshot!(error(&with_variant(r#"{ "target.inbox" = true }"#, r#"["slow-flush"]"#).replace("outbox-logtail", "outbox-logtale")), @r#"
            suite.toml:6:10: variant "slow-flush": unknown preset "outbox-logtale"
              hint: presets are: full-copy, full-copy-inplace, push, push-versioned, push-ordered, push-ordered-versioned, push-lww, notify-pull, notify-pull-dedup, queue-after-commit, queue-fail-op, outbox, outbox-inbox, outbox-last-id, outbox-logtail, cdc-row, cdc-tx
            "#);
    }

    #[test]
    fn unknown_key() {
        insta::assert_snapshot!(error(&scenario(&format!("colour = \"red\"\n{OK_BODY}"))), @r#"
        suite.toml:6:1: unknown field `colour`, expected one of `name`, `patterns`, `profile`, `faults`, `seeds`, `base`, `customers`, `actions`, `actions_per_sec`, `source_workers`, `long_transaction_pct`, `long_transaction_ms`, `cross_customer_pct`, `latency_min_ms`, `latency_max_ms`, `quiesce_ms`, `staleness_bound_ms`, `trace_events_max`, `bootstrap`, `invariants`, `schedule`, `bugs`, `expect`
          hint: see the format in scenarios/suites/ci.toml
        "#);
    }

    #[test]
    fn wrong_type() {
        let text = scenario(&OK_BODY.replace("seeds = \"0..3\"", "seeds = 3"));
        insta::assert_snapshot!(error(&text), @r"
        suite.toml:8:9: found integer `3`, expected text in quotes
          hint: see the format in scenarios/suites/ci.toml
        ");
    }

    #[test]
    fn toml_syntax_error() {
        insta::assert_snapshot!(error("[suite\nname = 1"), @r"
        suite.toml:1:7: invalid table header
        expected `.`, `]`
          hint: see the format in scenarios/suites/ci.toml
        ");
    }

    #[test]
    fn unknown_pattern_lists_the_valid_ones() {
        let text = scenario(&OK_BODY.replace("[\"push\"]", "[\"push\", \"carrier-pigeon\"]"));
        insta::assert_snapshot!(error(&text), @r#"
            suite.toml:6:12: unknown pattern "carrier-pigeon"
              hint: valid patterns are: full-copy, full-copy-inplace, push, push-versioned, push-ordered, push-ordered-versioned, push-lww, notify-pull, notify-pull-dedup, queue-after-commit, queue-fail-op, outbox, outbox-inbox, outbox-last-id, outbox-logtail, cdc-row, cdc-tx
            "#);
    }

    #[test]
    fn unknown_profile() {
        let text = scenario(&OK_BODY.replace("\"none\"", "\"storms\""));
        insta::assert_snapshot!(error(&text), @r#"
            suite.toml:7:11: unknown profile "storms"
              hint: valid profiles are: none, flaky-net, partitions, crashes, storage, clock-skew, ops, chaos, swarm
            "#);
    }

    #[test]
    fn unknown_invariant_in_an_expectation() {
        let text = scenario(&OK_BODY.replace("push = \"pass\"", "push = [\"speed\"]"));
        insta::assert_snapshot!(error(&text), @r#"
        suite.toml:10:8: unknown invariant "speed"
          hint: valid invariants are: convergence, monotonic, atomic-actions, referential, exactly-once-effects, bounded-staleness, liveness
        "#);
    }

    #[test]
    fn an_expectation_names_an_invariant_or_one_of_its_kinds() {
        let text = scenario(&OK_BODY.replace(
            "push = \"pass\"",
            "push = [\"convergence/phantom\", \"monotonic\"]",
        ));
        let suite = Suite::parse(Path::new("suite.toml"), &text).unwrap();
        let Expectation::Breaks(set) = &suite.scenarios[0].expect["push"] else {
            panic!("a list of breaks")
        };
        let written: Vec<String> = set.iter().map(ToString::to_string).collect();
        assert_eq!(written, ["convergence/phantom", "monotonic"]);
        let phantom = set.iter().next().unwrap();
        assert!(phantom.covers("convergence", "phantom"));
        assert!(!phantom.covers("convergence", "stale"), "one kind only");
    }

    #[test]
    fn an_unknown_kind_lists_the_invariant_s_kinds() {
        let text = scenario(&OK_BODY.replace("push = \"pass\"", "push = [\"convergence/lost\"]"));
        insta::assert_snapshot!(error(&text), @r#"
        suite.toml:10:8: convergence has no kind "lost"
          hint: write convergence for any kind, or one of: convergence/missing, convergence/stale, convergence/phantom, convergence/resurrected, convergence/divergent
        "#);
    }

    #[test]
    fn an_expectation_of_the_wrong_type_says_what_is_expected() {
        let text = scenario(&OK_BODY.replace("push = \"pass\"", "push = 1"));
        insta::assert_snapshot!(error(&text), @r#"
        suite.toml:10:8: an expectation is "pass" or the list of invariants the pattern is known to break, e.g. ["convergence", "convergence/phantom"]
          hint: see the format in scenarios/suites/ci.toml
        "#);
    }

    #[test]
    fn values_of_the_wrong_type_are_named_in_the_suites_words() {
        let text = scenario(&format!("customers = \"many\"\n{OK_BODY}"));
        insta::assert_snapshot!(error(&text), @r#"
        suite.toml:6:13: found string "many", expected a whole number, e.g. 200
          hint: see the format in scenarios/suites/ci.toml
        "#);
        let text = scenario(&OK_BODY.replace("patterns = [\"push\"]", "patterns = 5"));
        insta::assert_snapshot!(error(&text), @r#"
        suite.toml:6:12: patterns are "all" or a list of pattern names, e.g. ["outbox-inbox", "push"]
          hint: see the format in scenarios/suites/ci.toml
        "#);
        insta::assert_snapshot!(error("suite = \"x\"\n"), @r#"
        suite.toml:1:9: found string "x", expected a [suite] table with name and description
          hint: see the format in scenarios/suites/ci.toml
        "#);
    }

    #[test]
    fn unknown_bug() {
        let text = scenario(&format!("bugs = [\"off-by-one\"]\n{OK_BODY}"));
        insta::assert_snapshot!(error(&text), @r#"
        suite.toml:6:9: unknown bug "off-by-one"
          hint: valid bugs are: relay-marks-before-publish, inbox-separate-tx, offset-before-apply, cdc-position-before-publish, retry-queue-reorders, effect-before-commit, source-skips-sync, broker-acks-before-replication, target-panics-on-long-history, consumer-retries-without-backoff, target-applies-rows-separately, target-deletes-without-cascade, relay-sleeps-per-message, consumer-exits-on-fetch-error, target-exposes-before-sync, source-retries-failed-fsync, source-keeps-torn-tail, source-skips-dir-sync, welcome-key-per-attempt, cdc-resumes-past-shared-position, cdc-recreates-lost-slot
        "#);
    }

    #[test]
    fn empty_reversed_and_malformed_seed_ranges() {
        for (seeds, message) in [
            ("5..5", "is empty"),
            ("9..2", "is reversed"),
            ("a..b", "is not a seed range"),
        ] {
            let text = scenario(&OK_BODY.replace("0..3", seeds));
            let err = error(&text);
            assert!(err.starts_with("suite.toml:8:9: "), "{err}");
            assert!(
                err.contains(message) && err.contains("hint: write seeds as \"A..B\""),
                "{err}"
            );
        }
    }

    #[test]
    fn profile_and_faults_together() {
        let text = scenario(&OK_BODY.replace("profile = \"none\"\n", "profile = \"none\"\nfaults = []\n"));
        insta::assert_snapshot!(error(&text), @r"
        suite.toml:8:10: a scenario takes a profile or an explicit fault plan, not both
          hint: remove `profile` or `faults`
        ");
    }

    #[test]
    fn invalid_fault_plan() {
        let faults = "faults = [{ at_ms = 100, fault = \"restart\", host = \"source\" }]\n";
        let text = scenario(&OK_BODY.replace("profile = \"none\"\n", faults));
        insta::assert_snapshot!(error(&text), @r#"suite.toml:7:10: invalid fault plan for push: fault event #1 (100ms, restart source): host "source" is running: only a crashed or powered-off host can restart"#);
        let text = scenario(&OK_BODY.replace(
            "profile = \"none\"\n",
            &faults.replace("restart", "crash").replace("source", "broker"),
        ));
        assert!(error(&text).contains("unknown host \"broker\"; hosts are: source, target"));
    }

    #[test]
    fn missing_and_foreign_expectations() {
        let text = scenario(&OK_BODY.replace("[\"push\"]", "[\"push\", \"outbox\"]"));
        insta::assert_snapshot!(error(&text), @r#"
        suite.toml:9:1: no expectation for outbox
          hint: add `outbox = "pass"` or the invariants it breaks to [scenario.expect]
        "#);
        let text = scenario(&format!("{OK_BODY}cdc-tx = \"pass\"\n"));
        assert!(error(&text).contains("expect.cdc-tx: \"cdc-tx\" is not one of this scenario's patterns"));
    }

    #[test]
    fn an_expectation_that_is_neither_pass_nor_a_list() {
        let text = scenario(&OK_BODY.replace("push = \"pass\"", "push = \"fine\""));
        insta::assert_snapshot!(error(&text), @r#"
        suite.toml:10:8: expect.push = "fine"
          hint: write "pass" or the list of invariants it is known to break
        "#);
    }

    #[test]
    fn no_scenarios_and_duplicate_names() {
        assert!(error(HEADER).contains("the suite has no [[scenario]]"));
        let one = scenario(OK_BODY);
        let two = format!("{one}\n[[scenario]]\nname = \"s\"\n{OK_BODY}");
        assert!(error(&two).contains("scenario \"s\" appears twice"));
    }

    #[test]
    fn a_missing_file_says_so() {
        let err = Suite::load(Path::new("/no/such/suite.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/no/such/suite.toml:0:0: cannot read the suite"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_suites_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
        for name in ["ci.toml", "review.toml"] {
            Suite::load(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
