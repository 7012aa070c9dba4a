//! A Kafka-like broker: topics split into partitions, each a durable log on the world's
//! disk; committed consumer offsets in a small atomically replaced file.
//!
//! A produce is appended and synced before it is acknowledged (acks=all on a single
//! replica). A retried produce whose first ack was lost appends a duplicate, unless the
//! producer is idempotent: then the broker remembers the last sequence per producer and
//! partition (rebuilt from the log on recovery) and answers a repeat with the original
//! offset. Order holds within a partition only. Consumers fetch from an offset and commit
//! offsets; after a restart they resume from the committed offset, so whatever they had
//! processed but not committed is delivered again.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

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
/// Records one fetch returns at most.
pub const FETCH_MAX_RECORDS: u32 = 64;
const OFFSETS_FILE: &str = "offsets.json";
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
}

/// A request to the broker.
#[allow(missing_docs)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BrokerRequest {
    Produce {
        topic: String,
        partition: u32,
        key: String,
        payload: String,
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
    Produced { offset: u64 },
    Records(Vec<BrokerRecord>),
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
                key,
                producer,
                ..
            } => match producer {
                Some(p) => format!(
                    "produce {topic}/{partition} key={key} pid={} seq={}",
                    p.producer, p.seq
                ),
                None => format!("produce {topic}/{partition} key={key}"),
            },
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
            BrokerResponse::Committed => "committed".to_string(),
            BrokerResponse::Offset(o) => format!("offset {o}"),
            BrokerResponse::Error(e) => format!("error {e}"),
        }
    }
}

struct Partition {
    log: LogFile,
    records: Vec<BrokerRecord>,
    /// Wakes long-polling fetches when a record arrives.
    arrived: Rc<Notify>,
}

struct State {
    ctx: HostCtx,
    bugs: BugSet,
    partitions: BTreeMap<(String, u32), Partition>,
    offsets: BTreeMap<String, u64>,
    /// Last (sequence, offset) per producer, topic and partition.
    sequences: BTreeMap<(u64, String, u32), (u64, u64)>,
}

impl State {
    fn partition(&mut self, topic: &str, partition: u32) -> &mut Partition {
        let ctx = &self.ctx;
        let sequences = &mut self.sequences;
        self.partitions
            .entry((topic.to_string(), partition))
            .or_insert_with(|| {
                let (log, recovery) = LogFile::open(ctx.disk(), &format!("{topic}-{partition}.log"));
                let records: Vec<BrokerRecord> = recovery
                    .records
                    .iter()
                    .map(|r| {
                        serde_json::from_slice(&r.payload).expect("broker records are written by this module")
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
                    arrived: Rc::new(Notify::new()),
                }
            })
    }

    fn handle(&mut self, request: BrokerRequest) -> BrokerResponse {
        match request {
            BrokerRequest::Produce {
                topic,
                partition,
                key,
                payload,
                producer,
            } => {
                self.partition(&topic, partition);
                if let Some(p) = producer {
                    if let Some(&(seq, offset)) = self.sequences.get(&(p.producer, topic.clone(), partition))
                    {
                        if p.seq <= seq {
                            return BrokerResponse::Produced { offset };
                        }
                    }
                }
                let acks_before_sync = self.bugs.has(Bug::BrokerAcksBeforeSync);
                let part = self.partition(&topic, partition);
                let offset = part.records.len() as u64;
                let record = BrokerRecord {
                    offset,
                    key,
                    payload,
                    producer,
                };
                let appended = part
                    .log
                    .append(&serde_json::to_vec(&record).expect("records serialise"));
                // Planted bug: acknowledge before the record is durable; a background
                // sync catches up later.
                let appended = if acks_before_sync {
                    appended.map(|_| ())
                } else {
                    appended.and_then(|_| part.log.sync())
                };
                if let Err(e) = appended {
                    return BrokerResponse::Error(e.to_string());
                }
                part.records.push(record);
                part.arrived.notify_waiters();
                if let Some(p) = producer {
                    self.sequences
                        .insert((p.producer, topic, partition), (p.seq, offset));
                }
                BrokerResponse::Produced { offset }
            }
            BrokerRequest::Fetch {
                topic,
                partition,
                offset,
                max,
                ..
            } => {
                let part = self.partition(&topic, partition);
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(part.records.len());
                let end = start
                    .saturating_add(max.min(FETCH_MAX_RECORDS) as usize)
                    .min(part.records.len());
                BrokerResponse::Records(part.records[start..end].to_vec())
            }
            BrokerRequest::CommitOffset {
                group,
                topic,
                partition,
                offset,
            } => {
                let mut next = self.offsets.clone();
                next.insert(offset_key(&group, &topic, partition), offset);
                match self.ctx.disk().replace(
                    OFFSETS_FILE,
                    &serde_json::to_vec(&next).expect("offsets serialise"),
                ) {
                    Ok(()) => {
                        self.offsets = next;
                        BrokerResponse::Committed
                    }
                    Err(e) => BrokerResponse::Error(e.to_string()),
                }
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
        }
    }
}

fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{group}/{topic}/{partition}")
}

/// Runs the broker on this host until it stops.
pub async fn run_broker(ctx: HostCtx, bugs: BugSet) -> faultline_sim::HostResult {
    let offsets_bytes = ctx.disk().read_all(OFFSETS_FILE);
    let offsets = if offsets_bytes.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_slice(&offsets_bytes).expect("offsets file is written by this module")
    };
    let state = Rc::new(RefCell::new(State {
        ctx: ctx.clone(),
        bugs,
        partitions: BTreeMap::new(),
        offsets,
        sequences: BTreeMap::new(),
    }));
    if bugs.has(Bug::BrokerAcksBeforeSync) {
        let syncing = Rc::clone(&state);
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(LAZY_SYNC_PERIOD).await;
                for part in syncing.borrow().partitions.values() {
                    let _ = part.log.sync();
                }
            }
        });
    }
    serve(ctx, BROKER_PORT, move |request: BrokerRequest| {
        let state = Rc::clone(&state);
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
                    (part.records.len() as u64 <= *offset, Rc::clone(&part.arrived))
                };
                if empty && *wait_ms > 0 {
                    let wait = Duration::from_millis((*wait_ms).min(FETCH_WAIT_MAX_MS));
                    let _ = tokio::time::timeout(wait, arrived.notified()).await;
                }
            }
            let response = state.borrow_mut().handle(request);
            response
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

    /// Appends one record; returns its offset.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
        producer: Option<ProducerSeq>,
    ) -> Result<u64, BrokerError> {
        let request = BrokerRequest::Produce {
            topic: topic.to_string(),
            partition,
            key,
            payload,
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

/// Publishes records, optionally as an idempotent producer.
///
/// An idempotent producer has an id per process life (a restart gets a new one, as a
/// Kafka producer without a transactional id does) and stamps each record with a
/// caller-chosen sequence that stays the same across retries of that record: the
/// broker then drops a retry whose first attempt was stored. It cannot help against
/// duplicates from a restarted producer.
#[derive(Clone)]
pub struct Producer {
    broker: BrokerClient,
    id: Option<u64>,
}

impl Producer {
    /// A producer on this host.
    pub fn new(ctx: &HostCtx, timeout: Duration, idempotent: bool) -> Self {
        let id = idempotent
            .then(|| faultline_sim::trace::fnv1a64(ctx.name().as_bytes()) ^ u64::from(ctx.incarnation()));
        Producer {
            broker: BrokerClient::new(ctx, timeout),
            id,
        }
    }

    /// Publishes one record; `seq` must be the same for every retry of the same record
    /// and grow per partition.
    pub async fn publish(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
        seq: u64,
    ) -> Result<u64, BrokerError> {
        let producer = self.id.map(|producer| ProducerSeq { producer, seq });
        self.broker
            .produce(topic, partition, key, payload, producer)
            .await
    }
}
