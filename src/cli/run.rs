//! `faultline run <suite>`: every scenario × pattern × seed, judged against the suite's
//! expectations.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use faultline::scenarios::suite::Suite;
use faultline::scenarios::sweep::default_jobs;
use faultline::scenarios::verdict::judge;

use super::exit;
use super::progress::Progress;

pub fn run(path: &Path, junit: Option<&Path>, jobs: Option<usize>) -> ExitCode {
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
    let jobs = jobs.unwrap_or_else(default_jobs);
    let total: usize = suite
        .scenarios
        .iter()
        .map(|s| s.patterns.len() * s.seeds.clone().count())
        .sum();
    let progress = Progress::new(&format!("suite {}", suite.name), total);
    let result = judge(
        &suite,
        jobs,
        |done, _| progress.tick(done),
        &AtomicBool::new(false),
    );
    progress.finish();

    for cell in &result.cells {
        let verdict = if cell.surprise.is_some() { "SURPRISE" } else { "ok" };
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
        if let Some(why) = &cell.surprise {
            println!("         {why}");
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
    let surprises = result.surprises().count();
    println!(
        "\nsuite {}: {} cells, {surprises} surprise(s)",
        result.suite,
        result.cells.len()
    );
    ExitCode::from(if surprises == 0 { exit::OK } else { exit::FAILED })
}
