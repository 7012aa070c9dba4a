//! The example pattern through faultline's commands, run by this crate's binary as a
//! user would: list, compare (whole and in shards), merge, repro, run and shrink.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn outbox_webhook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outbox-webhook"))
        .args(args)
        .output()
        .expect("the example binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outbox-webhook-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

const COMPARE: &[&str] = &[
    "compare",
    "--patterns",
    "outbox-webhook,outbox-webhook-naive",
    "--profiles",
    "none,crashes",
    "--seeds",
    "0..4",
];

#[test]
fn the_pattern_is_compared_merged_replayed_and_held_to_a_suite_like_a_built_in_one() {
    let listed = text(&outbox_webhook(&["list"]).stdout);
    assert!(
        listed.contains("outbox-webhook-naive") && listed.contains("cdc-tx"),
        "{listed}"
    );

    // The whole sweep, and the same sweep in two shards merged: the same report.
    let whole = scratch("whole");
    let out = outbox_webhook(&[COMPARE, &["--out", whole.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut shards = Vec::new();
    for shard in ["1/2", "2/2"] {
        let dir = scratch(&format!("shard{}", &shard[..1]));
        let out = outbox_webhook(&[COMPARE, &["--shard", shard, "--out", dir.to_str().unwrap()]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        shards.push(dir);
    }
    let merged = scratch("merged");
    let out = outbox_webhook(&[
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(merged.join("report.json")).unwrap(),
        std::fs::read_to_string(whole.join("report.json")).unwrap()
    );

    // The idempotent receiver holds (but for actions over two customers, which the
    // outbox writes as one event per customer, applied apart); the naive one welcomes
    // again after a redelivery.
    let json = report(&whole);
    let cell = |column: &str, pattern: &str| {
        json["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["column"] == column && c["pattern"] == pattern)
            .unwrap()
            .clone()
    };
    for column in ["none", "crashes"] {
        let broke = cell(column, "outbox-webhook")["seeds_by_invariant"].clone();
        assert!(
            broke.as_object().unwrap().keys().all(|k| k == "atomic-actions"),
            "{column}: {broke}"
        );
    }
    let naive = cell("crashes", "outbox-webhook-naive");
    assert!(
        naive["seeds_by_invariant"]["exactly-once-effects"]
            .as_u64()
            .unwrap()
            > 0,
        "{naive}"
    );

    // Its counterexample replays with the command the report gives.
    let example = json["counterexamples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pattern"] == "outbox-webhook-naive")
        .unwrap();
    let repro = example["repro"].as_str().unwrap();
    let args: Vec<&str> = repro.split_whitespace().collect();
    assert_eq!(args[0], "outbox-webhook", "the repro names this binary: {repro}");
    let replay = outbox_webhook(&args[1..]);
    assert_eq!(replay.status.code(), Some(1), "a violation: {repro}");
    let hash = example["trace_hash"].as_str().unwrap();
    assert!(
        text(&replay.stdout).ends_with(&format!("trace_hash={hash}\n")),
        "{repro}"
    );

    // A suite names the patterns like any other and pins what they do.
    let suite = whole.join("suite.toml");
    std::fs::write(
        &suite,
        r#"[suite]
name = "webhooks"

[[scenario]]
name = "crashes"
patterns = ["outbox-webhook", "outbox-webhook-naive"]
profile = "crashes"
seeds = "0..4"
invariants = ["convergence", "exactly-once-effects"]

[scenario.expect]
outbox-webhook = "pass"
outbox-webhook-naive = ["exactly-once-effects"]
"#,
    )
    .unwrap();
    let out = outbox_webhook(&["run", suite.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for dir in [whole, merged].iter().chain(&shards) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_failing_run_of_the_pattern_shrinks_to_a_file_its_binary_replays() {
    let dir = scratch("shrink");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shrunk.toml");
    let out = outbox_webhook(&[
        "shrink",
        "--pattern",
        "outbox-webhook-naive",
        "--profile",
        "crashes",
        "--seed",
        "2",
        "--invariant",
        "exactly-once-effects",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shrunk = std::fs::read_to_string(&file).unwrap();
    assert!(
        shrunk.contains("patterns = [\"outbox-webhook-naive\"]"),
        "{shrunk}"
    );
    assert!(text(&out.stdout).contains(&format!("replay: outbox-webhook run {}", file.display())));
    let replay = outbox_webhook(&["run", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        replay.status.code(),
        Some(0),
        "the shrunk run still breaks exactly-once-effects: {}",
        text(&replay.stdout)
    );
}
