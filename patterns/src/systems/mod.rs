//! The simulated systems every pattern is built from: the source (system of record),
//! the target (replica), the Kafka cluster (brokers, controller, producer), and the
//! notification service the target's side effects go to.

pub mod broker;
pub mod controller;
pub mod group;
pub mod kafka_progress;
pub mod notifier;
pub mod producer;
pub mod source;
pub mod target;
pub mod target_db;
