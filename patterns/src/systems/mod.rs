//! The simulated systems every pattern is built from: the source (system of record),
//! the target (replica) and the broker.

pub mod broker;
pub mod source;
pub mod target;
