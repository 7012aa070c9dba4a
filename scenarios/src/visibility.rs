//! When each durable commit's rows became visible at the target: shared by the
//! staleness metrics and the `bounded-staleness` invariant.
//!
//! A row version is visible from the first target transaction that exposes it or a later
//! version, unless something takes it back later (a recovery to an older state, a stale
//! overwrite): then from the next exposure at that version or later. Two more cases need
//! care: a pattern that publishes before committing can expose a
//! version before the commit (that counts as no delay), and a version superseded at the
//! source by a delete before the target ever saw it is reflected once the delete commits
//! while the target holds nothing live for the key (a batch copy never shows a customer
//! who lived between two copies, and need not). A delete is visible once the target's
//! row is gone, whatever version the target recorded the removal at: readers cannot
//! see a deleted row's version.

use std::collections::BTreeMap;

use faultline_patterns::domain::{EntityKey, Version};
use faultline_patterns::history::History;
use faultline_sim::SimTime;

/// For one durable commit: when each of its rows was first visible at its version or
/// later (`None`: never).
pub struct CommitVisibility {
    /// Position in [`History::commits`].
    pub commit: usize,
    /// Per row, in the commit's row order.
    pub rows_visible_at: Vec<Option<SimTime>>,
}

/// Per key, what the target exposed over time, and which durable deletes the source made.
#[derive(Default)]
struct KeyTimeline {
    applies: Vec<(SimTime, Version, bool)>,
    deletes: Vec<(SimTime, Version)>,
}

impl KeyTimeline {
    fn visible_at(
        &self,
        committed: SimTime,
        version: Version,
        deleted: bool,
        initially_live: bool,
    ) -> Option<SimTime> {
        // From the start of the last stretch that shows this version or a later one: a
        // version a rollback or a stale overwrite took back is visible only once shown
        // again.
        let mut since = None;
        for &(at, v, gone) in &self.applies {
            // Readers cannot see a deleted row's version: a delete shows as soon as the
            // row is gone (a sink's delete by key records the version it held).
            if v >= version || (deleted && gone) {
                since.get_or_insert(at);
            } else {
                since = None;
            }
        }
        if let Some(at) = since {
            return Some(at.max(committed));
        }
        // A delete the target never needed: it held no live row of the key from the
        // commit on (a bootstrap's snapshot read the row already gone).
        if deleted {
            let applied_after = self.applies.iter().any(|(at, _, _)| *at > committed);
            if !self.live_at(committed, initially_live) && !applied_after {
                return Some(committed);
            }
        }
        let (deleted_at, _) = *self
            .deletes
            .iter()
            .find(|(at, v)| *at >= committed && *v > version)?;
        (!self.live_at(deleted_at, initially_live)).then_some(deleted_at)
    }

    /// Whether the target held a live row of the key at `at`, by its last apply then.
    fn live_at(&self, at: SimTime, initially_live: bool) -> bool {
        self.applies
            .iter()
            .take_while(|(applied, _, _)| *applied <= at)
            .last()
            .map_or(initially_live, |(_, _, deleted)| !deleted)
    }
}

/// Visibility of every durable commit, in commit order.
pub fn durable_commit_visibility(history: &History) -> Vec<CommitVisibility> {
    let durable = history.durable_commits();
    let mut timelines: BTreeMap<EntityKey, KeyTimeline> = BTreeMap::new();
    for a in &history.applies {
        for r in &a.rows {
            timelines
                .entry(r.key)
                .or_default()
                .applies
                .push((a.at, r.version, r.deleted));
        }
    }
    for (c, _) in history.commits.iter().zip(&durable).filter(|(_, d)| **d) {
        for r in c.rows.iter().filter(|r| r.is_delete()) {
            timelines
                .entry(r.key)
                .or_default()
                .deletes
                .push((c.at, r.version));
        }
    }
    let none = KeyTimeline::default();
    history
        .commits
        .iter()
        .enumerate()
        .filter(|(i, _)| durable[*i])
        .map(|(i, c)| CommitVisibility {
            commit: i,
            rows_visible_at: c
                .rows
                .iter()
                .map(|r| {
                    let initially_live = history
                        .target_initial
                        .get(&r.key)
                        .is_some_and(|s| s.data.is_some());
                    timelines.get(&r.key).unwrap_or(&none).visible_at(
                        c.at,
                        r.version,
                        r.is_delete(),
                        initially_live,
                    )
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SimTime {
        SimTime::from_millis(ms)
    }

    #[test]
    fn a_version_taken_back_is_visible_only_once_shown_again() {
        let t = KeyTimeline {
            applies: vec![
                (at(10), Version(2), false),
                (at(20), Version(1), false),
                (at(50), Version(2), false),
            ],
            deletes: vec![],
        };
        assert_eq!(t.visible_at(at(5), Version(2), false, true), Some(at(50)));
        assert_eq!(t.visible_at(at(5), Version(1), false, true), Some(at(10)));
        let gone = KeyTimeline {
            applies: vec![(at(10), Version(2), false), (at(20), Version(0), true)],
            deletes: vec![],
        };
        assert_eq!(
            gone.visible_at(at(5), Version(2), false, true),
            None,
            "rolled back for good"
        );
    }

    #[test]
    fn exposure_before_the_commit_counts_as_no_delay() {
        let t = KeyTimeline {
            applies: vec![(at(5), Version(1), false)],
            deletes: vec![],
        };
        assert_eq!(t.visible_at(at(10), Version(1), false, false), Some(at(10)));
    }

    #[test]
    fn a_version_deleted_before_the_target_saw_it_is_reflected_by_the_delete() {
        let t = KeyTimeline {
            applies: vec![],
            deletes: vec![(at(30), Version(2))],
        };
        assert_eq!(t.visible_at(at(10), Version(1), false, false), Some(at(30)));
        // ...unless the target still shows an older live version then.
        let stale = KeyTimeline {
            applies: vec![(at(1), Version(1), false)],
            deletes: vec![(at(30), Version(3))],
        };
        assert_eq!(stale.visible_at(at(10), Version(2), false, true), None);
    }

    #[test]
    fn a_delete_of_a_row_the_target_never_held_is_visible_at_once_unless_it_comes_back() {
        let never = KeyTimeline::default();
        assert_eq!(never.visible_at(at(10), Version(2), true, false), Some(at(10)));
        assert_eq!(
            never.visible_at(at(10), Version(2), true, true),
            None,
            "a row the target held from the start must be deleted there"
        );
        let resurrected = KeyTimeline {
            applies: vec![(at(40), Version(1), false)],
            deletes: vec![],
        };
        assert_eq!(resurrected.visible_at(at(10), Version(2), true, false), None);
    }
}
