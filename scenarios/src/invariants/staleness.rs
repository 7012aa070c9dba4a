//! `bounded-staleness`: every durable source commit is visible at the target (at its
//! version or later) within the scenario's bound.

use faultline_patterns::history::History;

use super::Violation;
use crate::visibility::durable_commit_visibility;

pub(super) const NAME: &str = "bounded-staleness";

pub(super) fn check(history: &History) -> Vec<Violation> {
    let Some(bound) = history.staleness_bound else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for vis in durable_commit_visibility(history) {
        let c = &history.commits[vis.commit];
        let deadline = c.at + bound;
        // The first row that was late (or never came) speaks for the commit.
        let late = c
            .rows
            .iter()
            .zip(&vis.rows_visible_at)
            .find(|(_, at)| at.is_none_or(|t| t > deadline));
        if let Some((row, at)) = late {
            let story = match at {
                Some(t) => format!(
                    "{} of {} became visible after {} ms (bound {} ms)",
                    row,
                    c.tx,
                    t.saturating_since(c.at).as_millis(),
                    bound.as_millis()
                ),
                None => format!(
                    "{} of {} never became visible (bound {} ms)",
                    row,
                    c.tx,
                    bound.as_millis()
                ),
            };
            out.push(Violation {
                invariant: NAME,
                kind: "late",
                key: row.key.to_string(),
                at: deadline,
                story,
                evidence: vec![c.event],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::domain::Table;
    use std::time::Duration;

    fn history(apply_at_ms: Option<u64>) -> History {
        let mut h = History {
            staleness_bound: Some(Duration::from_millis(100)),
            ..History::default()
        };
        let k = key(Table::Customer, 1);
        // The target holds v1; the commit of v2 (a delete) must reach it.
        h.target_initial.insert(k, live_row(1, "x"));
        commit(&mut h, 10, k, 2);
        h.final_source.insert(k, live_row(2, "x"));
        if let Some(at) = apply_at_ms {
            apply(&mut h, at, k, 2);
        }
        h
    }

    #[test]
    fn visible_within_the_bound_holds() {
        assert!(check(&history(Some(110))).is_empty());
    }

    #[test]
    fn late_or_never_visible_fires_at_the_deadline() {
        for h in [history(Some(111)), history(None)] {
            let v = check(&h);
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].at, faultline_sim::SimTime::from_millis(110));
        }
    }

    #[test]
    fn no_bound_no_check() {
        let h = History {
            staleness_bound: None,
            ..history(None)
        };
        assert!(check(&h).is_empty());
    }
}
