//! `liveness`: after the last fault heals, the integration catches up: source and target
//! agree before the quiesce window ends, and stay agreed to the end of the run.

use faultline_patterns::history::History;

use super::Violation;

pub(super) const NAME: &str = "liveness";

pub(super) fn check(history: &History) -> Vec<Violation> {
    if history.converged_at.is_some() {
        return Vec::new();
    }
    let keys: std::collections::BTreeSet<_> = history
        .final_source
        .keys()
        .chain(history.final_target.keys())
        .collect();
    let differing = keys
        .into_iter()
        .filter(|k| {
            let live = |rows: &faultline_patterns::history::Rows| {
                rows.get(k).filter(|r| r.data.is_some()).map(|r| r.version)
            };
            live(&history.final_source) != live(&history.final_target)
        })
        .count();
    vec![Violation {
        invariant: NAME,
        kind: "not-converged",
        key: "-".to_string(),
        at: history.end,
        story: format!(
            "{} ms after the last fault healed the target still differed from the source on {} row(s)",
            history.end.saturating_since(history.last_fault_at).as_millis(),
            differing
        ),
        evidence: Vec::new(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::domain::Table;
    use faultline_sim::SimTime;

    #[test]
    fn converged_runs_are_live_and_stuck_ones_are_not() {
        let mut h = History {
            converged_at: Some(SimTime::from_millis(5)),
            ..History::default()
        };
        assert!(check(&h).is_empty());
        h.converged_at = None;
        h.final_source.insert(key(Table::Customer, 1), live_row(2, "a"));
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert!(v[0].story.contains("on 1 row(s)"), "{}", v[0].story);
    }
}
