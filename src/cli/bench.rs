//! `faultline bench`: the sweep benchmark. Per variant, runs per second on one core,
//! simulated seconds per wall second and messages per second; then the whole sweep on
//! every core for the parallel speed-up, and the process's peak memory.

// The benchmark times runs from outside; no run ever sees the wall clock.
#![allow(clippy::disallowed_methods)]

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Args;
use faultline::patterns::Variant;
use faultline::scenarios::sweep::{default_jobs, sweep_fold};
use faultline::scenarios::{RunOptions, RunSpec, Scenario};
use faultline::sim::{Profile, Seed};

use super::{exit, resolve_variant, unknown};

#[derive(Args)]
pub struct BenchArgs {
    /// Seeds per variant.
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// Threads for the parallel pass (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// The fault profile.
    #[arg(long, default_value = "chaos")]
    profile: String,
    /// Variants to measure: comma-separated names (presets, or with settings:
    /// `outbox-inbox+producer.linger.ms=0`), or `all`.
    #[arg(long, default_value = "all")]
    patterns: String,
    /// Actions per run (the standard scenario has 500); to see how cost grows.
    #[arg(long)]
    actions: Option<u64>,
    /// Disks whose writes and fsyncs take no simulated time: run once with and once
    /// without to see what the I/O timing costs.
    #[arg(long)]
    instant_io: bool,
    /// Step every tick instead of crossing idle stretches in one step: the same runs
    /// (same traces), to see what the skipping saves.
    #[arg(long)]
    step_every_tick: bool,
    /// Run to the deadline runs that can no longer progress, instead of ending them
    /// there: the same verdicts, to see what ending them saves.
    #[arg(long)]
    run_to_deadline: bool,
}

/// Totals of a set of runs.
#[derive(Clone, Copy, Default)]
struct Totals {
    runs: u64,
    sim_ms: u64,
    calls: u64,
}

fn sweep(specs: &[RunSpec], jobs: usize, options: RunOptions) -> (Totals, f64) {
    let mut totals = Totals::default();
    let started = Instant::now();
    sweep_fold(
        specs.len(),
        jobs,
        options,
        |i| specs[i].clone(),
        |_, outcome| {
            outcome
                .map(|o| (o.summary.end.as_millis(), o.metrics.calls))
                .unwrap_or_default()
        },
        |_, (sim_ms, calls)| {
            totals.runs += 1;
            totals.sim_ms += sim_ms;
            totals.calls += calls;
        },
        |_| {},
        &AtomicBool::new(false),
    );
    (totals, started.elapsed().as_secs_f64())
}

/// The process's peak resident memory in MiB (Linux), if known.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

pub fn bench(args: BenchArgs) -> ExitCode {
    let Some(profile) = Profile::from_name(&args.profile) else {
        return unknown("profile", &args.profile, &Profile::names());
    };
    let variants: Vec<&'static Variant> = if args.patterns == "all" {
        Variant::all()
    } else {
        match args
            .patterns
            .split(',')
            .map(|name| resolve_variant(name.trim(), &[], &[]))
            .collect()
        {
            Ok(variants) => variants,
            Err(code) => return code,
        }
    };
    if args.seeds == 0 || args.jobs == Some(0) {
        eprintln!("error: --seeds and --jobs must be at least 1");
        return ExitCode::from(exit::BAD_INPUT);
    }
    let mut scenario = Scenario::standard();
    if let Some(actions) = args.actions {
        scenario.actions = actions;
    }
    scenario.instant_io = args.instant_io;
    let options = RunOptions {
        step_every_tick: args.step_every_tick,
        run_to_deadline: args.run_to_deadline,
        ..RunOptions::default()
    };
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    println!(
        "faultline bench: {} seeds per variant, profile {}, {} actions per run, {} core(s) available",
        args.seeds,
        profile.name(),
        scenario.actions,
        default_jobs()
    );
    let width = variants.iter().map(|v| v.name.len()).max().unwrap_or(0).max(20);
    println!(
        "\n{:<width$} {:>14} {:>16} {:>16}",
        "variant", "runs/s (1 core)", "sim-s per wall-s", "messages/s"
    );
    let specs_of = |v: &'static Variant| -> Vec<RunSpec> {
        (0..args.seeds)
            .map(|s| RunSpec::new(v, scenario.clone(), profile, Seed(s)))
            .collect()
    };
    let mut one_core_secs = 0.0;
    let mut all_specs = Vec::new();
    for variant in variants {
        let specs = specs_of(variant);
        let (t, secs) = sweep(&specs, 1, options);
        one_core_secs += secs;
        println!(
            "{:<width$} {:>14.1} {:>16.0} {:>16.0}",
            variant.name,
            t.runs as f64 / secs,
            t.sim_ms as f64 / 1_000.0 / secs,
            t.calls as f64 / secs
        );
        all_specs.extend(specs);
    }
    let (t, parallel_secs) = sweep(&all_specs, jobs, options);
    println!(
        "\nall measured: {} runs in {:.2} s on 1 core, {:.2} s on {jobs} threads: speed-up {:.2}x ({:.1} runs/s)",
        t.runs,
        one_core_secs,
        parallel_secs,
        one_core_secs / parallel_secs,
        t.runs as f64 / parallel_secs
    );
    if let Some(mib) = peak_memory_mib() {
        println!("peak memory: {mib:.0} MiB");
    }
    ExitCode::from(exit::OK)
}
