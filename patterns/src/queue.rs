//! Entities in queues (dual write): each changed row travels as a message carrying the
//! row's data, one message per row.
//!
//! `queue-after-commit` commits, then hands each row to the Kafka producer
//! ([`AfterCommitPublisher`]): a crash loses what the producer holds unacknowledged. `queue-fail-op` publishes inside the operation, before the
//! commit: a failed publish fails the action (availability pays), a publish that timed
//! out may still have been stored, and the commit can still fail after a successful
//! publish; either way the target gets a row the source never committed.

use std::fmt;
use std::rc::Rc;

use faultline_sim::HostCtx;
use serde::{Deserialize, Serialize};

use crate::after_commit::AfterCommitPublisher;
use crate::consumer::{run_consumers, ConsumerConfig, Handled, Handler};
use crate::domain::{ActionId, RowImage};
use crate::outbox::partition_of;
use crate::systems::broker::{BrokerRecord, Producer, ProducerConfig, PRODUCER_REQUEST_TIMEOUT};
use crate::systems::source::BeforeCommit;
use crate::systems::target::{ApplyRule, TargetConfig, WelcomeKey};
use crate::systems::target_db::TargetHandle;
use crate::Setup;

/// The topic entity messages go to.
pub const TOPIC: &str = "customer-entities";

/// Where in the operation the source publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishPoint {
    /// After the commit, from an in-memory retry queue.
    AfterCommit,
    /// Inside the operation, before the commit; a failed publish fails the action.
    InOperation,
}

/// How the queue integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The key the target's welcomes carry (`target.welcome.key`).
    pub welcome_key: WelcomeKey,
    /// Which incoming images the target takes (`target.apply.rule`).
    pub rule: ApplyRule,
    /// Where the publish happens.
    pub publish: PublishPoint,
    /// The source's Kafka producer.
    pub producer: ProducerConfig,
    /// How the target consumes.
    pub consumer: ConsumerConfig,
}

/// One row's data, as published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityMessage {
    /// The action that changed the row.
    pub action: ActionId,
    /// The row image.
    pub row: RowImage,
}

impl fmt::Display for EntityMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entity {} (action {})", self.row, self.action.0)
    }
}

/// Publishes and waits for the acknowledgement (inside the operation).
async fn publish(producer: &Producer, message: &EntityMessage, partitions: u32) -> bool {
    let customer = message.row.key.customer;
    let payload = serde_json::to_string(message).expect("entity messages serialise");
    let partition = partition_of(customer, partitions);
    producer
        .send(TOPIC, partition, customer.0.to_string(), payload)
        .await
        .is_ok()
}

/// The source side: run the workload, publishing each changed row.
pub async fn run_source(ctx: HostCtx, setup: Setup, config: QueueConfig) -> faultline_sim::HostResult {
    let source = setup.open_source(&ctx).await;
    setup.serve_source_api(&ctx, &source, false);
    let producer = Producer::new(
        &ctx,
        PRODUCER_REQUEST_TIMEOUT,
        config.producer,
        config.consumer.cluster.brokers,
    )
    .recorded_by(&setup.recorder);
    let partitions = config.consumer.partitions;
    let message = |action: ActionId, row: RowImage| EntityMessage { action, row };
    match config.publish {
        PublishPoint::AfterCommit => {
            let publisher = AfterCommitPublisher::new(&ctx, producer);
            source
                .run_workload(setup.schedule.clone(), None, move |commit| {
                    for row in &commit.rows {
                        let m = message(commit.action, row.clone());
                        let customer = m.row.key.customer;
                        let payload = serde_json::to_string(&m).expect("entity messages serialise");
                        let partition = partition_of(customer, partitions);
                        publisher.publish(TOPIC, partition, customer.0.to_string(), payload, m.to_string());
                    }
                })
                .await;
            std::future::pending::<()>().await;
        }
        PublishPoint::InOperation => {
            let hook: BeforeCommit = Rc::new(move |action, rows| {
                let producer = producer.clone();
                let messages: Vec<EntityMessage> = rows.into_iter().map(|row| message(action, row)).collect();
                Box::pin(async move {
                    for m in &messages {
                        if !publish(&producer, m, partitions).await {
                            return Err(format!("publish of {m} failed"));
                        }
                    }
                    Ok(())
                })
            });
            source
                .run_workload(setup.schedule.clone(), Some(hook), |_| {})
                .await;
            std::future::pending::<()>().await;
        }
    }
    Ok(())
}

/// Applies each message's row in its own local transaction.
struct ApplyRow {
    target: TargetHandle,
}

impl Handler for ApplyRow {
    async fn handle(&mut self, record: &BrokerRecord) -> Result<Handled, ()> {
        let message: EntityMessage =
            serde_json::from_str(&record.payload).expect("payloads are entity messages");
        self.target
            .apply(&[message.row], None)
            .await
            .map(|_| Handled::Done)
    }
}

/// An instance of the target side: one consumer per partition it is assigned.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: QueueConfig) -> faultline_sim::HostResult {
    let target = setup
        .target_handle(
            &ctx,
            TargetConfig::new(config.rule, config.welcome_key),
            config.consumer.instances,
        )
        .await;
    run_consumers(
        &ctx,
        &setup.recorder,
        &setup.kafka,
        TOPIC,
        config.consumer.with_bugs(setup.bugs),
        |_| ApplyRow {
            target: target.clone(),
        },
    )
    .await;
    Ok(())
}
