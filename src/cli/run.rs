//! `faultline run <suite>`: every scenario × pattern × seed (or one shard of them),
//! judged against the suite's expectations.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use faultline::scenarios::shard::Shard;
use faultline::scenarios::suite::Suite;
use faultline::scenarios::sweep::default_jobs;
use faultline::scenarios::verdict::judge_shard;

use super::exit;
use super::progress::Progress;
use super::shard::ShardArgs;

pub fn run(path: &Path, junit: Option<&Path>, jobs: Option<usize>, shard: &ShardArgs) -> ExitCode {
    let suite = match Suite::load(path) {
        Ok(suite) => suite,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::BAD_INPUT);
        }
    };
    if jobs == Some(0) {
        eprintln!("error: --jobs must be at least 1");
        return ExitCode::from(exit::BAD_INPUT);
    }
    let shard = match shard.resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::BAD_INPUT);
        }
    };
    let all: usize = suite
        .scenarios
        .iter()
        .map(|s| s.patterns.len() * s.seeds.clone().count())
        .sum();
    let total = (0..all).filter(|i| shard.owns(*i)).count();
    let progress = Progress::new(&format!("suite {}", suite.name), total);
    let jobs = jobs.unwrap_or_else(default_jobs);
    let result = judge_shard(
        &suite,
        shard,
        jobs,
        |done, _| progress.tick(done),
        &AtomicBool::new(false),
    );
    progress.finish();

    for cell in &result.cells {
        let verdict = if cell.is_surprise() { "SURPRISE" } else { "ok" };
        let broken: Vec<&str> = cell.broken.keys().copied().collect();
        let broke = if broken.is_empty() {
            "nothing broke".to_string()
        } else {
            format!("broke {}", broken.join(", "))
        };
        println!(
            "{verdict:<8} {:<28} {:<20} {}/{} seeds failing; {broke}",
            cell.scenario, cell.pattern, cell.seeds_failing, cell.seeds_run
        );
        for why in &cell.surprises {
            println!("         {why}");
        }
        for failed in &cell.errors {
            if let Some(error) = &failed.error {
                println!(
                    "FAILED   seed {} {}: {}{}\n         repro: {}",
                    failed.seed,
                    error.kind.name(),
                    error.message,
                    error
                        .location
                        .as_deref()
                        .map_or(String::new(), |l| format!(" (at {l})")),
                    failed.repro
                );
            }
        }
    }
    if let Some(junit) = junit {
        if let Err(e) =
            faultline_reports::write_atomic(junit, faultline_reports::junit::render(&result).as_bytes())
        {
            eprintln!("error: cannot write {}: {e}", junit.display());
            return ExitCode::from(exit::RUN_FAILED);
        }
    }
    if shard != Shard::ALL {
        println!(
            "\nshard {shard}: unexpected breaks are judged here; whether expected breaks still happen needs every seed (run the suite whole)"
        );
    }
    let surprises = result.surprises().count();
    let failed = result.runs_failed();
    println!(
        "\nsuite {}: {} cells, {surprises} surprise(s), {failed} failed run(s)",
        result.suite,
        result.cells.len()
    );
    // A failed run leaves the verdict incomplete: that outranks a surprise.
    ExitCode::from(if failed > 0 {
        exit::RUN_FAILED
    } else if surprises > 0 {
        exit::FAILED
    } else {
        exit::OK
    })
}
