//! Transactional outbox: the business rows and an outbox message describing the logical
//! change commit in one local transaction; a relay on the source host publishes unsent
//! messages to the broker in order and marks them sent.
//!
//! A relay crash between publish and mark-sent publishes the message again, and a lost
//! produce ack makes the relay retry: the target sees duplicates. `outbox-inbox` keeps an
//! inbox of processed message ids in the same local transaction as the apply, which
//! makes the consumer idempotent. The consumer commits its offset after applying, so a
//! restart redelivers whatever it had not committed.

use std::rc::Rc;
use std::time::Duration;

use faultline_sim::HostCtx;

use crate::domain::CustomerId;
use crate::systems::broker::{BrokerClient, BrokerRecord};
use crate::systems::source::{OutboxMessage, Source};
use crate::systems::target::{Target, TargetConfig};
use crate::{Setup, RPC_TIMEOUT};

/// The topic outbox messages go to.
pub const TOPIC: &str = "customer-changes";
/// The consumer group of the target.
pub const GROUP: &str = "target";

/// How the outbox integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The target keeps an inbox of processed message ids.
    pub inbox: bool,
    /// Partitions of the topic; messages are partitioned by customer.
    pub partitions: u32,
    /// How often the relay polls the outbox, and the consumer an empty partition.
    pub poll_ms: u64,
    /// Messages the relay reads per poll.
    pub relay_batch_max: usize,
    /// Wait after a failed call before trying again.
    pub retry_ms: u64,
}

/// The partition of a customer's messages: all of one customer's changes stay in order.
pub fn partition_of(customer: CustomerId, partitions: u32) -> u32 {
    (customer.0 % u64::from(partitions)) as u32
}

/// The source side: run the workload, and the relay beside it.
pub async fn run_source(ctx: HostCtx, setup: Setup, config: OutboxConfig) -> faultline_sim::HostResult {
    let source = Source::recover(&ctx, setup.source, setup.recorder.clone(), &setup.initial);
    let sync = source.clone();
    tokio::task::spawn_local(async move { sync.run_sync_loop().await });
    let relay = tokio::task::spawn_local(relay_loop(ctx.clone(), source.clone(), config));
    source.run_workload(Rc::clone(&setup.schedule), |_| {}).await;
    relay.await?;
    Ok(())
}

async fn relay_loop(ctx: HostCtx, source: Source, config: OutboxConfig) {
    let broker = BrokerClient::new(&ctx, RPC_TIMEOUT);
    loop {
        tokio::time::sleep(Duration::from_millis(config.poll_ms)).await;
        for message in source.outbox_unsent(config.relay_batch_max) {
            if publish(&broker, &message, config).await.is_err() {
                break;
            }
            if let Err(e) = source.mark_sent(message.tx) {
                ctx.record("relay-mark-failed", format!("{} {e}", message.id));
                break;
            }
        }
    }
}

async fn publish(broker: &BrokerClient, message: &OutboxMessage, config: OutboxConfig) -> Result<u64, ()> {
    let customer = message.rows[0].key.customer;
    let payload = serde_json::to_string(message).expect("outbox messages serialise");
    broker
        .produce(
            TOPIC,
            partition_of(customer, config.partitions),
            customer.0.to_string(),
            payload,
            None,
        )
        .await
        .map_err(|_| ())
}

/// The target side: one consumer task per partition.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: OutboxConfig) -> faultline_sim::HostResult {
    let target_config = TargetConfig {
        version_check: false,
        inbox: config.inbox,
    };
    let target = Target::recover(&ctx, target_config, setup.recorder.clone(), &setup.initial);
    let broker = BrokerClient::new(&ctx, RPC_TIMEOUT);
    let consumers: Vec<_> = (0..config.partitions)
        .map(|p| tokio::task::spawn_local(consume(broker.clone(), target.clone(), p, config)))
        .collect();
    for consumer in consumers {
        consumer.await?;
    }
    Ok(())
}

async fn consume(broker: BrokerClient, target: Target, partition: u32, config: OutboxConfig) {
    let retry = Duration::from_millis(config.retry_ms);
    let mut position = loop {
        match broker.committed_offset(GROUP, TOPIC, partition).await {
            Ok(offset) => break offset,
            Err(_) => tokio::time::sleep(retry).await,
        }
    };
    loop {
        let records = match broker.fetch(TOPIC, partition, position).await {
            Ok(records) => records,
            Err(_) => {
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if records.is_empty() {
            tokio::time::sleep(Duration::from_millis(config.poll_ms)).await;
            continue;
        }
        for record in records {
            if apply(&target, &record).is_err() {
                tokio::time::sleep(retry).await;
                break;
            }
            position = record.offset + 1;
            // After applying: a lost commit only means a redelivery later.
            let _ = broker.commit_offset(GROUP, TOPIC, partition, position).await;
        }
    }
}

fn apply(target: &Target, record: &BrokerRecord) -> Result<(), faultline_sim::DiskError> {
    let message: OutboxMessage = serde_json::from_str(&record.payload).expect("payloads are outbox messages");
    target.apply(&message.rows, Some(&message.id)).map(|_| ())
}
