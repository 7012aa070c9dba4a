//! The `faultline` command line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use faultline::patterns::{Variant, VARIANTS};
use faultline::scenarios::{repro_command, run, Outcome, RunOptions, Scenario, INVARIANTS};
use faultline::sim::{Profile, Seed, PROFILES};
use serde::Serialize;

/// Exit codes, one per failure class.
mod exit {
    /// Every invariant held.
    pub const OK: u8 = 0;
    /// The run broke an invariant.
    pub const VIOLATIONS: u8 = 1;
    /// The command line named something that does not exist.
    pub const BAD_INPUT: u8 = 2;
    /// The world could not complete the run.
    pub const RUN_FAILED: u8 = 3;
}

#[derive(Parser)]
#[command(
    name = "faultline",
    version,
    about = "Deterministic simulation testbed for data-integration patterns",
    after_help = "Exit codes: 0 every invariant held; 1 an invariant was violated; 2 bad input; 3 the run failed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the pattern variants, fault profiles and invariants.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Replays one run and tells its story.
    Repro {
        /// The pattern variant (see `faultline list`).
        #[arg(long)]
        pattern: String,
        /// The fault profile (see `faultline list`).
        #[arg(long)]
        profile: String,
        /// The run seed.
        #[arg(long)]
        seed: u64,
        /// The scenario.
        #[arg(long, default_value = "standard")]
        scenario: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List { format } => list(format),
        Command::Repro {
            pattern,
            profile,
            seed,
            scenario,
            format,
        } => repro(&pattern, &profile, seed, &scenario, format),
    }
}

#[derive(Serialize)]
struct Named {
    name: &'static str,
    description: &'static str,
}

fn list(format: Format) -> ExitCode {
    let patterns: Vec<Named> = VARIANTS
        .iter()
        .map(|v| Named {
            name: v.name,
            description: v.description,
        })
        .collect();
    let profiles: Vec<Named> = PROFILES
        .iter()
        .map(|p| Named {
            name: p.name,
            description: p.description,
        })
        .collect();
    let invariants: Vec<Named> = INVARIANTS
        .iter()
        .map(|i| Named {
            name: i.name,
            description: i.description,
        })
        .collect();
    match format {
        Format::Json => {
            let all =
                serde_json::json!({ "patterns": patterns, "profiles": profiles, "invariants": invariants });
            println!(
                "{}",
                serde_json::to_string_pretty(&all).expect("plain data serialises")
            );
        }
        Format::Text => {
            for (title, items) in [
                ("patterns", &patterns),
                ("profiles", &profiles),
                ("invariants", &invariants),
            ] {
                println!("{title}:");
                for item in items {
                    println!("  {:<16} {}", item.name, item.description);
                }
            }
        }
    }
    ExitCode::from(exit::OK)
}

fn bad_input(what: &str, given: &str, valid: &[&str]) -> ExitCode {
    eprintln!(
        "error: unknown {what} {given:?}; valid {what}s are: {}",
        valid.join(", ")
    );
    ExitCode::from(exit::BAD_INPUT)
}

fn repro(pattern: &str, profile: &str, seed: u64, scenario: &str, format: Format) -> ExitCode {
    let Some(variant) = Variant::by_name(pattern) else {
        return bad_input("pattern", pattern, &Variant::names());
    };
    let Some(profile) = Profile::from_name(profile) else {
        return bad_input("profile", profile, &Profile::names());
    };
    let Some(scenario) = Scenario::by_name(scenario) else {
        return bad_input("scenario", scenario, &Scenario::names());
    };
    if let Format::Text = format {
        // The seed first, before anything can go wrong.
        let _ = writeln!(
            std::io::stdout(),
            "seed={seed} pattern={} profile={} scenario={}",
            variant.name,
            profile.name(),
            scenario.name
        );
    }
    let outcome = match run(
        variant,
        &scenario,
        profile,
        Seed(seed),
        RunOptions { keep_trace: true },
    ) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: the run failed: {e}");
            return ExitCode::from(exit::RUN_FAILED);
        }
    };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&outcome).expect("plain data serialises")
        ),
        // Written whole, ignoring a closed pipe (`| head`), rather than panicking mid-way.
        Format::Text => {
            let _ = std::io::stdout().write_all(story(&outcome).as_bytes());
        }
    }
    ExitCode::from(if outcome.passed() {
        exit::OK
    } else {
        exit::VIOLATIONS
    })
}

fn story(outcome: &Outcome) -> String {
    let mut out = String::new();
    let m = &outcome.metrics;
    let _ = writeln!(out, "\nfault plan:\n{}", outcome.plan);
    let _ = writeln!(
        out,
        "actions: {} scheduled, {} committed, {} rejected, {} failed at the source, {} failed by the integration",
        m.actions, m.actions_committed, m.actions_rejected, m.actions_failed_source, m.actions_failed_integration
    );
    let _ = writeln!(
        out,
        "target: {} applies, {} side effects; staleness p50 {} ms, p99 {} ms, max {} ms; {} row versions never visible",
        m.applies, m.effects, m.staleness_p50_ms, m.staleness_p99_ms, m.staleness_max_ms, m.never_visible
    );
    let _ = match m.converged_at_ms {
        Some(at) => writeln!(out, "converged at {at} ms; run ended at {} ms", m.end_ms),
        None => writeln!(out, "never converged; run ended at {} ms", m.end_ms),
    };
    if outcome.violations.is_empty() {
        let _ = writeln!(out, "\nverdict: PASS - every invariant held");
    } else {
        let _ = writeln!(out, "\nverdict: FAIL - {} violation(s)", outcome.violations.len());
        for v in &outcome.violations {
            let _ = writeln!(
                out,
                "\n  {} / {} on {} at {}\n    {}",
                v.invariant, v.kind, v.key, v.at, v.story
            );
            for e in v
                .evidence
                .iter()
                .filter_map(|id| outcome.trace.get(id.0 as usize))
            {
                let _ = writeln!(
                    out,
                    "    evidence #{}: {} {} {} {}",
                    e.id.0, e.at, e.host, e.kind, e.detail
                );
            }
        }
    }
    let repro = repro_command(outcome.pattern, outcome.profile, outcome.seed, &outcome.scenario);
    let _ = writeln!(out, "\nrepro: {repro}\ntrace_hash={}", outcome.trace_hash);
    out
}
