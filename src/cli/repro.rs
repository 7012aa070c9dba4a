//! `faultline repro`: one run, its story and verdict.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use faultline::patterns::bugs::{Bug, BugSet};
use faultline::scenarios::runner::RunFailure;
use faultline::scenarios::suite::Suite;
use faultline::scenarios::{run, Faults, RunOptions, RunSpec, Scenario};
use faultline::sim::{Profile, Seed, TraceEvent};

use super::{exit, resolve_variant, unknown, Format};

#[derive(Args)]
pub struct ReproArgs {
    /// The pattern variant (see `faultline list`): a preset, a variant of --suite, or
    /// either with settings (`outbox-inbox+producer.linger.ms=0`).
    #[arg(long)]
    pattern: String,
    /// Change a setting of the pattern (repeatable; see `faultline list --settings`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// The fault profile (see `faultline list`); not with --suite, whose scenario says.
    #[arg(long)]
    profile: Option<String>,
    /// The run seed.
    #[arg(long)]
    seed: u64,
    /// The scenario: a built-in one, or with --suite one of the suite's.
    #[arg(long, default_value = "standard")]
    scenario: String,
    /// Take the scenario (workload, faults, bugs) from this suite file.
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Switch a planted bug on (repeatable; see `faultline list`).
    #[arg(long = "bug")]
    bugs: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also write every trace event here, as JSON lines.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Also write the trace here as Chrome trace-event JSON (opens in Perfetto's UI).
    #[arg(long)]
    perfetto: Option<PathBuf>,
    /// Run twice, the second time stepping every tick, and fail (exit 3) unless both
    /// runs leave the same trace hash.
    #[arg(long)]
    check_determinism: bool,
    /// Step every tick instead of crossing idle stretches in one step (the same run,
    /// slower).
    #[arg(long)]
    step_every_tick: bool,
    /// Run to the deadline even when nothing can change any more (the same verdict; the
    /// trace goes on with heartbeats and empty polls)
    #[arg(long)]
    run_to_deadline: bool,
}

/// Resolves the flags into a run, or says what is wrong.
fn resolve(args: &ReproArgs) -> Result<RunSpec, ExitCode> {
    let mut bugs = Vec::new();
    for name in &args.bugs {
        bugs.push(Bug::from_name(name).ok_or_else(|| unknown("bug", name, &Bug::names()))?);
    }
    let mut spec = match &args.suite {
        Some(path) => {
            let suite = Suite::load(path).map_err(|e| {
                eprintln!("error: {e}");
                ExitCode::from(exit::BAD_INPUT)
            })?;
            let variant = resolve_variant(&args.pattern, &args.settings, &suite.variants)?;
            let names: Vec<&str> = suite.scenarios.iter().map(|s| s.name.as_str()).collect();
            let s = suite
                .scenario(&args.scenario)
                .ok_or_else(|| unknown("scenario", &args.scenario, &names))?;
            if args.profile.is_some() {
                eprintln!("error: --profile does not go with --suite: the suite's scenario fixes the faults");
                return Err(ExitCode::from(exit::BAD_INPUT));
            }
            bugs.extend(s.bugs.bugs());
            RunSpec {
                variant,
                scenario: s.scenario.clone(),
                faults: s.faults.clone(),
                seed: Seed(args.seed),
                bugs: BugSet::NONE,
                suite: Some(path.clone()),
            }
        }
        None => {
            let Some(profile) = &args.profile else {
                eprintln!(
                    "error: --profile is required (or --suite); profiles are: {}",
                    Profile::names().join(", ")
                );
                return Err(ExitCode::from(exit::BAD_INPUT));
            };
            let profile =
                Profile::from_name(profile).ok_or_else(|| unknown("profile", profile, &Profile::names()))?;
            let scenario = Scenario::by_name(&args.scenario)
                .ok_or_else(|| unknown("scenario", &args.scenario, &Scenario::names()))?;
            let variant = resolve_variant(&args.pattern, &args.settings, &[])?;
            RunSpec {
                faults: Faults::Profile(profile),
                ..RunSpec::new(variant, scenario, profile, Seed(args.seed))
            }
        }
    };
    spec.bugs = BugSet::of(&bugs);
    Ok(spec)
}

pub fn repro(args: ReproArgs) -> ExitCode {
    let spec = match resolve(&args) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    if let Format::Text = args.format {
        // The seed first, before anything can go wrong.
        let _ = writeln!(
            std::io::stdout(),
            "seed={} pattern={} faults={} scenario={}",
            spec.seed,
            spec.variant.name,
            spec.faults.name(),
            spec.scenario.name
        );
    }
    let options = RunOptions {
        keep_trace: true,
        step_every_tick: args.step_every_tick,
        run_to_deadline: args.run_to_deadline,
    };
    let outcome = match run(&spec, options) {
        Ok(outcome) => outcome,
        Err(failure) => return report_failure(&args, &failure),
    };
    if args.check_determinism {
        // The second run steps the other way, so the check covers the skipping of
        // idle stretches as well.
        let again = RunOptions {
            step_every_tick: !args.step_every_tick,
            run_to_deadline: args.run_to_deadline,
            ..RunOptions::default()
        };
        match run(&spec, again) {
            Ok(again) if again.trace_hash == outcome.trace_hash => {
                eprintln!(
                    "determinism: two runs (one skipping idle stretches, one stepping every tick), same trace hash {}",
                    outcome.trace_hash
                );
            }
            Ok(again) => {
                eprintln!(
                    "error: non-determinism detected: the same run gave {} then {}\nrepro: {}",
                    outcome.trace_hash, again.trace_hash, outcome.repro
                );
                return ExitCode::from(exit::RUN_FAILED);
            }
            Err(e) => {
                eprintln!("error: the second run failed: {e}");
                return ExitCode::from(exit::RUN_FAILED);
            }
        }
    }
    if let Err(code) = write_traces(&args, &outcome.trace) {
        return code;
    }
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&outcome).expect("plain data serialises") + "\n",
        Format::Text => faultline_reports::story::render(&outcome),
    };
    // Written whole, ignoring a closed pipe (`| head`), rather than panicking mid-way.
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::from(if outcome.passed() { exit::OK } else { exit::FAILED })
}

/// Writes the trace files asked for (`--trace`, `--perfetto`).
fn write_traces(args: &ReproArgs, trace: &[TraceEvent]) -> Result<(), ExitCode> {
    let mut files: Vec<(&PathBuf, Vec<u8>)> = Vec::new();
    if let Some(path) = &args.trace {
        let mut lines = Vec::new();
        faultline::sim::trace::write_jsonl(trace, &mut lines).expect("writing to memory");
        files.push((path, lines));
    }
    if let Some(path) = &args.perfetto {
        files.push((path, faultline_reports::perfetto::render(trace).into_bytes()));
    }
    for (path, bytes) in files {
        if let Err(e) = faultline_reports::write_atomic(path, &bytes) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return Err(ExitCode::from(exit::RUN_FAILED));
        }
    }
    Ok(())
}

/// A run that failed instead of giving a verdict: its story (or JSON), the trace files
/// up to the failure, and exit 3.
fn report_failure(args: &ReproArgs, failure: &RunFailure) -> ExitCode {
    if let Err(code) = write_traces(args, &failure.trace) {
        return code;
    }
    let text = match args.format {
        Format::Json => {
            let json = serde_json::json!({ "failure": failure });
            serde_json::to_string_pretty(&json).expect("plain data serialises") + "\n"
        }
        Format::Text => faultline_reports::story::render_failure(failure),
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::from(exit::RUN_FAILED)
}
