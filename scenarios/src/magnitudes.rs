//! How much went wrong, not only whether: lost changes, how often each change was
//! applied, how long readers saw fractured actions and orphans. Computed per run from
//! the same history the invariants judge, and folded per cell.

use std::collections::BTreeMap;

use faultline_patterns::domain::{CustomerId, EntityKey, Table, Version};
use faultline_patterns::history::History;
use serde::{Deserialize, Serialize};

use crate::invariants::{atomic_actions, referential};
use crate::metrics::{histogram_percentile_ms, staleness_bucket, STALENESS_BUCKETS_MS};

/// A distribution of durations in milliseconds, mergeable across runs and shards: a
/// histogram over [`STALENESS_BUCKETS_MS`] and the exact worst. A percentile is the
/// upper bound of the bucket it falls in, or the worst when that is lower.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    /// Median (a bucket bound), `None` when empty.
    pub p50: Option<u64>,
    /// 99th percentile (a bucket bound).
    pub p99: Option<u64>,
    /// Worst, exact.
    pub max: Option<u64>,
    /// Counts per bucket of [`STALENESS_BUCKETS_MS`].
    pub histogram: Vec<u64>,
}

impl Default for Spread {
    fn default() -> Self {
        Spread {
            p50: None,
            p99: None,
            max: None,
            histogram: vec![0; STALENESS_BUCKETS_MS.len()],
        }
    }
}

impl Spread {
    /// A spread of `samples`.
    pub fn of(samples: impl IntoIterator<Item = u64>) -> Spread {
        let mut spread = Spread::default();
        for ms in samples {
            spread.histogram[staleness_bucket(ms)] += 1;
            spread.max = spread.max.max(Some(ms));
        }
        spread.refresh();
        spread
    }

    /// A spread of one histogram and its worst (the run metrics' staleness).
    pub fn from_histogram(histogram: &[u64], max: Option<u64>) -> Spread {
        let mut spread = Spread {
            histogram: histogram.to_vec(),
            max,
            ..Spread::default()
        };
        spread.refresh();
        spread
    }

    /// How many samples it holds.
    pub fn count(&self) -> u64 {
        self.histogram.iter().sum()
    }

    /// Folds `other` in.
    pub fn merge(&mut self, other: &Spread) {
        for (bucket, n) in self.histogram.iter_mut().zip(&other.histogram) {
            *bucket += n;
        }
        self.max = self.max.max(other.max);
        self.refresh();
    }

    /// The percentiles: their bucket's bound, or the worst sample when that is lower
    /// (it bounds every sample, and the last bucket is open).
    fn refresh(&mut self) {
        let at = |pct| {
            histogram_percentile_ms(&self.histogram, pct).map(|bound| bound.min(self.max.unwrap_or(bound)))
        };
        self.p50 = at(50);
        self.p99 = at(99);
    }
}

/// One run's magnitudes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunMagnitudes {
    /// Row changes of durable source commits.
    pub changes_committed: u64,
    /// Of those, changes the target did not hold at the end (nor anything newer of the
    /// key): lost.
    pub changes_lost: u64,
    /// Changes applied (shown to readers) once, twice, three times, more; changes never
    /// applied on their own (superseded, or lost) are not counted.
    pub applied_times: [u64; 4],
    /// Welcomes beyond the one each customer should get.
    pub doubled_effects: u64,
    /// Customers durably created during the run.
    pub customers_created: u64,
    /// How long readers saw each fractured action, in ms.
    pub fracture_window_ms: Spread,
    /// How long readers saw each orphan, in ms.
    pub orphan_window_ms: Spread,
}

/// The magnitudes of a finished run.
pub fn of_run(history: &History) -> RunMagnitudes {
    let durable = history.durable_commits();
    let mut m = RunMagnitudes::default();

    // Applies per (key, version), outside recoveries (a recovery shows what was there).
    let mut applied: BTreeMap<(EntityKey, Version), u64> = BTreeMap::new();
    for apply in history.applies.iter().filter(|a| !a.recovery) {
        for r in &apply.rows {
            *applied.entry((r.key, r.version)).or_insert(0) += 1;
        }
    }
    let mut created: Vec<CustomerId> = Vec::new();
    for (commit, _) in history.commits.iter().zip(&durable).filter(|(_, d)| **d) {
        for r in &commit.rows {
            m.changes_committed += 1;
            let held = history.final_target.get(&r.key).map(|t| t.version);
            // A delete the target never heard of leaves it as deleted as the source.
            let lost = match held {
                Some(v) => v < r.version,
                None => !r.is_delete(),
            };
            m.changes_lost += u64::from(lost);
            if let Some(n) = applied.get(&(r.key, r.version)) {
                m.applied_times[(*n as usize).clamp(1, 4) - 1] += 1;
            }
            if r.key.table == Table::Customer && r.version == Version(1) && !r.is_delete() {
                created.push(r.key.customer);
            }
        }
    }
    m.customers_created = created.len() as u64;
    let mut welcomes: BTreeMap<CustomerId, u64> = BTreeMap::new();
    for e in &history.effects {
        *welcomes.entry(e.customer).or_insert(0) += 1;
    }
    // A customer of the initial rows had its welcome before the run.
    m.doubled_effects = welcomes
        .iter()
        .map(|(customer, n)| {
            let initial = history
                .initial
                .get(&EntityKey::customer(*customer))
                .is_some_and(|r| r.data.is_some());
            if initial {
                *n
            } else {
                n.saturating_sub(1)
            }
        })
        .sum();

    let at = |apply: Option<usize>| apply.map_or(history.end, |i| history.applies[i].at);
    let window = |opened: usize, closed: Option<usize>| -> u64 {
        at(closed)
            .saturating_since(history.applies[opened].at)
            .as_millis() as u64
    };
    m.fracture_window_ms = Spread::of(
        atomic_actions::fractures(history)
            .iter()
            .map(|f| window(f.opened, f.closed)),
    );
    m.orphan_window_ms = Spread::of(
        referential::orphanings(history)
            .iter()
            .map(|o| window(o.opened, o.closed)),
    );
    m
}

/// A cell's delivery semantics as observed: whether changes were lost, and whether
/// any change (or effect) took effect more than once.
pub fn delivery_semantics(lost: u64, applied_times: &[u64; 4], doubled_effects: u64) -> &'static str {
    let duplicated = applied_times[1..].iter().any(|n| *n > 0) || doubled_effects > 0;
    match (lost > 0, duplicated) {
        (false, false) => "effectively-once",
        (false, true) => "at-least-once",
        (true, false) => "at-most-once",
        (true, true) => "neither",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::history::EffectRecord;
    use faultline_sim::{EventId, SimTime};

    #[test]
    fn a_lost_change_a_doubled_apply_and_a_doubled_welcome_are_counted() {
        let (a, b) = (key(Table::Address, 1), key(Table::Address, 2));
        let mut h = History::default();
        commit(&mut h, 1, a, 1);
        commit(&mut h, 2, a, 2);
        commit(&mut h, 3, b, 1);
        apply(&mut h, 5, a, 1);
        apply(&mut h, 6, a, 1);
        apply(&mut h, 7, b, 1);
        h.final_source.insert(a, live_row(2, "x"));
        h.final_source.insert(b, live_row(1, "x"));
        h.final_target.insert(a, live_row(1, "x"));
        h.final_target.insert(b, live_row(1, "x"));
        h.initial
            .insert(EntityKey::customer(CustomerId(9)), live_row(1, "x"));
        h.effects.push(EffectRecord {
            at: SimTime::from_millis(8),
            customer: CustomerId(9),
            event: EventId(8),
        });
        let m = of_run(&h);
        // a v2 never reached the target: lost. a v1 was applied twice, b v1 once.
        assert_eq!((m.changes_committed, m.changes_lost), (3, 1));
        assert_eq!(m.applied_times, [1, 1, 0, 0]);
        // A welcome to a customer that had its welcome before the run.
        assert_eq!(m.doubled_effects, 1);
        assert_eq!(
            delivery_semantics(m.changes_lost, &m.applied_times, m.doubled_effects),
            "neither"
        );
    }

    #[test]
    fn semantics_classes_follow_losses_and_duplicates() {
        assert_eq!(delivery_semantics(0, &[5, 0, 0, 0], 0), "effectively-once");
        assert_eq!(delivery_semantics(0, &[5, 0, 0, 1], 0), "at-least-once");
        assert_eq!(delivery_semantics(0, &[5, 0, 0, 0], 2), "at-least-once");
        assert_eq!(delivery_semantics(3, &[5, 0, 0, 0], 0), "at-most-once");
    }

    #[test]
    fn spreads_merge_and_their_percentiles_never_pass_the_worst() {
        let mut s = Spread::of([3, 4, 30_000]);
        assert_eq!((s.p50, s.p99, s.max), (Some(5), Some(30_000), Some(30_000)));
        s.merge(&Spread::of([1]));
        assert_eq!((s.count(), s.p50, s.max), (4, Some(5), Some(30_000)));
        assert_eq!(Spread::of([]).p50, None);
    }
}
