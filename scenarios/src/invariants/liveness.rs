//! `liveness`: after the last fault heals, the integration catches up: source and target
//! agree before the quiesce window ends, and stay agreed to the end of the run: field by
//! field on disk, and in what the target's readers see ([`crate::agreement`]).

use faultline_patterns::history::History;

use super::Violation;

pub(super) const NAME: &str = "liveness";

pub(super) fn check(history: &History) -> Vec<Violation> {
    let Err(disagreement) = crate::agreement::agreed_since(history) else {
        return Vec::new();
    };
    vec![Violation {
        invariant: NAME,
        kind: "not-converged",
        key: "-".to_string(),
        at: history.end,
        story: format!(
            "{} ms after the last fault healed {disagreement}",
            history.end.saturating_since(history.last_fault_at).as_millis(),
        ),
        evidence: Vec::new(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::domain::Table;

    #[test]
    fn converged_runs_are_live_and_stuck_ones_are_not() {
        let k = key(Table::Customer, 1);
        let mut h = History::default();
        commit(&mut h, 5, k, 2);
        apply(&mut h, 8, k, 2);
        h.final_source.insert(k, live_row(2, "a"));
        h.final_target.insert(k, live_row(2, "a"));
        assert!(check(&h).is_empty());
        h.final_target.insert(k, live_row(1, "a"));
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert!(v[0].story.contains("on 1 row(s)"), "{}", v[0].story);
    }
}
