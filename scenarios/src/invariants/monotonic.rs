//! `monotonic`: for every key, the versions the target exposes over time never go back,
//! not even for a moment (no stale overwrite).

use std::collections::BTreeMap;

use faultline_patterns::domain::{EntityKey, Version};
use faultline_patterns::history::History;
use faultline_sim::{EventId, SimTime};

use super::Violation;

pub(super) const NAME: &str = "monotonic";

pub(super) fn check(history: &History) -> Vec<Violation> {
    // The highest version exposed so far per key, and the apply that exposed it.
    let mut highest: BTreeMap<EntityKey, (Version, Option<(SimTime, EventId)>)> = history
        .target_initial
        .iter()
        .map(|(k, r)| (*k, (r.version, None)))
        .collect();
    let mut reported: BTreeMap<EntityKey, ()> = BTreeMap::new();
    let mut out = Vec::new();
    for apply in &history.applies {
        for row in &apply.rows {
            match highest.get(&row.key) {
                Some(&(max, by)) if row.version < max => {
                    if reported.insert(row.key, ()).is_none() {
                        let when = by.map_or("at the start".to_string(), |(at, _)| format!("at {at}"));
                        let (kind, story) = if apply.recovery {
                            let now = if row.version.0 == 0 {
                                "without the row".to_string()
                            } else {
                                format!("at {}", row.version)
                            };
                            let story = format!(
                                "readers saw {max} (exposed {when}); the target recovered {now}: a rollback of what was shown"
                            );
                            ("rolled-back", story)
                        } else {
                            let story =
                                format!("target went back from {max} (exposed {when}) to {}", row.version);
                            ("regressed", story)
                        };
                        out.push(Violation {
                            invariant: NAME,
                            kind,
                            key: row.key.to_string(),
                            at: apply.at,
                            story,
                            evidence: by.map(|(_, e)| e).into_iter().chain([apply.event]).collect(),
                        });
                    }
                }
                Some(&(max, _)) if row.version == max => {}
                _ => {
                    highest.insert(row.key, (row.version, Some((apply.at, apply.event))));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::domain::Table;

    #[test]
    fn a_recovery_to_an_older_state_is_a_rollback() {
        let mut h = History::default();
        let k = key(Table::Customer, 1);
        apply(&mut h, 10, k, 3);
        apply(&mut h, 20, k, 2);
        h.applies[1].recovery = true;
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, "rolled-back");
        assert!(v[0].story.contains("recovered at v2"), "{}", v[0].story);
    }

    #[test]
    fn increasing_versions_hold() {
        let mut h = History::default();
        let k = key(Table::Customer, 1);
        h.target_initial.insert(k, live_row(1, "a"));
        apply(&mut h, 10, k, 2);
        apply(&mut h, 20, k, 2); // a redelivered duplicate is not a regression
        apply(&mut h, 30, k, 5);
        assert!(check(&h).is_empty());
    }

    #[test]
    fn a_step_back_fires_once_per_key_with_both_applies_as_evidence() {
        let mut h = History::default();
        let k = key(Table::Customer, 1);
        apply(&mut h, 10, k, 3);
        apply(&mut h, 20, k, 2);
        apply(&mut h, 30, k, 1);
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].at, SimTime::from_millis(20));
        assert_eq!(v[0].evidence, vec![EventId(1_010), EventId(1_020)]);
    }

    #[test]
    fn going_below_the_initial_version_fires() {
        let mut h = History::default();
        let k = key(Table::Contact, 9);
        h.target_initial.insert(k, live_row(4, "a"));
        apply(&mut h, 10, k, 3);
        assert_eq!(check(&h).len(), 1);
    }
}
