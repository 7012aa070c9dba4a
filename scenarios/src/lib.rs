//! What runs and what must hold: scenarios and workloads, the invariants (pure functions
//! of the history), metrics, and the runner from seed to verdict.
//!
//! This crate knows no rendering: it returns plain data ([`runner::Outcome`]) that the
//! reports crate and the CLI present.

#![deny(missing_docs)]

pub mod agreement;
pub mod causes;
pub mod compare;
pub mod detection;
pub mod durable;
pub mod invariants;
pub mod kafka;
pub mod lineage;
pub mod magnitudes;
pub mod metrics;
pub mod requirements;
pub mod runner;
pub mod scenario;
pub mod shard;
pub mod shrink;
pub mod suite;
pub mod sweep;
pub mod verdict;
pub mod visibility;
pub mod workload;

pub use invariants::{InvariantInfo, Violation, INVARIANTS};
pub use metrics::Metrics;
pub use runner::{run, Faults, Outcome, RunOptions, RunSpec};
pub use scenario::Scenario;
