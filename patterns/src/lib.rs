//! faultline's systems under test: the customer-master domain, the simulated source,
//! target and broker, and one module per integration pattern.
//!
//! A pattern *variant* is a name and a configuration value ([`PatternConfig`]); the
//! registry [`VARIANTS`] is the one place a variant is added. Installing a variant
//! registers its hosts in a [`faultline_sim::World`], each running the real tokio
//! services of its side. Systems report ground truth into the [`history::Recorder`].
//! This crate knows no checker: judging the history is `faultline-scenarios`' job.

#![deny(missing_docs)]

pub mod domain;
pub mod history;
pub mod outbox;
pub mod push;
pub mod systems;

use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{FaultTarget, SimTime, World, WorldError};

use domain::ActionRequest;
use history::{Recorder, Rows};
use outbox::OutboxConfig;
use push::PushConfig;
use systems::source::{SourceConfig, SyncPolicy};

/// Host names every pattern uses.
pub mod hosts {
    /// The system of record.
    pub const SOURCE: &str = "source";
    /// The replica.
    pub const TARGET: &str = "target";
    /// The message broker.
    pub const BROKER: &str = "broker";
}

/// How long an integration call waits for its answer.
pub const RPC_TIMEOUT: Duration = Duration::from_millis(250);

/// What every pattern needs to run: the ground-truth recorder, the rows both sides
/// start with, the workload's schedule, and the source's configuration.
#[derive(Clone)]
pub struct Setup {
    /// Where systems record the history.
    pub recorder: Recorder,
    /// Rows both sides hold at the start.
    pub initial: Rc<Rows>,
    /// The workload: each action at its instant.
    pub schedule: Rc<Vec<(SimTime, ActionRequest)>>,
    /// The source's durability and outbox settings.
    pub source: SourceConfig,
}

/// A pattern with its variant's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternConfig {
    /// Online push over REST.
    Push(PushConfig),
    /// Transactional outbox through the broker.
    Outbox(OutboxConfig),
}

/// A named, selectable variant.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// The CLI name.
    pub name: &'static str,
    /// One line on what it does.
    pub description: &'static str,
    /// Its configuration.
    pub config: PatternConfig,
}

const PUSH: PushConfig = PushConfig {
    version_check: false,
    attempts_max: 8,
    backoff_initial_ms: 20,
    backoff_max_ms: 500,
    queue_max: 10_000,
};

const OUTBOX: OutboxConfig = OutboxConfig {
    inbox: true,
    partitions: 4,
    poll_ms: 20,
    relay_batch_max: 32,
    retry_ms: 50,
};

/// Every variant, in the order `faultline list` shows them.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "push",
        description: "after commit, PUT/DELETE each row to the target's REST API; in-memory retry, lost on source crash",
        config: PatternConfig::Push(PUSH),
    },
    Variant {
        name: "outbox-inbox",
        description: "rows and outbox message commit together; a relay publishes; the target's inbox makes applies idempotent",
        config: PatternConfig::Outbox(OUTBOX),
    },
];

impl Variant {
    /// The variant called `name`, if any.
    pub fn by_name(name: &str) -> Option<&'static Variant> {
        VARIANTS.iter().find(|v| v.name == name)
    }

    /// Every variant name, for error messages.
    pub fn names() -> Vec<&'static str> {
        VARIANTS.iter().map(|v| v.name).collect()
    }

    /// The hosts the variant runs on, as fault targets: all crashable, all with disks.
    pub fn hosts(&self) -> Vec<FaultTarget> {
        let mut names = vec![hosts::SOURCE, hosts::TARGET];
        if matches!(self.config, PatternConfig::Outbox(_)) {
            names.push(hosts::BROKER);
        }
        names
            .into_iter()
            .map(|name| FaultTarget {
                name: name.to_string(),
                crashable: true,
                has_disk: true,
            })
            .collect()
    }

    /// The source configuration the variant needs, given the scenario's sync policy.
    pub fn source_config(&self, sync: SyncPolicy) -> SourceConfig {
        SourceConfig {
            sync,
            outbox: matches!(self.config, PatternConfig::Outbox(_)),
        }
    }

    /// Registers the variant's hosts in `world`.
    pub fn install(&self, world: &mut World, setup: &Setup) -> Result<(), WorldError> {
        macro_rules! host {
            ($name:expr, $run:path, $config:expr) => {{
                let setup = setup.clone();
                let config = $config;
                world.host($name, move |ctx| $run(ctx, setup.clone(), config))?;
            }};
        }
        match self.config {
            PatternConfig::Push(config) => {
                host!(hosts::SOURCE, push::run_source, config);
                host!(hosts::TARGET, push::run_target, config);
            }
            PatternConfig::Outbox(config) => {
                host!(hosts::SOURCE, outbox::run_source, config);
                host!(hosts::TARGET, outbox::run_target, config);
                world.host(hosts::BROKER, systems::broker::run_broker)?;
            }
        }
        Ok(())
    }
}
