//! Suite expectations are judged per kind of violation: `convergence` covers any kind,
//! `convergence/phantom` only that one.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use faultline::scenarios::suite::Suite;
use faultline::scenarios::verdict::judge;

#[test]
fn a_kind_not_expected_is_a_surprise_even_when_its_invariant_breaks_in_an_expected_kind() {
    // queue-after-commit under crashes loses changes: convergence breaks as missing,
    // stale and resurrected rows (seed 3 shows all three, seed 4 none).
    let suite = |convergence: &str| {
        let text = format!(
            "[suite]\nname = \"kinds\"\n\n[[scenario]]\nname = \"crashes\"\npatterns = [\"queue-after-commit\"]\nprofile = \"crashes\"\nseeds = \"3..5\"\ninvariants = [\"convergence\"]\n\n[scenario.expect]\nqueue-after-commit = [{convergence}]\n"
        );
        let suite = Suite::parse(Path::new("kinds.toml"), &text).unwrap();
        judge(&suite, 1, |_, _| {}, &AtomicBool::new(false))
    };
    let any_kind = suite("\"convergence\"");
    assert_eq!(any_kind.surprises().count(), 0, "{:#?}", any_kind.cells);
    let every_kind = suite("\"convergence/missing\", \"convergence/resurrected\", \"convergence/stale\"");
    assert_eq!(every_kind.surprises().count(), 0, "{:#?}", every_kind.cells);
    let missing_only = suite("\"convergence/missing\"");
    // Every other kind that broke is named, each with its first seed.
    let why = &missing_only.cells[0].surprises;
    assert!(
        why.iter()
            .any(|w| w.contains("convergence/resurrected broke on seed"))
            && why.iter().any(|w| w.contains("convergence/stale broke on seed")),
        "{why:#?}"
    );
    // An expected kind that never happens is stale.
    let phantom_too = suite("\"convergence/missing\", \"convergence/resurrected\", \"convergence/stale\", \"convergence/phantom\"");
    let why = &phantom_too.cells[0].surprises;
    assert_eq!(why.len(), 1, "{why:#?}");
    assert!(
        why[0].contains("expected convergence/phantom to break"),
        "{}",
        why[0]
    );
}
