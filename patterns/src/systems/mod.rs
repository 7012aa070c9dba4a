//! The simulated systems every pattern is built from: the source (system of record),
//! the target (replica), the broker, and the notification service the target's side
//! effects go to.

pub mod broker;
pub mod notifier;
pub mod source;
pub mod target;
