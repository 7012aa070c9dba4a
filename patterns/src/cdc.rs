//! Change data capture: a connector tails the source's commit log and publishes one event
//! per changed *row*, the way Debezium reads a database's log.
//!
//! The connector runs on its own host as a Kafka Connect source task does. It reads
//! committed transactions from a log position through the source's replication API and
//! publishes their row events with Connect's producer (one request in flight, batches
//! retried in place; made idempotent by a per-connector override); the position it has published up to is flushed to its
//! disk every `offset.flush.interval.ms` (60 s), so after a crash it re-reads from the
//! last flushed position and publishes those events again (Debezium is at-least-once).
//! Each event carries its transaction id, its index and the transaction's event count
//! (Debezium's transaction metadata). `cdc-row` applies events one by one, so one
//! business action reaches the target in pieces; `cdc-tx` reassembles each transaction
//! and applies it whole, once.
//!
//! Snapshots publish every live row as a read event (`op=r`, no transaction): the
//! initial snapshot of a connector with no saved offset (a bootstrap), and a blocking
//! snapshot when the connector is signalled (`connector.snapshot.signal.ms`), after
//! which streaming resumes where it paused.

use std::collections::BTreeMap;
use std::time::Duration;

use faultline_sim::{HostCtx, RpcClient};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::connect::SourceOffsets;
use crate::consumer::{run_consumers, ConsumerConfig, Handled, Handler};
use crate::domain::{RowImage, TxId};
use crate::outbox::partition_of;
use crate::systems::broker::{BrokerRecord, Producer, ProducerConfig};
use crate::systems::source::{SourceRequest, SourceResponse, LOG_READ_WAIT_MS, SOURCE_API_PORT};
use crate::systems::target::{ApplyRule, Target, TargetConfig, WelcomeKey};
use crate::{Setup, RPC_TIMEOUT};

/// The topic row events go to.
pub const TOPIC: &str = "customer-cdc";
/// Where the connector keeps its log position.
const POSITION_FILE: &str = "connector.pos";
/// Where the connector records that it executed its snapshot signal (Debezium marks a
/// processed signal so a restart does not repeat it).
const SIGNAL_DONE_FILE: &str = "connector.signal";

/// How the target applies row events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdcApply {
    /// Each row event in its own local transaction.
    RowByRow,
    /// A transaction's row events buffered and applied together.
    Transaction,
}

/// How the CDC integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdcConfig {
    /// The key the target's welcomes carry (`target.welcome.key`).
    pub welcome_key: WelcomeKey,
    /// Which incoming images the target takes (`target.apply.rule`).
    pub rule: ApplyRule,
    /// How the target applies.
    pub apply: CdcApply,
    /// When the transaction inbox's entries are cleaned up (`None`: kept for the run).
    pub inbox_cleanup_after_ms: Option<u64>,
    /// How often the connector reads the log.
    pub connector_poll_ms: u64,
    /// When the connector is signalled to take a blocking snapshot (`None`: never):
    /// Debezium's ad-hoc `execute-snapshot` signal of type `blocking`.
    pub snapshot_signal_ms: Option<u64>,
    /// The connector's producer (Kafka Connect's source-task overrides, made idempotent).
    pub producer: ProducerConfig,
    /// Kafka Connect's `offset.flush.interval.ms`: how often the connector's position
    /// is saved; a crash replays what was published since.
    pub offset_flush_interval_ms: u64,
    /// How the target consumes.
    pub consumer: ConsumerConfig,
}

/// One changed row, with its transaction's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowEvent {
    /// The source transaction.
    pub tx: TxId,
    /// This event's place in the transaction, from 0.
    pub index: u32,
    /// How many events the transaction has.
    pub count: u32,
    /// The row image.
    pub row: RowImage,
    /// A row read by the connector's snapshot (Debezium's `op=r`), not a change: it
    /// belongs to no transaction (`tx`, `index` and `count` are 0, 0, 1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
}

/// How long the connector's snapshot read may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(500);

/// The connector: with `snapshot` and no saved position, an initial snapshot first
/// ([`initial_snapshot`]); then tail the log, publish row events, acknowledge the
/// position; the worker flushes it every `offset.flush.interval.ms` ([`SourceOffsets`]).
pub async fn run_connector(
    ctx: HostCtx,
    config: CdcConfig,
    bugs: BugSet,
    snapshot: bool,
) -> faultline_sim::HostResult {
    let source: RpcClient<SourceRequest, SourceResponse> =
        RpcClient::new(&ctx, "source", SOURCE_API_PORT, RPC_TIMEOUT);
    let producer = Producer::new(&ctx, RPC_TIMEOUT, config.producer);
    let mut offsets = SourceOffsets::open(&ctx, POSITION_FILE, config.offset_flush_interval_ms);
    if snapshot && !offsets.was_saved() {
        let position = take_snapshot(&ctx, &producer, config).await;
        offsets.acknowledged(position);
    }
    let mut signal = config
        .snapshot_signal_ms
        .filter(|_| ctx.disk().read_all(SIGNAL_DONE_FILE).is_empty())
        .map(faultline_sim::SimTime::from_millis);
    loop {
        faultline_sim::timer::sleep(Duration::from_millis(config.connector_poll_ms)).await;
        offsets.tick().await;
        if signal.is_some_and(|at| ctx.now() >= at) {
            // A blocking snapshot: streaming waits while every live row goes out as a
            // read event, then resumes from the position it paused at, so the commits
            // since that position come again after the rows that already hold them.
            ctx.record(
                "snapshot-signal",
                format!("blocking, streaming paused at {}", offsets.position().0),
            );
            take_snapshot(&ctx, &producer, config).await;
            if ctx.disk().replace(SIGNAL_DONE_FILE, b"done").await.is_ok() {
                signal = None;
            }
        }
        let position = offsets.position();
        let Ok(SourceResponse::Log { commits, next }) = source
            .call(&SourceRequest::ReadLog {
                from: position,
                wait_ms: LOG_READ_WAIT_MS,
            })
            .await
        else {
            continue;
        };
        if bugs.has(Bug::CdcPositionBeforePublish) {
            // Planted: the position is saved before the events are out.
            offsets.acknowledged(next);
            offsets.flush().await;
        }
        // Each partition's events in log order, sent in batches as Connect's producer
        // batches what a poll hands it.
        let mut by_partition: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
        for commit in &commits {
            let count = commit.rows.len() as u32;
            for (index, row) in commit.rows.iter().enumerate() {
                let event = RowEvent {
                    tx: commit.tx,
                    index: index as u32,
                    count,
                    row: row.clone(),
                    snapshot: false,
                };
                let payload = serde_json::to_string(&event).expect("row events serialise");
                let partition = partition_of(row.key.customer, config.consumer.partitions);
                by_partition
                    .entry(partition)
                    .or_default()
                    .push((row.key.to_string(), payload));
            }
        }
        // The producer retries in place; an error means delivery.timeout.ms passed, and
        // the poll is read again from the acknowledged position.
        let mut published_all = true;
        for (partition, records) in by_partition {
            if producer.send_all(TOPIC, partition, records).await.is_err() {
                published_all = false;
                break;
            }
        }
        if published_all {
            offsets.acknowledged(next);
        }
    }
}

/// A snapshot: every live row of one consistent snapshot published as a read event;
/// returns the log position the snapshot stands at.
///
/// Debezium's initial snapshot (`snapshot.mode=initial`, for a connector without a
/// saved offset) acknowledges that position, so streaming continues from it with
/// nothing missed. The position reaches offset storage at the next flush: a connector
/// that stops before then, or during the snapshot, snapshots again on restart
/// (Debezium's documented behaviour), publishing every row again.
async fn take_snapshot(ctx: &HostCtx, producer: &Producer, config: CdcConfig) -> faultline_sim::LogPos {
    let source: RpcClient<SourceRequest, SourceResponse> =
        RpcClient::new(ctx, "source", SOURCE_API_PORT, SNAPSHOT_TIMEOUT);
    'snapshot: loop {
        let Ok(SourceResponse::SnapshotAt { rows, position }) = source.call(&SourceRequest::SnapshotAt).await
        else {
            faultline_sim::timer::sleep(Duration::from_millis(config.connector_poll_ms)).await;
            continue;
        };
        ctx.record("snapshot", format!("rows={} at={}", rows.len(), position.0));
        let mut by_partition: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
        for row in rows.into_iter().filter(|r| !r.is_delete()) {
            let key = row.key;
            let event = RowEvent {
                tx: TxId(0),
                index: 0,
                count: 1,
                row,
                snapshot: true,
            };
            let payload = serde_json::to_string(&event).expect("row events serialise");
            by_partition
                .entry(partition_of(key.customer, config.consumer.partitions))
                .or_default()
                .push((key.to_string(), payload));
        }
        for (partition, records) in by_partition {
            if producer.send_all(TOPIC, partition, records).await.is_err() {
                continue 'snapshot;
            }
        }
        ctx.record("snapshot-completed", format!("at {}", position.0));
        return position;
    }
}

/// Puts transactions back together from their row events, whatever order and however
/// many copies they arrive in.
///
/// Events are buffered by transaction id and index: a second copy of a buffered event
/// (a producer's retry, a connector's replay) is ignored, fragments may come in any
/// order and transactions may interleave. A transaction comes out once, when all its
/// events are in, its rows in index order.
#[derive(Debug, Default)]
pub struct TxAssembler {
    assembling: BTreeMap<TxId, (u32, BTreeMap<u32, RowImage>)>,
}

impl TxAssembler {
    /// Takes one event; returns its transaction's rows when this event completes it.
    pub fn add(&mut self, event: RowEvent) -> Option<Vec<RowImage>> {
        let (count, rows) = self
            .assembling
            .entry(event.tx)
            .or_insert_with(|| (event.count, BTreeMap::new()));
        rows.entry(event.index).or_insert(event.row);
        if rows.len() as u32 != *count {
            return None;
        }
        let (_, rows) = self.assembling.remove(&event.tx).expect("assembling");
        Some(rows.into_values().collect())
    }

    /// Whether a transaction is still incomplete (the offset must not pass it).
    pub fn is_empty(&self) -> bool {
        self.assembling.is_empty()
    }

    /// Drops everything buffered (the consumer goes back to its committed offset).
    pub fn clear(&mut self) {
        self.assembling.clear();
    }
}

/// Applies row events, one by one or a transaction at a time.
///
/// The transaction-aware apply assembles transactions ([`TxAssembler`]), applies each
/// whole with its id in the target's inbox in the same local transaction, and ignores
/// every event of a transaction the inbox already holds. The offset never passes a
/// transaction still being assembled: records answer `Buffered` while one is.
struct ApplyEvents {
    target: Target,
    apply: CdcApply,
    assembler: TxAssembler,
}

impl ApplyEvents {
    fn progress(&self) -> Handled {
        if self.assembler.is_empty() {
            Handled::Done
        } else {
            Handled::Buffered
        }
    }
}

impl Handler for ApplyEvents {
    async fn handle(&mut self, record: &BrokerRecord) -> Result<Handled, ()> {
        let event: RowEvent = serde_json::from_str(&record.payload).expect("payloads are row events");
        if event.snapshot {
            // A read row is applied as it comes, by the apply rule, with no handler.
            self.target.apply_snapshot(&[event.row]).await.map_err(|_| ())?;
            return Ok(self.progress());
        }
        if self.apply == CdcApply::RowByRow {
            return self
                .target
                .apply(&[event.row], None)
                .await
                .map(|_| Handled::Done)
                .map_err(|_| ());
        }
        let id = event.tx.to_string();
        if self.target.inbox_contains(&id) {
            self.target.note_duplicate(&format!("{id} event {}", event.index));
            return Ok(self.progress());
        }
        if let Some(rows) = self.assembler.add(event) {
            self.target.apply(&rows, Some(&id)).await.map_err(|_| ())?;
        }
        Ok(self.progress())
    }

    async fn flush(&mut self) -> Result<bool, ()> {
        Ok(!self.assembler.is_empty())
    }

    fn reset(&mut self) {
        self.assembler.clear();
    }
}

/// The target side: one consumer per partition.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: CdcConfig) -> faultline_sim::HostResult {
    // The transaction-aware apply keeps applied transaction ids in its inbox.
    let inbox = config.apply == CdcApply::Transaction;
    let target = setup
        .open_target(
            &ctx,
            TargetConfig {
                inbox,
                inbox_cleanup_after_ms: config.inbox_cleanup_after_ms,
                ..TargetConfig::new(config.rule, config.welcome_key)
            },
        )
        .await;
    run_consumers(&ctx, TOPIC, config.consumer.with_bugs(setup.bugs), |_| {
        ApplyEvents {
            target: target.clone(),
            apply: config.apply,
            assembler: TxAssembler::default(),
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerId, EntityKey, Table, Version};

    fn event(tx: u64, index: u32, count: u32) -> RowEvent {
        let table = [Table::Customer, Table::Address, Table::Contact][index as usize % 3];
        RowEvent {
            tx: TxId(tx),
            index,
            count,
            row: RowImage::new(
                EntityKey {
                    table,
                    customer: CustomerId(tx),
                },
                Version(1),
                None,
            ),
            snapshot: false,
        }
    }

    #[test]
    fn a_transaction_comes_out_once_whole_whatever_the_order_and_copies() {
        let mut a = TxAssembler::default();
        assert_eq!(a.add(event(7, 1, 3)), None, "a fragment before its start is kept");
        assert_eq!(a.add(event(7, 1, 3)), None, "a second copy is ignored");
        assert_eq!(a.add(event(7, 0, 3)), None);
        assert!(!a.is_empty(), "incomplete: the offset must not pass it");
        let rows = a.add(event(7, 2, 3)).expect("complete");
        let tables: Vec<Table> = rows.iter().map(|r| r.key.table).collect();
        assert_eq!(
            tables,
            [Table::Customer, Table::Address, Table::Contact],
            "index order"
        );
        assert!(a.is_empty());
    }

    #[test]
    fn interleaved_transactions_assemble_apart_and_a_copy_of_the_first_restarts_nothing() {
        let mut a = TxAssembler::default();
        assert_eq!(a.add(event(1, 0, 2)), None);
        assert_eq!(a.add(event(2, 0, 2)), None);
        // A replayed copy of tx 1's first event while tx 1 is still open: no reset.
        assert_eq!(a.add(event(1, 0, 2)), None);
        assert_eq!(a.add(event(2, 1, 2)).map(|r| r.len()), Some(2));
        assert!(!a.is_empty(), "tx 1 is still open");
        assert_eq!(a.add(event(1, 1, 2)).map(|r| r.len()), Some(2));
        assert!(a.is_empty());
    }
}
