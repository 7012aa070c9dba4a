//! The `faultline` binary as a user runs it.

use std::process::{Command, Output};

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn repro_json_has_the_documented_fields() {
    let out = faultline(&[
        "repro",
        "--pattern",
        "push",
        "--profile",
        "crashes",
        "--seed",
        "3",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(json["pattern"], "push");
    assert_eq!(json["profile"], "crashes");
    assert_eq!(json["seed"], 3);
    let hash = json["trace_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 16);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(json["metrics"].is_object());
    for v in json["violations"].as_array().unwrap() {
        for field in ["invariant", "kind", "key", "at_ms"] {
            assert!(!v[field].is_null(), "violation lacks {field}: {v}");
        }
    }
    let code = out.status.code().unwrap();
    assert_eq!(
        code,
        if json["violations"].as_array().unwrap().is_empty() {
            0
        } else {
            1
        }
    );
}

#[test]
fn repro_twice_prints_the_same_trace_hash() {
    let args = [
        "repro",
        "--pattern",
        "outbox-inbox",
        "--profile",
        "chaos",
        "--seed",
        "11",
    ];
    let hash = |out: Output| stdout(&out).lines().last().unwrap().to_string();
    let first = hash(faultline(&args));
    assert!(first.starts_with("trace_hash="), "{first}");
    assert_eq!(first, hash(faultline(&args)));
}

#[test]
fn repro_text_starts_with_the_seed_and_prints_its_own_repro_command() {
    let args = [
        "repro",
        "--pattern",
        "outbox-inbox",
        "--profile",
        "none",
        "--seed",
        "5",
    ];
    let out = stdout(&faultline(&args));
    assert!(out.starts_with("seed=5 "), "{out}");
    let repro = "repro: faultline repro --pattern outbox-inbox --profile none --seed 5";
    assert!(out.contains(repro), "{out}");
    assert!(out.contains("verdict: PASS"), "{out}");
}

#[test]
fn unknown_names_exit_2_and_list_the_valid_ones() {
    let out = faultline(&["repro", "--pattern", "nope", "--profile", "chaos", "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let valid = faultline::patterns::Variant::names().join(", ");
    assert!(
        err.contains("unknown pattern \"nope\"") && err.contains(&valid),
        "{err}"
    );
    let out = faultline(&["repro", "--pattern", "push", "--profile", "storms", "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("none, flaky-net, partitions"));
}

#[test]
fn list_json_names_every_pattern_profile_and_invariant() {
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&faultline(&["list", "--format", "json"]))).unwrap();
    let names = |k: &str| -> Vec<String> {
        json[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("patterns"), faultline::patterns::Variant::names());
    assert_eq!(names("profiles"), faultline::sim::Profile::names());
    assert!(names("invariants").contains(&"convergence".to_string()));
}
