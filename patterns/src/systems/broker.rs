//! A Kafka-like broker: topics split into partitions, each a durable log on the world's
//! disk; committed consumer offsets in a small atomically replaced file.
//!
//! A produce carries a batch of records for one partition; it is appended and synced
//! before it is acknowledged (acks=all on a single replica). A retried produce whose
//! first ack was lost appends a duplicate batch, unless the producer is idempotent: then
//! the broker remembers the last sequence per producer and partition (rebuilt from the
//! log on recovery) and answers a repeat as stored. Order holds within a partition only. Consumers fetch from an offset and commit
//! offsets; after a restart they resume from the committed offset, so whatever they had
//! processed but not committed is delivered again.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::backoff::Backoff;
use crate::bugs::{Bug, BugSet};
use crate::keyed_locks::KeyedLocks;
use faultline_sim::{serve, HostCtx, LogFile, RpcClient, RpcError, RpcMessage};
use serde::{Deserialize, Serialize};

/// The port the broker listens on.
pub const BROKER_PORT: u16 = 9092;
/// How long a fetch waits at the broker for records when there are none (Kafka's
/// `fetch.max.wait.ms`); below the call timeout, so an idle fetch is not a failure.
pub const FETCH_WAIT_MS: u64 = 200;
/// The longest wait a fetch may ask for.
pub const FETCH_WAIT_MAX_MS: u64 = 1_000;
/// Bytes of keys and payloads one produce request carries at most by default (Kafka's
/// `batch.size` default).
pub const BATCH_SIZE_BYTES: usize = 16_384;
/// Records one fetch returns at most.
pub const FETCH_MAX_RECORDS: u32 = 64;
const OFFSETS_FILE: &str = "offsets.json";
/// Each partition's log start offset (Kafka's `log-start-offset-checkpoint`): records
/// below it were deleted by retention and never come back, not even after a restart.
const LOG_STARTS_FILE: &str = "log-starts.json";
/// How often retention runs (Kafka's `log.retention.check.interval.ms`, 300000,
/// compressed to this simulation's seconds-long runs).
const RETENTION_CHECK_MS: u64 = 250;
/// How often a broker that acknowledges before syncing (a planted bug) catches up.
const LAZY_SYNC_PERIOD: Duration = Duration::from_millis(200);

/// A producer's identity and the sequence number of this record (idempotent producer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProducerSeq {
    /// The producer id.
    pub producer: u64,
    /// Sequence number, increasing per producer and partition.
    pub seq: u64,
}

/// A record as stored and fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    /// Its offset in the partition.
    pub offset: u64,
    /// The key it was partitioned by.
    pub key: String,
    /// The payload (JSON text).
    pub payload: String,
    /// The producer sequence, when the producer is idempotent.
    pub producer: Option<ProducerSeq>,
    /// When the broker appended it (ms), kept only where retention needs its age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appended_at_ms: Option<u64>,
}

/// A request to the broker.
#[allow(missing_docs)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BrokerRequest {
    /// A batch of records for one partition; with an idempotent producer, `producer`
    /// carries the first record's sequence and the others follow it.
    Produce {
        topic: String,
        partition: u32,
        records: Vec<(String, String)>,
        producer: Option<ProducerSeq>,
    },
    Fetch {
        topic: String,
        partition: u32,
        offset: u64,
        max: u32,
        /// Long poll: with nothing at `offset`, wait up to this long for records.
        wait_ms: u64,
    },
    CommitOffset {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
    },
    FetchOffset {
        group: String,
        topic: String,
        partition: u32,
    },
}

/// The broker's answer.
#[allow(missing_docs)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BrokerResponse {
    Produced {
        offset: u64,
    },
    Records(Vec<BrokerRecord>),
    /// The fetch offset is below the log start (deleted by retention) or past the end
    /// (Kafka's OFFSET_OUT_OF_RANGE).
    OutOfRange {
        start: u64,
        end: u64,
    },
    Committed,
    Offset(u64),
    Error(String),
}

impl RpcMessage for BrokerRequest {
    fn label(&self) -> String {
        match self {
            BrokerRequest::Produce {
                topic,
                partition,
                records,
                producer,
            } => {
                let keys: Vec<&str> = records.iter().map(|(key, _)| key.as_str()).collect();
                let keys = keys.join(" key=");
                match producer {
                    Some(p) => format!(
                        "produce {topic}/{partition} n={} key={keys} pid={} seq={}",
                        records.len(),
                        p.producer,
                        p.seq
                    ),
                    None => format!("produce {topic}/{partition} n={} key={keys}", records.len()),
                }
            }
            BrokerRequest::Fetch {
                topic,
                partition,
                offset,
                ..
            } => format!("fetch {topic}/{partition}@{offset}"),
            BrokerRequest::CommitOffset {
                group,
                topic,
                partition,
                offset,
            } => {
                format!("commit {group} {topic}/{partition}@{offset}")
            }
            BrokerRequest::FetchOffset {
                group,
                topic,
                partition,
            } => format!("offset? {group} {topic}/{partition}"),
        }
    }
}

impl RpcMessage for BrokerResponse {
    fn label(&self) -> String {
        match self {
            BrokerResponse::Produced { offset } => format!("produced @{offset}"),
            BrokerResponse::Records(r) => format!("records n={}", r.len()),
            BrokerResponse::OutOfRange { start, end } => format!("offset out of range {start}..{end}"),
            BrokerResponse::Committed => "committed".to_string(),
            BrokerResponse::Offset(o) => format!("offset {o}"),
            BrokerResponse::Error(e) => format!("error {e}"),
        }
    }
}

struct Partition {
    log: LogFile,
    records: Vec<BrokerRecord>,
    /// The first offset retention has not deleted.
    log_start: u64,
    /// Wakes long-polling fetches when a record arrives.
    arrived: Rc<Notify>,
    /// One batch appended at a time.
    writer: Rc<tokio::sync::Mutex<()>>,
}

struct State {
    ctx: HostCtx,
    bugs: BugSet,
    partitions: BTreeMap<(String, u32), Partition>,
    offsets: BTreeMap<String, u64>,
    /// Last (sequence, offset) per producer, topic and partition.
    sequences: BTreeMap<(u64, String, u32), (u64, u64)>,
    /// `retention.ms` of every topic: records older are deleted; `None` keeps them.
    retention_ms: Option<u64>,
    /// The durable log start offsets, by `topic-partition`.
    log_starts: BTreeMap<String, u64>,
}

impl State {
    fn partition(&mut self, topic: &str, partition: u32) -> &mut Partition {
        let ctx = &self.ctx;
        let sequences = &mut self.sequences;
        let log_start = self
            .log_starts
            .get(&format!("{topic}-{partition}"))
            .copied()
            .unwrap_or(0);
        self.partitions
            .entry((topic.to_string(), partition))
            .or_insert_with(|| {
                let (log, recovery) = LogFile::open(ctx.disk(), &format!("{topic}-{partition}.log"));
                // One frame per batch: a batch is stored whole or not at all, as Kafka
                // writes a record batch with one CRC.
                let records: Vec<BrokerRecord> = recovery
                    .records
                    .iter()
                    .flat_map(|r| {
                        serde_json::from_slice::<Vec<BrokerRecord>>(&r.payload)
                            .expect("broker batches are written by this module")
                    })
                    .collect();
                for r in &records {
                    if let Some(p) = r.producer {
                        sequences.insert((p.producer, topic.to_string(), partition), (p.seq, r.offset));
                    }
                }
                Partition {
                    log,
                    records,
                    log_start,
                    arrived: Rc::new(Notify::new()),
                    writer: Rc::default(),
                }
            })
    }

    /// Answers a read (fetch, offset lookup); writes go through [`produce`] and
    /// [`commit_offset`], which wait for the disk.
    fn read(&mut self, request: BrokerRequest) -> BrokerResponse {
        match request {
            BrokerRequest::Fetch {
                topic,
                partition,
                offset,
                max,
                ..
            } => {
                let part = self.partition(&topic, partition);
                let log_end = part.records.len() as u64;
                // A start past the end (records lost after their deletion was recorded)
                // means an empty partition: the consumer resets to the end.
                let log_start = part.log_start.min(log_end);
                if offset < log_start || offset > log_end {
                    return BrokerResponse::OutOfRange {
                        start: log_start,
                        end: log_end,
                    };
                }
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(part.records.len());
                let end = start
                    .saturating_add(max.min(FETCH_MAX_RECORDS) as usize)
                    .min(part.records.len());
                BrokerResponse::Records(part.records[start..end].to_vec())
            }
            BrokerRequest::FetchOffset {
                group,
                topic,
                partition,
            } => BrokerResponse::Offset(
                self.offsets
                    .get(&offset_key(&group, &topic, partition))
                    .copied()
                    .unwrap_or(0),
            ),
            BrokerRequest::Produce { .. } | BrokerRequest::CommitOffset { .. } => {
                unreachable!("writes are not reads")
            }
        }
    }
}

/// Appends a batch to a partition's log, one batch at a time per partition (the
/// partition leader's append lock), and acknowledges once it is durable.
async fn produce(
    state: &Rc<RefCell<State>>,
    topic: String,
    partition: u32,
    records: Vec<(String, String)>,
    producer: Option<ProducerSeq>,
) -> BrokerResponse {
    let writer = Rc::clone(&state.borrow_mut().partition(&topic, partition).writer);
    let _appending = writer.lock().await;
    let (log, batch, acks_before_sync) = {
        let mut s = state.borrow_mut();
        if let Some(p) = producer {
            if let Some(&(seq, offset)) = s.sequences.get(&(p.producer, topic.clone(), partition)) {
                // A retry of a batch already stored: answer as the first time.
                if p.seq <= seq {
                    return BrokerResponse::Produced { offset };
                }
            }
        }
        let acks_before_sync = s.bugs.has(Bug::BrokerAcksBeforeSync);
        let appended_at_ms = s.retention_ms.map(|_| s.ctx.now().as_millis());
        let part = s.partition(&topic, partition);
        let first = part.records.len() as u64;
        let batch: Vec<BrokerRecord> = records
            .into_iter()
            .enumerate()
            .map(|(i, (key, payload))| BrokerRecord {
                offset: first + i as u64,
                key,
                payload,
                producer: producer.map(|p| ProducerSeq {
                    producer: p.producer,
                    seq: p.seq + i as u64,
                }),
                appended_at_ms,
            })
            .collect();
        (part.log.clone(), batch, acks_before_sync)
    };
    let batch_start = log.end();
    let bytes = serde_json::to_vec(&batch).expect("records serialise");
    let mut written = log.append(&bytes).await.map(|_| ());
    // Planted bug: acknowledge before the records are durable; a background sync
    // catches up later.
    if written.is_ok() && !acks_before_sync {
        written = log.sync().await;
    }
    if let Err(e) = written {
        // Nothing of a failed batch stays, not even bytes a failed fsync left readable
        // but not durable.
        log.truncate(batch_start);
        return BrokerResponse::Error(e.to_string());
    }
    let mut s = state.borrow_mut();
    let first = batch.first().map_or(0, |r| r.offset);
    let last = batch.last().map(|r| (r.offset, r.producer));
    let part = s.partition(&topic, partition);
    part.records.extend(batch);
    part.arrived.notify_waiters();
    if let Some((offset, Some(p))) = last {
        s.sequences
            .insert((p.producer, topic, partition), (p.seq, offset));
    }
    BrokerResponse::Produced { offset: first }
}

/// Stores a group's committed offset: the whole offsets file replaced the careful way,
/// one commit at a time.
async fn commit_offset(
    state: &Rc<RefCell<State>>,
    writer: &tokio::sync::Mutex<()>,
    key: String,
    offset: u64,
) -> BrokerResponse {
    let _committing = writer.lock().await;
    let (disk, next) = {
        let s = state.borrow();
        let mut next = s.offsets.clone();
        next.insert(key, offset);
        (s.ctx.disk().clone(), next)
    };
    match disk
        .replace(
            OFFSETS_FILE,
            &serde_json::to_vec(&next).expect("offsets serialise"),
        )
        .await
    {
        Ok(()) => {
            state.borrow_mut().offsets = next;
            BrokerResponse::Committed
        }
        Err(e) => BrokerResponse::Error(e.to_string()),
    }
}

fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{group}/{topic}/{partition}")
}

/// Deletes, per partition, the records older than `retention.ms` from the head of the
/// log (each batch its own segment: Kafka's `segment.ms` compressed away), advancing
/// the log start; the new starts are made durable first, so nothing deleted returns
/// after a restart.
async fn enforce_retention(state: &Rc<RefCell<State>>, retention_ms: u64) {
    let (disk, next) = {
        let s = state.borrow();
        let now = s.ctx.now().as_millis();
        let mut next = s.log_starts.clone();
        for ((topic, partition), part) in &s.partitions {
            let expired = part
                .records
                .get(part.log_start as usize..)
                .unwrap_or_default()
                .iter()
                .take_while(|r| r.appended_at_ms.is_some_and(|at| at + retention_ms <= now))
                .count() as u64;
            if expired > 0 {
                next.insert(format!("{topic}-{partition}"), part.log_start + expired);
            }
        }
        if next == s.log_starts {
            return;
        }
        (s.ctx.disk().clone(), next)
    };
    let bytes = serde_json::to_vec(&next).expect("log starts serialise");
    if disk.replace(LOG_STARTS_FILE, &bytes).await.is_err() {
        return;
    }
    let mut guard = state.borrow_mut();
    let s = &mut *guard;
    for ((topic, partition), part) in s.partitions.iter_mut() {
        if let Some(&start) = next.get(&format!("{topic}-{partition}")) {
            if start > part.log_start {
                s.ctx
                    .record("retention-deleted", format!("{topic}/{partition} below {start}"));
                part.log_start = start;
            }
        }
    }
    s.log_starts = next;
}

/// Runs the broker on this host until it stops; every topic keeps its records for
/// `retention_ms` (`None`: for the whole run).
pub async fn run_broker(ctx: HostCtx, bugs: BugSet, retention_ms: Option<u64>) -> faultline_sim::HostResult {
    let read_map = |file: &str| -> BTreeMap<String, u64> {
        let bytes = ctx.disk().read_all(file);
        if bytes.is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_slice(&bytes).expect("the broker's maps are written by this module")
        }
    };
    let offsets = read_map(OFFSETS_FILE);
    let log_starts = read_map(LOG_STARTS_FILE);
    // Log recovery: every partition's log made durable before it serves a fetch (what a
    // crash left in the page cache was never acknowledged; a later power loss would
    // take it back from consumers that saw it).
    for file in ctx.disk().list().into_iter().filter(|f| f.ends_with(".log")) {
        LogFile::open_durably(ctx.disk(), &file).await;
    }
    let state = Rc::new(RefCell::new(State {
        ctx: ctx.clone(),
        bugs,
        partitions: BTreeMap::new(),
        offsets,
        sequences: BTreeMap::new(),
        retention_ms,
        log_starts,
    }));
    if let Some(retention_ms) = retention_ms {
        let retaining = Rc::clone(&state);
        tokio::task::spawn_local(async move {
            loop {
                faultline_sim::timer::sleep(Duration::from_millis(RETENTION_CHECK_MS)).await;
                enforce_retention(&retaining, retention_ms).await;
            }
        });
    }
    if bugs.has(Bug::BrokerAcksBeforeSync) {
        let syncing = Rc::clone(&state);
        tokio::task::spawn_local(async move {
            loop {
                faultline_sim::timer::sleep(LAZY_SYNC_PERIOD).await;
                let logs: Vec<LogFile> = syncing
                    .borrow()
                    .partitions
                    .values()
                    .map(|p| p.log.clone())
                    .collect();
                for log in logs {
                    let _ = log.sync().await;
                }
            }
        });
    }
    let offsets_writer = Rc::new(tokio::sync::Mutex::new(()));
    serve(ctx, BROKER_PORT, move |request: BrokerRequest| {
        let state = Rc::clone(&state);
        let offsets_writer = Rc::clone(&offsets_writer);
        async move {
            // A long poll waits (without holding the state) until a record arrives.
            if let BrokerRequest::Fetch {
                topic,
                partition,
                offset,
                wait_ms,
                ..
            } = &request
            {
                let (empty, arrived) = {
                    let mut s = state.borrow_mut();
                    let part = s.partition(topic, *partition);
                    (part.records.len() as u64 == *offset, Rc::clone(&part.arrived))
                };
                if empty && *wait_ms > 0 {
                    let wait = Duration::from_millis((*wait_ms).min(FETCH_WAIT_MAX_MS));
                    let _ = faultline_sim::timer::timeout(wait, arrived.notified()).await;
                }
            }
            match request {
                BrokerRequest::Produce {
                    topic,
                    partition,
                    records,
                    producer,
                } => produce(&state, topic, partition, records, producer).await,
                BrokerRequest::CommitOffset {
                    group,
                    topic,
                    partition,
                    offset,
                } => {
                    commit_offset(
                        &state,
                        &offsets_writer,
                        offset_key(&group, &topic, partition),
                        offset,
                    )
                    .await
                }
                read => {
                    let response = state.borrow_mut().read(read);
                    response
                }
            }
        }
    })
    .await?;
    Ok(())
}

/// A client of the broker, for producers and consumers.
#[derive(Clone)]
pub struct BrokerClient {
    rpc: RpcClient<BrokerRequest, BrokerResponse>,
}

/// Why a broker call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The call did not complete: the broker may or may not have acted.
    #[error("broker call failed: {0}")]
    Call(#[from] RpcError),
    /// The broker answered with an error.
    #[error("broker refused: {0}")]
    Refused(String),
    /// The offset asked for is not in the partition: deleted by retention (below
    /// `start`) or not written (past `end`).
    #[error("offset out of range: the partition holds {start}..{end}")]
    OutOfRange {
        /// The log start offset.
        start: u64,
        /// The log end offset.
        end: u64,
    },
    /// The broker answered with something else than asked for.
    #[error("unexpected broker response")]
    Unexpected,
}

impl BrokerClient {
    /// A client on this host; calls give up after `timeout`.
    pub fn new(ctx: &HostCtx, timeout: Duration) -> Self {
        BrokerClient {
            rpc: RpcClient::new(ctx, "broker", BROKER_PORT, timeout),
        }
    }

    async fn call(&self, request: BrokerRequest) -> Result<BrokerResponse, BrokerError> {
        match self.rpc.call(&request).await? {
            BrokerResponse::Error(e) => Err(BrokerError::Refused(e)),
            other => Ok(other),
        }
    }

    /// Appends a batch of `(key, payload)` records to one partition; returns the first
    /// one's offset.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, String)>,
        producer: Option<ProducerSeq>,
    ) -> Result<u64, BrokerError> {
        let request = BrokerRequest::Produce {
            topic: topic.to_string(),
            partition,
            records,
            producer,
        };
        match self.call(request).await? {
            BrokerResponse::Produced { offset } => Ok(offset),
            _ => Err(BrokerError::Unexpected),
        }
    }

    /// Records from `offset` on; with none there, the broker waits up to `wait_ms`.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        wait_ms: u64,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        let request = BrokerRequest::Fetch {
            topic: topic.to_string(),
            partition,
            offset,
            max: FETCH_MAX_RECORDS,
            wait_ms,
        };
        match self.call(request).await? {
            BrokerResponse::Records(records) => Ok(records),
            BrokerResponse::OutOfRange { start, end } => Err(BrokerError::OutOfRange { start, end }),
            _ => Err(BrokerError::Unexpected),
        }
    }

    /// Commits `group`'s position (the next offset to process).
    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), BrokerError> {
        let request = BrokerRequest::CommitOffset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            offset,
        };
        match self.call(request).await? {
            BrokerResponse::Committed => Ok(()),
            _ => Err(BrokerError::Unexpected),
        }
    }

    /// `group`'s committed position (0 when none).
    pub async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<u64, BrokerError> {
        let request = BrokerRequest::FetchOffset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        };
        match self.call(request).await? {
            BrokerResponse::Offset(o) => Ok(o),
            _ => Err(BrokerError::Unexpected),
        }
    }
}

/// How a producer sends, with the Kafka producer settings it mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// `enable.idempotence`: stamp records with a producer id and a per-partition
    /// sequence, so the broker drops a retry whose first attempt was stored.
    pub idempotent: bool,
    /// `retry.backoff.ms`: the first wait before a failed produce is sent again.
    pub retry_backoff_ms: u64,
    /// `retry.backoff.max.ms`: the longest wait; the wait doubles up to it.
    pub retry_backoff_max_ms: u64,
    /// `delivery.timeout.ms`: a record not acknowledged by then fails to the caller.
    pub delivery_timeout_ms: u64,
    /// `linger.ms`: how long a record handed to [`Producer::send_async`] waits for
    /// others to join its batch before the batch is sent (a full batch goes at once).
    pub linger_ms: u64,
    /// `batch.size`: bytes of keys and payloads one produce request carries at most.
    pub batch_size: usize,
}

/// A Kafka 4.x application producer's defaults: `enable.idempotence=true`,
/// `acks=all`, `retries=2147483647` bounded by `delivery.timeout.ms=120000`,
/// `retry.backoff.ms=100`, `retry.backoff.max.ms=1000`, `linger.ms=5` (KIP-1030; 0
/// through 3.9).
pub const KAFKA_PRODUCER: ProducerConfig = ProducerConfig {
    idempotent: true,
    retry_backoff_ms: 100,
    retry_backoff_max_ms: 1_000,
    delivery_timeout_ms: 120_000,
    linger_ms: 5,
    batch_size: BATCH_SIZE_BYTES,
};

/// The producer Kafka Connect gives a source task (Debezium's connectors run as one):
/// `enable.idempotence=false`, `acks=all`, `max.in.flight.requests.per.connection=1`,
/// `delivery.timeout.ms=Integer.MAX_VALUE` (Worker.java's overrides). A lost ack is
/// retried in place and stored twice, next to each other.
pub const CONNECT_SOURCE_PRODUCER: ProducerConfig = ProducerConfig {
    idempotent: false,
    delivery_timeout_ms: i32::MAX as u64,
    ..KAFKA_PRODUCER
};

/// Connect's source-task producer as a careful team runs it: the overrides above plus
/// `producer.override.enable.idempotence=true` in the connector's configuration, so a
/// batch retried after a lost ack is not stored twice (without it the copy of a whole
/// batch lands after the batch's own newer records). Replays after a restart remain.
pub const CONNECT_SOURCE_PRODUCER_IDEMPOTENT: ProducerConfig = ProducerConfig {
    idempotent: true,
    ..CONNECT_SOURCE_PRODUCER
};

/// Publishes records one at a time (one request in flight), retrying each in place, as
/// a Kafka producer does.
///
/// A failed produce is sent again with the same sequence after a backoff until it is
/// acknowledged or `delivery.timeout.ms` passes, so records of a partition go out in
/// the caller's order. An idempotent producer has an id per process life (a restart
/// gets a new one, as a Kafka producer without a `transactional.id` does) and numbers
/// each partition's records from 0: the broker drops a retry whose first attempt it
/// stored. Nothing helps against a restarted producer sending again what its process
/// sent before the crash: that is the caller's replay.
#[derive(Clone)]
pub struct Producer {
    broker: BrokerClient,
    id: Option<u64>,
    config: ProducerConfig,
    ctx: HostCtx,
    /// The next sequence per topic and partition.
    sequences: Rc<RefCell<BTreeMap<(String, u32), u64>>>,
    /// Records handed to [`Producer::send_async`] and not yet in a sent batch, per
    /// topic and partition: the record accumulator (a crash loses it).
    accumulator: Rc<RefCell<BTreeMap<(String, u32), Accumulated>>>,
    /// One batch in flight per topic and partition, whoever sends it: concurrent
    /// callers (the transactions of a connection pool) queue here in call order, so
    /// sequences reach the broker in the order they were taken.
    in_flight: KeyedLocks<(String, u32)>,
}

/// What a delivery future resolves to: the record's offset, or why it failed.
pub type Delivery = Result<u64, BrokerError>;

/// One partition's records waiting for a batch, and the wake-up of its sender.
#[derive(Default)]
struct Accumulated {
    records: std::collections::VecDeque<(String, String, tokio::sync::oneshot::Sender<Delivery>)>,
    wake: Rc<Notify>,
    sender_running: bool,
}

impl Producer {
    /// A producer on this host; each request gives up after `request_timeout`.
    pub fn new(ctx: &HostCtx, request_timeout: Duration, config: ProducerConfig) -> Self {
        let id = config
            .idempotent
            .then(|| faultline_sim::trace::fnv1a64(ctx.name().as_bytes()) ^ u64::from(ctx.incarnation()));
        Producer {
            broker: BrokerClient::new(ctx, request_timeout),
            id,
            config,
            ctx: ctx.clone(),
            sequences: Rc::default(),
            accumulator: Rc::default(),
            in_flight: KeyedLocks::default(),
        }
    }

    /// Hands a record to the producer and returns at once with its delivery, as
    /// `KafkaProducer.send` does: the record joins its partition's batch, which is sent
    /// when full (`batch.size`) or after `linger.ms`, one batch in flight per partition,
    /// each retried in place until acknowledged or `delivery.timeout.ms` passes. Records
    /// handed in while a batch is in flight wait to form the next one, so a busy
    /// partition sends many records per request. The delivery is dropped, unresolved,
    /// if the process dies first.
    pub fn send_async(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
    ) -> impl std::future::Future<Output = Delivery> + 'static {
        let (done, delivery) = tokio::sync::oneshot::channel();
        let start = {
            let mut accumulator = self.accumulator.borrow_mut();
            let queue = accumulator.entry((topic.to_string(), partition)).or_default();
            queue.records.push_back((key, payload, done));
            queue.wake.notify_one();
            !std::mem::replace(&mut queue.sender_running, true)
        };
        if start {
            tokio::task::spawn_local(self.clone().drain(topic.to_string(), partition));
        }
        async move {
            delivery
                .await
                .unwrap_or_else(|_| Err(BrokerError::Refused("the producer was closed".to_string())))
        }
    }

    /// One partition's sender: forms batches from the accumulator and sends them, one
    /// in flight, for as long as the process lives.
    async fn drain(self, topic: String, partition: u32) {
        let wake = Rc::clone(
            &self
                .accumulator
                .borrow_mut()
                .entry((topic.clone(), partition))
                .or_default()
                .wake,
        );
        loop {
            let bytes = |this: &Self| -> Option<usize> {
                let accumulator = this.accumulator.borrow();
                let queue = &accumulator[&(topic.clone(), partition)];
                (!queue.records.is_empty())
                    .then(|| queue.records.iter().map(|(k, p, _)| k.len() + p.len()).sum())
            };
            let Some(waiting) = bytes(&self) else {
                wake.notified().await;
                continue;
            };
            if waiting < self.config.batch_size && self.config.linger_ms > 0 {
                faultline_sim::timer::sleep(Duration::from_millis(self.config.linger_ms)).await;
            }
            let batch: Vec<(String, String, tokio::sync::oneshot::Sender<Delivery>)> = {
                let mut accumulator = self.accumulator.borrow_mut();
                let queue = accumulator
                    .get_mut(&(topic.clone(), partition))
                    .expect("the sender's partition has a queue");
                let mut taken = Vec::new();
                let mut size = 0;
                while let Some((k, p, _)) = queue.records.front() {
                    if !taken.is_empty() && size + k.len() + p.len() > self.config.batch_size {
                        break;
                    }
                    size += k.len() + p.len();
                    taken.push(queue.records.pop_front().expect("checked"));
                }
                taken
            };
            let (records, done): (Vec<(String, String)>, Vec<_>) =
                batch.into_iter().map(|(k, p, d)| ((k, p), d)).unzip();
            let sent = self.send_batch(&topic, partition, records).await;
            for (i, done) in done.into_iter().enumerate() {
                // A caller that stopped waiting dropped its receiver: nothing to tell.
                let _ = done.send(sent.clone().map(|first| first + i as u64));
            }
        }
    }

    /// Sends one record and waits for its acknowledgement, retrying in place; fails
    /// only when `delivery.timeout.ms` passes.
    pub async fn send(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
    ) -> Result<u64, BrokerError> {
        self.send_all(topic, partition, vec![(key, payload)]).await
    }

    /// Sends `(key, payload)` records of one partition in order, in batches of up to
    /// `batch.size` bytes (16384 by default, Kafka's), one batch in flight, each retried
    /// in place; returns the first record's offset. Fails only when a batch's
    /// `delivery.timeout.ms` passes (the later batches are not sent).
    pub async fn send_all(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, String)>,
    ) -> Result<u64, BrokerError> {
        let mut first_offset = None;
        let mut batch: Vec<(String, String)> = Vec::new();
        let mut batch_bytes = 0;
        let mut records = records.into_iter().peekable();
        while let Some(record) = records.next() {
            batch_bytes += record.0.len() + record.1.len();
            batch.push(record);
            let full = records
                .peek()
                .is_none_or(|next| batch_bytes + next.0.len() + next.1.len() > self.config.batch_size);
            if full {
                let offset = self
                    .send_batch(topic, partition, std::mem::take(&mut batch))
                    .await?;
                first_offset.get_or_insert(offset);
                batch_bytes = 0;
            }
        }
        Ok(first_offset.unwrap_or(0))
    }

    async fn send_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, String)>,
    ) -> Result<u64, BrokerError> {
        let partition_lock = self.in_flight.of((topic.to_string(), partition));
        let _in_flight = partition_lock.lock().await;
        let producer = self.id.map(|producer| {
            let mut sequences = self.sequences.borrow_mut();
            let next = sequences.entry((topic.to_string(), partition)).or_insert(0);
            let seq = *next;
            *next += records.len() as u64;
            ProducerSeq { producer, seq }
        });
        let deadline = self.ctx.now() + Duration::from_millis(self.config.delivery_timeout_ms);
        let mut backoff = Backoff::new(self.config.retry_backoff_ms, self.config.retry_backoff_max_ms);
        loop {
            let sent = self
                .broker
                .produce(topic, partition, records.clone(), producer)
                .await;
            match sent {
                Ok(offset) => return Ok(offset),
                Err(e) if self.ctx.now() + backoff.next_delay() >= deadline => {
                    self.ctx.record(
                        "produce-expired",
                        format!("{topic}/{partition} n={}: {e}", records.len()),
                    );
                    return Err(e);
                }
                Err(_) => backoff.wait().await,
            }
        }
    }
}
