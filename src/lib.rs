//! faultline: a deterministic simulation testbed for data-integration patterns.
//!
//! The binary is a thin CLI ([`cli`]) over the library crates, re-exported here:
//! [`sim`] (the world), [`patterns`] (the systems and patterns), [`scenarios`]
//! (workloads, invariants, the runner), [`reports`] (the renderers). A crate with
//! patterns of its own registers them and runs [`cli::main`]: see
//! `examples/outbox-webhook`.

// The CLI names the crates as a user of the library does: `faultline::patterns::...`.
extern crate self as faultline;

pub mod cli;

pub use faultline_patterns as patterns;
pub use faultline_reports as reports;
pub use faultline_scenarios as scenarios;
pub use faultline_sim as sim;
