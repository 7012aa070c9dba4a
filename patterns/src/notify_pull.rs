//! Notification plus iterative pull: after commit the source publishes a notification
//! that carries only a row's key; the target consumes it, fetches the row's current
//! state from the source's REST API, stores it, then commits its offset.
//!
//! The source hands each notification to the Kafka producer after the commit
//! ([`AfterCommitPublisher`]), so a crash loses what the producer holds unacknowledged. Each row is fetched on its own, so the rows of one action arrive at
//! different moments (and a fetch can see a later state than the one notified).
//! `notify-pull-dedup` collapses the notifications of a fetched batch into one fetch per
//! key, and waits a window before fetching so that the next batch gathers what arrives
//! meanwhile.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use faultline_sim::{HostCtx, RpcClient};
use serde::{Deserialize, Serialize};

use crate::after_commit::AfterCommitPublisher;
use crate::consumer::{run_consumers, ConsumerConfig, Handled, Handler};
use crate::domain::{EntityKey, RowImage};
use crate::outbox::partition_of;
use crate::systems::broker::{BrokerRecord, Producer, ProducerConfig, PRODUCER_REQUEST_TIMEOUT};
use crate::systems::source::{SourceRequest, SourceResponse, SOURCE_API_PORT};
use crate::systems::target::{ApplyRule, EffectTrigger, TargetConfig, WelcomeKey};
use crate::systems::target_db::TargetHandle;
use crate::{Setup, RPC_TIMEOUT};

/// The topic notifications go to.
pub const TOPIC: &str = "customer-notifications";

/// How the notify-pull integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The key the target's welcomes carry (`target.welcome.key`).
    pub welcome_key: WelcomeKey,
    /// Which incoming images the target takes (`target.apply.rule`).
    pub rule: ApplyRule,
    /// Collapse each batch's notifications per key and wait this long before fetching;
    /// `None` fetches once per notification.
    pub dedup_window_ms: Option<u64>,
    /// The source's Kafka producer.
    pub producer: ProducerConfig,
    /// How the target consumes.
    pub consumer: ConsumerConfig,
}

/// "Something changed, come and fetch it."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The row that changed.
    pub key: EntityKey,
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "notify {}", self.key)
    }
}

/// The source side: run the workload and the source's REST API, notify after commits.
pub async fn run_source(ctx: HostCtx, setup: Setup, config: NotifyConfig) -> faultline_sim::HostResult {
    let source = setup.open_source(&ctx).await;
    setup.serve_source_api(&ctx, &source, true);
    let publisher = AfterCommitPublisher::new(
        &ctx,
        Producer::new(
            &ctx,
            PRODUCER_REQUEST_TIMEOUT,
            config.producer,
            config.consumer.cluster.brokers,
        )
        .recorded_by(&setup.recorder),
    );
    let partitions = config.consumer.partitions;
    source
        .run_workload(setup.schedule.clone(), None, move |commit| {
            for row in &commit.rows {
                let n = Notification { key: row.key };
                let payload = serde_json::to_string(&n).expect("notifications serialise");
                let partition = partition_of(n.key.customer, partitions);
                publisher.publish(TOPIC, partition, n.key.to_string(), payload, n.to_string());
            }
        })
        .await;
    std::future::pending::<()>().await;
    Ok(())
}

/// Fetches the notified rows from the source and stores them.
struct Pull {
    source: RpcClient<SourceRequest, SourceResponse>,
    target: TargetHandle,
    window: Option<Duration>,
    pending: BTreeSet<EntityKey>,
}

impl Pull {
    async fn fetch_and_store(&self, key: EntityKey) -> Result<(), ()> {
        match self.source.call(&SourceRequest::Read(key)).await {
            Ok(SourceResponse::Row(Some(state))) => {
                let image = RowImage {
                    key,
                    version: state.version,
                    data: state.data,
                    written_at: None,
                };
                self.target.apply(&[image], None).await.map(|_| ())
            }
            // The source never had the row (its commit vanished): nothing to store.
            Ok(SourceResponse::Row(None)) => Ok(()),
            _ => Err(()),
        }
    }
}

impl Handler for Pull {
    async fn handle(&mut self, record: &BrokerRecord) -> Result<Handled, ()> {
        let n: Notification = serde_json::from_str(&record.payload).expect("payloads are notifications");
        if self.window.is_some() {
            self.pending.insert(n.key);
            return Ok(Handled::Buffered);
        }
        self.fetch_and_store(n.key).await.map(|()| Handled::Done)
    }

    async fn flush(&mut self) -> Result<bool, ()> {
        let Some(window) = self.window else {
            return Ok(false);
        };
        if self.pending.is_empty() {
            return Ok(false);
        }
        // Duplicates in this batch have collapsed into one key each; the wait spaces out
        // fetches so that the next batch gathers more.
        faultline_sim::timer::sleep(window).await;
        while let Some(key) = self.pending.first().copied() {
            self.fetch_and_store(key).await?;
            self.pending.remove(&key);
        }
        Ok(false)
    }

    fn reset(&mut self) {
        self.pending.clear();
    }
}

/// An instance of the target side: one pulling consumer per partition it is assigned.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: NotifyConfig) -> faultline_sim::HostResult {
    let target = setup
        .target_handle(
            &ctx,
            TargetConfig {
                effects: EffectTrigger::NewRow,
                ..TargetConfig::new(config.rule, config.welcome_key)
            },
            config.consumer.instances,
        )
        .await;
    let source: RpcClient<SourceRequest, SourceResponse> =
        RpcClient::new(&ctx, "source", SOURCE_API_PORT, RPC_TIMEOUT);
    let window = config.dedup_window_ms.map(Duration::from_millis);
    run_consumers(
        &ctx,
        &setup.recorder,
        &setup.kafka,
        TOPIC,
        config.consumer.with_bugs(setup.bugs),
        |_| Pull {
            source: source.clone(),
            target: target.clone(),
            window,
            pending: BTreeSet::new(),
        },
    )
    .await;
    Ok(())
}
