//! Transactional outbox: the business rows and an outbox message describing the logical
//! change commit in one local transaction; a relay on the source host publishes the
//! messages to the broker in order.
//!
//! The relay reads either the outbox table (polling unsent messages and marking each
//! sent after its publish) or, in `outbox-logtail`, the source's commit log from a
//! position it saves after publishing. Either way a crash between publish and
//! bookkeeping, or a lost produce ack, publishes a message twice. `outbox` applies
//! every message it receives; `outbox-inbox` keeps an inbox of processed message ids in
//! the apply's own transaction (an idempotent consumer).

use std::time::Duration;

use faultline_sim::{HostCtx, LogPos};

use crate::bugs::{Bug, BugSet};
use crate::consumer::{run_consumers, ConsumerConfig, Handled, Handler};
use crate::domain::CustomerId;
use crate::systems::broker::{BrokerRecord, Producer};
use crate::systems::source::{OutboxMessage, Source};
use crate::systems::target::{ApplyRule, Target};
use crate::{Setup, RPC_TIMEOUT};

/// The topic outbox messages go to.
pub const TOPIC: &str = "customer-changes";
/// Where the log-tailing relay keeps its position.
const RELAY_POSITION_FILE: &str = "relay.pos";

/// Where the relay finds what to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelaySource {
    /// Poll the outbox table for unsent messages; mark each sent after publishing.
    PollTable,
    /// Tail the commit log from a saved position; save it after publishing.
    TailLog,
}

/// How the outbox integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The target keeps an inbox of processed message ids.
    pub inbox: bool,
    /// Where the relay reads.
    pub relay: RelaySource,
    /// The relay publishes as an idempotent producer.
    pub idempotent_producer: bool,
    /// How often the relay looks for new messages.
    pub relay_poll_ms: u64,
    /// Messages the relay handles per poll.
    pub relay_batch_max: usize,
    /// How the target consumes.
    pub consumer: ConsumerConfig,
}

/// The partition of a customer's messages: all of one customer's changes stay in order.
pub fn partition_of(customer: CustomerId, partitions: u32) -> u32 {
    (customer.0 % u64::from(partitions)) as u32
}

/// The source side: run the workload, and the relay beside it.
pub async fn run_source(ctx: HostCtx, setup: Setup, config: OutboxConfig) -> faultline_sim::HostResult {
    let source = setup.open_source(&ctx);
    let relay = match config.relay {
        RelaySource::PollTable => {
            tokio::task::spawn_local(relay_table(ctx.clone(), source.clone(), config, setup.bugs))
        }
        RelaySource::TailLog => tokio::task::spawn_local(relay_log(ctx.clone(), source.clone(), config)),
    };
    source.run_workload(setup.schedule.clone(), None, |_| {}).await;
    relay.await?;
    Ok(())
}

async fn publish(producer: &Producer, message: &OutboxMessage, config: OutboxConfig) -> bool {
    let customer = message.rows[0].key.customer;
    let payload = serde_json::to_string(message).expect("outbox messages serialise");
    let partition = partition_of(customer, config.consumer.partitions);
    // The transaction id orders a partition's messages and is stable across retries.
    producer
        .publish(TOPIC, partition, customer.0.to_string(), payload, message.tx.0)
        .await
        .is_ok()
}

async fn relay_table(ctx: HostCtx, source: Source, config: OutboxConfig, bugs: BugSet) {
    let producer = Producer::new(&ctx, RPC_TIMEOUT, config.idempotent_producer);
    loop {
        tokio::time::sleep(Duration::from_millis(config.relay_poll_ms)).await;
        for message in source.outbox_unsent(config.relay_batch_max) {
            if bugs.has(Bug::RelayMarksBeforePublish) {
                // Planted: the bookkeeping first; a failed publish is never retried.
                if source.mark_sent(message.tx).is_err() || !publish(&producer, &message, config).await {
                    break;
                }
                continue;
            }
            if !publish(&producer, &message, config).await {
                break;
            }
            if let Err(e) = source.mark_sent(message.tx) {
                ctx.record("relay-mark-failed", format!("{} {e}", message.id));
                break;
            }
        }
    }
}

async fn relay_log(ctx: HostCtx, source: Source, config: OutboxConfig) {
    let producer = Producer::new(&ctx, RPC_TIMEOUT, config.idempotent_producer);
    let saved = ctx.disk().read_all(RELAY_POSITION_FILE);
    let mut position = LogPos(serde_json::from_slice(&saved).unwrap_or(0));
    loop {
        tokio::time::sleep(Duration::from_millis(config.relay_poll_ms)).await;
        let (commits, next) = source.read_log(position, config.relay_batch_max);
        let mut published_all = true;
        for commit in &commits {
            if !publish(&producer, &commit.to_outbox_message(), config).await {
                published_all = false;
                break;
            }
        }
        // Only a fully published batch moves the position; a partial one is re-read
        // (and partly re-published) next time.
        if published_all && next != position {
            match ctx
                .disk()
                .replace(RELAY_POSITION_FILE, next.0.to_string().as_bytes())
            {
                Ok(()) => position = next,
                Err(e) => {
                    ctx.record("relay-position-failed", e.to_string());
                }
            }
        }
    }
}

/// Applies each outbox message's rows in one local transaction.
struct ApplyMessage {
    target: Target,
}

impl Handler for ApplyMessage {
    async fn handle(&mut self, record: &BrokerRecord) -> Result<Handled, ()> {
        let message: OutboxMessage =
            serde_json::from_str(&record.payload).expect("payloads are outbox messages");
        self.target
            .apply(&message.rows, Some(&message.id))
            .await
            .map(|_| Handled::Done)
            .map_err(|_| ())
    }
}

/// The target side: one consumer per partition.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: OutboxConfig) -> faultline_sim::HostResult {
    let target = setup.open_target(&ctx, ApplyRule::Blind, config.inbox);
    run_consumers(&ctx, TOPIC, config.consumer.with_bugs(setup.bugs), |_| {
        ApplyMessage {
            target: target.clone(),
        }
    })
    .await;
    Ok(())
}
