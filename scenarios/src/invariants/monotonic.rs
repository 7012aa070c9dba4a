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
        .initial
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
                        out.push(Violation {
                            invariant: NAME,
                            kind: "regressed",
                            key: row.key.to_string(),
                            at: apply.at,
                            story: format!("target went back from {max} (exposed {when}) to {}", row.version),
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
