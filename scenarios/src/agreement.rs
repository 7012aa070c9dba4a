//! When source and target came to agree, judged from outside the systems under test.
//!
//! The end point is the two final states the runner decoded from the disks
//! ([`crate::durable`]), compared field by field as well as by version: they must agree.
//! So must what the target's readers see at the end (its exposures, replayed) and what
//! its disk holds, or a restart would show them something else. Given that, the sides
//! have agreed since the last instant either of them changed: the last source commit,
//! the last source recovery that took commits back, the last exposure that changed what
//! readers saw. Nothing here uses the systems' own idea of whether they agree.

use std::collections::BTreeMap;

use faultline_patterns::domain::{EntityKey, Version};
use faultline_patterns::history::{History, RowState, Rows};
use faultline_sim::SimTime;

/// Why the sides do not agree at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disagreement {
    /// The final durable states differ on these many keys (version or fields).
    Durable {
        /// How many keys differ.
        keys: usize,
    },
    /// The durable states agree, but readers of the target see something else on these
    /// many keys.
    Exposed {
        /// How many keys differ.
        keys: usize,
    },
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disagreement::Durable { keys } => {
                write!(f, "the target's disk differs from the source's on {keys} row(s)")
            }
            Disagreement::Exposed { keys } => write!(
                f,
                "the disks agree, but the target's readers see something other than its disk on {keys} row(s)"
            ),
        }
    }
}

fn live<'a>(rows: &'a Rows, key: &EntityKey) -> Option<(Version, &'a faultline_patterns::domain::Fields)> {
    rows.get(key)
        .and_then(|r: &RowState| r.data.as_deref().map(|d| (r.version, d)))
}

/// Since when source and target agree, or why they do not at the end.
pub fn agreed_since(history: &History) -> Result<SimTime, Disagreement> {
    let mut keys: Vec<&EntityKey> = history
        .final_source
        .keys()
        .chain(history.final_target.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let durable_differ = keys
        .iter()
        .filter(|k| live(&history.final_source, k) != live(&history.final_target, k))
        .count();
    if durable_differ > 0 {
        return Err(Disagreement::Durable { keys: durable_differ });
    }

    // Replay what readers saw: the target's initial rows, then every exposure in order.
    let mut exposed: BTreeMap<EntityKey, Option<Version>> = history
        .target_initial
        .iter()
        .map(|(k, r)| (*k, r.data.is_some().then_some(r.version)))
        .collect();
    let mut last_change = SimTime::ZERO;
    for apply in &history.applies {
        for r in &apply.rows {
            let now = (!r.deleted).then_some(r.version);
            if exposed.get(&r.key).copied().flatten() != now {
                last_change = last_change.max(apply.at);
            }
            exposed.insert(r.key, now);
        }
    }
    let mut exposed_keys: Vec<&EntityKey> = exposed.keys().chain(history.final_target.keys()).collect();
    exposed_keys.sort();
    exposed_keys.dedup();
    let exposed_differ = exposed_keys
        .into_iter()
        .filter(|k| exposed.get(k).copied().flatten() != live(&history.final_target, k).map(|(v, _)| v))
        .count();
    if exposed_differ > 0 {
        return Err(Disagreement::Exposed { keys: exposed_differ });
    }

    let source_changes = history
        .commits
        .iter()
        .map(|c| c.at)
        .chain(history.source_rollbacks.iter().copied());
    Ok(source_changes.fold(last_change, SimTime::max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::domain::Table;
    use faultline_patterns::history::{ApplyRecord, RowVersion};
    use faultline_sim::EventId;

    /// A recovery that left readers without `key`.
    fn recovered_without(h: &mut History, at_ms: u64, key: EntityKey) {
        h.applies.push(ApplyRecord {
            at: SimTime::from_millis(at_ms),
            rows: vec![RowVersion {
                key,
                version: Version(0),
                deleted: true,
            }],
            event: EventId(at_ms),
            recovery: true,
        });
    }

    #[test]
    fn agreement_starts_at_the_last_change_of_either_side() {
        let k = key(Table::Customer, 1);
        let mut h = History::default();
        commit(&mut h, 10, k, 1);
        apply(&mut h, 30, k, 1);
        h.final_source.insert(k, live_row(1, "a"));
        h.final_target.insert(k, live_row(1, "a"));
        assert_eq!(agreed_since(&h), Ok(SimTime::from_millis(30)));
        // A source rollback after the target caught up moves the start.
        h.source_rollbacks.push(SimTime::from_millis(50));
        assert_eq!(agreed_since(&h), Ok(SimTime::from_millis(50)));
    }

    #[test]
    fn equal_versions_with_different_fields_do_not_agree() {
        let k = key(Table::Customer, 1);
        let mut h = History::default();
        h.final_source.insert(k, live_row(2, "a"));
        h.final_target.insert(k, live_row(2, "b"));
        assert_eq!(agreed_since(&h), Err(Disagreement::Durable { keys: 1 }));
    }

    #[test]
    fn readers_seeing_other_than_the_disk_do_not_agree() {
        let k = key(Table::Customer, 1);
        let mut h = History::default();
        commit(&mut h, 10, k, 1);
        h.final_source.insert(k, live_row(1, "a"));
        h.final_target.insert(k, live_row(1, "a"));
        // Readers saw version 1, then a recovery took it back, and nothing showed it again.
        apply(&mut h, 30, k, 1);
        recovered_without(&mut h, 60, k);
        assert_eq!(agreed_since(&h), Err(Disagreement::Exposed { keys: 1 }));
    }
}
