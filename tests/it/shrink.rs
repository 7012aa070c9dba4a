//! Shrinking cuts a failing run to the actions and faults that matter, and the result
//! replays through the suite runner.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;

use faultline::patterns::Variant;
use faultline::scenarios::shrink::shrink;
use faultline::scenarios::suite::Suite;
use faultline::scenarios::verdict::judge;
use faultline::scenarios::{RunSpec, Scenario};
use faultline::sim::{Profile, Seed};

#[test]
fn a_push_lost_update_under_crashes_shrinks_to_a_few_actions_and_faults_and_replays() {
    // Named with a setting (at the preset's own value, so the run is push's): the shrunk
    // file must name the variant so that it replays without the command line.
    let variant = Variant::by_name("push")
        .unwrap()
        .with_settings(&[("push.concurrency", "4")])
        .unwrap();
    assert_eq!(variant.config, Variant::by_name("push").unwrap().config);
    let spec = RunSpec::new(variant, Scenario::standard(), Profile::Crashes, Seed(0));
    let shrunk = shrink(&spec, Some("convergence")).unwrap();
    let actions = shrunk.spec.scenario.schedule.as_ref().unwrap().len();
    let faults = shrunk.spec.plan().events.len();
    assert_eq!(shrunk.before, (500, 8));
    assert!(
        actions <= 10 && faults <= 4,
        "{actions} actions and {faults} faults left"
    );
    assert!(
        shrunk.spec.plan().unhealed().is_empty(),
        "a shrunk plan heals what the original healed"
    );
    assert_eq!(shrunk.violation.as_ref().unwrap().invariant, "convergence");

    let text = shrunk.to_suite_toml("push under crashes, seed 0");
    assert!(
        text.contains("patterns = [\"push+push.concurrency=4\"]"),
        "{text}"
    );
    let suite = Suite::parse(Path::new("shrunk.toml"), &text).unwrap();
    let result = judge(&suite, 1, |_, _| {}, &AtomicBool::new(false));
    assert_eq!(result.surprises().count(), 0, "{:#?}", result.cells);
    assert!(
        result.cells[0].broken.contains_key("convergence"),
        "the file reproduces the violation"
    );
}

#[test]
fn shrinking_a_seed_that_does_not_fail_says_so_and_exits_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "shrink",
            "--pattern",
            "cdc-tx",
            "--profile",
            "none",
            "--seed",
            "0",
            "--out",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("breaks no invariant: nothing to shrink"));
}
