//! The command line: command definitions and dispatch. Flags are parsed here, resolved
//! against the registries, and handed to `scenarios` (to run) and `reports` (to render).

mod bench;
mod compare;
mod list;
mod merge;
mod progress;
mod repro;
mod run;
mod shard;
mod shrink;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes, one per failure class.
pub mod exit {
    /// Everything held (or every expectation did).
    pub const OK: u8 = 0;
    /// An invariant broke, or a suite expectation was a surprise.
    pub const FAILED: u8 = 1;
    /// The input (flags, suite file, names) is wrong.
    pub const BAD_INPUT: u8 = 2;
    /// A run failed instead of giving a verdict (a panic inside it, a passed budget, a
    /// world that could not run it), or a report could not be written.
    pub const RUN_FAILED: u8 = 3;
    /// Ctrl-C stopped a sweep; what finished was reported, marked partial.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "faultline",
    version,
    about = "Deterministic simulation testbed for data-integration patterns",
    after_help = "Exit codes: 0 everything held; 1 an invariant broke or a suite expectation surprised; \
                  2 bad input; 3 a run failed (panic, runaway budget) or a report could not be written; 130 interrupted (a partial report was written)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the pattern variants, fault profiles, invariants and planted bugs; with
    /// --settings, every setting a variant can change.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// With `--format json`: seeds 0..N over which each planted bug's detection rate
        /// is measured (0 skips the measurement).
        #[arg(long, default_value_t = 20)]
        detection_seeds: u64,
        /// List the settings instead: every design choice, its valid values and each
        /// preset's default.
        #[arg(long)]
        settings: bool,
        /// With --settings: one pattern's settings and values (a preset, or one with
        /// settings, `outbox-inbox+producer.linger.ms=0`).
        #[arg(long, requires = "settings")]
        pattern: Option<String>,
        /// With --settings --pattern: change a setting first (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "pattern")]
        set: Vec<String>,
    },
    /// Replays one run and tells its story.
    Repro(repro::ReproArgs),
    /// Compares the patterns side by side and writes report.md, report.json and report.html.
    Compare(compare::CompareArgs),
    /// Measures runs per second, simulated time per wall second and parallel speed-up.
    Bench(bench::BenchArgs),
    /// Cuts a failing run down to the actions and faults that still break it, as a suite file.
    Shrink(shrink::ShrinkArgs),
    /// Combines shard reports (report.json files, or directories holding them) of one
    /// sweep into the report of the whole sweep, in every format.
    Merge {
        /// The shard reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where the merged reports go.
        #[arg(long, default_value = "faultline-report")]
        out: PathBuf,
    },
    /// Runs a suite file and checks every expectation in it.
    Run {
        /// The suite file (TOML).
        suite: PathBuf,
        /// Also write JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        shard: shard::ShardArgs,
    },
}

/// Runs the parsed command.
/// The `faultline` command line: parses the process's arguments and runs the command.
/// A crate with patterns of its own registers them ([`crate::patterns::Variant::register`])
/// and then calls [`main_as`] with its binary's name, so the binary takes every command
/// and flag `faultline` does.
pub fn main() -> ExitCode {
    restore_default_sigpipe();
    dispatch(Cli::parse())
}

/// [`main`] for a binary called `name`: its help and every repro command it prints
/// name it, so what it prints replays with it (its registered patterns are not in
/// `faultline`).
pub fn main_as(name: &'static str) -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    restore_default_sigpipe();
    faultline::scenarios::runner::set_command_name(name);
    let matches = Cli::command().name(name).bin_name(name).get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => dispatch(cli),
        Err(e) => e.exit(),
    }
}

/// A reader that closes the pipe early (`faultline list | head`) ends the process
/// quietly, as Unix tools do; Rust ignores SIGPIPE by default, so the next print would
/// panic instead. Reports are written before anything is printed about them.
#[cfg(unix)]
fn restore_default_sigpipe() {
    // SAFETY: changes a signal's disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}

fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::List {
            format,
            settings: true,
            pattern,
            set,
            ..
        } => list::list_settings(format, pattern.as_deref(), &set),
        Command::List {
            format,
            detection_seeds,
            ..
        } => list::list(format, detection_seeds),
        Command::Repro(args) => repro::repro(args),
        Command::Compare(args) => compare::compare_command(args),
        Command::Shrink(args) => shrink::shrink_command(args),
        Command::Bench(args) => bench::bench(args),
        Command::Run {
            suite,
            junit,
            jobs,
            shard,
        } => run::run(&suite, junit.as_deref(), jobs, &shard),
        Command::Merge { inputs, out } => merge::merge_command(&inputs, &out),
    }
}

/// Reports a name that is not in its registry, with the valid ones.
/// A variant that cannot be made from the given names and settings: exit 2.
pub fn setting_error(context: &str, e: &faultline::patterns::settings::SettingError) -> ExitCode {
    eprintln!("error: {context}: {e}\n  hint: {}", e.hint());
    ExitCode::from(exit::BAD_INPUT)
}

/// The variant `--pattern NAME` and `--set` flags stand for: a preset, `defined` (a
/// suite's), or either with settings; exit 2 with the reason otherwise.
pub fn resolve_variant(
    name: &str,
    settings: &[String],
    defined: &[&'static faultline::patterns::Variant],
) -> Result<&'static faultline::patterns::Variant, ExitCode> {
    use faultline::patterns::settings::SettingError;
    let settings = parse_settings(settings)?;
    faultline::patterns::Variant::resolve(name, defined)
        .and_then(|v| v.with_settings(&settings))
        .map_err(|e| match e {
            SettingError::UnknownPreset { name } => {
                let mut valid = faultline::patterns::Variant::names();
                valid.extend(defined.iter().map(|v| v.name));
                unknown("pattern", &name, &valid)
            }
            e => setting_error(&format!("--pattern {name}"), &e),
        })
}

/// `--set key=value` flags as pairs, or exit 2.
pub fn parse_settings(flags: &[String]) -> Result<Vec<(&str, &str)>, ExitCode> {
    flags
        .iter()
        .map(|flag| {
            flag.split_once('=').ok_or_else(|| {
                eprintln!(
                    "error: --set {flag:?} is not key=value\n  hint: e.g. --set producer.linger.ms=0 (see `faultline list --settings`)"
                );
                ExitCode::from(exit::BAD_INPUT)
            })
        })
        .collect()
}

pub fn unknown(what: &str, given: &str, valid: &[&str]) -> ExitCode {
    eprintln!(
        "error: unknown {what} {given:?}; valid {what}s are: {}",
        valid.join(", ")
    );
    ExitCode::from(exit::BAD_INPUT)
}
