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

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{HostCtx, RpcClient};
use serde::{Deserialize, Serialize};

use crate::bugs::Bug;
use crate::connect::{fail_task, SourceOffsets, SourcePosition};
use crate::consumer::{run_consumers, ConsumerConfig, Handled, Handler};
use crate::domain::{RowImage, TxId, Version};
use crate::outbox::partition_of;
use crate::systems::broker::{BrokerRecord, Producer, ProducerConfig, PRODUCER_REQUEST_TIMEOUT};
use crate::systems::source::{
    Commit, LogRetention, SourceRequest, SourceResponse, LOG_READ_WAIT_MS, SOURCE_API_PORT,
};
use crate::systems::target::{ApplyRule, TargetConfig, WelcomeKey};
use crate::systems::target_db::TargetHandle;
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
    /// What the connector does when its log position is gone.
    pub snapshot_mode: SnapshotMode,
    /// How much log the source keeps for the connector's slot.
    pub log_retention: LogRetention,
    /// The connector's producer (Kafka Connect's source-task overrides, made idempotent).
    pub producer: ProducerConfig,
    /// Kafka Connect's `offset.flush.interval.ms`: how often the connector's position
    /// is saved; a crash replays what was published since.
    pub offset_flush_interval_ms: u64,
    /// How the target consumes.
    pub consumer: ConsumerConfig,
    /// Debezium's `tombstones.on.delete`: after each delete event, a tombstone (the
    /// row's key, no value), so that a compacted topic can drop the row's every record.
    pub tombstones_on_delete: bool,
}

/// Debezium's `snapshot.mode`, for what it decides here: what a connector does when
/// the position in its offsets can no longer be streamed (its slot invalidated, the
/// log removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotMode {
    /// `initial` (the default): snapshot only when there are no offsets; a position
    /// that is gone fails the task.
    Initial,
    /// `when_needed`: snapshot again when the offsets' position is no longer available,
    /// creating the slot anew at the snapshot's position, then stream from there.
    WhenNeeded,
}

/// The replication slot the connector reads through (Debezium's `slot.name`).
pub const SLOT: &str = "debezium";

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
    #[serde(default, skip_serializing_if = "faultline_sim::omit::no")]
    pub snapshot: bool,
}

/// How long the connector's snapshot read may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(500);

/// The connector: with `snapshot` and no saved position, an initial snapshot first
/// ([`take_snapshot`]); then tail the log through its replication slot, publish row
/// events, acknowledge each event's position; the worker flushes the position every
/// `offset.flush.interval.ms` ([`SourceOffsets`]) and confirms it to the slot. A
/// position that is gone fails the task or, with `snapshot.mode=when_needed`, takes a
/// snapshot again.
pub async fn run_connector(
    ctx: HostCtx,
    setup: Setup,
    config: CdcConfig,
    snapshot: bool,
) -> faultline_sim::HostResult {
    let bugs = setup.bugs;
    let source: RpcClient<SourceRequest, SourceResponse> =
        RpcClient::new(&ctx, "source", SOURCE_API_PORT, RPC_TIMEOUT);
    let producer = Producer::new(
        &ctx,
        PRODUCER_REQUEST_TIMEOUT,
        config.producer,
        config.consumer.cluster.brokers,
    )
    .recorded_by(&setup.recorder);
    let confirming = source.clone();
    let offsets = SourceOffsets::open(
        &ctx,
        POSITION_FILE,
        config.offset_flush_interval_ms,
        move |position| {
            // A standby status update: lost with its message, sent again after the next
            // flush.
            let request = SourceRequest::ConfirmSlot {
                slot: SLOT.to_string(),
                position: position.log,
            };
            let confirming = confirming.clone();
            tokio::task::spawn_local(async move {
                let _ = confirming.call(&request).await;
            });
        },
    );
    if snapshot && !offsets.was_saved() {
        let position = take_snapshot(&ctx, &producer, config, true).await;
        offsets.acknowledged(SourcePosition::at(position));
    }
    if bugs.has(Bug::CdcResumesPastSharedPosition) && offsets.position().skip > 0 {
        // Planted: the saved offset is read at log-position granularity, as if every
        // event of the record it stands in were published (dbz#1554).
        let position = offsets.position();
        ctx.record(
            "connector-resumed",
            format!(
                "after record {} ({} of its events published)",
                position.log.0, position.skip
            ),
        );
        offsets.acknowledged(SourcePosition {
            skip: u32::MAX,
            ..position
        });
    }
    let mut signal = config
        .snapshot_signal_ms
        .filter(|_| ctx.disk().read_all(SIGNAL_DONE_FILE).is_empty())
        .map(faultline_sim::SimTime::from_millis);
    // A signalled snapshot still to take sends every row again.
    let signalled = Rc::new(Cell::new(signal.is_some()));
    let reported = Rc::downgrade(&signalled);
    ctx.report_progress("snapshot-signal", move || {
        reported
            .upgrade()
            .filter(|s| s.get())
            .map(|_| "a signalled snapshot is not yet done".to_string())
    });
    loop {
        faultline_sim::timer::sleep(Duration::from_millis(config.connector_poll_ms)).await;
        if signal.is_some_and(|at| ctx.now() >= at) {
            // A blocking snapshot: streaming waits while every live row goes out as a
            // read event, then resumes from the position it paused at, so the commits
            // since that position come again after the rows that already hold them.
            ctx.record(
                "snapshot-signal",
                format!("blocking, streaming paused at {}", offsets.position().log.0),
            );
            take_snapshot(&ctx, &producer, config, false).await;
            if ctx.disk().replace(SIGNAL_DONE_FILE, b"done").await.is_ok() {
                signal = None;
                signalled.set(false);
            }
        }
        let position = offsets.position();
        let (commits, next) = match source
            .call(&SourceRequest::ReadLog {
                slot: SLOT.to_string(),
                from: position.log,
                wait_ms: LOG_READ_WAIT_MS,
            })
            .await
        {
            Ok(SourceResponse::Log { commits, next }) => (commits, next),
            Ok(SourceResponse::LogGone(gone)) => {
                ctx.record("position-gone", gone.to_string());
                if bugs.has(Bug::CdcRecreatesLostSlot) {
                    // Planted: a new slot, and streaming from wherever it starts.
                    if let Ok(SourceResponse::SlotAt(start)) = source
                        .call(&SourceRequest::CreateSlot {
                            slot: SLOT.to_string(),
                        })
                        .await
                    {
                        offsets.acknowledged(SourcePosition::at(start));
                    }
                    continue;
                }
                match config.snapshot_mode {
                    SnapshotMode::Initial => {
                        let error = format!(
                            "cannot stream from position {}: {gone}; only a new snapshot can go on (snapshot.mode=when_needed)",
                            position.log.0
                        );
                        return fail_task(&ctx, &setup.recorder, error).await;
                    }
                    SnapshotMode::WhenNeeded => {
                        let start = take_snapshot(&ctx, &producer, config, true).await;
                        offsets.acknowledged(SourcePosition::at(start));
                        continue;
                    }
                }
            }
            _ => continue,
        };
        if bugs.has(Bug::CdcPositionBeforePublish) {
            // Planted: the position is saved before the events are out.
            offsets.acknowledged(SourcePosition::at(next));
            offsets.flush().await;
        }
        let events = row_events(
            &commits,
            next,
            position,
            config.consumer.partitions,
            config.tombstones_on_delete,
        );
        if events.is_empty() {
            // Records that hold no change (outbox marks, leases) move the position too.
            offsets.acknowledged(SourcePosition::at(next));
            continue;
        }
        // The whole poll goes to the producer at once (each partition's batches on
        // their way together), then each event's position is acknowledged in log
        // order as its delivery comes in: the offset the worker flushes meanwhile can
        // stand inside a transaction.
        let deliveries: Vec<_> = events
            .into_iter()
            .map(|(partition, key, payload, after)| {
                (producer.send_flushed(TOPIC, partition, key, payload), after)
            })
            .collect();
        for (delivery, after) in deliveries {
            // An error means delivery.timeout.ms passed: the rest is read again from
            // the acknowledged position.
            if delivery.await.is_err() {
                break;
            }
            offsets.acknowledged(after);
        }
    }
}

/// The row events of a poll's commits from `position` on, in log order: each with its
/// partition, key, payload and the position just after it (inside its transaction, or
/// the next record's start after its last event). The first commit, when it stands at
/// `position`, starts after the events already published. With `tombstones`, a delete
/// event is followed by its row's tombstone (an empty payload) at the same position, as
/// Debezium gives both one source offset.
fn row_events(
    commits: &[(faultline_sim::LogPos, Commit)],
    next: faultline_sim::LogPos,
    position: SourcePosition,
    partitions: u32,
    tombstones: bool,
) -> Vec<(u32, String, String, SourcePosition)> {
    let mut events = Vec::new();
    for (i, (at, commit)) in commits.iter().enumerate() {
        let after_commit = commits.get(i + 1).map_or(next, |(later, _)| *later);
        let count = commit.rows.len() as u32;
        let published = if *at == position.log { position.skip } else { 0 };
        for (index, row) in commit.rows.iter().enumerate().skip(published as usize) {
            let index = index as u32;
            let event = RowEvent {
                tx: commit.tx,
                index,
                count,
                row: row.clone(),
                snapshot: false,
            };
            let after = if index + 1 < count {
                SourcePosition {
                    log: *at,
                    skip: index + 1,
                }
            } else {
                SourcePosition::at(after_commit)
            };
            let partition = partition_of(row.key.customer, partitions);
            events.push((
                partition,
                row.key.to_string(),
                serde_json::to_string(&event).expect("row events serialise"),
                after,
            ));
            if tombstones && row.is_delete() {
                events.push((partition, row.key.to_string(), String::new(), after));
            }
        }
    }
    events
}

/// A snapshot: every live row of one consistent snapshot published as a read event;
/// returns the log position the snapshot stands at. With `create_slot`, the slot is
/// created anew at that position (an initial or a `when_needed` snapshot); a blocking
/// snapshot by signal leaves the slot where streaming paused.
///
/// Debezium's initial snapshot (`snapshot.mode=initial`, for a connector without a
/// saved offset) acknowledges that position, so streaming continues from it with
/// nothing missed. The position reaches offset storage at the next flush: a connector
/// that stops before then, or during the snapshot, snapshots again on restart
/// (Debezium's documented behaviour), publishing every row again.
async fn take_snapshot(
    ctx: &HostCtx,
    producer: &Producer,
    config: CdcConfig,
    create_slot: bool,
) -> faultline_sim::LogPos {
    let source: RpcClient<SourceRequest, SourceResponse> =
        RpcClient::new(ctx, "source", SOURCE_API_PORT, SNAPSHOT_TIMEOUT);
    'snapshot: loop {
        let request = SourceRequest::SnapshotAt {
            slot: create_slot.then(|| SLOT.to_string()),
        };
        let Ok(SourceResponse::SnapshotAt { rows, position }) = source.call(&request).await else {
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

/// Puts transactions back together from their row events, whatever order, partitions
/// and copies they arrive in, and hands them out in an order that keeps every
/// partition's.
///
/// Events are buffered by transaction id and index: a second copy of a buffered event
/// (a producer's retry, a connector's replay) is ignored, fragments may come in any
/// order and transactions may interleave. A transaction is whole when all its events
/// are in (the transaction metadata's event count says how many), wherever they came
/// from: one assembler serves every partition the process consumes, so an action over
/// two customers, whose rows went to two partitions, comes out whole. It comes out only
/// once it stands first in every partition it has events in: a later transaction of
/// one of those partitions waits behind it, so no row goes back to an older version
/// (the connector publishes in commit order, so every partition holds transactions in
/// that one order and none waits for another crosswise). A snapshot's read row waits
/// likewise behind what came before it in its partition. Each event remembers its
/// partition, so a partition that goes back to its committed offset drops only its own.
#[derive(Debug, Default)]
pub struct TxAssembler {
    assembling: BTreeMap<TxId, Assembling>,
    /// Per partition, what arrived and is not applied yet, in arrival order.
    pending: BTreeMap<u32, std::collections::VecDeque<Pending>>,
    /// Partitions whose first read row is handed out and being applied.
    reading: std::collections::BTreeSet<u32>,
}

#[derive(Debug)]
struct Assembling {
    count: u32,
    /// Events by index, each with the partition it came from.
    rows: BTreeMap<u32, (u32, RowImage)>,
    /// Handed out and being applied.
    applying: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Pending {
    Tx(TxId),
    /// A snapshot's read row.
    Read(RowImage),
}

/// What is ready to apply next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ready {
    /// A whole transaction, its rows in index order.
    Tx(TxId, Vec<RowImage>),
    /// A snapshot's read row, from this partition.
    Read(u32, RowImage),
}

impl TxAssembler {
    /// Takes one change event that came from `partition`.
    pub fn add(&mut self, partition: u32, event: RowEvent) {
        let entry = self.assembling.entry(event.tx).or_insert_with(|| Assembling {
            count: event.count,
            rows: BTreeMap::new(),
            applying: false,
        });
        entry.rows.entry(event.index).or_insert((partition, event.row));
        let queue = self.pending.entry(partition).or_default();
        if !queue.contains(&Pending::Tx(event.tx)) {
            queue.push_back(Pending::Tx(event.tx));
        }
    }

    /// Takes a snapshot's read row that came from `partition`.
    pub fn add_read(&mut self, partition: u32, row: RowImage) {
        self.pending
            .entry(partition)
            .or_default()
            .push_back(Pending::Read(row));
    }

    /// The next thing to apply, marked as being applied: a whole transaction first in
    /// every partition it has events in, or a read row first in its partition.
    pub fn next_ready(&mut self) -> Option<Ready> {
        let heads: Vec<(u32, Pending)> = self
            .pending
            .iter()
            .filter_map(|(p, queue)| queue.front().map(|head| (*p, head.clone())))
            .collect();
        for (partition, head) in heads {
            match head {
                Pending::Read(row) => {
                    if self.reading.insert(partition) {
                        return Some(Ready::Read(partition, row));
                    }
                }
                Pending::Tx(tx) => {
                    let Some(assembling) = self.assembling.get(&tx) else {
                        continue;
                    };
                    let whole = assembling.rows.len() as u32 == assembling.count;
                    let first_everywhere = assembling
                        .rows
                        .values()
                        .all(|(p, _)| self.pending.get(p).and_then(|q| q.front()) == Some(&Pending::Tx(tx)));
                    if whole && first_everywhere && !assembling.applying {
                        let assembling = self.assembling.get_mut(&tx).expect("just found");
                        assembling.applying = true;
                        let rows = assembling.rows.values().map(|(_, row)| row.clone()).collect();
                        return Some(Ready::Tx(tx, rows));
                    }
                }
            }
        }
        None
    }

    /// What `next_ready` handed out is applied: it leaves every queue.
    pub fn applied(&mut self, ready: &Ready) {
        match ready {
            Ready::Tx(tx, _) => {
                self.assembling.remove(tx);
                for queue in self.pending.values_mut() {
                    if queue.front() == Some(&Pending::Tx(*tx)) {
                        queue.pop_front();
                    }
                }
            }
            Ready::Read(partition, _) => {
                if self.reading.remove(partition) {
                    if let Some(queue) = self.pending.get_mut(partition) {
                        queue.pop_front();
                    }
                }
            }
        }
    }

    /// Applying what `next_ready` handed out failed: it may be handed out again.
    pub fn failed(&mut self, ready: &Ready) {
        match ready {
            Ready::Tx(tx, _) => {
                if let Some(assembling) = self.assembling.get_mut(tx) {
                    assembling.applying = false;
                }
            }
            Ready::Read(partition, _) => {
                self.reading.remove(partition);
            }
        }
    }

    /// Whether `partition` holds anything not yet applied (its offset must not pass
    /// it).
    pub fn holds(&self, partition: u32) -> bool {
        self.pending.get(&partition).is_some_and(|q| !q.is_empty())
    }

    /// Whether nothing at all waits.
    pub fn is_empty(&self) -> bool {
        self.pending.values().all(|q| q.is_empty())
    }

    /// Drops what came from `partition` (it goes back to its committed offset and
    /// will hand those events again); a transaction being applied keeps its events.
    pub fn forget(&mut self, partition: u32) {
        self.pending.remove(&partition);
        self.reading.remove(&partition);
        self.assembling.retain(|_, assembling| {
            if !assembling.applying {
                assembling.rows.retain(|_, (from, _)| *from != partition);
            }
            !assembling.rows.is_empty()
        });
    }
}

/// Applies row events, one by one or a transaction at a time.
///
/// The transaction-aware apply assembles transactions in the assembler every
/// partition's handler shares ([`TxAssembler`]), applies each whole with its id in the
/// target's inbox in the same local transaction, and ignores every event of a
/// transaction the inbox already holds. A partition's offset never passes what it
/// holds unapplied: records answer `Buffered` while it holds something.
struct ApplyEvents {
    target: TargetHandle,
    apply: CdcApply,
    partition: u32,
    assembler: Rc<RefCell<TxAssembler>>,
}

impl ApplyEvents {
    fn progress(&self) -> Handled {
        if self.assembler.borrow().holds(self.partition) {
            Handled::Buffered
        } else {
            Handled::Done
        }
    }

    /// Applies, in order, whatever the assembler has ready (this partition's arrival
    /// may complete a transaction another partition holds first, and free what waits
    /// behind it).
    async fn apply_ready(&mut self) -> Result<(), ()> {
        loop {
            let Some(ready) = self.assembler.borrow_mut().next_ready() else {
                return Ok(());
            };
            let result = match &ready {
                Ready::Tx(tx, rows) => self.target.apply(rows, Some(&tx.to_string())).await.map(|_| ()),
                // A read row is applied by the apply rule, with no handler.
                Ready::Read(_, row) => self
                    .target
                    .apply_snapshot(std::slice::from_ref(row))
                    .await
                    .map(|_| ()),
            };
            let mut assembler = self.assembler.borrow_mut();
            match result {
                Ok(()) => assembler.applied(&ready),
                Err(_) => {
                    assembler.failed(&ready);
                    return Err(());
                }
            }
        }
    }
}

impl Handler for ApplyEvents {
    async fn handle(&mut self, record: &BrokerRecord) -> Result<Handled, ()> {
        if record.payload.is_empty() {
            // A tombstone. The row-by-row sink deletes the row by its key whatever it
            // holds (a JDBC sink's delete.enabled=true): after compaction it may be all
            // that is left of the delete. The transaction-aware apply took the delete
            // with its transaction.
            if self.apply == CdcApply::RowByRow {
                let key = record.key.parse().expect("row events are keyed by their row");
                let delete = RowImage::new(key, Version::ANY, None);
                self.target.apply(&[delete], None).await?;
                return Ok(Handled::Done);
            }
            self.apply_ready().await?;
            return Ok(self.progress());
        }
        let event: RowEvent = serde_json::from_str(&record.payload).expect("payloads are row events");
        if self.apply == CdcApply::RowByRow {
            if event.snapshot {
                self.target.apply_snapshot(&[event.row]).await?;
                return Ok(Handled::Done);
            }
            return self.target.apply(&[event.row], None).await.map(|_| Handled::Done);
        }
        if event.snapshot {
            self.assembler.borrow_mut().add_read(self.partition, event.row);
        } else {
            let id = event.tx.to_string();
            if self.target.inbox_contains(&id).await? {
                self.target.note_duplicate(&format!("{id} event {}", event.index));
                return Ok(self.progress());
            }
            self.assembler.borrow_mut().add(self.partition, event);
        }
        self.apply_ready().await?;
        Ok(self.progress())
    }

    async fn flush(&mut self) -> Result<bool, ()> {
        self.apply_ready().await?;
        Ok(self.assembler.borrow().holds(self.partition))
    }

    fn reset(&mut self) {
        self.assembler.borrow_mut().forget(self.partition);
    }
}

/// An instance of the target side: one consumer per partition it is assigned. The
/// transaction-aware apply runs one instance (its assembler needs every partition).
pub async fn run_target(ctx: HostCtx, setup: Setup, config: CdcConfig) -> faultline_sim::HostResult {
    // The transaction-aware apply keeps applied transaction ids in its inbox.
    let inbox = config.apply == CdcApply::Transaction;
    let target = setup
        .target_handle(
            &ctx,
            TargetConfig {
                inbox,
                inbox_cleanup_after_ms: config.inbox_cleanup_after_ms,
                ..TargetConfig::new(config.rule, config.welcome_key)
            },
            config.consumer.instances,
        )
        .await;
    let assembler = Rc::new(RefCell::new(TxAssembler::default()));
    run_consumers(
        &ctx,
        &setup.recorder,
        &setup.kafka,
        TOPIC,
        config.consumer.with_bugs(setup.bugs),
        |partition| ApplyEvents {
            target: target.clone(),
            apply: config.apply,
            partition,
            assembler: Rc::clone(&assembler),
        },
    )
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

    /// Everything ready now, applied in order.
    fn drain(a: &mut TxAssembler) -> Vec<Ready> {
        let mut out = Vec::new();
        while let Some(ready) = a.next_ready() {
            a.applied(&ready);
            out.push(ready);
        }
        out
    }

    fn tx_of(ready: &Ready) -> u64 {
        match ready {
            Ready::Tx(tx, _) => tx.0,
            Ready::Read(..) => u64::MAX,
        }
    }

    #[test]
    fn a_transaction_comes_out_once_whole_whatever_the_order_and_copies() {
        let mut a = TxAssembler::default();
        a.add(0, event(7, 1, 3));
        a.add(0, event(7, 1, 3));
        a.add(0, event(7, 0, 3));
        assert!(drain(&mut a).is_empty(), "incomplete: nothing comes out");
        assert!(a.holds(0), "the offset must not pass it");
        a.add(0, event(7, 2, 3));
        let out = drain(&mut a);
        let Ready::Tx(_, rows) = &out[0] else {
            panic!("{out:?}")
        };
        let tables: Vec<Table> = rows.iter().map(|r| r.key.table).collect();
        assert_eq!(
            tables,
            [Table::Customer, Table::Address, Table::Contact],
            "index order, the copy ignored"
        );
        assert!(a.is_empty() && !a.holds(0));
    }

    #[test]
    fn a_transaction_across_partitions_comes_out_whole_and_later_ones_wait_behind_it() {
        let mut a = TxAssembler::default();
        // tx 1 spans partitions 0 and 1; tx 2, later, is whole in partition 0 first.
        a.add(0, event(1, 0, 2));
        a.add(0, event(2, 0, 1));
        assert!(drain(&mut a).is_empty(), "tx 2 waits behind tx 1 in partition 0");
        a.add(1, event(1, 1, 2));
        let order: Vec<u64> = drain(&mut a).iter().map(tx_of).collect();
        assert_eq!(order, [1, 2], "tx 1 whole, then tx 2");
        assert!(a.is_empty());
    }

    #[test]
    fn a_read_row_waits_behind_what_came_before_it_and_is_handed_out_once() {
        let mut a = TxAssembler::default();
        a.add(0, event(1, 0, 2));
        a.add_read(0, event(5, 0, 1).row);
        a.add_read(1, event(6, 0, 1).row);
        let first = a.next_ready().expect("partition 1's read is first there");
        assert!(matches!(first, Ready::Read(1, _)), "{first:?}");
        assert_eq!(
            a.next_ready(),
            None,
            "partition 0's read waits behind tx 1; partition 1's is being applied"
        );
        a.applied(&first);
        a.add(1, event(1, 1, 2));
        let order: Vec<u64> = drain(&mut a).iter().map(tx_of).collect();
        assert_eq!(order, [1, u64::MAX], "tx 1, then the read behind it");
        assert!(a.is_empty());
    }

    #[test]
    fn a_rewound_partition_drops_only_its_own_events_and_a_failed_apply_is_handed_out_again() {
        let mut a = TxAssembler::default();
        a.add(1, event(9, 0, 3));
        a.add(2, event(9, 1, 3));
        a.forget(2);
        a.add(1, event(9, 2, 3));
        assert!(drain(&mut a).is_empty(), "event 1 went with partition 2");
        a.add(2, event(9, 1, 3));
        let ready = a.next_ready().expect("whole again");
        assert_eq!(a.next_ready(), None, "being applied: not handed out twice");
        a.failed(&ready);
        assert_eq!(
            a.next_ready(),
            Some(ready.clone()),
            "handed out again after a failure"
        );
        a.applied(&ready);
        assert!(a.is_empty());
    }
}
