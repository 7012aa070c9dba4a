//! A Kafka-like broker: topics split into partitions, each a durable log on the world's
//! disk; committed consumer offsets in a small atomically replaced file.
//!
//! A produce carries a batch of records for one partition; it is appended and synced
//! before it is acknowledged (acks=all on a single replica). A retried produce whose
//! first ack was lost appends a duplicate batch, unless the producer is idempotent: then
//! the broker keeps the last [`PRODUCER_BATCHES_RETAINED`] batches' sequences per
//! producer and partition (rebuilt from the log on recovery), answers a repeat of one of
//! them as stored, and refuses a batch whose sequence does not follow the last one
//! stored (Kafka's `OUT_OF_ORDER_SEQUENCE_NUMBER`). Order holds within a partition only.
//! Consumers fetch from an offset and commit offsets; after a restart they resume from
//! the committed offset, so whatever they had processed but not committed is delivered
//! again.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::backoff::Backoff;
use crate::bugs::{Bug, BugSet};
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
/// How many of a producer's last batches per partition the broker remembers to answer a
/// retry as stored (Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`): the reason
/// `max.in.flight.requests.per.connection` may not exceed 5 with idempotence.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;
/// The most requests a producer may have in flight with idempotence (Kafka 4.x refuses
/// a larger `max.in.flight.requests.per.connection` with a ConfigException).
pub const MAX_IN_FLIGHT_FOR_IDEMPOTENCE: usize = PRODUCER_BATCHES_RETAINED;
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
    /// An idempotent producer's batch does not follow the last one stored for it and
    /// is not one of the last [`PRODUCER_BATCHES_RETAINED`] (Kafka's
    /// OUT_OF_ORDER_SEQUENCE_NUMBER): nothing was appended.
    OutOfOrderSequence {
        expected: u64,
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
            BrokerResponse::OutOfOrderSequence { expected } => {
                format!("out of order sequence, expected seq={expected}")
            }
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

/// One stored batch of an idempotent producer: its sequences and first offset.
#[derive(Clone, Copy)]
struct StoredBatch {
    first_seq: u64,
    last_seq: u64,
    first_offset: u64,
}

/// A producer's last [`PRODUCER_BATCHES_RETAINED`] batches in one partition.
#[derive(Default)]
struct ProducerBatches(std::collections::VecDeque<StoredBatch>);

impl ProducerBatches {
    fn push(&mut self, batch: StoredBatch) {
        if self.0.len() == PRODUCER_BATCHES_RETAINED {
            self.0.pop_front();
        }
        self.0.push_back(batch);
    }

    /// What a batch `first_seq..=last_seq` meets (Kafka's `checkSequence` and
    /// `findDuplicateBatch`): `Some(answer)` when it is not to be appended.
    fn check(&self, first_seq: u64, last_seq: u64) -> Option<BrokerResponse> {
        if let Some(stored) = self
            .0
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Some(BrokerResponse::Produced {
                offset: stored.first_offset,
            });
        }
        // A producer the partition has no state of may start at any sequence.
        let expected = self.0.back()?.last_seq + 1;
        (first_seq != expected).then_some(BrokerResponse::OutOfOrderSequence { expected })
    }
}

struct State {
    ctx: HostCtx,
    bugs: BugSet,
    partitions: BTreeMap<(String, u32), Partition>,
    offsets: BTreeMap<String, u64>,
    /// The last batches stored per producer, topic and partition, oldest first.
    sequences: BTreeMap<(u64, String, u32), ProducerBatches>,
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
                let mut records: Vec<BrokerRecord> = Vec::new();
                for frame in &recovery.records {
                    let batch: Vec<BrokerRecord> = serde_json::from_slice(&frame.payload)
                        .expect("broker batches are written by this module");
                    if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                        if let (Some(p), Some(q)) = (first.producer, last.producer) {
                            sequences
                                .entry((p.producer, topic.to_string(), partition))
                                .or_default()
                                .push(StoredBatch {
                                    first_seq: p.seq,
                                    last_seq: q.seq,
                                    first_offset: first.offset,
                                });
                        }
                    }
                    records.extend(batch);
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
            let last_seq = p.seq + records.len().saturating_sub(1) as u64;
            let stored = s.sequences.get(&(p.producer, topic.clone(), partition));
            // A retry of a batch already stored is answered as the first time; a
            // sequence that does not follow is refused.
            if let Some(answer) = stored.and_then(|b| b.check(p.seq, last_seq)) {
                return answer;
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
    let last_seq = batch.last().and_then(|r| r.producer).map(|p| p.seq);
    let part = s.partition(&topic, partition);
    part.records.extend(batch);
    part.arrived.notify_waiters();
    if let (Some(p), Some(last_seq)) = (producer, last_seq) {
        s.sequences
            .entry((p.producer, topic, partition))
            .or_default()
            .push(StoredBatch {
                first_seq: p.seq,
                last_seq,
                first_offset: first,
            });
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

/// What a produce's answer means to its sender.
fn produced(response: BrokerResponse) -> Result<u64, BrokerError> {
    match response {
        BrokerResponse::Produced { offset } => Ok(offset),
        BrokerResponse::OutOfOrderSequence { expected } => Err(BrokerError::OutOfOrderSequence { expected }),
        BrokerResponse::Error(e) => Err(BrokerError::Refused(e)),
        _ => Err(BrokerError::Unexpected),
    }
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
    /// An idempotent producer's batch did not follow the last one the broker stored for
    /// it (Kafka's OutOfOrderSequenceException): nothing was appended.
    #[error("out of order sequence: the broker expected seq={expected}")]
    OutOfOrderSequence {
        /// The sequence the broker expected next.
        expected: u64,
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
        produced(self.rpc.call(&request).await?)
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
    /// sequence, so the broker drops a retry whose first attempt was stored and refuses
    /// one that would land out of order.
    pub idempotent: bool,
    /// `max.in.flight.requests.per.connection`: how many produce requests may await
    /// their answer at once (at most [`MAX_IN_FLIGHT_FOR_IDEMPOTENCE`] with idempotence).
    pub max_in_flight: usize,
    /// `retry.backoff.ms`: the first wait before a failed produce is sent again.
    pub retry_backoff_ms: u64,
    /// `retry.backoff.max.ms`: the longest wait; the wait doubles up to it.
    pub retry_backoff_max_ms: u64,
    /// `delivery.timeout.ms`: a record not acknowledged by then fails to the caller.
    pub delivery_timeout_ms: u64,
    /// `linger.ms`: how long a batch waits for more records after its first before it
    /// is sent (a full batch goes at once).
    pub linger_ms: u64,
    /// `batch.size`: bytes of keys and payloads one produce request carries at most.
    pub batch_size: usize,
}

/// A Kafka 4.x application producer's defaults: `enable.idempotence=true`,
/// `acks=all`, `max.in.flight.requests.per.connection=5`, `retries=2147483647` bounded
/// by `delivery.timeout.ms=120000`, `retry.backoff.ms=100`, `retry.backoff.max.ms=1000`,
/// `linger.ms=5` (KIP-1030; 0 through 3.9).
pub const KAFKA_PRODUCER: ProducerConfig = ProducerConfig {
    idempotent: true,
    max_in_flight: 5,
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
    max_in_flight: 1,
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

/// What a delivery future resolves to: the record's offset, or why it failed.
pub type Delivery = Result<u64, BrokerError>;

/// A Kafka producer: a record accumulator per partition, a sender that forms batches
/// from it, and one pipelined connection to the broker with up to
/// `max.in.flight.requests.per.connection` requests awaiting their answer.
///
/// A failed batch is sent again after its backoff until it is acknowledged or
/// `delivery.timeout.ms` passes, where Kafka's `RecordAccumulator.reenqueue` puts it:
/// an idempotent producer keeps its batches in sequence order and sends a retried batch
/// only once every earlier one is resolved, so order holds; a plain producer puts it at
/// the head of the partition's queue (`Deque.addFirst`), so with several in flight a
/// batch that failed goes out after later ones that did not, and when a timed-out
/// request takes its connection's other requests down with it, they are re-queued
/// oldest first and so sent newest first. A batch the broker refuses as out of order
/// while an earlier one of its partition is unresolved is retried after it; refused
/// when it is the earliest, or expired while its fate is unknown, the partition starts
/// a new producer epoch (KIP-360): a new producer id, sequences from 0.
///
/// An idempotent producer's id belongs to its process life (a restart gets a new one,
/// as a producer without `transactional.id` does): nothing helps against a restarted
/// producer sending again what its process sent before the crash, that is the caller's
/// replay. The accumulator dies with the process; its deliveries are dropped unresolved.
#[derive(Clone)]
pub struct Producer {
    inner: Rc<ProducerInner>,
}

struct ProducerInner {
    broker: faultline_sim::PipelinedClient<BrokerRequest, BrokerResponse>,
    config: ProducerConfig,
    ctx: HostCtx,
    /// The producer id of epoch 0 on every partition (idempotent producers only).
    base_id: Option<u64>,
    partitions: RefCell<BTreeMap<(String, u32), PartitionQueue>>,
}

/// A record handed to the producer and not yet in a batch.
struct Waiting {
    key: String,
    payload: String,
    done: tokio::sync::oneshot::Sender<Delivery>,
    /// Handed in by [`Producer::send_all`], which flushes: no lingering for it.
    flush: bool,
    at: faultline_sim::SimTime,
}

/// A batch sent or to be sent (again).
struct Batch {
    records: Vec<(String, String)>,
    done: Vec<tokio::sync::oneshot::Sender<Delivery>>,
    producer: Option<ProducerSeq>,
    deadline: faultline_sim::SimTime,
    backoff: Backoff,
    /// Not to be sent again before this instant.
    retry_at: faultline_sim::SimTime,
}

/// One partition's accumulator and sender state.
#[derive(Default)]
struct PartitionQueue {
    waiting: std::collections::VecDeque<Waiting>,
    /// Batches to send again, in the order they go.
    retries: std::collections::VecDeque<Batch>,
    in_flight: usize,
    /// First sequences of the batches sent and not yet resolved (idempotent only).
    unresolved: std::collections::BTreeSet<u64>,
    next_seq: u64,
    epoch: u64,
    /// A batch's fate became unknowable: start a new epoch once nothing is in flight.
    bump_epoch: bool,
    wake: Rc<Notify>,
    sender_running: bool,
}

/// What a partition's sender does next.
enum Next {
    Send(Batch),
    Sleep(Duration),
    Wait,
}

impl Producer {
    /// A producer on this host; each request gives up after `request_timeout`.
    pub fn new(ctx: &HostCtx, request_timeout: Duration, config: ProducerConfig) -> Self {
        let base_id = config
            .idempotent
            .then(|| faultline_sim::trace::fnv1a64(ctx.name().as_bytes()) ^ u64::from(ctx.incarnation()));
        Producer {
            inner: Rc::new(ProducerInner {
                broker: faultline_sim::PipelinedClient::new(ctx, "broker", BROKER_PORT, request_timeout),
                config,
                ctx: ctx.clone(),
                base_id,
                partitions: RefCell::default(),
            }),
        }
    }

    /// Hands a record to the producer and returns at once with its delivery, as
    /// `KafkaProducer.send` does: the record joins its partition's batch, which is sent
    /// when full (`batch.size`) or `linger.ms` after its first record, each retried
    /// until acknowledged or `delivery.timeout.ms` passes. The delivery is dropped,
    /// unresolved, if the process dies first.
    pub fn send_async(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
    ) -> impl std::future::Future<Output = Delivery> + 'static {
        self.delivery(topic, partition, key, payload, false)
    }

    /// [`Producer::send_async`] for a record whose sender flushes (no lingering for
    /// it): a caller that hands a whole poll and then waits for each delivery in turn,
    /// as a Connect source task does between `poll()` and its acknowledgements.
    pub fn send_flushed(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
    ) -> impl std::future::Future<Output = Delivery> + 'static {
        self.delivery(topic, partition, key, payload, true)
    }

    /// Hands a record over; its delivery resolves to closed if the process dies first.
    fn delivery(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
        flush: bool,
    ) -> impl std::future::Future<Output = Delivery> + 'static {
        let delivery = self.hand(topic, partition, key, payload, flush);
        async move { delivery.await.unwrap_or_else(|_| Err(closed())) }
    }

    fn hand(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
        flush: bool,
    ) -> tokio::sync::oneshot::Receiver<Delivery> {
        let (done, delivery) = tokio::sync::oneshot::channel();
        let start = {
            let mut partitions = self.inner.partitions.borrow_mut();
            let queue = partitions.entry((topic.to_string(), partition)).or_default();
            queue.waiting.push_back(Waiting {
                key,
                payload,
                done,
                flush,
                at: self.inner.ctx.now(),
            });
            queue.wake.notify_one();
            !std::mem::replace(&mut queue.sender_running, true)
        };
        if start {
            tokio::task::spawn_local(self.clone().sender(topic.to_string(), partition));
        }
        delivery
    }

    /// Sends one record and waits for its acknowledgement; fails only when
    /// `delivery.timeout.ms` passes.
    pub async fn send(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
    ) -> Result<u64, BrokerError> {
        self.send_all(topic, partition, vec![(key, payload)]).await
    }

    /// Hands `(key, payload)` records of one partition to the producer and flushes
    /// (`KafkaProducer.send` of each, then `flush()`: no lingering), in batches of up to
    /// `batch.size` bytes; waits for every delivery and returns the first record's
    /// offset, or the first failure.
    pub async fn send_all(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, String)>,
    ) -> Result<u64, BrokerError> {
        let deliveries: Vec<_> = records
            .into_iter()
            .map(|(key, payload)| self.hand(topic, partition, key, payload, true))
            .collect();
        let mut first = None;
        for delivery in deliveries {
            let offset = delivery.await.unwrap_or_else(|_| Err(closed()))?;
            first.get_or_insert(offset);
        }
        Ok(first.unwrap_or(0))
    }

    /// One partition's sender, for as long as the process lives: sends what is due,
    /// up to `max.in.flight.requests.per.connection` at once.
    async fn sender(self, topic: String, partition: u32) {
        let key = (topic, partition);
        let wake = Rc::clone(
            &self
                .inner
                .partitions
                .borrow_mut()
                .entry(key.clone())
                .or_default()
                .wake,
        );
        loop {
            match self.next(&key) {
                Next::Send(batch) => {
                    tokio::task::spawn_local(self.clone().send_batch(key.clone(), batch));
                }
                Next::Sleep(wait) => {
                    let _ = faultline_sim::timer::timeout(wait, wake.notified()).await;
                }
                Next::Wait => wake.notified().await,
            }
        }
    }

    /// Chooses the partition's next batch to send, if one is due and a request may go.
    fn next(&self, key: &(String, u32)) -> Next {
        let inner = &self.inner;
        let config = inner.config;
        let now = inner.ctx.now();
        let mut partitions = inner.partitions.borrow_mut();
        let queue = partitions
            .get_mut(key)
            .expect("the sender's partition has a queue");
        if queue.in_flight >= config.max_in_flight {
            return Next::Wait;
        }
        if queue.bump_epoch {
            if queue.in_flight > 0 {
                return Next::Wait;
            }
            queue.start_epoch();
            inner.ctx.record(
                "producer-epoch",
                format!(
                    "{}/{} epoch={} pid={}",
                    key.0,
                    key.1,
                    queue.epoch,
                    inner.id(queue.epoch).unwrap_or(0)
                ),
            );
        }
        if let Some(front) = queue.retries.front() {
            // A retried batch of an idempotent producer goes only once every earlier
            // batch is resolved (Kafka's `shouldStopDrainBatchesForPartition`).
            let earliest = front
                .producer
                .is_none_or(|p| queue.unresolved.first() == Some(&p.seq));
            if !earliest {
                return Next::Wait;
            }
            if front.retry_at > now {
                return Next::Sleep(front.retry_at.saturating_since(now));
            }
            let mut batch = queue.retries.pop_front().expect("checked");
            if batch.producer.is_some() {
                // Renumbered batches (a new epoch) carry the partition's current id.
                batch.producer = batch.producer.map(|p| ProducerSeq {
                    producer: inner.id(queue.epoch).unwrap_or(p.producer),
                    seq: p.seq,
                });
            }
            queue.in_flight += 1;
            return Next::Send(batch);
        }
        let Some(oldest) = queue.waiting.front() else {
            return Next::Wait;
        };
        let bytes: usize = queue.waiting.iter().map(|w| w.key.len() + w.payload.len()).sum();
        let flush = queue.waiting.iter().any(|w| w.flush);
        let ready_at = oldest.at + Duration::from_millis(config.linger_ms);
        if bytes < config.batch_size && !flush && ready_at > now {
            return Next::Sleep(ready_at.saturating_since(now));
        }
        let mut records = Vec::new();
        let mut done = Vec::new();
        let mut size = 0;
        while let Some(w) = queue.waiting.front() {
            if !records.is_empty() && size + w.key.len() + w.payload.len() > config.batch_size {
                break;
            }
            let w = queue.waiting.pop_front().expect("checked");
            size += w.key.len() + w.payload.len();
            records.push((w.key, w.payload));
            done.push(w.done);
        }
        let producer = inner.id(queue.epoch).map(|producer| {
            let seq = queue.next_seq;
            queue.next_seq += records.len() as u64;
            queue.unresolved.insert(seq);
            ProducerSeq { producer, seq }
        });
        queue.in_flight += 1;
        Next::Send(Batch {
            records,
            done,
            producer,
            deadline: now + Duration::from_millis(config.delivery_timeout_ms),
            backoff: Backoff::new(config.retry_backoff_ms, config.retry_backoff_max_ms),
            retry_at: now,
        })
    }

    /// Sends one batch and settles it: acknowledged, queued again, or failed.
    async fn send_batch(self, key: (String, u32), mut batch: Batch) {
        let inner = &self.inner;
        let request = BrokerRequest::Produce {
            topic: key.0.clone(),
            partition: key.1,
            records: batch.records.clone(),
            producer: batch.producer,
        };
        let sent = match inner.broker.call(&request).await {
            Ok(response) => produced(response),
            Err(e) => Err(BrokerError::Call(e)),
        };
        let now = inner.ctx.now();
        let mut partitions = inner.partitions.borrow_mut();
        let queue = partitions
            .get_mut(&key)
            .expect("a sent batch's partition has a queue");
        queue.in_flight -= 1;
        queue.wake.notify_one();
        let seq = batch.producer.map(|p| p.seq);
        let earliest = seq.is_none_or(|seq| queue.unresolved.first() == Some(&seq));
        let error = match sent {
            Ok(first) => {
                if let Some(seq) = seq {
                    queue.unresolved.remove(&seq);
                }
                for (i, done) in batch.done.into_iter().enumerate() {
                    // A caller that stopped waiting dropped its receiver: nothing to tell.
                    let _ = done.send(Ok(first + i as u64));
                }
                return;
            }
            // An earlier batch is unresolved: this one overtook it; retry after it.
            Err(BrokerError::OutOfOrderSequence { .. }) if !earliest || queue.bump_epoch => {
                batch.retry_at = now;
                queue.requeue(batch);
                return;
            }
            Err(e @ BrokerError::OutOfOrderSequence { .. }) => {
                queue.bump_epoch = true;
                e
            }
            Err(e) if now + batch.backoff.next_delay() >= batch.deadline => {
                // Its fate is unknown: later sequences can no longer follow it.
                queue.bump_epoch |= seq.is_some();
                e
            }
            Err(_) => {
                batch.retry_at = now + batch.backoff.next_delay();
                batch.backoff.advance();
                queue.requeue(batch);
                return;
            }
        };
        if let Some(seq) = seq {
            queue.unresolved.remove(&seq);
        }
        inner.ctx.record(
            "produce-expired",
            format!("{}/{} n={}: {error}", key.0, key.1, batch.records.len()),
        );
        for done in batch.done {
            let _ = done.send(Err(error.clone()));
        }
    }
}

impl ProducerInner {
    /// The producer id of a partition's epoch (idempotent producers only).
    fn id(&self, epoch: u64) -> Option<u64> {
        self.base_id
            .map(|base| base.wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }
}

impl PartitionQueue {
    /// Puts a failed batch back where Kafka's `reenqueue` does: in sequence order for an
    /// idempotent producer, at the head of the queue for a plain one.
    fn requeue(&mut self, batch: Batch) {
        match batch.producer {
            Some(p) => {
                let at = self
                    .retries
                    .iter()
                    .position(|b| b.producer.is_some_and(|q| q.seq > p.seq))
                    .unwrap_or(self.retries.len());
                self.retries.insert(at, batch);
            }
            None => self.retries.push_front(batch),
        }
    }

    /// A new producer epoch for this partition: the unacknowledged batches are
    /// numbered again from 0 in the order they will go.
    fn start_epoch(&mut self) {
        self.epoch += 1;
        self.bump_epoch = false;
        self.unresolved.clear();
        let mut seq = 0;
        for batch in &mut self.retries {
            if let Some(p) = &mut batch.producer {
                p.seq = seq;
                self.unresolved.insert(seq);
                seq += batch.records.len() as u64;
            }
        }
        self.next_seq = seq;
    }
}

fn closed() -> BrokerError {
    BrokerError::Refused("the producer was closed".to_string())
}
