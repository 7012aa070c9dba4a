//! The variant registry: every built-in variant as a named preset of its pattern's
//! configuration, and variants defined at run time as a preset with settings
//! overridden (`faultline list --settings`).
//!
//! A variant is never a copy of a pattern: it is a name and a [`PatternConfig`] value.
//! Installing one registers its hosts in a [`World`], each running its side's services.

use std::sync::Mutex;

use faultline_sim::{FaultTarget, Profile, World, WorldError};

use crate::bugs::BugSet;
use crate::cdc::{self, CdcApply, CdcConfig, SnapshotMode};
use crate::connect::OFFSET_FLUSH_INTERVAL_MS;
use crate::consumer::{ConsumerConfig, DEFAULT_CONSUMER};
use crate::full_copy::{self, FullCopyConfig};
use crate::notify_pull::{self, NotifyConfig};
use crate::outbox::{self, OutboxConfig, RelayCursor, RelaySource};
use crate::push::{self, PushConfig};
use crate::queue::{self, PublishPoint, QueueConfig};
use crate::retry_queue::{RetryPolicy, DEFAULT_RETRY};
use crate::settings::{self, Override, Setting, SettingError, Value, SETTINGS};
use crate::systems;
use crate::systems::broker::{ProducerConfig, CONNECT_SOURCE_PRODUCER_IDEMPOTENT, KAFKA_PRODUCER};
use crate::systems::source::{OutboxEvents, SourceConfig, SyncPolicy, POSTGRES_LOG_RETENTION};
use crate::systems::target::{ApplyRule, WelcomeKey};
use crate::{hosts, run_source_with_api, Setup};

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
    /// A pattern written outside this crate ([`Pattern`], [`Variant::register`]).
    Custom(Custom),
}

/// A pattern written outside this crate: how it starts its sides over the shared parts
/// ([`Setup::open_source`], [`Setup::open_target`], the broker's `Producer` and
/// `run_consumers`, the world's RPC). faultline adds what every pattern has: the
/// notification service, the broker when listed, and the rows both sides start with.
/// See `examples/outbox-webhook` for a complete one.
pub trait Pattern: Send + Sync + 'static {
    /// Hosts it runs on besides the source and the target: [`hosts::BROKER`] (which
    /// faultline registers), or its own (which [`Pattern::install`] registers). Every
    /// host is crashable and has a disk.
    fn extra_hosts(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Whether the source writes an outbox message with each transaction (the outbox
    /// table a relay polls: `Source::outbox_unsent`, `Source::mark_sent`).
    fn source_outbox(&self) -> bool {
        false
    }

    /// Registers the source, the target and its own hosts in `world`, each a start
    /// function re-run on every restart.
    fn install(&self, world: &mut World, setup: &Setup) -> Result<(), WorldError>;
}

/// A registered [`Pattern`]; two are equal when they are the same registration.
#[derive(Clone, Copy)]
pub struct Custom(&'static dyn Pattern);

impl Custom {
    /// The pattern.
    pub fn pattern(&self) -> &'static dyn Pattern {
        self.0
    }
}

impl PartialEq for Custom {
    fn eq(&self, other: &Custom) -> bool {
        std::ptr::addr_eq(self.0, other.0)
    }
}

impl Eq for Custom {}

impl std::fmt::Debug for Custom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Custom(..)")
    }
}

/// A named, selectable variant: a built-in preset, or a preset with settings overridden.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// The CLI name.
    pub name: &'static str,
    /// One line on what it does.
    pub description: &'static str,
    /// Its configuration.
    pub config: PatternConfig,
    /// The built-in preset it starts from (its own name for a preset).
    pub preset: &'static str,
    /// The settings changed from the preset, in the order given; empty for a preset.
    pub overrides: &'static [Override],
}

/// A built-in preset.
const fn preset(name: &'static str, description: &'static str, config: PatternConfig) -> Variant {
    Variant {
        name,
        description,
        config,
        preset: name,
        overrides: &[],
    }
}

const FULL_COPY: FullCopyConfig = FullCopyConfig {
    welcome_key: WelcomeKey::Message,
    atomic_swap: true,
    period_ms: 1_000,
    row_write_ms: 1,
    snapshot_timeout_ms: 500,
};
/// Push calls go out from a pool of four concurrent calls, as an HTTP client's would.
const PUSH: PushConfig = PushConfig {
    welcome_key: WelcomeKey::Message,
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
    welcome_key: WelcomeKey::Message,
    rule: ApplyRule::Blind,
    dedup_window_ms: None,
    producer: KAFKA_PRODUCER,
    consumer: DEFAULT_CONSUMER,
};
const QUEUE: QueueConfig = QueueConfig {
    welcome_key: WelcomeKey::Message,
    rule: ApplyRule::Blind,
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
    welcome_key: WelcomeKey::Message,
    inbox_cleanup_after_ms: None,
    rule: ApplyRule::Blind,
    inbox: false,
    relay: RelaySource::PollTable,
    cursor: RelayCursor::Unsent,
    relay_instances: 1,
    relay_lease_ms: None,
    producer: KAFKA_PRODUCER,
    offset_flush_interval_ms: OFFSET_FLUSH_INTERVAL_MS,
    relay_poll_ms: 20,
    relay_batch_max: 32,
    log_retention: POSTGRES_LOG_RETENTION,
    events: OutboxEvents::PerAggregate,
    consumer: DEFAULT_CONSUMER,
};
const CDC: CdcConfig = CdcConfig {
    welcome_key: WelcomeKey::Message,
    inbox_cleanup_after_ms: None,
    rule: ApplyRule::Blind,
    apply: CdcApply::RowByRow,
    connector_poll_ms: 20,
    snapshot_signal_ms: None,
    snapshot_mode: SnapshotMode::Initial,
    log_retention: POSTGRES_LOG_RETENTION,
    producer: CONNECT_SOURCE_PRODUCER_IDEMPOTENT,
    offset_flush_interval_ms: OFFSET_FLUSH_INTERVAL_MS,
    consumer: DEFAULT_CONSUMER,
    tombstones_on_delete: true,
};

/// Every variant, in the order `faultline list` shows them.
pub const VARIANTS: &[Variant] = &[
        preset(
        "full-copy",
        "every second, copy a consistent snapshot into staging and swap it in atomically",
        PatternConfig::FullCopy(FULL_COPY),
    ),
        preset(
        "full-copy-inplace",
        "every second, copy a consistent snapshot by overwriting the target row by row",
        PatternConfig::FullCopy(FullCopyConfig { atomic_swap: false, ..FULL_COPY }),
    ),
        preset(
        "push",
        "after commit, PUT/DELETE each row to the target's REST API from 4 concurrent calls; in-memory retry",
        PatternConfig::Push(PUSH),
    ),
        preset(
        "push-versioned",
        "push, and the target rejects an image older than the version it holds",
        PatternConfig::Push(PushConfig { rule: ApplyRule::NewerVersion, ..PUSH }),
    ),
        preset(
        "push-ordered",
        "push from 4 concurrent calls, serialised per customer: a customer's calls go one at a time, in commit order",
        PatternConfig::Push(PUSH_ORDERED),
    ),
        preset(
        "push-ordered-versioned",
        "push-ordered, and the target rejects an image older than the version it holds",
        PatternConfig::Push(PushConfig { rule: ApplyRule::NewerVersion, ..PUSH_ORDERED }),
    ),
        preset(
        "push-lww",
        "push, and the target keeps the write with the later source wall-clock stamp (last writer wins)",
        PatternConfig::Push(PushConfig { rule: ApplyRule::LaterWallClock, ..PUSH }),
    ),
        preset(
        "notify-pull",
        "after commit, publish the row's key; the target fetches the current state from the source",
        PatternConfig::NotifyPull(NOTIFY),
    ),
        preset(
        "notify-pull-dedup",
        "notify-pull, collapsing each batch's notifications per key and fetching after a 50 ms window",
        PatternConfig::NotifyPull(NotifyConfig { dedup_window_ms: Some(50), ..NOTIFY }),
    ),
        preset(
        "queue-after-commit",
        "commit, then hand each row's data to the Kafka producer without waiting (it batches, sends and retries from memory)",
        PatternConfig::Queue(QUEUE),
    ),
        preset(
        "queue-fail-op",
        "publish each row's data inside the operation; a failed publish fails and rolls back the action",
        PatternConfig::Queue(QueueConfig {
        publish: PublishPoint::InOperation,
        producer: IN_REQUEST_PRODUCER,
        ..QUEUE
    }),
    ),
        preset(
        "outbox",
        "rows and outbox message commit together; a relay polls and publishes; the target applies every message",
        PatternConfig::Outbox(OUTBOX),
    ),
        preset(
        "outbox-inbox",
        "outbox, and the target keeps an inbox of processed ids in the apply's transaction (idempotent)",
        PatternConfig::Outbox(OutboxConfig { inbox: true, ..OUTBOX }),
    ),
        preset(
        "outbox-last-id",
        "outbox-inbox whose relay polls the ids above the last one it published; a transaction that took its id earlier and commits later is never published",
        PatternConfig::Outbox(OutboxConfig {
        inbox: true,
        cursor: RelayCursor::LastId,
        ..OUTBOX
    }),
    ),
        preset(
        "outbox-logtail",
        "outbox whose relay tails the source's commit log (Debezium's outbox event router on Kafka Connect: position flushed every 60 s)",
        PatternConfig::Outbox(OutboxConfig {
        relay: RelaySource::TailLog,
        producer: CONNECT_SOURCE_PRODUCER_IDEMPOTENT,
        ..OUTBOX
    }),
    ),
        preset(
        "cdc-row",
        "a connector tails the commit log and publishes one event per row; the target applies them one by one",
        PatternConfig::Cdc(CDC),
    ),
        preset(
        "cdc-tx",
        "cdc, and the target reassembles each transaction from its row events and applies it whole, once (transaction id in an inbox); one consumer instance reads every partition",
        PatternConfig::Cdc(CdcConfig {
            apply: CdcApply::Transaction,
            consumer: ConsumerConfig { instances: 1, ..DEFAULT_CONSUMER },
            ..CDC
        }),
    ),
];

impl PatternConfig {
    /// The topics a broker-based pattern uses, with their partitions: created before
    /// the run, as a deployment creates them.
    pub fn topics(&self) -> Vec<(String, u32)> {
        let topic = match self {
            PatternConfig::NotifyPull(_) => notify_pull::TOPIC,
            PatternConfig::Queue(_) => queue::TOPIC,
            PatternConfig::Outbox(_) => outbox::TOPIC,
            PatternConfig::Cdc(_) => cdc::TOPIC,
            PatternConfig::FullCopy(_) | PatternConfig::Push(_) | PatternConfig::Custom(_) => {
                return Vec::new()
            }
        };
        let Some(consumer) = self.consumer() else {
            return Vec::new();
        };
        let mut topics = vec![(topic.to_string(), consumer.partitions)];
        if consumer.error_policy == crate::consumer::ErrorPolicy::DeadLetter {
            topics.push((crate::consumer::dead_letter_topic(topic), 1));
        }
        topics
    }

    /// The target's consumer (and its topic's settings), for the broker-based patterns.
    pub fn consumer(&self) -> Option<ConsumerConfig> {
        match self {
            PatternConfig::NotifyPull(c) => Some(c.consumer),
            PatternConfig::Queue(c) => Some(c.consumer),
            PatternConfig::Outbox(c) => Some(c.consumer),
            PatternConfig::Cdc(c) => Some(c.consumer),
            PatternConfig::FullCopy(_) | PatternConfig::Push(_) | PatternConfig::Custom(_) => None,
        }
    }

    /// How the target takes incoming images, for the patterns whose target has a rule.
    pub fn apply_rule(&self) -> Option<ApplyRule> {
        match self {
            PatternConfig::FullCopy(_) => None,
            PatternConfig::Push(c) => Some(c.rule),
            PatternConfig::NotifyPull(c) => Some(c.rule),
            PatternConfig::Queue(c) => Some(c.rule),
            PatternConfig::Outbox(c) => Some(c.rule),
            PatternConfig::Cdc(c) => Some(c.rule),
            PatternConfig::Custom(_) => None,
        }
    }
}

/// Variants registered by code outside this crate, in registration order.
static REGISTERED: Mutex<Vec<&'static Variant>> = Mutex::new(Vec::new());

fn registered() -> Vec<&'static Variant> {
    REGISTERED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Variants defined at run time, kept for the life of the process: a run names its
/// variant by a `&'static Variant` and sweeps hand specs across threads. The same
/// definition given twice is the same variant, so the set grows only with the distinct
/// definitions a process reads (a suite's `[[variant]]` tables, `--set`).
static DEFINED: Mutex<Vec<&'static Variant>> = Mutex::new(Vec::new());

impl Variant {
    /// The preset called `name` (built in or registered), if any.
    pub fn by_name(name: &str) -> Option<&'static Variant> {
        VARIANTS
            .iter()
            .find(|v| v.name == name)
            .or_else(|| registered().into_iter().find(|v| v.name == name))
    }

    /// Every preset: the built-in ones, then the registered ones.
    pub fn all() -> Vec<&'static Variant> {
        VARIANTS.iter().chain(registered()).collect()
    }

    /// Makes a pattern written outside this crate a preset called `name`: from then
    /// on every command and suite of this process knows it (`examples/outbox-webhook`
    /// registers its own before handing over to `faultline::cli::main`). Registering
    /// the same pattern under the same name again is harmless.
    pub fn register(
        name: &str,
        description: &str,
        pattern: &'static dyn Pattern,
    ) -> Result<&'static Variant, SettingError> {
        let config = PatternConfig::Custom(Custom(pattern));
        if let Some(existing) = Variant::by_name(name).filter(|v| v.config == config) {
            return Ok(existing);
        }
        check_new_name(name)?;
        let name: &'static str = Box::leak(name.into());
        let variant: &'static Variant = Box::leak(Box::new(Variant {
            name,
            description: Box::leak(description.into()),
            config,
            preset: name,
            overrides: &[],
        }));
        REGISTERED.lock().unwrap_or_else(|p| p.into_inner()).push(variant);
        Ok(variant)
    }

    /// The preset called `preset` with `settings` (key, value as written) overridden,
    /// named `name`; the description says what changed unless one is given.
    pub fn define(
        name: &str,
        preset: &str,
        settings: &[(&str, &str)],
        description: Option<&str>,
    ) -> Result<&'static Variant, SettingError> {
        check_new_name(name)?;
        let base = Variant::by_name(preset).ok_or_else(|| SettingError::UnknownPreset {
            name: preset.to_string(),
        })?;
        let (config, overrides) = base.overridden(settings)?;
        let description = match description {
            Some(d) => d.to_string(),
            None if overrides.is_empty() => base.description.to_string(),
            None => described(base.name, &overrides),
        };
        Ok(intern(name, &description, config, base.name, overrides))
    }

    /// This variant with `settings` overridden, named after them
    /// (`outbox-inbox+producer.linger.ms=0`, a name [`Variant::resolve`] reads back);
    /// itself when there are none.
    pub fn with_settings(&'static self, settings: &[(&str, &str)]) -> Result<&'static Variant, SettingError> {
        if settings.is_empty() {
            return Ok(self);
        }
        let (config, overrides) = self.overridden(settings)?;
        let added = &overrides[self.overrides.len()..];
        let name = with_overrides(self.name, added);
        let description = if self.overrides.is_empty() {
            described(self.name, added)
        } else {
            format!("{}; and {}", self.description, changes(added))
        };
        Ok(intern(&name, &description, config, self.preset, overrides))
    }

    /// The variant a name stands for: a preset, one of `defined` (a suite's), or either
    /// followed by `+key=value` settings.
    pub fn resolve(name: &str, defined: &[&'static Variant]) -> Result<&'static Variant, SettingError> {
        let mut parts = name.split('+');
        let base_name = parts.next().unwrap_or_default();
        let base = defined
            .iter()
            .copied()
            .find(|v| v.name == base_name)
            .or_else(|| Variant::by_name(base_name))
            .ok_or_else(|| SettingError::UnknownPreset {
                name: base_name.to_string(),
            })?;
        let settings: Vec<(&str, &str)> = parts
            .map(|part| {
                part.split_once('=').ok_or_else(|| SettingError::Malformed {
                    part: part.to_string(),
                    name: name.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        base.with_settings(&settings)
    }

    /// A name that resolves to this variant without its suite: the preset and every
    /// override (`outbox-inbox+producer.linger.ms=0`), for repro commands and shrunk
    /// suites.
    pub fn portable_name(&self) -> String {
        with_overrides(self.preset, self.overrides)
    }

    /// The configuration with `settings` applied after this variant's own overrides,
    /// and all the overrides in canonical form.
    fn overridden(&self, settings: &[(&str, &str)]) -> Result<(PatternConfig, Vec<Override>), SettingError> {
        let mut config = self.config;
        let mut overrides: Vec<Override> = self.overrides.to_vec();
        for (key, text) in settings {
            let setting = Setting::by_key(key.trim()).ok_or_else(|| SettingError::UnknownSetting {
                key: key.trim().to_string(),
                preset: self.preset,
            })?;
            if overrides.iter().any(|o| o.key == setting.key) {
                return Err(SettingError::SetTwice { key: setting.key });
            }
            let value = setting.parse(text)?;
            if !setting.set(&mut config, value) {
                return Err(SettingError::NotApplicable {
                    key: setting.key,
                    preset: self.preset,
                });
            }
            overrides.push(Override {
                key: setting.key,
                value,
            });
        }
        settings::check(&config)?;
        Ok((config, overrides))
    }

    /// The settings this variant has, with their values, in registry order.
    pub fn settings(&self) -> Vec<(&'static Setting, Value)> {
        SETTINGS
            .iter()
            .filter_map(|s| s.get(&self.config).map(|v| (s, v)))
            .collect()
    }

    /// Every preset's name, for error messages.
    pub fn names() -> Vec<&'static str> {
        Variant::all().iter().map(|v| v.name).collect()
    }

    /// The hosts the variant runs on, as fault targets: all crashable, all with disks.
    pub fn hosts(&self) -> Vec<FaultTarget> {
        let mut names = vec![hosts::SOURCE, hosts::TARGET];
        if let Some(consumer) = self.config.consumer() {
            names.extend(
                hosts::TARGET_INSTANCES
                    .iter()
                    .take(consumer.instances as usize - 1),
            );
            names.extend(hosts::BROKERS.iter().take(consumer.cluster.brokers as usize));
        }
        match self.config {
            PatternConfig::FullCopy(_)
            | PatternConfig::Push(_)
            | PatternConfig::NotifyPull(_)
            | PatternConfig::Queue(_) => {}
            PatternConfig::Outbox(o) => {
                names.extend(hosts::RELAYS.iter().take(o.relay_instances as usize - 1));
            }
            PatternConfig::Cdc(_) => names.push(hosts::CONNECTOR),
            PatternConfig::Custom(custom) => names.extend(custom.0.extra_hosts()),
        }
        names
            .into_iter()
            .map(|name| FaultTarget {
                name: name.to_string(),
                crashable: true,
                has_disk: true,
                handles_inputs: name == hosts::TARGET || hosts::TARGET_INSTANCES.contains(&name),
                // The brokers are restarted one at a time by rolling restarts.
                cluster: hosts::BROKERS.contains(&name).then(|| "kafka".to_string()),
            })
            .collect()
    }

    /// Whether any of the variant's components reads a host's wall clock (a timestamp
    /// compared across hosts). Timers and periods run on each host's monotonic clock,
    /// which skew does not move; a variant that reads no wall clock cannot feel skew.
    pub fn reads_wall_clock(&self) -> bool {
        let relay_lease = matches!(self.config, PatternConfig::Outbox(o) if o.relay_lease_ms.is_some());
        relay_lease
            || self
                .source_config(SyncPolicy::OnCommit, 1, BugSet::NONE)
                .stamp_writes
    }

    /// Whether the variant can feel the faults of `profile`: every profile but one made
    /// of clock faults alone reaches every variant.
    pub fn feels(&self, profile: Profile) -> bool {
        profile != Profile::ClockSkew || self.reads_wall_clock()
    }

    /// How the variant fills an empty target (a `bootstrap` scenario): a full copy by its
    /// first copy, CDC by a snapshot, everything else by a one-off copy job beside it.
    pub fn bootstrap(&self) -> crate::bootstrap::Bootstrap {
        use crate::bootstrap::Bootstrap;
        match self.config {
            PatternConfig::FullCopy(_) => Bootstrap::FirstCopy,
            PatternConfig::Cdc(_) => Bootstrap::Snapshot,
            _ => Bootstrap::InitialCopy,
        }
    }

    /// The source configuration the variant needs, given the scenario's sync policy and
    /// concurrent transactions.
    pub fn source_config(&self, sync: SyncPolicy, workers: usize, bugs: BugSet) -> SourceConfig {
        // A log-tailing relay finds each message in its commit record: no table to poll.
        let outbox = match self.config {
            PatternConfig::Outbox(c) => c.relay == RelaySource::PollTable,
            PatternConfig::Custom(custom) => custom.0.source_outbox(),
            _ => false,
        };
        // Last-writer-wins needs the writer's clock on every image.
        let stamp_writes = self.config.apply_rule() == Some(ApplyRule::LaterWallClock);
        let log_retention = match self.config {
            PatternConfig::Outbox(c) => c.log_retention,
            PatternConfig::Cdc(c) => c.log_retention,
            _ => POSTGRES_LOG_RETENTION,
        };
        let outbox_events = match self.config {
            PatternConfig::Outbox(c) => c.events,
            _ => OutboxEvents::PerAggregate,
        };
        SourceConfig {
            sync,
            outbox,
            outbox_events,
            stamp_writes,
            workers,
            log_retention,
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
                for name in hosts::TARGET_INSTANCES
                    .iter()
                    .take(config.consumer.instances as usize - 1)
                {
                    host!(name, notify_pull::run_target, config);
                }
            }
            PatternConfig::Queue(config) => {
                host!(hosts::SOURCE, queue::run_source, config);
                host!(hosts::TARGET, queue::run_target, config);
                for name in hosts::TARGET_INSTANCES
                    .iter()
                    .take(config.consumer.instances as usize - 1)
                {
                    host!(name, queue::run_target, config);
                }
            }
            PatternConfig::Outbox(config) => {
                host!(hosts::SOURCE, outbox::run_source, config);
                host!(hosts::TARGET, outbox::run_target, config);
                for name in hosts::TARGET_INSTANCES
                    .iter()
                    .take(config.consumer.instances as usize - 1)
                {
                    host!(name, outbox::run_target, config);
                }
                for name in hosts::RELAYS.iter().take(config.relay_instances as usize - 1) {
                    let bugs = setup.bugs;
                    let recorder = setup.recorder.clone();
                    world.host(name, move |ctx| {
                        outbox::run_relay_instance(ctx, config, bugs, recorder.clone())
                    })?;
                }
            }
            PatternConfig::Cdc(config) => {
                world.host(hosts::SOURCE, {
                    let setup = setup.clone();
                    move |ctx| run_source_with_api(ctx, setup.clone())
                })?;
                host!(hosts::TARGET, cdc::run_target, config);
                for name in hosts::TARGET_INSTANCES
                    .iter()
                    .take(config.consumer.instances as usize - 1)
                {
                    host!(name, cdc::run_target, config);
                }
                let snapshot = setup.bootstrap == Some(crate::bootstrap::Bootstrap::Snapshot);
                let connector_setup = setup.clone();
                world.host(hosts::CONNECTOR, move |ctx| {
                    cdc::run_connector(ctx, connector_setup.clone(), config, snapshot)
                })?;
            }
            PatternConfig::Custom(custom) => custom.0.install(world, setup)?,
        }
        let recorder = setup.recorder.clone();
        world.host(hosts::NOTIFIER, move |ctx| {
            systems::notifier::run_notifier(ctx, recorder.clone())
        })?;
        if let Some(consumer) = self.config.consumer() {
            let cluster = consumer.cluster;
            let topics = self.config.topics();
            world.host(hosts::CONTROLLER, move |ctx| {
                systems::controller::run_controller(
                    ctx,
                    cluster.brokers,
                    cluster.unclean_leader_election,
                    topics.clone(),
                )
            })?;
            for name in hosts::BROKERS.iter().take(cluster.brokers as usize) {
                let bugs = setup.bugs;
                let kafka = setup.kafka.clone();
                world.host(name, move |ctx| {
                    systems::broker::run_broker(ctx, bugs, cluster, kafka.clone())
                })?;
            }
        }
        // Both sides start from the same rows, restored onto their disks, unless the
        // target is to be filled by the integration.
        let disk = |host| world.disk(host).expect("registered above");
        systems::source::install_base(disk(hosts::SOURCE), &setup.initial);
        let slots: &[&str] = match self.config {
            PatternConfig::Cdc(_) => &[cdc::SLOT],
            PatternConfig::Outbox(c) if c.relay == RelaySource::TailLog => &[outbox::SLOT],
            _ => &[],
        };
        systems::source::install_slots(disk(hosts::SOURCE), slots);
        if let Some(consumer) = self.config.consumer() {
            let topics = self.config.topics();
            for name in hosts::BROKERS.iter().take(consumer.cluster.brokers as usize) {
                systems::broker::install_logs(disk(name), &topics);
            }
        }
        if setup.bootstrap.is_none() {
            systems::target::install_base(disk(hosts::TARGET), &setup.initial);
        }
        Ok(())
    }
}

/// `NAME+key=value+...`: a name [`Variant::resolve`] reads back.
fn with_overrides(name: &str, overrides: &[Override]) -> String {
    std::iter::once(name.to_string())
        .chain(overrides.iter().map(|o| o.to_string()))
        .collect::<Vec<_>>()
        .join("+")
}

/// Refuses a name a new variant cannot take: a preset's, or one that is not plain
/// (`+`, `=` and `,` would not read back from a command line or a suite).
fn check_new_name(name: &str) -> Result<(), SettingError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let why = if Variant::by_name(name).is_some() {
        "it is a preset's name"
    } else if name.is_empty() || !name.chars().all(plain) {
        "a name is letters, digits, `-`, `_` and `.`"
    } else {
        return Ok(());
    };
    Err(SettingError::BadName {
        name: name.to_string(),
        why,
    })
}

/// "PRESET with KEY=VALUE, ...".
fn described(preset: &str, overrides: &[Override]) -> String {
    format!("{preset} with {}", changes(overrides))
}

fn changes(overrides: &[Override]) -> String {
    let changes: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
    changes.join(", ")
}

/// The one `&'static Variant` of a definition.
fn intern(
    name: &str,
    description: &str,
    config: PatternConfig,
    preset: &'static str,
    overrides: Vec<Override>,
) -> &'static Variant {
    let mut defined = DEFINED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let same = |v: &&&'static Variant| {
        v.name == name
            && v.description == description
            && v.config == config
            && v.preset == preset
            && v.overrides == overrides.as_slice()
    };
    if let Some(v) = defined.iter().find(same) {
        return v;
    }
    let variant: &'static Variant = Box::leak(Box::new(Variant {
        name: Box::leak(name.into()),
        description: Box::leak(description.into()),
        config,
        preset,
        overrides: Box::leak(overrides.into_boxed_slice()),
    }));
    defined.push(variant);
    variant
}
