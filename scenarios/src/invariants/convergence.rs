//! `convergence`: at quiesce the target holds exactly the source's durable rows.
//!
//! Each differing key is one typed violation: **missing** (live at the source, absent at
//! the target), **stale** (the target holds an older version: a lost update),
//! **phantom** (the target holds a version the source never durably had), **resurrected**
//! (deleted at the source, live at the target), **divergent** (same version, different
//! fields).

use std::collections::BTreeMap;

use faultline_patterns::domain::{EntityKey, Version};
use faultline_patterns::history::{History, RowState};
use faultline_sim::{EventId, SimTime};

use super::Violation;

pub(super) const NAME: &str = "convergence";

/// Where a key's versions were committed and applied.
#[derive(Default)]
struct KeyEvidence {
    commits: Vec<(Version, SimTime, EventId)>,
    applies: Vec<(Version, SimTime, EventId)>,
}

fn live(row: Option<&RowState>) -> Option<&RowState> {
    row.filter(|r| r.data.is_some())
}

pub(super) fn check(history: &History) -> Vec<Violation> {
    let mut evidence: BTreeMap<EntityKey, KeyEvidence> = BTreeMap::new();
    for c in &history.commits {
        for r in &c.rows {
            evidence
                .entry(r.key)
                .or_default()
                .commits
                .push((r.version, c.at, c.event));
        }
    }
    for a in &history.applies {
        for r in &a.rows {
            evidence
                .entry(r.key)
                .or_default()
                .applies
                .push((r.version, a.at, a.event));
        }
    }
    let mut keys: Vec<EntityKey> = history
        .final_source
        .keys()
        .chain(history.final_target.keys())
        .copied()
        .collect();
    keys.sort();
    keys.dedup();
    let none = KeyEvidence::default();
    let mut out = Vec::new();
    for key in keys {
        let source = history.final_source.get(&key);
        let target = history.final_target.get(&key);
        let ev = evidence.get(&key).unwrap_or(&none);
        let commit_of = |v: Version| ev.commits.iter().find(|c| c.0 == v);
        let last_apply = ev.applies.last();
        let violation = |kind: &'static str, at: SimTime, story: String, evidence: Vec<EventId>| Violation {
            invariant: NAME,
            kind,
            key: key.to_string(),
            at,
            story,
            evidence,
        };
        let found = match (live(source), live(target)) {
            (None, None) => None,
            (Some(s), None) => {
                let commit = commit_of(s.version);
                let at = commit.map_or(SimTime::ZERO, |c| c.1);
                let story = match target {
                    Some(t) => format!(
                        "source holds {} but the target deleted it at {}",
                        s.version, t.version
                    ),
                    None => format!("source holds {} but the target never received the row", s.version),
                };
                let evidence = commit
                    .map(|c| c.2)
                    .into_iter()
                    .chain(last_apply.map(|a| a.2))
                    .collect();
                Some(violation("missing", at, story, evidence))
            }
            (None, Some(t)) => {
                let at = last_apply.map_or(history.end, |a| a.1);
                let evidence: Vec<EventId> = ev
                    .commits
                    .last()
                    .map(|c| c.2)
                    .into_iter()
                    .chain(last_apply.map(|a| a.2))
                    .collect();
                match source {
                    Some(s) => Some(violation(
                        "resurrected",
                        at,
                        format!(
                            "source deleted it at {} but the target still holds {}",
                            s.version, t.version
                        ),
                        evidence,
                    )),
                    None => Some(violation(
                        "phantom",
                        at,
                        format!(
                            "the target holds {} of a row the source never durably had",
                            t.version
                        ),
                        evidence,
                    )),
                }
            }
            (Some(s), Some(t)) if t.version < s.version => {
                let missed = ev.commits.iter().find(|c| c.0 > t.version);
                let at = missed.map_or(SimTime::ZERO, |c| c.1);
                let story = format!(
                    "target kept {} while the source moved on to {}: lost update",
                    t.version, s.version
                );
                let evidence = commit_of(s.version)
                    .map(|c| c.2)
                    .into_iter()
                    .chain(last_apply.map(|a| a.2))
                    .collect();
                Some(violation("stale", at, story, evidence))
            }
            (Some(s), Some(t)) if t.version > s.version => {
                let at = ev
                    .applies
                    .iter()
                    .find(|a| a.0 == t.version)
                    .map_or(history.end, |a| a.1);
                let story = format!(
                    "target holds {} but the source's durable row is {}: that version vanished",
                    t.version, s.version
                );
                let evidence = ev
                    .commits
                    .iter()
                    .filter(|c| c.0 == t.version)
                    .map(|c| c.2)
                    .chain(last_apply.map(|a| a.2))
                    .collect();
                Some(violation("phantom", at, story, evidence))
            }
            (Some(s), Some(t)) if s.data != t.data => {
                let at = last_apply.map_or(history.end, |a| a.1);
                let story = format!(
                    "both hold {} but the fields differ: {:?} vs {:?}",
                    s.version, s.data, t.data
                );
                Some(violation(
                    "divergent",
                    at,
                    story,
                    last_apply.map(|a| a.2).into_iter().collect(),
                ))
            }
            _ => None,
        };
        out.extend(found);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::domain::Table;

    fn kinds(history: &History) -> Vec<(&'static str, String)> {
        check(history).into_iter().map(|v| (v.kind, v.key)).collect()
    }

    #[test]
    fn equal_states_converge() {
        let mut h = History::default();
        h.final_source.insert(key(Table::Customer, 1), live_row(3, "a"));
        h.final_target.insert(key(Table::Customer, 1), live_row(3, "a"));
        // A tombstone on one side and nothing on the other are the same thing.
        h.final_source.insert(key(Table::Customer, 2), tombstone(2));
        assert!(check(&h).is_empty());
    }

    #[test]
    fn each_kind_of_divergence_is_typed() {
        let mut h = History::default();
        let (missing, stale, phantom, resurrected, divergent, vanished) = (
            key(Table::Customer, 1),
            key(Table::Address, 2),
            key(Table::Contact, 3),
            key(Table::Customer, 4),
            key(Table::Customer, 5),
            key(Table::Customer, 6),
        );
        h.final_source.insert(missing, live_row(1, "a"));
        h.final_source.insert(stale, live_row(4, "new"));
        h.final_target.insert(stale, live_row(2, "old"));
        h.final_target.insert(phantom, live_row(1, "ghost"));
        h.final_source.insert(resurrected, tombstone(3));
        h.final_target.insert(resurrected, live_row(2, "back"));
        h.final_source.insert(divergent, live_row(2, "x"));
        h.final_target.insert(divergent, live_row(2, "y"));
        h.final_source.insert(vanished, live_row(1, "a"));
        h.final_target.insert(vanished, live_row(2, "b"));
        commit(&mut h, 10, stale, 3);
        commit(&mut h, 20, stale, 4);
        let found = kinds(&h);
        assert_eq!(
            found,
            vec![
                ("missing", "customer/1".to_string()),
                ("resurrected", "customer/4".to_string()),
                ("divergent", "customer/5".to_string()),
                ("phantom", "customer/6".to_string()),
                ("stale", "address/2".to_string()),
                ("phantom", "contact/3".to_string()),
            ]
        );
        let stale_violation = check(&h).into_iter().find(|v| v.kind == "stale").unwrap();
        assert_eq!(
            stale_violation.at,
            SimTime::from_millis(10),
            "first missed commit dates it"
        );
        assert_eq!(
            stale_violation.evidence,
            vec![EventId(20)],
            "the commit of the version the target lacks"
        );
    }
}
