//! Transactional outbox: the business rows and an outbox message describing the logical
//! change commit in one local transaction; a relay on the source host publishes the
//! messages to the broker in order.
//!
//! The relay reads either the outbox table (polling unsent messages and marking each
//! sent after its publish, with an idempotent Kafka producer) or, in `outbox-logtail`,
//! the source's commit log as Debezium's outbox event router does (a Kafka Connect
//! source task: Connect's producer made idempotent, position flushed every 60 s).
//! Either way a crash between publish and bookkeeping publishes messages again. `outbox` applies
//! every message it receives; `outbox-inbox` keeps an inbox of processed message ids in
//! the apply's own transaction (an idempotent consumer).
//!
//! The table-polling relay keeps its place by marking messages sent, or by a cursor:
//! the last id published (`outbox-last-id`, which skips ids that commit late) or that id
//! read only below the oldest open transaction's. Several application instances can
//! each run it (`relay.instances`), the others reaching the table over the source's
//! API, with or without a lease taken in the source's database.

use std::time::Duration;

use faultline_sim::{HostCtx, RpcClient};

use crate::bugs::{Bug, BugSet};
use crate::connect::{fail_task, SourceOffsets, SourcePosition};
use crate::consumer::{run_consumers, ConsumerConfig, Handled, Handler};
use crate::domain::{CustomerId, TxId};
use crate::history::Recorder;
use crate::systems::broker::{BrokerRecord, Producer, ProducerConfig, PRODUCER_REQUEST_TIMEOUT};
use crate::systems::source::{
    LogRetention, OutboxEvents, OutboxMessage, Source, SourceRequest, SourceResponse, LOG_READ_WAIT_MS,
    SOURCE_API_PORT,
};
use crate::systems::target::{ApplyRule, TargetConfig, WelcomeKey};
use crate::systems::target_db::TargetHandle;
use crate::windows;
use crate::{hosts, Setup, RPC_TIMEOUT};

/// The topic outbox messages go to.
pub const TOPIC: &str = "customer-changes";
/// Where the log-tailing relay keeps its position.
const RELAY_POSITION_FILE: &str = "relay.pos";
/// The replication slot the log-tailing relay reads through.
pub const SLOT: &str = "outbox-relay";

/// Where the relay finds what to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelaySource {
    /// Poll the outbox table for unsent messages; mark each sent after publishing.
    PollTable,
    /// Tail the commit log from a saved position; save it after publishing.
    TailLog,
}

/// How the table-polling relay knows what it has published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayCursor {
    /// Each message is marked sent after its publish; the relay polls the unsent ones.
    Unsent,
    /// The relay remembers the last id it published and polls the ids above it. Ids are
    /// taken at insert and commits land in another order, so a message whose
    /// transaction commits after a later id was published is never read (the bug
    /// watermill-sql, Eventuous and SQLStreamStore fixed).
    LastId,
    /// As `LastId`, reading only ids below every open transaction's (PostgreSQL's
    /// `pg_snapshot_xmin`, watermill-sql's fix): nothing can commit behind the cursor.
    VisibleId,
}

/// How the outbox integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The key the target's welcomes carry (`target.welcome.key`).
    pub welcome_key: WelcomeKey,
    /// Which incoming images the target takes (`target.apply.rule`).
    pub rule: ApplyRule,
    /// The target keeps an inbox of processed message ids.
    pub inbox: bool,
    /// When the inbox's entries are cleaned up (`None`: kept for the run).
    pub inbox_cleanup_after_ms: Option<u64>,
    /// Where the relay reads.
    pub relay: RelaySource,
    /// How the table-polling relay keeps its place.
    pub cursor: RelayCursor,
    /// Application instances each running the table-polling relay (1 to 4): the first
    /// on the source's host, the others on hosts of their own.
    pub relay_instances: u32,
    /// A lease the relays take in the source's database before each poll, so that one
    /// publishes at a time (ShedLock's `lockAtMostFor`); `None`: every instance
    /// publishes what it finds.
    pub relay_lease_ms: Option<u64>,
    /// The relay's producer: a Kafka application producer for the table-polling relay,
    /// Kafka Connect's source-task producer for the log-tailing one.
    pub producer: ProducerConfig,
    /// The log-tailing relay's `offset.flush.interval.ms` (Kafka Connect's).
    pub offset_flush_interval_ms: u64,
    /// How often the relay looks for new messages.
    pub relay_poll_ms: u64,
    /// Messages the relay handles per poll.
    pub relay_batch_max: usize,
    /// How much log the source keeps for the log-tailing relay's slot.
    pub log_retention: LogRetention,
    /// How a commit's outbox rows become messages: per customer or per transaction.
    pub events: OutboxEvents,
    /// How the target consumes.
    pub consumer: ConsumerConfig,
}

/// The partition of a customer's messages: all of one customer's changes stay in order.
pub fn partition_of(customer: CustomerId, partitions: u32) -> u32 {
    (customer.0 % u64::from(partitions)) as u32
}

/// The source side: run the workload, and the relay beside it.
pub async fn run_source(ctx: HostCtx, setup: Setup, config: OutboxConfig) -> faultline_sim::HostResult {
    let source = setup.open_source(&ctx).await;
    // The other instances' relays reach the outbox table through the source's API.
    setup.serve_source_api(&ctx, &source, config.relay_instances > 1);
    let relay = match config.relay {
        RelaySource::PollTable if config.cursor != RelayCursor::Unsent => tokio::task::spawn_local(
            relay_table_cursor(ctx.clone(), source.clone(), config, setup.recorder.clone()),
        ),
        RelaySource::PollTable => {
            let table = OutboxTable::Local(source.clone());
            tokio::task::spawn_local(relay_table(
                ctx.clone(),
                table,
                config,
                setup.bugs,
                setup.recorder.clone(),
            ))
        }
        RelaySource::TailLog => tokio::task::spawn_local(relay_log(
            ctx.clone(),
            source.clone(),
            config,
            setup.recorder.clone(),
        )),
    };
    source.run_workload(setup.schedule.clone(), None, |_| {}).await;
    relay.await?;
    Ok(())
}

/// Hands every message to the producer and then waits for every delivery, as a relay
/// calls `KafkaTemplate.send` for each and then `flush()`: each partition's in order
/// and in batches, the partitions side by side (one whose leader is failing over does
/// not hold the others back). The producer retries in place, so a failure means a
/// batch's `delivery.timeout.ms` passed; the poll is then published again, whole.
async fn publish(producer: &Producer, messages: &[OutboxMessage], config: OutboxConfig) -> bool {
    let deliveries: Vec<_> = messages
        .iter()
        .map(|message| {
            let customer = message.rows[0].key.customer;
            let payload = serde_json::to_string(message).expect("outbox messages serialise");
            let partition = partition_of(customer, config.consumer.partitions);
            producer.send_flushed(TOPIC, partition, customer.0.to_string(), payload)
        })
        .collect();
    let mut delivered = true;
    for delivery in deliveries {
        delivered &= delivery.await.is_ok();
    }
    delivered
}

/// Another application instance: only its relay matters here.
pub async fn run_relay_instance(
    ctx: HostCtx,
    config: OutboxConfig,
    bugs: BugSet,
    recorder: Recorder,
) -> faultline_sim::HostResult {
    let table = OutboxTable::Remote(RpcClient::new(&ctx, hosts::SOURCE, SOURCE_API_PORT, RPC_TIMEOUT));
    relay_table(ctx, table, config, bugs, recorder).await;
    Ok(())
}

/// The outbox table as a relay instance reaches it: in the source's process, or over
/// the network from another application instance (a failed call reads as nothing
/// found, or a write not made).
enum OutboxTable {
    Local(Source),
    Remote(RpcClient<SourceRequest, SourceResponse>),
}

impl OutboxTable {
    async fn unsent(&self, max: usize) -> Vec<OutboxMessage> {
        match self {
            OutboxTable::Local(source) => source.outbox_unsent(max),
            OutboxTable::Remote(api) => match api.call(&SourceRequest::OutboxUnsent { max }).await {
                Ok(SourceResponse::Outbox(messages)) => messages,
                _ => Vec::new(),
            },
        }
    }

    async fn mark_sent(&self, txs: &[TxId]) -> Result<(), String> {
        match self {
            OutboxTable::Local(source) => source.mark_sent(txs).await.map_err(|e| e.to_string()),
            OutboxTable::Remote(api) => {
                match api.call(&SourceRequest::MarkSent { txs: txs.to_vec() }).await {
                    Ok(SourceResponse::Done(true)) => Ok(()),
                    Ok(_) => Err("the source could not write the mark".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    async fn acquire_lease(&self, holder: &str, now_us: i64, lease_us: i64) -> bool {
        match self {
            OutboxTable::Local(source) => matches!(
                source.acquire_relay_lease(holder, now_us, lease_us).await,
                Ok(true)
            ),
            OutboxTable::Remote(api) => {
                let request = SourceRequest::AcquireLease {
                    holder: holder.to_string(),
                    now_us,
                    lease_us,
                };
                matches!(api.call(&request).await, Ok(SourceResponse::Done(true)))
            }
        }
    }
}

/// The relay's hold on the lease, by its own clock: renewed when half of it is left, so
/// a poll does not write to the database every time.
struct Lease {
    lease_us: i64,
    held_until_us: Option<i64>,
}

impl Lease {
    /// Whether this instance may publish now (taking or renewing the lease if needed).
    async fn hold(&mut self, ctx: &HostCtx, table: &OutboxTable) -> bool {
        let now = ctx.wall_clock().as_unix_micros();
        if self
            .held_until_us
            .is_some_and(|until| until - now > self.lease_us / 2)
        {
            return true;
        }
        let held = table.acquire_lease(ctx.name(), now, self.lease_us).await;
        self.held_until_us = held.then_some(now + self.lease_us);
        held
    }
}

async fn relay_table(
    ctx: HostCtx,
    table: OutboxTable,
    config: OutboxConfig,
    bugs: BugSet,
    recorder: Recorder,
) {
    let producer = Producer::new(
        &ctx,
        PRODUCER_REQUEST_TIMEOUT,
        config.producer,
        config.consumer.cluster.brokers,
    )
    .recorded_by(&recorder);
    if let OutboxTable::Local(source) = &table {
        // Whichever instance relays them, unsent rows are work still to do (a
        // remote instance's poll in hand is still unsent here).
        source.report_outbox_progress(None);
    }
    let mut lease = config.relay_lease_ms.map(|ms| Lease {
        lease_us: i64::try_from(ms * 1_000).unwrap_or(i64::MAX),
        held_until_us: None,
    });
    loop {
        faultline_sim::timer::sleep(Duration::from_millis(config.relay_poll_ms)).await;
        if let Some(lease) = &mut lease {
            if !lease.hold(&ctx, &table).await {
                continue;
            }
        }
        let unsent = table.unsent(config.relay_batch_max).await;
        if bugs.has(Bug::RelayMarksBeforePublish) {
            // Planted: the bookkeeping first; a failed publish is never retried.
            for message in unsent {
                if table.mark_sent(&[message.tx]).await.is_err()
                    || !publish(&producer, std::slice::from_ref(&message), config).await
                {
                    break;
                }
            }
            continue;
        }
        if bugs.has(Bug::RelaySleepsPerMessage) {
            // Planted: one message, then the whole poll interval again.
            for message in unsent.iter().take(1) {
                if publish(&producer, std::slice::from_ref(message), config).await
                    && table.mark_sent(&[message.tx]).await.is_err()
                {
                    break;
                }
            }
            continue;
        }
        if unsent.is_empty() || !publish(&producer, &unsent, config).await {
            continue;
        }
        let _unmarked = ctx.window(windows::AFTER_PUBLISH_BEFORE_MARK_SENT);
        let published: Vec<TxId> = unsent.iter().map(|m| m.tx).collect();
        if let Err(e) = table.mark_sent(&published).await {
            ctx.record("relay-mark-failed", format!("{} messages {e}", published.len()));
        }
    }
}

/// The table-polling relay that keeps a cursor: the ids above the last one published,
/// the cursor saved in the source's database after each published batch.
async fn relay_table_cursor(ctx: HostCtx, source: Source, config: OutboxConfig, recorder: Recorder) {
    let producer = Producer::new(
        &ctx,
        PRODUCER_REQUEST_TIMEOUT,
        config.producer,
        config.consumer.cluster.brokers,
    )
    .recorded_by(&recorder);
    let below_open = config.cursor == RelayCursor::VisibleId;
    // What the relay's own query still finds; a message its cursor passed is never
    // found again, so it is no work left.
    source.report_outbox_progress(Some(below_open));
    loop {
        faultline_sim::timer::sleep(Duration::from_millis(config.relay_poll_ms)).await;
        let batch = source.outbox_after(source.relay_cursor(), config.relay_batch_max, below_open);
        let Some(last) = batch.last().map(|m| m.tx) else {
            continue;
        };
        if !publish(&producer, &batch, config).await {
            continue;
        }
        let _unsaved = ctx.window(windows::AFTER_PUBLISH_BEFORE_MARK_SENT);
        if let Err(e) = source.save_relay_cursor(last).await {
            ctx.record("relay-cursor-save-failed", format!("{last} {e}"));
        }
    }
}

/// The log-tailing relay, as Debezium's outbox event router runs: a Kafka Connect
/// source task whose position is flushed every `offset.flush.interval.ms` and then
/// confirmed to its replication slot. When its position is gone (the slot invalidated,
/// the log removed) it fails: an outbox connector takes no snapshot of a table whose
/// rows it has already streamed.
async fn relay_log(ctx: HostCtx, source: Source, config: OutboxConfig, recorder: Recorder) {
    let producer = Producer::new(
        &ctx,
        PRODUCER_REQUEST_TIMEOUT,
        config.producer,
        config.consumer.cluster.brokers,
    )
    .recorded_by(&recorder);
    let confirming = source.clone();
    let offsets = SourceOffsets::open(
        &ctx,
        RELAY_POSITION_FILE,
        config.offset_flush_interval_ms,
        move |position| confirming.confirm_slot(SLOT, position.log),
    );
    loop {
        faultline_sim::timer::sleep(Duration::from_millis(config.relay_poll_ms)).await;
        let wait = Duration::from_millis(LOG_READ_WAIT_MS);
        let read = source
            .read_log_waiting(SLOT, offsets.position().log, config.relay_batch_max, wait)
            .await;
        let (commits, next) = match read {
            Ok(read) => read,
            Err(gone) => {
                let _ = fail_task(&ctx, &recorder, gone.to_string()).await;
                return;
            }
        };
        let messages: Vec<OutboxMessage> = commits
            .iter()
            .flat_map(|(_, c)| c.to_outbox_messages(config.events))
            .collect();
        // Only a fully published poll moves the position; a partial one is read again.
        if publish(&producer, &messages, config).await {
            offsets.acknowledged(SourcePosition::at(next));
        }
    }
}

/// Applies each outbox message's rows in one local transaction.
struct ApplyMessage {
    target: TargetHandle,
}

impl Handler for ApplyMessage {
    async fn handle(&mut self, record: &BrokerRecord) -> Result<Handled, ()> {
        let message: OutboxMessage =
            serde_json::from_str(&record.payload).expect("payloads are outbox messages");
        self.target
            .apply(&message.rows, Some(&message.id))
            .await
            .map(|_| Handled::Done)
    }
}

/// An instance of the target side: one consumer per partition it is assigned.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: OutboxConfig) -> faultline_sim::HostResult {
    let target = setup
        .target_handle(
            &ctx,
            TargetConfig {
                inbox: config.inbox,
                inbox_cleanup_after_ms: config.inbox_cleanup_after_ms,
                ..TargetConfig::new(config.rule, config.welcome_key)
            },
            config.consumer.instances,
        )
        .await;
    run_consumers(
        &ctx,
        &setup.recorder,
        &setup.kafka,
        TOPIC,
        config.consumer.with_bugs(setup.bugs),
        |_| ApplyMessage {
            target: target.clone(),
        },
    )
    .await;
    Ok(())
}
