//! A failing run never takes a sweep down: a panic inside a run, or a runaway stopped by
//! its budget, becomes a reported failure with its seed, message and repro command, and
//! the other runs are judged as usual.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::cli::faultline;
use faultline::patterns::bugs::{Bug, BugSet};
use faultline::patterns::{Variant, VARIANTS};
use faultline::scenarios::compare::{compare, compare_shard, merge, ComparePlan};
use faultline::scenarios::runner::FailureKind;
use faultline::scenarios::shard::Shard;
use faultline::scenarios::shrink::{shrink, Target};
use faultline::scenarios::suite::Suite;
use faultline::scenarios::{run, RunOptions, RunSpec, Scenario};
use faultline::sim::world::TRACE_EVENTS_MAX_DEFAULT;
use faultline::sim::{Profile, Seed};

const PANICS: Bug = Bug::TargetPanicsOnLongHistory;
const RUNAWAY: Bug = Bug::ConsumerRetriesWithoutBackoff;

fn spec(pattern: &str, profile: Profile, seed: u64, bugs: &[Bug]) -> RunSpec {
    RunSpec {
        bugs: BugSet::of(bugs),
        ..RunSpec::new(
            Variant::by_name(pattern).unwrap(),
            Scenario::standard(),
            profile,
            Seed(seed),
        )
    }
}

/// The review suite narrowed to `patterns` under `none`, seeds `0..seeds`, with the
/// panicking bug in every run.
fn panicking_plan(patterns: &[&str], seeds: u64) -> ComparePlan {
    let suite = Suite::load(Path::new("scenarios/suites/review.toml")).unwrap();
    let patterns = patterns.iter().map(|p| Variant::by_name(p).unwrap()).collect();
    let mut plan = ComparePlan::new(&suite, Some(patterns), Some(vec![Profile::None]), Some(0..seeds));
    plan.add_bugs(BugSet::of(&[PANICS]));
    plan
}

#[test]
fn a_panic_in_a_handler_is_a_failed_run_with_its_message_location_and_instant() {
    let failure = (0..20)
        .find_map(|seed| {
            run(
                &spec("outbox-inbox", Profile::None, seed, &[PANICS]),
                RunOptions::default(),
            )
            .err()
        })
        .expect("the planted panic fires within 20 seeds");
    assert_eq!(failure.kind, FailureKind::Panic);
    assert!(
        failure.message.contains("index out of bounds"),
        "{}",
        failure.message
    );
    let location = failure.location.as_deref().unwrap();
    assert!(
        location.starts_with("patterns/src/systems/target.rs:"),
        "{location}"
    );
    assert!(
        failure.at.is_some(),
        "a panic inside the world has a simulated instant"
    );
    assert!(
        failure.repro.contains("--bug target-panics-on-long-history"),
        "{}",
        failure.repro
    );

    // The same seed replays the same panic, at the same instant, with the same trace.
    let again = run(
        &spec("outbox-inbox", Profile::None, failure.seed, &[PANICS]),
        RunOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        (&again.message, &again.location, again.at, again.trace_hash),
        (
            &failure.message,
            &failure.location,
            failure.at,
            failure.trace_hash
        )
    );
    // Without the bug, the same seed runs to a verdict.
    assert!(run(
        &spec("outbox-inbox", Profile::None, failure.seed, &[]),
        RunOptions::default()
    )
    .is_ok());
}

#[test]
fn a_sweep_over_a_panicking_bug_completes_and_counts_its_failed_runs_per_cell() {
    let plan = panicking_plan(&["outbox-inbox", "push"], 30);
    let comparison = compare(&plan, 2, |_| {}, &AtomicBool::new(false));
    assert_eq!(comparison.runs_done, 60, "every run was done");
    for cell in &comparison.cells {
        assert_eq!(cell.seeds_run, 30);
        assert!(
            cell.runs_failed > 0 && cell.runs_failed < 30,
            "{}: {} failed; the panic is rare, so some fail and some do not",
            cell.pattern,
            cell.runs_failed
        );
        assert_eq!(cell.failed_runs.len() as u64, cell.runs_failed.min(10));
        let seeds: Vec<u64> = cell.failed_runs.iter().map(|r| r.seed).collect();
        assert!(
            seeds.windows(2).all(|w| w[0] < w[1]),
            "lowest seeds, in order: {seeds:?}"
        );
        for failed in &cell.failed_runs {
            assert_eq!(failed.kind, FailureKind::Panic);
            assert!(failed.message.contains("index out of bounds"));
            assert!(failed.repro.contains(&format!("--seed {}", failed.seed)));
        }
    }
    // The runs without the panic were judged as usual: outbox-inbox holds under `none`
    // but for the actions over two customers, two events applied apart.
    let outbox = comparison.cell("none", "outbox-inbox").unwrap();
    assert!(
        outbox.seeds_by_invariant.keys().all(|k| *k == "atomic-actions"),
        "{:?}",
        outbox.seeds_by_invariant
    );
    assert!(outbox.actions > 0, "judged runs add their metrics");
}

#[test]
fn merge_carries_failed_runs_through_shards() {
    let plan = panicking_plan(&["outbox-inbox"], 24);
    let stop = AtomicBool::new(false);
    let whole = compare(&plan, 2, |_| {}, &stop);
    let shards: Vec<(String, _)> = (1..=3)
        .map(|k| {
            let shard = Shard { index: k, count: 3 };
            (
                format!("shard {k}"),
                compare_shard(&plan, shard, 1, |_| {}, &stop),
            )
        })
        .collect();
    assert!(shards.iter().all(|(_, c)| c.runs_failed() < whole.runs_failed()));
    let merged = merge(shards.clone()).unwrap();
    assert!(whole.runs_failed() > 0);
    assert_eq!(merged, whole);

    // Shards judged against different requirements are not one sweep's report.
    let mut mixed = shards;
    mixed[1].1.requirements = vec!["no-loss".to_string()];
    let error = merge(mixed).unwrap_err().to_string();
    assert!(error.contains("give every shard the same --require"), "{error}");
}

#[test]
fn a_runaway_is_stopped_by_the_budget_and_a_healthy_run_uses_under_a_tenth_of_it() {
    let failure = run(
        &spec("outbox-inbox", Profile::Storage, 3, &[RUNAWAY]),
        RunOptions::default(),
    )
    .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Budget);
    assert!(
        failure.message.contains("1000000 trace events"),
        "{}",
        failure.message
    );
    assert!(failure.at.is_some());
    assert!(
        run(
            &spec("outbox-inbox", Profile::Storage, 3, &[]),
            RunOptions::default()
        )
        .is_ok(),
        "without the bug the same seed is a healthy run"
    );

    // The busiest variants under the busiest profile stay far below the default budget.
    for variant in VARIANTS {
        let outcome = run(&spec(variant.name, Profile::Chaos, 1, &[]), RunOptions::default()).unwrap();
        assert!(
            outcome.summary.trace_events < TRACE_EVENTS_MAX_DEFAULT / 10,
            "{} recorded {} events: the budget is too tight for healthy runs",
            variant.name,
            outcome.summary.trace_events
        );
    }
}

#[test]
fn a_suite_budget_stops_a_run_that_passes_it() {
    let mut tight = spec("outbox-inbox", Profile::None, 0, &[]);
    tight.scenario.trace_events_max = 500;
    let failure = run(&tight, RunOptions::default()).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Budget);
    assert!(
        failure.message.contains("more than 500 trace events"),
        "{}",
        failure.message
    );
}

#[test]
fn a_panicking_run_shrinks_keeping_the_same_panic() {
    let base = spec("outbox-inbox", Profile::None, 0, &[PANICS]);
    let failing = (0..40)
        .map(|seed| RunSpec {
            seed: Seed(seed),
            ..base.clone()
        })
        .find(|s| run(s, RunOptions::default()).is_err())
        .expect("a seed of the short workload panics");
    let message = run(&failing, RunOptions::default()).unwrap_err().message;
    let shrunk = shrink(&failing, None).unwrap();
    assert_eq!(
        shrunk.target,
        Target::Failure {
            kind: FailureKind::Panic,
            message: message.clone()
        }
    );
    let actions = shrunk.spec.scenario.schedule.as_ref().unwrap().len();
    assert!(actions < 500 / 10, "{actions} actions left of 500");
    assert_eq!(shrunk.result.as_ref().unwrap_err().message, message);
}

#[test]
fn the_cli_reports_failed_runs_writes_every_report_and_exits_3() {
    let out = std::env::temp_dir().join(format!("faultline-failures-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let junit = out.join("suite.xml");
    let out_dir = out.to_str().expect("a UTF-8 temp path");
    let compare = faultline(&[
        "compare",
        "--patterns",
        "outbox-inbox",
        "--profiles",
        "none",
        "--seeds",
        "0..12",
        "--bug",
        "target-panics-on-long-history",
        "--out",
        out_dir,
    ]);
    assert_eq!(
        compare.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&compare.stderr)
    );
    let stderr = String::from_utf8_lossy(&compare.stderr);
    assert!(
        stderr.contains("run(s) failed") && stderr.contains("repro: faultline repro"),
        "{stderr}"
    );
    for report in ["report.md", "report.json", "report.html"] {
        assert!(out.join(report).exists(), "{report} written");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let cell = &json["cells"][0];
    assert!(cell["runs_failed"].as_u64().unwrap() > 0);
    assert_eq!(cell["failed_runs"][0]["kind"], "panic");
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("## Failed runs"));

    // A suite with the bug: JUnit errors (not failures) and exit 3.
    let suite = out.join("panics.toml");
    std::fs::write(
        &suite,
        "[suite]\nname = \"panics\"\n\n[[scenario]]\nname = \"none\"\npatterns = [\"outbox-inbox\"]\nprofile = \"none\"\nseeds = \"0..8\"\ncross_customer_pct = 0\nbugs = [\"target-panics-on-long-history\"]\n\n[scenario.expect]\noutbox-inbox = \"pass\"\n",
    )
    .unwrap();
    let suite_run = faultline(&["run", suite.to_str().unwrap(), "--junit", junit.to_str().unwrap()]);
    assert_eq!(suite_run.status.code(), Some(3));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<error message=\"seed ") && xml.contains("type=\"run-failed\""),
        "{xml}"
    );
    assert!(xml.contains("failures=\"0\" errors=\"1\""), "{xml}");

    // repro of a failed seed prints the panic and the trace up to it, and exits 3.
    let seed = json["cells"][0]["failed_runs"][0]["seed"]
        .as_u64()
        .unwrap()
        .to_string();
    let repro = faultline(&[
        "repro",
        "--pattern",
        "outbox-inbox",
        "--profile",
        "none",
        "--seed",
        &seed,
        "--bug",
        "target-panics-on-long-history",
    ]);
    assert_eq!(repro.status.code(), Some(3));
    let text = String::from_utf8_lossy(&repro.stdout);
    assert!(
        text.contains("RUN FAILED (panic)") && text.contains("trace events before it"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
