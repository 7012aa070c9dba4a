//! `atomic-actions`: the target never exposes part of a business action. If any row of a
//! durable commit is visible at the commit's version or later, every row of it is, from
//! the same target transaction on.
//!
//! Walks the target's applies in order, keeping each key's exposed version; for every
//! commit it notes the apply at which its first row was reached and the one at which
//! its last was. Different applies mean readers could see the action half-done.

use std::collections::BTreeMap;

use faultline_patterns::domain::{EntityKey, Version};
use faultline_patterns::history::History;

use super::Violation;

pub(super) const NAME: &str = "atomic-actions";

/// Progress of one commit towards being fully visible.
struct Progress {
    rows_total: usize,
    rows_reached: usize,
    first_apply: Option<usize>,
}

/// One action readers saw half-done: from the apply that first showed part of it to
/// the apply that showed the rest (`None`: never, by the end of the run).
pub(crate) struct Fracture {
    /// The commit, by position in `History::commits`.
    pub commit: usize,
    /// The apply (by position) that showed part of it.
    pub opened: usize,
    /// How many of its rows that apply had reached.
    pub rows_shown: usize,
    /// The apply that reached its last row.
    pub closed: Option<usize>,
}

/// Every fractured durable commit, in the order readers first saw each.
pub(crate) fn fractures(history: &History) -> Vec<Fracture> {
    let durable = history.durable_commits();
    // Per key, the durable commits that wrote it, in version order, as (version, commit).
    let mut waiting: BTreeMap<EntityKey, Vec<(Version, usize)>> = BTreeMap::new();
    let mut progress: Vec<Progress> = Vec::with_capacity(history.commits.len());
    for (i, c) in history.commits.iter().enumerate() {
        progress.push(Progress {
            rows_total: c.rows.len(),
            rows_reached: 0,
            first_apply: None,
        });
        if durable[i] && c.rows.len() > 1 {
            for r in &c.rows {
                waiting.entry(r.key).or_default().push((r.version, i));
            }
        }
    }
    for list in waiting.values_mut() {
        list.sort();
        list.reverse(); // pop() yields the lowest version first
    }
    let mut out: Vec<Fracture> = Vec::new();
    // Open fractures: commit -> its position in `out`.
    let mut open: BTreeMap<usize, usize> = BTreeMap::new();
    for (apply_index, apply) in history.applies.iter().enumerate() {
        let mut touched = Vec::new();
        for row in &apply.rows {
            let Some(list) = waiting.get_mut(&row.key) else {
                continue;
            };
            while list.last().is_some_and(|(v, _)| *v <= row.version) {
                let (_, commit) = list.pop().expect("checked");
                let p = &mut progress[commit];
                p.rows_reached += 1;
                p.first_apply.get_or_insert(apply_index);
                touched.push(commit);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for commit in touched {
            let p = &progress[commit];
            if p.first_apply == Some(apply_index) && p.rows_reached < p.rows_total {
                open.insert(commit, out.len());
                out.push(Fracture {
                    commit,
                    opened: apply_index,
                    rows_shown: p.rows_reached,
                    closed: None,
                });
            } else if p.rows_reached == p.rows_total {
                if let Some(i) = open.remove(&commit) {
                    out[i].closed = Some(apply_index);
                }
            }
        }
    }
    out
}

pub(super) fn check(history: &History) -> Vec<Violation> {
    fractures(history)
        .into_iter()
        .map(|f| {
            let c = &history.commits[f.commit];
            let apply = &history.applies[f.opened];
            let shown: Vec<String> = c
                .rows
                .iter()
                .filter(|r| {
                    apply
                        .rows
                        .iter()
                        .any(|a| a.key == r.key && a.version >= r.version)
                })
                .map(|r| r.key.to_string())
                .collect();
            Violation {
                invariant: NAME,
                kind: "fractured",
                key: c.rows[0].key.to_string(),
                at: apply.at,
                story: format!(
                    "{} (action {}) wrote {} rows; the target showed {} of them ({}) before the rest",
                    c.tx,
                    c.action.0,
                    c.rows.len(),
                    f.rows_shown,
                    shown.join(", ")
                ),
                evidence: vec![c.event, apply.event],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::domain::{ActionId, RowImage, Table, TxId};
    use faultline_patterns::history::{ApplyRecord, CommitRecord, RowVersion};
    use faultline_sim::{EventId, SimTime};

    fn history_with_create(split: bool) -> History {
        let mut h = History::default();
        let keys = [
            key(Table::Customer, 1),
            key(Table::Address, 1),
            key(Table::Contact, 1),
        ];
        h.commits.push(CommitRecord {
            tx: TxId(1),
            action: ActionId(1),
            at: SimTime::from_millis(1),
            rows: keys
                .iter()
                .map(|k| RowImage {
                    key: *k,
                    version: Version(1),
                    data: None,
                    written_at: None,
                })
                .collect(),
            event: EventId(1),
        });
        for k in keys {
            h.final_source.insert(k, live_row(1, "x"));
        }
        let rows: Vec<RowVersion> = keys
            .iter()
            .map(|k| RowVersion {
                key: *k,
                version: Version(1),
                deleted: false,
            })
            .collect();
        if split {
            for (i, r) in rows.into_iter().enumerate() {
                h.applies.push(ApplyRecord {
                    at: SimTime::from_millis(10 + i as u64),
                    rows: vec![r],
                    event: EventId(10 + i as u64),
                    recovery: false,
                });
            }
        } else {
            h.applies.push(ApplyRecord {
                at: SimTime::from_millis(10),
                rows,
                event: EventId(10),
                recovery: false,
            });
        }
        h
    }

    #[test]
    fn an_action_applied_in_one_transaction_is_atomic() {
        assert!(check(&history_with_create(false)).is_empty());
    }

    #[test]
    fn an_action_applied_row_by_row_is_fractured_once() {
        let h = history_with_create(true);
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].at, SimTime::from_millis(10));
        assert_eq!(v[0].evidence, vec![EventId(1), EventId(10)]);
        // Readers saw it half-done from the first apply (10 ms) to the third (12 ms).
        let f = fractures(&h);
        assert_eq!((f[0].opened, f[0].rows_shown, f[0].closed), (0, 1, Some(2)));
    }
}
