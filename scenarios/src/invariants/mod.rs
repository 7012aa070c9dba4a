//! Invariants: named properties of a run, each a pure function of the history that
//! returns its violations. The checkers never look inside a pattern: they see only what
//! the source committed and what the target exposed.

pub(crate) mod atomic_actions;
mod convergence;
mod effects;
mod liveness;
mod monotonic;
pub(crate) mod referential;
mod staleness;

pub use effects::unobserved_customers;
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
    /// The kinds of violation it reports (suites may expect one: `convergence/phantom`).
    pub kinds: &'static [&'static str],
    /// The checker.
    pub check: fn(&History) -> Vec<Violation>,
}

/// Every invariant, in the order reports show them.
pub const INVARIANTS: &[InvariantInfo] = &[
    InvariantInfo {
        name: convergence::NAME,
        description: "at quiesce the target's rows equal the source's durable rows (missing, stale, phantom, resurrected, divergent)",
        kinds: &["missing", "stale", "phantom", "resurrected", "divergent"],
        check: convergence::check,
    },
    InvariantInfo {
        name: monotonic::NAME,
        description: "per key, the versions the target exposes never go back",
        kinds: &["regressed", "rolled-back"],
        check: monotonic::check,
    },
    InvariantInfo {
        name: atomic_actions::NAME,
        description: "the target never exposes part of a business action",
        kinds: &["fractured"],
        check: atomic_actions::check,
    },
    InvariantInfo {
        name: referential::NAME,
        description: "the target never holds an address or contact without its customer",
        kinds: &["orphan"],
        check: referential::check,
    },
    InvariantInfo {
        name: effects::NAME,
        description: "every customer created at the source is welcomed exactly once",
        kinds: &["lost", "doubled", "unexpected"],
        check: effects::check,
    },
    InvariantInfo {
        name: staleness::NAME,
        description: "every source commit is visible at the target within the scenario's bound",
        kinds: &["late"],
        check: staleness::check,
    },
    InvariantInfo {
        name: liveness::NAME,
        description: "after the last fault heals, the target converges within the quiesce window",
        kinds: &["not-converged"],
        check: liveness::check,
    },
];

/// Runs every invariant over `history`.
pub fn check_all(history: &History) -> Vec<Violation> {
    INVARIANTS.iter().flat_map(|inv| (inv.check)(history)).collect()
}

/// Hand-built histories for checker tests.
#[cfg(test)]
pub(crate) mod testing {
    use faultline_patterns::domain::{fields, CustomerId, EntityKey, RowImage, Table, Version};
    use faultline_patterns::domain::{ActionId, TxId};
    use faultline_patterns::history::{ApplyRecord, CommitRecord, History, RowState, RowVersion};
    use faultline_sim::{EventId, SimTime};

    pub fn key(table: Table, id: u64) -> EntityKey {
        EntityKey {
            table,
            customer: CustomerId(id),
        }
    }

    pub fn live_row(v: u64, name: &str) -> RowState {
        RowState {
            version: Version(v),
            data: Some(fields(&[("name", name)])),
        }
    }

    pub fn tombstone(v: u64) -> RowState {
        RowState {
            version: Version(v),
            data: None,
        }
    }

    pub fn commit(history: &mut History, at_ms: u64, key: EntityKey, v: u64) {
        let tx = TxId(history.commits.len() as u64 + 1);
        history.commits.push(CommitRecord {
            tx,
            action: ActionId(tx.0),
            at: SimTime::from_millis(at_ms),
            rows: vec![RowImage {
                key,
                version: Version(v),
                data: None,
                written_at: None,
            }],
            event: EventId(at_ms),
        });
    }

    pub fn apply(history: &mut History, at_ms: u64, key: EntityKey, v: u64) {
        history.applies.push(ApplyRecord {
            at: SimTime::from_millis(at_ms),
            rows: vec![RowVersion {
                key,
                version: Version(v),
                deleted: false,
            }],
            event: EventId(1_000 + at_ms),
            recovery: false,
        });
    }
}
