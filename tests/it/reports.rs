//! Reports from a small fixed sweep are pinned byte for byte: the same seeds give the
//! same report in every version unless a change to it is deliberate.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use faultline::patterns::Variant;
use faultline::scenarios::compare::{compare, ComparePlan, Comparison};
use faultline::scenarios::suite::Suite;
use faultline::sim::Profile;

fn small_sweep(jobs: usize) -> Comparison {
    let suite =
        Suite::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/suites/review.toml")).unwrap();
    let patterns = ["push", "outbox-inbox"]
        .map(|p| Variant::by_name(p).unwrap())
        .to_vec();
    let plan = ComparePlan::new(
        &suite,
        Some(patterns),
        Some(vec![Profile::None, Profile::Crashes]),
        Some(0..2),
    );
    compare(&plan, jobs, |_| {}, &AtomicBool::new(false))
}

#[test]
fn report_md_is_pinned() {
    insta::assert_snapshot!("report_md", faultline_reports::markdown::render(&small_sweep(2)));
}

#[test]
fn report_json_is_pinned() {
    let json = serde_json::to_string_pretty(&small_sweep(2)).unwrap();
    insta::assert_snapshot!("report_json", json);
}

#[test]
fn reports_do_not_depend_on_the_number_of_threads() {
    assert_eq!(small_sweep(1), small_sweep(2));
}

#[test]
fn report_json_round_trips_for_merge() {
    let report = small_sweep(2);
    let json = serde_json::to_string(&report).unwrap();
    let back: Comparison = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert_eq!(back.schema_version, faultline::scenarios::compare::SCHEMA_VERSION);
}

#[test]
fn every_failing_cell_has_a_counterexample_with_a_sequence_diagram_and_repro() {
    let report = small_sweep(2);
    let failing: Vec<_> = report.cells.iter().filter(|c| c.seeds_failing > 0).collect();
    assert!(!failing.is_empty());
    assert_eq!(report.counterexamples.len(), failing.len());
    let md = faultline_reports::markdown::render(&report);
    assert!(md.contains("```mermaid\nsequenceDiagram"));
    for ex in &report.counterexamples {
        assert!(ex.repro.starts_with("faultline repro --pattern "), "{}", ex.repro);
        assert!(!ex.events.is_empty());
    }
}

#[test]
fn the_html_report_is_self_contained() {
    let html = faultline_reports::html::render(&small_sweep(2));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"), "charts are inline SVG");
    // (The SVG namespace `xmlns="http://www.w3.org/2000/svg"` is a name, not a fetch.)
    for fetch in [
        "<script src",
        "<link ",
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
    ] {
        assert!(
            !html.contains(fetch),
            "the page must not fetch anything ({fetch})"
        );
    }
}

#[test]
fn four_shards_merged_equal_the_unsharded_sweep() {
    use faultline::scenarios::compare::{compare_shard, merge};
    use faultline::scenarios::shard::Shard;
    let suite =
        Suite::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/suites/review.toml")).unwrap();
    let patterns = ["push", "outbox", "cdc-tx"]
        .map(|p| Variant::by_name(p).unwrap())
        .to_vec();
    let plan = ComparePlan::new(
        &suite,
        Some(patterns),
        Some(vec![Profile::FlakyNet, Profile::Crashes]),
        Some(0..5),
    );
    let whole = compare(&plan, 2, |_| {}, &AtomicBool::new(false));
    let shards: Vec<(String, Comparison)> = (1..=4)
        .map(|index| {
            let shard = Shard { index, count: 4 };
            (
                shard.to_string(),
                compare_shard(&plan, shard, 2, |_| {}, &AtomicBool::new(false)),
            )
        })
        .collect();
    assert!(
        shards.iter().all(|(_, s)| s.runs_done < whole.runs_done),
        "each shard ran a slice"
    );
    // Through JSON, as shards on other machines would hand them over.
    let via_json: Vec<(String, Comparison)> = shards
        .into_iter()
        .map(|(name, s)| {
            (
                name,
                serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap(),
            )
        })
        .collect();
    let merged = merge(via_json).unwrap();
    assert_eq!(
        serde_json::to_string_pretty(&merged).unwrap(),
        serde_json::to_string_pretty(&whole).unwrap()
    );
}

#[test]
fn a_counterexample_repro_command_reproduces_its_trace_hash() {
    let report = small_sweep(2);
    let ex = report
        .counterexamples
        .iter()
        .find(|e| e.pattern == "push" && e.column == "crashes")
        .expect("push fails under crashes");
    let args: Vec<&str> = ex.repro.split_whitespace().skip(1).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(&args)
        .output()
        .unwrap();
    let last = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert_eq!(last, format!("trace_hash={}", ex.trace_hash), "{}", ex.repro);
}
