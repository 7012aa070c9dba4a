//! `faultline compare`: the patterns side by side; writes report.md, report.json and
//! report.html, and prints the summary table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use faultline::patterns::bugs::{Bug, BugSet};
use faultline::patterns::settings::{Setting, SettingError};
use faultline::patterns::Variant;
use faultline::scenarios::compare::{compare_shard, ComparePlan, Comparison};
use faultline::scenarios::requirements;
use faultline::scenarios::shard::Shard;
use faultline::scenarios::suite::Suite;
use faultline::scenarios::sweep::default_jobs;
use faultline::sim::Profile;

use super::progress::Progress;
use super::shard::ShardArgs;
use super::{exit, parse_settings, setting_error, unknown};

/// The review suite, built in so that `compare` works from any directory.
const REVIEW_SUITE: &str = include_str!("../../scenarios/suites/review.toml");
const REVIEW_SUITE_PATH: &str = "scenarios/suites/review.toml";

#[derive(Args)]
pub struct CompareArgs {
    /// The suite whose scenarios are the columns (default: the built-in review suite).
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Patterns to compare: comma-separated names, or `all`. A name is a preset, a
    /// variant the suite defines, or either with settings: `outbox-inbox+producer.linger.ms=0`.
    #[arg(long, default_value = "all")]
    patterns: String,
    /// Change a setting in every compared pattern (repeatable; `faultline list
    /// --settings`). With `--patterns all`, only the patterns that have every setting
    /// given are compared.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Instead of the suite's columns, one standard-scenario column per profile:
    /// comma-separated names, or `all`.
    #[arg(long)]
    profiles: Option<String>,
    /// Seeds per cell, `A..B` (default: the suite's).
    #[arg(long)]
    seeds: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Where the reports go.
    #[arg(long, default_value = "faultline-report")]
    out: PathBuf,
    /// Switch a planted bug on in every run (repeatable; see `faultline list`).
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// Judge every cell against these requirements, comma-separated, e.g.
    /// `no-loss,no-duplicate-effects,atomic,staleness-p99<=1s`: the reports then say,
    /// per fault column, which patterns met them all on every seed.
    #[arg(long)]
    require: Option<String>,
    #[command(flatten)]
    shard: ShardArgs,
}

fn bad(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(exit::BAD_INPUT)
}

/// Parses `A..B` for the command line.
pub fn parse_seeds(text: &str) -> Result<std::ops::Range<u64>, String> {
    let hint = "write seeds as A..B (B exclusive), e.g. 0..100";
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("--seeds {text:?} is not a range: {hint}"))?;
    let (a, b): (u64, u64) = match (a.trim().parse(), b.trim().parse()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(format!("--seeds {text:?} is not a range: {hint}")),
    };
    if a >= b {
        return Err(format!("--seeds {text:?} is empty or reversed: {hint}"));
    }
    Ok(a..b)
}

/// `--patterns` and `--set` as the variants to compare.
fn resolve_patterns(
    suite: &Suite,
    text: &str,
    settings: &[String],
) -> Result<Vec<&'static Variant>, ExitCode> {
    let settings = parse_settings(settings)?;
    for (key, _) in &settings {
        if Setting::by_key(key).is_none() {
            let e = SettingError::UnknownSetting {
                key: key.to_string(),
                preset: "",
            };
            return Err(setting_error("--set", &e));
        }
    }
    if text == "all" {
        let all = Variant::all().into_iter().chain(suite.variants.iter().copied());
        // Every pattern that has the settings: `--set producer.linger.ms=0` compares the
        // broker-based ones.
        let mut chosen = Vec::new();
        for variant in all {
            match variant.with_settings(&settings) {
                Ok(v) => chosen.push(v),
                Err(SettingError::NotApplicable { .. }) => {}
                Err(e) => return Err(setting_error("--set", &e)),
            }
        }
        if chosen.is_empty() {
            let keys: Vec<&str> = settings.iter().map(|s| s.0).collect();
            return Err(bad(format!(
                "--set: no pattern has all of {} (see `faultline list --settings`)",
                keys.join(", ")
            )));
        }
        return Ok(chosen);
    }
    text.split(',')
        .map(str::trim)
        .map(|name| {
            suite
                .variant(name)
                .and_then(|v| v.with_settings(&settings))
                .map_err(|e| match e {
                    SettingError::UnknownPreset { name } => unknown("pattern", &name, &suite.variant_names()),
                    e => setting_error(&format!("--patterns {name}"), &e),
                })
        })
        .collect()
}

fn names<T>(
    text: &str,
    all: impl Fn() -> Vec<T>,
    find: impl Fn(&str) -> Option<T>,
    what: &str,
    valid: &[&str],
) -> Result<Vec<T>, ExitCode> {
    if text == "all" {
        return Ok(all());
    }
    text.split(',')
        .map(str::trim)
        .map(|n| find(n).ok_or_else(|| unknown(what, n, valid)))
        .collect()
}

pub fn compare_command(args: CompareArgs) -> ExitCode {
    let suite = match &args.suite {
        Some(path) => Suite::load(path),
        None => Suite::parse(Path::new(REVIEW_SUITE_PATH), REVIEW_SUITE),
    };
    let suite = match suite {
        Ok(s) => s,
        Err(e) => return bad(e.to_string()),
    };
    let patterns = match resolve_patterns(&suite, &args.patterns, &args.settings) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let profile_names = Profile::names();
    let all_profiles = || faultline::sim::PROFILES.iter().map(|p| p.profile).collect();
    let profiles = match &args.profiles {
        None => None,
        Some(text) => match names(text, all_profiles, Profile::from_name, "profile", &profile_names) {
            Ok(p) => Some(p),
            Err(code) => return code,
        },
    };
    let seeds = match args.seeds.as_deref().map(parse_seeds).transpose() {
        Ok(s) => s,
        Err(message) => return bad(message),
    };
    if args.jobs == Some(0) {
        return bad("--jobs must be at least 1".to_string());
    }
    let shard = match args.shard.resolve() {
        Ok(s) => s,
        Err(message) => return bad(message),
    };
    let mut bugs = Vec::new();
    for name in &args.bugs {
        match Bug::from_name(name) {
            Some(bug) => bugs.push(bug),
            None => return unknown("bug", name, &Bug::names()),
        }
    }
    let requirements = match args.require.as_deref().map(requirements::parse).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(message) => return bad(format!("--require: {message}")),
    };
    let mut plan = ComparePlan::new(&suite, Some(patterns), profiles, seeds);
    plan.add_bugs(BugSet::of(&bugs));
    let total = (0..plan.run_count()).filter(|i| shard.owns(*i)).count();

    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    // A second Ctrl-C while the report is written falls back to the default (exit).
    let _ = ctrlc::set_handler(move || {
        if on_signal.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping: finishing the runs in flight, then writing a partial report");
    });
    let label = match shard {
        Shard::ALL => format!("compare ({} suite)", suite.name),
        shard => format!("compare ({} suite, shard {shard})", suite.name),
    };
    let progress = Progress::new(&label, total);
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    let mut comparison = compare_shard(&plan, shard, jobs, |done| progress.tick(done), &stop);
    comparison.requirements = requirements.iter().map(ToString::to_string).collect();
    progress.finish();
    // A stopped sweep is written like any other (marked partial), then says so in its exit.
    let code = write_reports(&comparison, &args.out);
    if code != ExitCode::from(exit::OK) {
        return code;
    }
    if comparison.partial() {
        return ExitCode::from(exit::INTERRUPTED);
    }
    failed_runs_exit(&comparison)
}

/// Exit 3 when any run failed instead of giving a verdict (the reports list them).
pub fn failed_runs_exit(comparison: &Comparison) -> ExitCode {
    let failed = comparison.runs_failed();
    if failed == 0 {
        return ExitCode::from(exit::OK);
    }
    eprintln!("error: {failed} run(s) failed instead of giving a verdict (listed in the report):");
    for cell in comparison.cells.iter().filter(|c| c.runs_failed > 0) {
        for run in &cell.failed_runs {
            eprintln!(
                "  {} / {} seed {}: {} {}\n    repro: {}",
                cell.column,
                cell.pattern,
                run.seed,
                run.kind.name(),
                run.message,
                run.repro
            );
        }
    }
    ExitCode::from(exit::RUN_FAILED)
}

/// Prints the summary table and writes the three reports; the last line says where.
pub fn write_reports(comparison: &Comparison, out: &Path) -> ExitCode {
    let files = [
        ("report.md", faultline_reports::markdown::render(comparison)),
        (
            "report.json",
            serde_json::to_string_pretty(comparison).expect("plain data serialises") + "\n",
        ),
        ("report.html", faultline_reports::html::render(comparison)),
    ];
    for (name, text) in &files {
        let path = out.join(name);
        if let Err(e) = faultline_reports::write_atomic(&path, text.as_bytes()) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(exit::RUN_FAILED);
        }
    }
    // Printed after the files are written: a reader that stops early loses nothing.
    print!("{}", faultline_reports::terminal::render(comparison));
    let partial = if comparison.partial() { "partial " } else { "" };
    println!(
        "\n{partial}report written to {}/ (report.md, report.json, report.html)",
        out.display()
    );
    ExitCode::from(exit::OK)
}
