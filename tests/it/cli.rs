//! The `faultline` binary as a user runs it.

use std::process::{Command, Output};

/// Runs the built binary with `args`.
pub(crate) fn faultline(args: &[&str]) -> Output {
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
    // What ended the run, and where it stopped: at or before the instant it is judged at.
    assert!(
        ["settled", "idle", "deadline"].contains(&json["ended"].as_str().unwrap()),
        "{}",
        json["ended"]
    );
    assert!(json["stopped_at_ms"].as_u64().unwrap() <= json["metrics"]["end_ms"].as_u64().unwrap());
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
    let args = ["repro", "--pattern", "cdc-tx", "--profile", "none", "--seed", "5"];
    let out = stdout(&faultline(&args));
    assert!(out.starts_with("seed=5 "), "{out}");
    let repro = "repro: faultline repro --pattern cdc-tx --profile none --seed 5";
    assert!(out.contains(repro), "{out}");
    assert!(out.contains("verdict: PASS"), "{out}");
}

#[test]
fn bench_measures_the_patterns_it_is_given_and_refuses_unknown_ones() {
    let out = faultline(&["bench", "--patterns", "push", "--seeds", "1", "--jobs", "1"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("variant"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(rows[0].starts_with("push "), "{text}");
    assert!(text.contains("all measured: 1 runs"), "{text}");
    let out = faultline(&["bench", "--patterns", "push,nope", "--seeds", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("unknown pattern \"nope\""));
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
    let json: serde_json::Value = serde_json::from_str(&stdout(&faultline(&[
        "list",
        "--format",
        "json",
        "--detection-seeds",
        "2",
    ])))
    .unwrap();
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
    // Each bug's detection is measured over the seeds asked for.
    for bug in json["bugs"].as_array().unwrap() {
        assert_eq!(bug["detection_seeds"], 2, "{bug}");
        let rate = bug["detection_rate"].as_f64().unwrap();
        let caught = bug["caught_on"].as_array().unwrap().len() as f64;
        assert_eq!(rate, caught / 2.0, "{bug}");
    }
    let always = json["bugs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "target-applies-rows-separately")
        .unwrap();
    assert_eq!(always["detection_rate"], 1.0, "caught on every seed");
}

#[test]
fn run_ci_suite_passes_and_writes_junit_and_a_wrong_expectation_exits_1_with_seed_and_repro() {
    let dir = std::env::temp_dir().join(format!("faultline-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A small suite: push loses updates under crashes; expecting "pass" is wrong.
    let suite = dir.join("wrong.toml");
    std::fs::write(
        &suite,
        "[suite]\nname = \"t\"\n\n[[scenario]]\nname = \"crashes\"\npatterns = [\"push\", \"outbox-inbox\"]\nprofile = \"crashes\"\nseeds = \"0..3\"\ninvariants = [\"convergence\"]\n\n[scenario.expect]\npush = \"pass\"\noutbox-inbox = \"pass\"\n",
    )
    .unwrap();
    let junit = dir.join("out.xml");
    let out = faultline(&["run", suite.to_str().unwrap(), "--junit", junit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("SURPRISE") && text.contains("expected pass, but convergence broke on seed"),
        "{text}"
    );
    assert!(text.contains("repro: faultline repro --suite"), "{text}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure message=\"expected pass") && xml.contains("tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    // Written down as the checker found it, the same suite passes.
    std::fs::write(
        &suite,
        std::fs::read_to_string(&suite)
            .unwrap()
            .replace("push = \"pass\"", "push = [\"convergence\"]"),
    )
    .unwrap();
    assert_eq!(
        faultline(&["run", suite.to_str().unwrap()]).status.code(),
        Some(0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn repro_writes_a_jsonl_trace_and_a_perfetto_trace_with_paired_flows() {
    let dir = std::env::temp_dir().join(format!("faultline-trace-{}", std::process::id()));
    let (jsonl, perfetto) = (dir.join("t.jsonl"), dir.join("t.json"));
    let out = faultline(&[
        "repro",
        "--pattern",
        "cdc-tx",
        "--profile",
        "flaky-net",
        "--seed",
        "2",
        "--trace",
        jsonl.to_str().unwrap(),
        "--perfetto",
        perfetto.to_str().unwrap(),
        "--check-determinism",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 100);
    assert!(
        lines.iter().enumerate().all(|(i, e)| e["id"] == i as u64),
        "ids count the trace"
    );
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&perfetto).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let phases = |ph: &str| events.iter().filter(|e| e["ph"] == ph).count();
    assert!(phases("M") >= 3, "a named track per host");
    assert!(phases("X") > 100 && phases("i") > 0, "slices and fault instants");
    let starts: std::collections::BTreeSet<u64> = events
        .iter()
        .filter(|e| e["ph"] == "s")
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    for end in events.iter().filter(|e| e["ph"] == "f") {
        assert!(
            starts.contains(&end["id"].as_u64().unwrap()),
            "every flow end has its start"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("one stepping every tick), same trace hash"),
        "the second run steps every tick and gives the same hash: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_require_answers_which_patterns_met_every_requirement_per_column() {
    let dir = std::env::temp_dir().join(format!("faultline-require-{}", std::process::id()));
    let out_dir = dir.to_str().unwrap();
    let out = faultline(&[
        "compare",
        "--patterns",
        "push,cdc-tx",
        "--profiles",
        "none",
        "--seeds",
        "0..2",
        "--require",
        "no-loss,atomic",
        "--out",
        out_dir,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // push applies each row on its own, so readers see half-done actions; cdc-tx
    // applies each transaction whole, across partitions too.
    let text = stdout(&out);
    assert!(
        text.contains("met every requirement on every seed (no-loss, atomic-actions)")
            && text.contains("none  cdc-tx"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        json["requirements"],
        serde_json::json!(["no-loss", "atomic-actions"])
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        md.contains("| push | missed: atomic-actions (broke on 100% of seeds) |"),
        "{md}"
    );

    let bad = faultline(&["compare", "--require", "no-loss,fast", "--seeds", "0..1"]);
    assert_eq!(bad.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8(bad.stderr).unwrap(), @r#"error: --require: requirement "fast" is not known; requirements are: no-loss, no-duplicates, no-duplicate-effects, atomic, converges, an invariant's name (convergence, monotonic, atomic-actions, referential, exactly-once-effects, bounded-staleness, liveness), staleness-p50<=D, staleness-p99<=D, staleness-max<=D, recovery-max<=D (D like 500ms or 2s), availability>=P% (P like 99.9)"#);
}

#[test]
fn settings_are_listed_documented_and_make_variants_that_compare_and_replay_by_name() {
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&faultline(&["list", "--settings", "--format", "json"]))).unwrap();
    let settings = json["settings"].as_array().unwrap();
    assert!(settings.len() >= 20, "{} settings", settings.len());
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/VARIANTS.md")).unwrap();
    for s in settings {
        let key = s["key"].as_str().unwrap();
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/VARIANTS.md does not list {key}"
        );
        assert!(
            s["values"]["kind"].is_string() && !s["applies_to"].as_array().unwrap().is_empty(),
            "{s}"
        );
        assert!(!s["defaults"].as_object().unwrap().is_empty(), "{s}");
    }

    // Committing offsets before processing (at-most-once) loses what a crashed target
    // was handling; the preset commits after and holds.
    let dir = std::env::temp_dir().join(format!("faultline-settings-{}", std::process::id()));
    let out = faultline(&[
        "compare",
        "--patterns",
        "outbox-inbox,outbox-inbox+consumer.offset.commit=before-processing",
        "--profiles",
        "crashes",
        "--seeds",
        "0..3",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let name = "outbox-inbox+consumer.offset.commit=before-processing";
    assert_eq!(report["variants"][1]["preset"], "outbox-inbox");
    assert_eq!(
        report["variants"][1]["settings"],
        serde_json::json!(["consumer.offset.commit=before-processing"])
    );
    assert!(
        md.contains(&format!(
            "| {name} | outbox-inbox | consumer.offset.commit=before-processing |"
        )),
        "{md}"
    );
    let cell = |pattern: &str| {
        report["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["pattern"] == pattern)
            .unwrap()
            .clone()
    };
    // Actions over two customers are fractured either way (two events): nothing lost.
    assert!(
        cell("outbox-inbox")["seeds_by_invariant"]["convergence"].is_null(),
        "{}",
        cell("outbox-inbox")
    );
    assert!(
        cell(name)["seeds_by_invariant"]["convergence"].as_u64().unwrap() > 0,
        "{}",
        cell(name)
    );

    // Its counterexample's repro command replays it from the name alone.
    let example = report["counterexamples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pattern"] == name)
        .unwrap();
    let repro = example["repro"].as_str().unwrap();
    let args: Vec<&str> = repro.split_whitespace().skip(1).collect();
    let replay = stdout(&faultline(&args));
    let hash = example["trace_hash"].as_str().unwrap();
    assert!(
        replay.ends_with(&format!("trace_hash={hash}\n")),
        "{repro}: {replay}"
    );

    // Bad settings: exit 2, the reason and the valid values.
    let bad = faultline(&[
        "repro",
        "--pattern",
        "push",
        "--set",
        "push.concurrency=0",
        "--profile",
        "none",
        "--seed",
        "0",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8(bad.stderr).unwrap(), @r#"
        error: --pattern push: push.concurrency = "0" is not valid: it takes a whole number, 1 to 64
          hint: e.g. push.concurrency = 4
        "#);
    let bad = faultline(&[
        "compare",
        "--set",
        "linger.ms=0",
        "--profiles",
        "none",
        "--seeds",
        "0..1",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8(bad.stderr).unwrap(), @r#"
        error: --set: unknown setting "linger.ms"
          hint: did you mean producer.linger.ms? settings are: producer.enable.idempotence, producer.max.in.flight.requests.per.connection, producer.acks, producer.linger.ms, producer.batch.size, producer.retry.backoff.ms, producer.retry.backoff.max.ms, producer.delivery.timeout.ms, consumer.offset.commit, consumer.auto.commit.interval.ms, consumer.auto.offset.reset, topic.retention.ms, topic.retention.bytes, topic.cleanup.policy, topic.delete.retention.ms, broker.offsets.retention.ms, topic.replication.factor, topic.min.insync.replicas, topic.unclean.leader.election.enable, broker.log.flush.interval.messages, broker.replica.lag.time.max.ms, consumer.fetch.max.wait.ms, consumer.retry.backoff.ms, consumer.error.policy, consumer.error.attempts, consumer.dead.letter.replay.ms, consumer.instances, consumer.group.instance.id, topic.partitions, connect.offset.flush.interval.ms, relay.source, relay.cursor, outbox.events, relay.instances, relay.lease.ms, relay.poll.interval.ms, relay.batch.size, connector.snapshot.signal.ms, connector.snapshot.mode, connector.tombstones.on.delete, source.max.slot.wal.keep.size, source.checkpoint.timeout.ms, connector.poll.interval.ms, cdc.apply, target.apply.rule, target.inbox, target.inbox.cleanup.after.ms, target.welcome.key, push.concurrency, push.per.key.order, push.retry.attempts, push.retry.backoff.ms, push.retry.backoff.max.ms, push.queue.max, notify.dedup.window.ms, queue.publish, full-copy.atomic.swap, full-copy.period.ms, full-copy.row.write.ms, full-copy.snapshot.timeout.ms (see `faultline list --settings`)
        "#);
}
