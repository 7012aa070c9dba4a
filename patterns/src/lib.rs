//! faultline's systems under test: the customer-master domain, the simulated source,
//! target and broker, and one module per integration pattern.
//!
//! A pattern *variant* is a name and a configuration value ([`PatternConfig`]); the
//! registry [`VARIANTS`] is the one place a variant is added. Installing a variant
//! registers its hosts in a [`faultline_sim::World`], each running the real tokio
//! services of its side. Systems report ground truth into the [`history::Recorder`].
//! This crate knows no checker: judging the history is `faultline-scenarios`' job.

#![deny(missing_docs)]

pub mod after_commit;
pub mod backoff;
pub mod bugs;
pub mod cdc;
pub mod connect;
pub mod consumer;
pub mod domain;
pub mod full_copy;
pub mod history;
pub mod notify_pull;
pub mod outbox;
pub mod push;
pub mod queue;
pub mod retry_queue;
pub mod systems;
pub mod windows;

use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{FaultTarget, HostCtx, Profile, SimTime, World, WorldError};

use bugs::BugSet;
use cdc::{CdcApply, CdcConfig};
use connect::OFFSET_FLUSH_INTERVAL_MS;
use consumer::DEFAULT_CONSUMER;
use domain::ActionRequest;
use full_copy::FullCopyConfig;
use history::{Recorder, Rows};
use notify_pull::NotifyConfig;
use outbox::{OutboxConfig, RelaySource};
use push::PushConfig;
use queue::{PublishPoint, QueueConfig};
use retry_queue::{RetryPolicy, DEFAULT_RETRY};
use systems::broker::{ProducerConfig, CONNECT_SOURCE_PRODUCER_IDEMPOTENT, KAFKA_PRODUCER};
use systems::source::Source;
use systems::source::{SourceConfig, SyncPolicy};
use systems::target::{ApplyRule, EffectTrigger, Target, TargetConfig};

/// Host names every pattern uses.
pub mod hosts {
    /// The system of record.
    pub const SOURCE: &str = "source";
    /// The replica.
    pub const TARGET: &str = "target";
    /// The message broker.
    pub const BROKER: &str = "broker";
    /// The CDC connector.
    pub const CONNECTOR: &str = "connector";
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
    /// Rows both sides start with, written to their disks before the run.
    pub initial: Rc<Rows>,
    /// The workload: each action at its instant.
    pub schedule: Rc<Vec<(SimTime, ActionRequest)>>,
    /// The source's durability and outbox settings.
    pub source: SourceConfig,
    /// Planted bugs switched on for this run.
    pub bugs: BugSet,
}

impl Setup {
    /// Opens the source on this host (replaying its log) and starts its periodic sync,
    /// when its policy has one.
    pub async fn open_source(&self, ctx: &HostCtx) -> Source {
        let source = Source::recover(ctx, self.source, self.recorder.clone()).await;
        let syncer = source.clone();
        tokio::task::spawn_local(async move { syncer.run_sync_loop().await });
        source
    }

    /// Opens the target on this host (replaying its log) with the run's planted bugs.
    pub async fn open_target(
        &self,
        ctx: &HostCtx,
        rule: ApplyRule,
        inbox: bool,
        effects: EffectTrigger,
    ) -> Target {
        let config = TargetConfig {
            rule,
            inbox,
            effects,
            bugs: self.bugs,
        };
        Target::recover(ctx, config, self.recorder.clone()).await
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

/// A pattern with its variant's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternConfig {
    /// Periodic batch copy of a consistent snapshot.
    FullCopy(FullCopyConfig),
    /// Online push over REST.
    Push(PushConfig),
    /// Key-only notification, then a fetch of the current state.
    NotifyPull(NotifyConfig),
    /// Entity data in messages (dual write).
    Queue(QueueConfig),
    /// Transactional outbox through the broker.
    Outbox(OutboxConfig),
    /// Row-level change data capture through the broker.
    Cdc(CdcConfig),
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

const FULL_COPY: FullCopyConfig = FullCopyConfig {
    atomic_swap: true,
    period_ms: 1_000,
    row_write_ms: 1,
    snapshot_timeout_ms: 500,
};
/// Push calls go out from a pool of four concurrent calls, as an HTTP client's would.
const PUSH: PushConfig = PushConfig {
    rule: ApplyRule::Blind,
    retry: RetryPolicy {
        concurrency: 4,
        ..DEFAULT_RETRY
    },
};
/// The same pool, with calls serialised per customer: a customer's next call waits for
/// its previous one (as a webhook sender orders per endpoint and entity).
const PUSH_ORDERED: PushConfig = PushConfig {
    retry: RetryPolicy {
        per_key_order: true,
        ..PUSH.retry
    },
    ..PUSH
};
const NOTIFY: NotifyConfig = NotifyConfig {
    dedup_window_ms: None,
    producer: KAFKA_PRODUCER,
    consumer: DEFAULT_CONSUMER,
};
const QUEUE: QueueConfig = QueueConfig {
    publish: PublishPoint::AfterCommit,
    producer: KAFKA_PRODUCER,
    consumer: DEFAULT_CONSUMER,
};
/// A publish inside a request waits for its ack only as long as a request may take: a
/// team that sends synchronously in a request handler sets `delivery.timeout.ms` (and
/// `request.timeout.ms` under it) to about a second, not the 120 s default.
const IN_REQUEST_PRODUCER: ProducerConfig = ProducerConfig {
    delivery_timeout_ms: 1_000,
    ..KAFKA_PRODUCER
};
const OUTBOX: OutboxConfig = OutboxConfig {
    inbox: false,
    relay: RelaySource::PollTable,
    producer: KAFKA_PRODUCER,
    offset_flush_interval_ms: OFFSET_FLUSH_INTERVAL_MS,
    relay_poll_ms: 20,
    relay_batch_max: 32,
    consumer: DEFAULT_CONSUMER,
};
const CDC: CdcConfig = CdcConfig {
    apply: CdcApply::RowByRow,
    connector_poll_ms: 20,
    producer: CONNECT_SOURCE_PRODUCER_IDEMPOTENT,
    offset_flush_interval_ms: OFFSET_FLUSH_INTERVAL_MS,
    consumer: DEFAULT_CONSUMER,
};

/// Every variant, in the order `faultline list` shows them.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "full-copy",
        description: "every second, copy a consistent snapshot into staging and swap it in atomically",
        config: PatternConfig::FullCopy(FULL_COPY),
    },
    Variant {
        name: "full-copy-inplace",
        description: "every second, copy a consistent snapshot by overwriting the target row by row",
        config: PatternConfig::FullCopy(FullCopyConfig { atomic_swap: false, ..FULL_COPY }),
    },
    Variant {
        name: "push",
        description: "after commit, PUT/DELETE each row to the target's REST API from 4 concurrent calls; in-memory retry",
        config: PatternConfig::Push(PUSH),
    },
    Variant {
        name: "push-versioned",
        description: "push, and the target rejects an image older than the version it holds",
        config: PatternConfig::Push(PushConfig { rule: ApplyRule::NewerVersion, ..PUSH }),
    },
    Variant {
        name: "push-ordered",
        description: "push from 4 concurrent calls, serialised per customer: a customer's calls go one at a time, in commit order",
        config: PatternConfig::Push(PUSH_ORDERED),
    },
    Variant {
        name: "push-ordered-versioned",
        description: "push-ordered, and the target rejects an image older than the version it holds",
        config: PatternConfig::Push(PushConfig { rule: ApplyRule::NewerVersion, ..PUSH_ORDERED }),
    },
    Variant {
        name: "push-lww",
        description: "push, and the target keeps the write with the later source wall-clock stamp (last writer wins)",
        config: PatternConfig::Push(PushConfig { rule: ApplyRule::LaterWallClock, ..PUSH }),
    },
    Variant {
        name: "notify-pull",
        description: "after commit, publish the row's key; the target fetches the current state from the source",
        config: PatternConfig::NotifyPull(NOTIFY),
    },
    Variant {
        name: "notify-pull-dedup",
        description: "notify-pull, collapsing each batch's notifications per key and fetching after a 50 ms window",
        config: PatternConfig::NotifyPull(NotifyConfig { dedup_window_ms: Some(50), ..NOTIFY }),
    },
    Variant {
        name: "queue-after-commit",
        description: "commit, then hand each row's data to the Kafka producer without waiting (it batches, sends and retries from memory)",
        config: PatternConfig::Queue(QUEUE),
    },
    Variant {
        name: "queue-fail-op",
        description: "publish each row's data inside the operation; a failed publish fails and rolls back the action",
        config: PatternConfig::Queue(QueueConfig {
            publish: PublishPoint::InOperation,
            producer: IN_REQUEST_PRODUCER,
            ..QUEUE
        }),
    },
    Variant {
        name: "outbox",
        description: "rows and outbox message commit together; a relay polls and publishes; the target applies every message",
        config: PatternConfig::Outbox(OUTBOX),
    },
    Variant {
        name: "outbox-inbox",
        description: "outbox, and the target keeps an inbox of processed ids in the apply's transaction (idempotent)",
        config: PatternConfig::Outbox(OutboxConfig { inbox: true, ..OUTBOX }),
    },
    Variant {
        name: "outbox-logtail",
        description: "outbox whose relay tails the source's commit log (Debezium's outbox event router on Kafka Connect: position flushed every 60 s)",
        config: PatternConfig::Outbox(OutboxConfig {
            relay: RelaySource::TailLog,
            producer: CONNECT_SOURCE_PRODUCER_IDEMPOTENT,
            ..OUTBOX
        }),
    },
    Variant {
        name: "cdc-row",
        description: "a connector tails the commit log and publishes one event per row; the target applies them one by one",
        config: PatternConfig::Cdc(CDC),
    },
    Variant {
        name: "cdc-tx",
        description: "cdc, and the target reassembles each transaction from its row events and applies it whole, once (transaction id in an inbox)",
        config: PatternConfig::Cdc(CdcConfig { apply: CdcApply::Transaction, ..CDC }),
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
        match self.config {
            PatternConfig::FullCopy(_) | PatternConfig::Push(_) => {}
            PatternConfig::NotifyPull(_) | PatternConfig::Queue(_) | PatternConfig::Outbox(_) => {
                names.push(hosts::BROKER)
            }
            PatternConfig::Cdc(_) => names.extend([hosts::BROKER, hosts::CONNECTOR]),
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

    /// Whether any of the variant's components reads a host's wall clock (a timestamp
    /// compared across hosts). Timers and periods run on each host's monotonic clock,
    /// which skew does not move; a variant that reads no wall clock cannot feel skew.
    pub fn reads_wall_clock(&self) -> bool {
        self.source_config(SyncPolicy::OnCommit, BugSet::NONE)
            .stamp_writes
    }

    /// Whether the variant can feel the faults of `profile`: every profile but one made
    /// of clock faults alone reaches every variant.
    pub fn feels(&self, profile: Profile) -> bool {
        profile != Profile::ClockSkew || self.reads_wall_clock()
    }

    /// The source configuration the variant needs, given the scenario's sync policy.
    pub fn source_config(&self, sync: SyncPolicy, bugs: BugSet) -> SourceConfig {
        // A log-tailing relay finds each message in its commit record: no table to poll.
        let outbox = matches!(
            self.config,
            PatternConfig::Outbox(OutboxConfig {
                relay: RelaySource::PollTable,
                ..
            })
        );
        // Last-writer-wins needs the writer's clock on every image.
        let stamp_writes = matches!(
            self.config,
            PatternConfig::Push(PushConfig {
                rule: ApplyRule::LaterWallClock,
                ..
            })
        );
        SourceConfig {
            sync,
            outbox,
            stamp_writes,
            bugs,
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
            PatternConfig::FullCopy(config) => {
                world.host(hosts::SOURCE, {
                    let setup = setup.clone();
                    move |ctx| run_source_with_api(ctx, setup.clone())
                })?;
                host!(hosts::TARGET, full_copy::run_target, config);
            }
            PatternConfig::Push(config) => {
                host!(hosts::SOURCE, push::run_source, config);
                host!(hosts::TARGET, push::run_target, config);
            }
            PatternConfig::NotifyPull(config) => {
                host!(hosts::SOURCE, notify_pull::run_source, config);
                host!(hosts::TARGET, notify_pull::run_target, config);
            }
            PatternConfig::Queue(config) => {
                host!(hosts::SOURCE, queue::run_source, config);
                host!(hosts::TARGET, queue::run_target, config);
            }
            PatternConfig::Outbox(config) => {
                host!(hosts::SOURCE, outbox::run_source, config);
                host!(hosts::TARGET, outbox::run_target, config);
            }
            PatternConfig::Cdc(config) => {
                world.host(hosts::SOURCE, {
                    let setup = setup.clone();
                    move |ctx| run_source_with_api(ctx, setup.clone())
                })?;
                host!(hosts::TARGET, cdc::run_target, config);
                let bugs = setup.bugs;
                world.host(hosts::CONNECTOR, move |ctx| cdc::run_connector(ctx, config, bugs))?;
            }
        }
        let recorder = setup.recorder.clone();
        world.host(hosts::NOTIFIER, move |ctx| {
            systems::notifier::run_notifier(ctx, recorder.clone())
        })?;
        if self.hosts().iter().any(|h| h.name == hosts::BROKER) {
            let bugs = setup.bugs;
            world.host(hosts::BROKER, move |ctx| systems::broker::run_broker(ctx, bugs))?;
        }
        // Both sides start from the same rows, restored onto their disks.
        let disk = |host| world.disk(host).expect("registered above");
        systems::source::install_base(disk(hosts::SOURCE), &setup.initial);
        systems::target::install_base(disk(hosts::TARGET), &setup.initial);
        Ok(())
    }
}
