//! faultline: a deterministic simulation testbed for data-integration patterns.
//!
//! The binary is a thin CLI over the library crates, re-exported here:
//! [`sim`] (the world), [`patterns`] (the systems and patterns), [`scenarios`]
//! (workloads, invariants, the runner).

pub use faultline_patterns as patterns;
pub use faultline_scenarios as scenarios;
pub use faultline_sim as sim;
