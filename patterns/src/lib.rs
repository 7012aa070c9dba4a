//! faultline's systems under test: the customer-master domain, the simulated source,
//! target and broker, and one module per integration pattern.
//!
//! A pattern *variant* is a name and a configuration value ([`PatternConfig`]): a preset
//! in the registry ([`variants`]), or a preset with [`settings`] overridden. Installing a variant
//! registers its hosts in a [`faultline_sim::World`], each running the real tokio
//! services of its side. Systems report ground truth into the [`history::Recorder`].
//! This crate knows no checker: judging the history is `faultline-scenarios`' job.

#![deny(missing_docs)]

pub mod after_commit;
pub mod backoff;
pub mod bootstrap;
pub mod bugs;
pub mod cdc;
pub mod connect;
pub mod consumer;
pub mod domain;
pub mod full_copy;
pub mod history;
pub mod keyed_locks;
pub mod notify_pull;
pub mod outbox;
pub mod push;
pub mod queue;
pub mod retry_queue;
pub mod settings;
pub mod systems;
pub mod variants;
pub mod windows;

use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{HostCtx, SimTime};

use bugs::BugSet;
use domain::ActionRequest;
use history::{Recorder, Rows};
use systems::source::{Source, SourceConfig};
use systems::target::{Target, TargetConfig};
use systems::target_db::TargetHandle;

pub use variants::{PatternConfig, Variant, VARIANTS};

/// Host names every pattern uses.
pub mod hosts {
    /// The system of record.
    pub const SOURCE: &str = "source";
    /// The replica, and the first instance of the target's service beside it.
    pub const TARGET: &str = "target";
    /// Further instances of the target's service (consumer group members), reaching
    /// the target's database over the network.
    pub const TARGET_INSTANCES: [&str; 3] = ["target-2", "target-3", "target-4"];
    /// The Kafka brokers, `broker-1` up to the cluster's size.
    pub const BROKERS: [&str; 5] = crate::systems::broker::BROKER_HOSTS;
    /// The Kafka cluster's controller (outside the fault profiles, like the notifier).
    pub const CONTROLLER: &str = crate::systems::controller::CONTROLLER;
    /// The CDC connector.
    pub const CONNECTOR: &str = "connector";
    /// The outbox relay's further instances (the first runs on the source's host):
    /// other application instances, reaching the source's database over the network.
    pub const RELAYS: [&str; 3] = ["relay-2", "relay-3", "relay-4"];
    /// The notification service the target's welcomes go to (outside the system under
    /// test: not a fault target).
    pub const NOTIFIER: &str = "notifier";
}

/// How long an integration call waits for its answer.
pub const RPC_TIMEOUT: Duration = Duration::from_millis(250);

/// What every pattern needs to run: the ground-truth recorder, the rows both sides
/// start with, the workload's schedule, and the source's configuration.
#[derive(Clone)]
pub struct Setup {
    /// Where systems record the history.
    pub recorder: Recorder,
    /// Rows the source starts with, written to its disk before the run; the target's
    /// disk gets them too unless the run is a bootstrap.
    pub initial: Rc<Rows>,
    /// How the pattern fills the target, when it starts empty (a `bootstrap`
    /// scenario); `None`: it starts with the source's rows.
    pub bootstrap: Option<bootstrap::Bootstrap>,
    /// The workload: each action at its instant.
    pub schedule: Rc<Vec<(SimTime, ActionRequest)>>,
    /// The source's durability and outbox settings.
    pub source: SourceConfig,
    /// Planted bugs switched on for this run.
    pub bugs: BugSet,
    /// The run's view of its Kafka stage, which its brokers and consumers report into
    /// (for ending a run that can no longer progress).
    pub kafka: systems::kafka_progress::KafkaProgress,
}

impl Setup {
    /// Opens the source on this host (replaying its log) and starts its periodic sync
    /// and checkpoints, when its policy and log retention have them.
    pub async fn open_source(&self, ctx: &HostCtx) -> Source {
        let source = Source::recover(ctx, self.source, self.recorder.clone()).await;
        let syncer = source.clone();
        tokio::task::spawn_local(async move { syncer.run_sync_loop().await });
        let checkpointer = source.clone();
        tokio::task::spawn_local(async move { checkpointer.run_checkpoints().await });
        source
    }

    /// Opens the target on this host (replaying its log) configured as `config` says,
    /// with the run's planted bugs; in a bootstrap by a one-off copy, starts the copy
    /// job beside it until the copy is done.
    pub async fn open_target(&self, ctx: &HostCtx, config: TargetConfig) -> Target {
        let config = TargetConfig {
            bugs: self.bugs,
            ..config
        };
        let target = Target::recover(ctx, config, self.recorder.clone()).await;
        if self.bootstrap == Some(bootstrap::Bootstrap::InitialCopy) && !target.is_bootstrapped() {
            target.report_bootstrap_progress();
            tokio::task::spawn_local(bootstrap::initial_copy(ctx.clone(), target.clone()));
        }
        target
    }

    /// The target as this instance of the target's service reaches it: on the
    /// database's host, the target opened here (serving the other `instances - 1`
    /// over the network); elsewhere, that database over the network.
    pub async fn target_handle(&self, ctx: &HostCtx, config: TargetConfig, instances: u32) -> TargetHandle {
        if ctx.name() != hosts::TARGET {
            return TargetHandle::remote(ctx, self.bugs);
        }
        let target = self.open_target(ctx, config).await;
        if instances > 1 {
            tokio::task::spawn_local(systems::target_db::serve_database(ctx.clone(), target.clone()));
        }
        TargetHandle::Local(target)
    }

    /// Serves the source's API on this host when the pattern reads the source over the
    /// network (`pattern_reads`), or a bootstrap's copy job does.
    pub fn serve_source_api(&self, ctx: &HostCtx, source: &Source, pattern_reads: bool) {
        if pattern_reads || self.bootstrap == Some(bootstrap::Bootstrap::InitialCopy) {
            tokio::task::spawn_local(systems::source::serve_api(ctx.clone(), source.clone()));
        }
    }
}

/// The source side of the patterns whose other side reads the source (full copy, CDC):
/// the workload, and the source's API beside it.
pub async fn run_source_with_api(ctx: HostCtx, setup: Setup) -> faultline_sim::HostResult {
    let source = setup.open_source(&ctx).await;
    let api = tokio::task::spawn_local(systems::source::serve_api(ctx.clone(), source.clone()));
    source
        .run_workload(Rc::clone(&setup.schedule), None, |_| {})
        .await;
    api.await??;
    Ok(())
}
