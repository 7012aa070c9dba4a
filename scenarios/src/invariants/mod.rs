//! Invariants: named properties of a run, each a pure function of the history that
//! returns its violations. The checkers never look inside a pattern: they see only what
//! the source committed and what the target exposed.

mod convergence;
mod monotonic;

use faultline_patterns::history::History;
use faultline_sim::{EventId, SimTime};
use serde::Serialize;

/// One broken promise, with its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The invariant it breaks.
    pub invariant: &'static str,
    /// Which way it breaks (e.g. `missing`, `stale`).
    pub kind: &'static str,
    /// The row it is about.
    pub key: String,
    /// The first simulated instant it was visible.
    #[serde(rename = "at_ms", serialize_with = "as_millis")]
    pub at: SimTime,
    /// What happened, for a person.
    pub story: String,
    /// Trace events that explain it (source commit, target applies).
    pub evidence: Vec<EventId>,
}

fn as_millis<S: serde::Serializer>(t: &SimTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.as_millis())
}

/// A named invariant.
pub struct InvariantInfo {
    /// Its name.
    pub name: &'static str,
    /// What must hold, in one line.
    pub description: &'static str,
    /// The checker.
    pub check: fn(&History) -> Vec<Violation>,
}

/// Every invariant, in the order reports show them.
pub const INVARIANTS: &[InvariantInfo] = &[
    InvariantInfo {
        name: convergence::NAME,
        description: "at quiesce the target's rows equal the source's durable rows (missing, stale, phantom, resurrected, divergent)",
        check: convergence::check,
    },
    InvariantInfo {
        name: monotonic::NAME,
        description: "per key, the versions the target exposes never go back",
        check: monotonic::check,
    },
];

/// Runs every invariant over `history`.
pub fn check_all(history: &History) -> Vec<Violation> {
    INVARIANTS.iter().flat_map(|inv| (inv.check)(history)).collect()
}
