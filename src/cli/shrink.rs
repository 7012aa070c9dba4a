//! `faultline shrink`: a failing run cut down to the actions and faults that matter,
//! written as a suite file that `faultline run` replays.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use faultline::patterns::bugs::{Bug, BugSet};
use faultline::scenarios::compare::{counterexample, FirstFailure};
use faultline::scenarios::shrink::{shrink, ShrinkError};
use faultline::scenarios::{RunSpec, Scenario, INVARIANTS};
use faultline::sim::{Profile, Seed};

use super::{exit, resolve_variant, unknown};

#[derive(Args)]
pub struct ShrinkArgs {
    /// The pattern variant: a preset, or one with settings
    /// (`outbox-inbox+producer.linger.ms=0`).
    #[arg(long)]
    pattern: String,
    /// Change a setting of the pattern (repeatable; see `faultline list --settings`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// The fault profile.
    #[arg(long)]
    profile: String,
    /// The failing seed.
    #[arg(long)]
    seed: u64,
    /// Keep this invariant broken (default: the run's first violation's).
    #[arg(long)]
    invariant: Option<String>,
    /// Switch a planted bug on (repeatable; see `faultline list`).
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// Where to write the shrunk suite (default: shrunk-PATTERN-PROFILE-SEED.toml).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn shrink_command(args: ShrinkArgs) -> ExitCode {
    let variant = match resolve_variant(&args.pattern, &args.settings, &[]) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let Some(profile) = Profile::from_name(&args.profile) else {
        return unknown("profile", &args.profile, &Profile::names());
    };
    let invariant_names: Vec<&str> = INVARIANTS.iter().map(|i| i.name).collect();
    if let Some(i) = &args.invariant {
        if !invariant_names.contains(&i.as_str()) {
            return unknown("invariant", i, &invariant_names);
        }
    }
    let mut bugs = Vec::new();
    for name in &args.bugs {
        match Bug::from_name(name) {
            Some(bug) => bugs.push(bug),
            None => return unknown("bug", name, &Bug::names()),
        }
    }
    let spec = RunSpec {
        bugs: BugSet::of(&bugs),
        ..RunSpec::new(variant, Scenario::standard(), profile, Seed(args.seed))
    };
    println!(
        "seed={} pattern={} profile={}: shrinking…",
        args.seed,
        variant.name,
        profile.name()
    );
    let shrunk = match shrink(&spec, args.invariant.as_deref()) {
        Ok(s) => s,
        Err(ShrinkError::NotFailing(message)) => {
            eprintln!("{message}");
            return ExitCode::from(exit::FAILED);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::RUN_FAILED);
        }
    };
    let after = (
        shrunk.spec.scenario.schedule.as_ref().map_or(0, Vec::len),
        shrunk.spec.plan().events.len(),
    );
    println!(
        "kept {}: {} actions and {} fault events, down from {} and {} ({} candidate runs)",
        shrunk.target, after.0, after.1, shrunk.before.0, shrunk.before.1, shrunk.runs
    );
    println!("\nfault plan:\n{}", shrunk.spec.plan());
    match (&shrunk.result, &shrunk.violation) {
        (Ok(outcome), Some(v)) => {
            println!(
                "\n{} / {} on {} at {}: {}",
                v.invariant, v.kind, v.key, v.at, v.story
            );
            let story = counterexample("shrunk", outcome, &FirstFailure::of(args.seed, v));
            println!("```mermaid\n{}```", faultline_reports::mermaid::render(&story));
        }
        (Err(failure), _) => print!("\n{}", faultline_reports::story::render_failure(failure)),
        (Ok(_), None) => unreachable!("a shrunk violation target keeps its violation"),
    }
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "shrunk-{}-{}-{}.toml",
            variant.name,
            profile.name(),
            args.seed
        ))
    });
    let origin = format!("{} under {}, seed {}", variant.name, profile.name(), args.seed);
    if let Err(e) = faultline_reports::write_atomic(&out, shrunk.to_suite_toml(&origin).as_bytes()) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return ExitCode::from(exit::RUN_FAILED);
    }
    println!(
        "\nshrunk suite written to {} (replay: {} run {})",
        out.display(),
        faultline::scenarios::runner::command_name(),
        out.display()
    );
    ExitCode::from(exit::OK)
}
