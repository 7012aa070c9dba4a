//! A Kafka cluster's brokers: topics split into partitions, each partition replicated
//! on every broker (`replication.factor`), one replica the leader.
//!
//! The leader appends a produce to its log and, by default, answers without an fsync:
//! Kafka leaves flushing to the OS (`log.flush.interval.messages` is unbounded) and
//! relies on replication. With `acks=all` the answer waits until every in-sync replica
//! has the batch (the high watermark passed it) and is refused while the ISR is
//! smaller than `min.insync.replicas`; with `acks=1` it goes once the leader's log has
//! it. Followers copy the leader's log by fetching from it; a follower that has not
//! caught up for `replica.lag.time.max.ms` is dropped from the ISR, one that catches up
//! rejoins (both through the controller). Consumers read up to the high watermark only.
//!
//! Every batch carries the leader epoch it was appended under; a follower of a new
//! leader sends the epoch of its last record with each fetch, and the leader answers a
//! log that diverged from its own with the end of that epoch, where the follower cuts
//! its log (KIP-101/KIP-595). A leader that lost its leadership while cut off thus
//! loses what only it had: unacknowledged under `acks=all`, acknowledged under
//! `acks=1` or after an unclean election.
//!
//! An idempotent producer's last [`PRODUCER_BATCHES_RETAINED`] batches per partition
//! are known to every replica (rebuilt from the log, which followers copy): a repeat of
//! one is answered as stored and a sequence that does not follow the last is refused
//! as out of order. Committed consumer offsets are records of the replicated
//! `__consumer_offsets` topic, written with `acks=all` (Kafka's
//! `offsets.commit.required.acks`) through the group coordinator, its partition's
//! leader. Order holds within a partition only.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::bugs::{Bug, BugSet};
use crate::systems::controller::{
    isr_text, ControllerRequest, ControllerResponse, Image, PartitionState, CONTROLLER, CONTROLLER_PORT,
    HEARTBEAT_MS,
};
use crate::systems::group::{Fenced, Generation, Group, Join};
use crate::systems::kafka_progress::{KafkaProgress, ReplicaEnd};
use faultline_sim::{serve, HostCtx, LogFile, LogPos, Replay, RpcClient, RpcError, RpcMessage};
use serde::{Deserialize, Serialize};

pub use crate::systems::producer::{
    Delivery, Producer, ProducerConfig, CONNECT_SOURCE_PRODUCER, CONNECT_SOURCE_PRODUCER_IDEMPOTENT,
    KAFKA_PRODUCER,
};

/// The port brokers listen on.
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
/// The internal topic committed offsets are records of.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Each partition's log start offset (Kafka's `log-start-offset-checkpoint`): records
/// below it were deleted by retention and never come back, not even after a restart.
const LOG_STARTS_FILE: &str = "log-starts.json";
/// How often retention runs (Kafka's `log.retention.check.interval.ms`, 300000,
/// compressed to this simulation's seconds-long runs).
const RETENTION_CHECK_MS: u64 = 250;
/// What the log cleaner has removed from each partition (Kafka swaps in each cleaned
/// segment durably, and keeps its `cleaner-offset-checkpoint`).
const CLEANED_FILE: &str = "cleaner-offset-checkpoint.json";
/// How long the log cleaner sleeps when no log needs cleaning (Kafka's
/// `log.cleaner.backoff.ms`, 15000, compressed 20×).
const CLEANER_BACKOFF_MS: u64 = 750;
/// A log is cleaned once its uncleaned part is this share of its cleanable bytes
/// (Kafka's `min.cleanable.dirty.ratio`, 0.5), in percent.
const MIN_CLEANABLE_DIRTY_PCT: u64 = 50;
/// How many of a producer's last batches per partition the broker remembers to answer a
/// retry as stored (Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`): the reason
/// `max.in.flight.requests.per.connection` may not exceed 5 with idempotence.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;
/// The most requests a producer may have in flight with idempotence (Kafka 4.x refuses
/// a larger `max.in.flight.requests.per.connection` with a ConfigException).
pub const MAX_IN_FLIGHT_FOR_IDEMPOTENCE: usize = PRODUCER_BATCHES_RETAINED;
/// How long an `acks=all` produce waits for the in-sync replicas before it is answered
/// as timed out: the request's timeout, the producer's `request.timeout.ms` (30000,
/// compressed 20× like the sessions). Kafka's docs ask for it to be no shorter than
/// `replica.lag.time.max.ms`, so that a lagging follower leaves the ISR before the
/// producer gives up and retries.
pub const REQUEST_TIMEOUT_MS: u64 = 1_500;
const PRODUCE_WAIT_MS: u64 = REQUEST_TIMEOUT_MS;
/// How long a producer's request may take: the broker's wait and the way back.
pub const PRODUCER_REQUEST_TIMEOUT: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS + 250);
/// How old dirty pages get before the OS writes them back (Linux
/// `dirty_expire_centisecs=3000`, written back every 5 s; compressed 20× like the
/// sessions): what a broker that does not fsync has on disk after a power loss is its
/// log as of up to this long ago.
const WRITEBACK_MS: u64 = 1_500;
/// How long a follower's fetch waits at the leader for records when it has them all
/// (`replica.fetch.wait.max.ms`, 500): a batch that arrives answers it at once.
const REPLICA_FETCH_WAIT_MS: u64 = 500;
/// How long a follower's fetch may take: a long poll and its way back.
const REPLICA_FETCH_TIMEOUT: Duration = Duration::from_millis(REPLICA_FETCH_WAIT_MS + 300);
/// How long a broker waits for the controller: a heartbeat's answer is stale after the
/// session.
const CONTROLLER_TIMEOUT: Duration = Duration::from_millis(crate::systems::controller::SESSION_TIMEOUT_MS);
/// A follower's wait after a failed fetch (`replica.fetch.backoff.ms`, 1000, compressed).
const REPLICA_BACKOFF_MS: u64 = 50;

/// The broker host names, `broker-1` up to the largest cluster.
pub const BROKER_HOSTS: [&str; 5] = ["broker-1", "broker-2", "broker-3", "broker-4", "broker-5"];

/// Which acknowledgement a producer waits for (Kafka's `acks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    /// `acks=0`: none; the record counts as sent once the request is written.
    None,
    /// `acks=1`: the leader's log has it.
    Leader,
    /// `acks=all`: every in-sync replica has it, and there are `min.insync.replicas`.
    All,
}

/// The cluster a broker-based pattern runs on, by Kafka's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Broker hosts; every topic has a replica on each (`replication.factor`).
    pub brokers: u32,
    /// `min.insync.replicas`: an `acks=all` produce is refused with fewer in-sync
    /// replicas (Kafka's default is 1; a careful cluster sets 2 with 3 replicas).
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`: with no in-sync replica alive, elect one out
    /// of sync (and lose what it lacks) rather than stay offline.
    pub unclean_leader_election: bool,
    /// `log.flush.interval.messages=1`: fsync every batch before it counts as stored;
    /// off (Kafka's default) leaves it to the page cache and replication.
    pub flush_every_batch: bool,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_max_ms: u64,
    /// `retention.ms` of every topic: records older are deleted; `None` keeps them.
    pub retention_ms: Option<u64>,
    /// `retention.bytes` of every partition: the oldest segments are deleted while the
    /// rest still hold this much; `None` (Kafka's -1) keeps them.
    pub retention_bytes: Option<u64>,
    /// `offsets.retention.minutes`, in ms: a group's committed offsets are deleted
    /// once it has had no member this long (KIP-211; a consumer that assigns itself
    /// its partitions: this long after its last commit); `None` keeps them (Kafka's
    /// 7 days outlast any run).
    pub offsets_retention_ms: Option<u64>,
    /// `cleanup.policy=compact` on every topic but the offsets topic: the log cleaner
    /// keeps each key's last record (with `delete`, the default, only retention deletes).
    pub compact: bool,
    /// `delete.retention.ms`: how long the cleaner keeps a tombstone (a record with no
    /// value) after it first cleaned past it; a reader further behind never sees it.
    pub delete_retention_ms: u64,
}

/// Three brokers, `min.insync.replicas=2`, clean elections, page-cache flushing,
/// `replica.lag.time.max.ms` 30 s compressed 20× like the sessions.
pub const CLUSTER: ClusterConfig = ClusterConfig {
    brokers: 3,
    min_insync_replicas: 2,
    unclean_leader_election: false,
    flush_every_batch: false,
    replica_lag_max_ms: 1_500,
    retention_ms: None,
    retention_bytes: None,
    offsets_retention_ms: None,
    compact: false,
    delete_retention_ms: DELETE_RETENTION_MS,
};

/// `delete.retention.ms` (Kafka's 86400000, a day) compressed 20× like the sessions:
/// longer than any run.
pub const DELETE_RETENTION_MS: u64 = 4_320_000;

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
    /// The key it was partitioned by. Shared (a copy of a record, as a recovery keeps
    /// one beside the log, copies no text).
    pub key: Rc<str>,
    /// The payload (JSON text), shared likewise.
    pub payload: Rc<str>,
    /// The producer sequence, when the producer is idempotent.
    pub producer: Option<ProducerSeq>,
    /// When the leader appended it (ms): its age, for retention.
    pub appended_at_ms: Option<u64>,
    /// The leader epoch it was appended under.
    #[serde(default)]
    pub epoch: u64,
}

/// A request to a broker.
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
        acks: Acks,
    },
    Fetch {
        topic: String,
        partition: u32,
        offset: u64,
        max: u32,
        /// Long poll: with nothing at `offset`, wait up to this long for records.
        wait_ms: u64,
    },
    /// A committed position; `member` is the committing group member and its
    /// generation (`None`: a consumer that assigned itself its partitions).
    CommitOffset {
        group: String,
        member: Option<(String, u64)>,
        topic: String,
        partition: u32,
        offset: u64,
    },
    FetchOffset {
        group: String,
        topic: String,
        partition: u32,
    },
    /// A partition's first and next offsets (the leader's log start and high
    /// watermark: Kafka's ListOffsets for the earliest and latest).
    ListOffsets { topic: String, partition: u32 },
    /// Which broker leads a partition (creating it if it does not exist).
    Metadata { topic: String, partition: u32 },
    /// A member's join of `group`, whose topic has `partitions` partitions (the classic
    /// protocol's JoinGroup and SyncGroup in one; asked again until it completes).
    JoinGroup {
        group: String,
        member: String,
        /// `group.instance.id`, for a static member.
        instance: Option<String>,
        partitions: u32,
    },
    /// A stopping member's goodbye.
    LeaveGroup { group: String, member: String },
    /// A member's heartbeat.
    Heartbeat {
        group: String,
        member: String,
        generation: u64,
    },
    /// A follower's fetch: its log end, the epoch of its last record, and the leader
    /// epoch it follows.
    ReplicaFetch {
        broker: u32,
        topic: String,
        partition: u32,
        offset: u64,
        last_epoch: Option<u64>,
        leader_epoch: u64,
    },
}

/// A broker's answer.
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
    /// A committed offset; `None` when it expired (deleted by offsets retention).
    Offset(Option<u64>),
    /// A partition's log start and high watermark.
    Offsets {
        start: u64,
        end: u64,
    },
    /// The member's generation and partitions.
    Joined {
        generation: u64,
        partitions: Vec<u32>,
    },
    /// The rebalance waits for other members.
    JoinPending,
    /// A dynamic member's first join: join again with the same id (KIP-394).
    MemberIdRequired,
    /// A heartbeat's answer: the member may go on.
    Alive,
    /// The coordinator refused a member's heartbeat or commit.
    Fenced(Fenced),
    /// This broker does not lead the partition (NOT_LEADER_OR_FOLLOWER; for offsets,
    /// NOT_COORDINATOR): the client refreshes its metadata.
    NotLeader,
    /// Fewer in-sync replicas than `min.insync.replicas` (NOT_ENOUGH_REPLICAS, or
    /// `_AFTER_APPEND` when the ISR shrank while the batch waited).
    NotEnoughReplicas,
    Leader {
        broker: Option<u32>,
        epoch: u64,
    },
    /// A follower's fetch: whole batches from its offset, the leader's high watermark
    /// and log start (a follower deletes what the leader deleted: Kafka's
    /// `maybeIncrementLogStartOffset(leaderLogStartOffset, LeaderOffsetIncremented)`).
    Batches {
        batches: Vec<Vec<BrokerRecord>>,
        high_watermark: u64,
        log_start: u64,
    },
    /// The follower's log diverged from the leader's: the end of the largest epoch at
    /// or below the follower's last one.
    Diverging {
        epoch: u64,
        end_offset: u64,
    },
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
                ..
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
                member,
                topic,
                partition,
                offset,
            } => match member {
                Some((member, generation)) => {
                    format!("commit {group} {topic}/{partition}@{offset} member={member} gen={generation}")
                }
                None => format!("commit {group} {topic}/{partition}@{offset}"),
            },
            BrokerRequest::FetchOffset {
                group,
                topic,
                partition,
            } => format!("offset? {group} {topic}/{partition}"),
            BrokerRequest::ListOffsets { topic, partition } => format!("list-offsets {topic}/{partition}"),
            BrokerRequest::Metadata { topic, partition } => format!("metadata {topic}/{partition}"),
            BrokerRequest::JoinGroup { group, member, .. } => format!("join {group} member={member}"),
            BrokerRequest::LeaveGroup { group, member } => format!("leave {group} member={member}"),
            BrokerRequest::Heartbeat {
                group,
                member,
                generation,
            } => format!("heartbeat {group} member={member} gen={generation}"),
            BrokerRequest::ReplicaFetch {
                topic,
                partition,
                offset,
                leader_epoch,
                ..
            } => format!("replica-fetch {topic}/{partition}@{offset} epoch={leader_epoch}"),
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
            BrokerResponse::Offset(Some(o)) => format!("offset {o}"),
            BrokerResponse::Offset(None) => "offset none".to_string(),
            BrokerResponse::Offsets { start, end } => format!("offsets {start}..{end}"),
            BrokerResponse::Joined {
                generation,
                partitions,
            } => format!("joined gen={generation} partitions={partitions:?}"),
            BrokerResponse::JoinPending => "join pending".to_string(),
            BrokerResponse::MemberIdRequired => "member id required".to_string(),
            BrokerResponse::Alive => "alive".to_string(),
            BrokerResponse::Fenced(why) => format!("fenced {why:?}"),
            BrokerResponse::NotLeader => "not leader".to_string(),
            BrokerResponse::NotEnoughReplicas => "not enough replicas".to_string(),
            BrokerResponse::Leader { broker, epoch } => match broker {
                Some(b) => format!("leader broker-{b} epoch={epoch}"),
                None => format!("no leader epoch={epoch}"),
            },
            BrokerResponse::Batches {
                batches,
                high_watermark,
                log_start,
            } => format!(
                "batches n={} hw={high_watermark} start={log_start}",
                batches.len()
            ),
            BrokerResponse::Diverging { epoch, end_offset } => {
                format!("diverging epoch={epoch} end={end_offset}")
            }
            BrokerResponse::Error(e) => format!("error {e}"),
        }
    }
}

/// A follower as its leader tracks it (Kafka's `Replica` state).
#[derive(Clone, Copy)]
struct FollowerState {
    /// Its log end offset, as its last fetch said.
    log_end: u64,
    /// When it last had everything the leader had (`lastCaughtUpTimeMs`).
    caught_up_at_ms: u64,
    /// When it last fetched, and the leader's log end then.
    last_fetch_ms: u64,
    last_fetch_leader_end: u64,
}

#[derive(Clone)]
enum Role {
    /// Not yet told by the controller.
    Unknown,
    Leader {
        epoch: u64,
        followers: BTreeMap<u32, FollowerState>,
    },
    Follower {
        leader: Option<u32>,
        epoch: u64,
    },
}

/// The log cleaner's work on one replica of a compacted topic, as durable as its
/// swapped-in segments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cleaned {
    /// The records it removed, by offset and the leader epoch they were appended under
    /// (a record written at that offset after a truncation is another record): those a
    /// later record of the same key superseded, and tombstones past their horizon.
    removed: BTreeMap<u64, u64>,
    /// The first offset not cleaned yet (the start of the dirty part).
    first_dirty: u64,
    /// Tombstones cleaned past once (offset, epoch), and when they may go (KIP-534's
    /// delete horizon).
    horizons: BTreeMap<u64, (u64, u64)>,
}

impl Cleaned {
    /// Whether the cleaner removed this record.
    fn removed(&self, r: &BrokerRecord) -> bool {
        self.removed.get(&r.offset) == Some(&r.epoch)
    }
}

/// A retention check: when, and what `retention.ms` and `retention.bytes` keep.
#[derive(Clone, Copy, Debug)]
struct RetentionCheck {
    now_ms: u64,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
}

/// The log start retention leaves in a replica's log (`records`, its batches starting
/// at `frames`): past the records older than `retention_ms`, then past the oldest
/// segments while the rest still hold `retention_bytes` (Kafka never deletes the active
/// segment by size), and never past the high watermark (Kafka's `deletableSegments`
/// keeps a segment the high watermark has not passed: what is not yet replicated is not
/// deleted).
fn retained_start(
    records: &[BrokerRecord],
    frames: &[(u64, LogPos)],
    log_start: u64,
    high_watermark: u64,
    check: RetentionCheck,
) -> u64 {
    let log_end = records.len() as u64;
    let replicated = high_watermark.min(log_end);
    let live = records
        .get(log_start as usize..replicated as usize)
        .unwrap_or_default();
    let expired = check.retention_ms.map_or(0, |ms| {
        live.iter()
            .take_while(|r| r.appended_at_ms.is_some_and(|at| at + ms <= check.now_ms))
            .count()
    });
    let mut start = log_start + expired as u64;
    if let Some(limit) = check.retention_bytes {
        let size = |from: u64, to: u64| -> u64 {
            records[from as usize..to as usize]
                .iter()
                .map(|r| (r.key.len() + r.payload.len()) as u64)
                .sum()
        };
        let mut held = size(start, log_end);
        let segments = frames.windows(2).map(|w| (w[0].0, w[1].0));
        for (first, next) in segments.skip_while(|&(first, _)| first < log_start + expired as u64) {
            let segment = size(first, next);
            if first != start || next > replicated || held - segment < limit {
                break;
            }
            held -= segment;
            start = next;
        }
    }
    start
}

/// This broker's replica of one partition.
struct Replica {
    log: LogFile,
    records: Vec<BrokerRecord>,
    /// Each stored batch's first offset and where its frame starts.
    frames: Vec<(u64, LogPos)>,
    /// The first offset retention has not deleted.
    log_start: u64,
    /// What the log cleaner removed (compacted topics).
    cleaned: Cleaned,
    /// Offsets below are on every in-sync replica: what consumers may read.
    high_watermark: u64,
    /// Each leader epoch in the log and its first offset, ascending.
    epochs: Vec<(u64, u64)>,
    role: Role,
    isr: Vec<u32>,
    partition_epoch: u64,
    /// Wakes fetches waiting for records (followers: the log end).
    arrived: Rc<Notify>,
    /// Wakes what waits on the high watermark or a change of role.
    committed: Rc<Notify>,
    /// One batch appended (or the log cut) at a time.
    writer: Rc<tokio::sync::Mutex<()>>,
    /// The ISR proposed to the controller and not answered yet.
    pending_isr: Option<Vec<u32>>,
    /// A follower fetcher runs for this replica.
    fetching: bool,
}

impl Replica {
    fn log_end(&self) -> u64 {
        self.records.len() as u64
    }

    /// The log start retention leaves (see [`retained_start`]).
    fn retained_start(&self, check: RetentionCheck) -> u64 {
        retained_start(
            &self.records,
            &self.frames,
            self.log_start,
            self.high_watermark,
            check,
        )
    }

    /// The last record of `key` a coordinator of `epoch` counts (see
    /// [`State::committed_offset`]).
    fn last_committed(&self, key: &str, epoch: u64) -> Option<&BrokerRecord> {
        self.records
            .iter()
            .rev()
            .find(|r| &*r.key == key && (r.offset < self.high_watermark || r.epoch < epoch))
    }

    /// Whether a consumer fetching at `offset` finds a record below the high
    /// watermark the cleaner kept.
    fn readable_from(&self, offset: u64) -> bool {
        let readable = self.high_watermark.min(self.log_end());
        self.records
            .get(offset as usize..readable as usize)
            .is_some_and(|records| records.iter().any(|r| !self.cleaned.removed(r)))
    }

    /// One pass of the log cleaner over the cleanable part (below the active segment
    /// and the high watermark), when its dirty part is `MIN_CLEANABLE_DIRTY_PCT` of it
    /// or a tombstone's horizon passed: each key's latest record in the dirty part
    /// supersedes its earlier ones; a tombstone is kept `delete_retention_ms` from the
    /// pass that first cleaned past it. Answers the new state, if it changed.
    fn clean(&self, now_ms: u64, delete_retention_ms: u64) -> Option<Cleaned> {
        let active = self.frames.last().map_or(self.log_end(), |&(first, _)| first);
        let uncleanable = active.min(self.high_watermark);
        let start = self.log_start;
        if uncleanable <= start {
            return None;
        }
        let first_dirty = self.cleaned.first_dirty.max(start);
        let kept = |from: u64, to: u64| {
            self.records[from as usize..to as usize]
                .iter()
                .filter(|r| !self.cleaned.removed(r))
        };
        let bytes = |from: u64, to: u64| -> u64 {
            kept(from, to)
                .map(|r| (r.key.len() + r.payload.len()) as u64)
                .sum()
        };
        let (dirty, total) = (
            bytes(first_dirty.min(uncleanable), uncleanable),
            bytes(start, uncleanable),
        );
        let horizon_passed = self
            .cleaned
            .horizons
            .range(start..)
            .any(|(_, &(_, h))| h <= now_ms);
        let dirty_enough = total > 0 && dirty * 100 >= total * MIN_CLEANABLE_DIRTY_PCT;
        if !dirty_enough && !horizon_passed {
            return None;
        }
        let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
        for r in kept(first_dirty.min(uncleanable), uncleanable) {
            latest.insert(&r.key, r.offset);
        }
        let mut next = self.cleaned.clone();
        // Below the log start retention deleted everything: nothing left to track.
        next.removed.retain(|&o, _| o >= start);
        next.horizons.retain(|&o, _| o >= start);
        for r in kept(start, uncleanable) {
            let superseded = latest.get(&*r.key).is_some_and(|&o| o > r.offset);
            if superseded {
                next.removed.insert(r.offset, r.epoch);
                next.horizons.remove(&r.offset);
            } else if r.payload.is_empty() {
                match next.horizons.get(&r.offset) {
                    Some(&(epoch, h)) if epoch == r.epoch && h <= now_ms => {
                        next.removed.insert(r.offset, r.epoch);
                        next.horizons.remove(&r.offset);
                    }
                    Some(&(epoch, _)) if epoch == r.epoch => {}
                    _ => {
                        next.horizons
                            .insert(r.offset, (r.epoch, now_ms + delete_retention_ms));
                    }
                }
            }
        }
        next.first_dirty = uncleanable.max(self.cleaned.first_dirty);
        (next != self.cleaned).then_some(next)
    }

    fn last_epoch(&self) -> Option<u64> {
        self.epochs.last().map(|&(epoch, _)| epoch)
    }

    fn leader_epoch(&self) -> Option<u64> {
        match self.role {
            Role::Leader { epoch, .. } => Some(epoch),
            _ => None,
        }
    }

    /// The largest epoch at or below `epoch` in this log and where it ends (the next
    /// epoch's start, or the log end): Kafka's `endOffsetForEpoch`.
    fn end_of_epoch(&self, epoch: u64) -> (u64, u64) {
        let at = self.epochs.partition_point(|&(e, _)| e <= epoch);
        let end = self.epochs.get(at).map_or(self.log_end(), |&(_, start)| start);
        match at.checked_sub(1) {
            Some(i) => (self.epochs[i].0, end),
            None => (epoch, end.min(self.epochs.first().map_or(0, |&(_, start)| start))),
        }
    }

    /// Notes a stored batch's frame and epoch.
    fn note_batch(&mut self, batch: &[BrokerRecord], pos: LogPos) {
        note_batch(&mut self.frames, &mut self.epochs, batch, pos);
    }

    /// The leader's high watermark: the smallest log end among the in-sync replicas,
    /// frozen while they are fewer than `min.insync.replicas` (Kafka 4's strict min-ISR
    /// rule, KIP-966). It never goes back.
    fn advance_high_watermark(&mut self, me: u32, min_insync: usize) {
        let Role::Leader { followers, .. } = &self.role else {
            return;
        };
        if self.isr.len() < min_insync {
            return;
        }
        // The maximal ISR (KIP-497): a follower whose joining is with the controller
        // counts already, so nothing is acknowledged that a replica about to be in sync
        // lacks (it could be elected the moment it is).
        let pending = self.pending_isr.iter().flatten();
        let mut hw = self.log_end();
        for b in self.isr.iter().chain(pending) {
            if *b != me {
                hw = hw.min(followers.get(b).map_or(0, |f| f.log_end));
            }
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            self.committed.notify_waiters();
        }
    }
}

/// One stored batch of an idempotent producer: its sequences and offsets.
#[derive(Clone, Copy, Debug, PartialEq)]
struct StoredBatch {
    first_seq: u64,
    last_seq: u64,
    first_offset: u64,
    last_offset: u64,
}

/// A producer's last [`PRODUCER_BATCHES_RETAINED`] batches in one partition.
#[derive(Default)]
struct ProducerBatches(std::collections::VecDeque<StoredBatch>);

/// What an idempotent producer's batch meets.
enum SequenceCheck {
    Append,
    /// A copy of a stored batch.
    Duplicate(StoredBatch),
    OutOfOrder {
        expected: u64,
    },
}

impl ProducerBatches {
    fn push(&mut self, batch: StoredBatch) {
        if self.0.len() == PRODUCER_BATCHES_RETAINED {
            self.0.pop_front();
        }
        self.0.push_back(batch);
    }

    /// Kafka's `checkSequence` and `findDuplicateBatch`.
    fn check(&self, first_seq: u64, last_seq: u64) -> SequenceCheck {
        if let Some(stored) = self
            .0
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate(*stored);
        }
        // A producer the partition has no state of may start at any sequence.
        match self.0.back() {
            Some(last) if first_seq != last.last_seq + 1 => SequenceCheck::OutOfOrder {
                expected: last.last_seq + 1,
            },
            _ => SequenceCheck::Append,
        }
    }
}

/// The idempotent producer's batches in a run of records, one per stored batch.
/// Notes a stored batch's frame and, when it starts a newer leader epoch, the epoch.
fn note_batch(
    frames: &mut Vec<(u64, LogPos)>,
    epochs: &mut Vec<(u64, u64)>,
    batch: &[BrokerRecord],
    pos: LogPos,
) {
    if let Some(first) = batch.first() {
        frames.push((first.offset, pos));
        if epochs.last().is_none_or(|&(e, _)| first.epoch > e) {
            epochs.push((first.epoch, first.offset));
        }
    }
}

/// What a partition's log replays into when its broker opens it: the records, each
/// batch's frame, the leader epochs, and the idempotent producers' stored batches.
/// Writes keep it up to date beside the log ([`LogFile::append_noted`]), so a restart
/// decodes nothing the broker wrote itself.
#[derive(Clone, Debug, Default, PartialEq)]
struct ReplicaLog {
    records: Vec<BrokerRecord>,
    frames: Vec<(u64, LogPos)>,
    epochs: Vec<(u64, u64)>,
    /// Each producer batch stored, by producer, in log order.
    stored: Vec<(u64, StoredBatch)>,
    /// Where the last batch's frame ends.
    end: LogPos,
}

impl ReplicaLog {
    /// Takes the batch stored in the frame from `pos` to `next`.
    fn add_batch(&mut self, batch: &[BrokerRecord], pos: LogPos, next: LogPos) {
        self.stored.extend(stored_batch(batch));
        note_batch(&mut self.frames, &mut self.epochs, batch, pos);
        self.records.extend_from_slice(batch);
        self.end = next;
    }
}

impl Replay for ReplicaLog {
    /// One frame per batch: a batch is stored whole or not at all, as Kafka writes a
    /// record batch with one CRC.
    fn apply(&mut self, frame: faultline_sim::LogRecord) {
        let batch: Vec<BrokerRecord> =
            rmp_serde::from_slice(&frame.payload).expect("broker batches are written by this module");
        self.add_batch(&batch, frame.pos, frame.next);
    }

    /// Back to the batches whose frames end at or before `at` (each frame ends where
    /// the next begins, the last at `end`).
    fn cut(&mut self, at: LogPos) -> Option<LogPos> {
        let ends = self.frames.iter().skip(1).map(|&(_, pos)| pos).chain([self.end]);
        let kept = ends.take_while(|&end| end <= at).count();
        let (first, end) = match self.frames.get(kept) {
            Some(&(first, pos)) => (first, pos),
            None => return Some(self.end),
        };
        self.frames.truncate(kept);
        self.records.truncate(first as usize);
        self.epochs.retain(|&(_, start)| start < first);
        self.stored.retain(|(_, batch)| batch.first_offset < first);
        self.end = end;
        Some(end)
    }
}

fn stored_batch(batch: &[BrokerRecord]) -> Option<(u64, StoredBatch)> {
    let (first, last) = (batch.first()?, batch.last()?);
    let (p, q) = (first.producer?, last.producer?);
    Some((
        p.producer,
        StoredBatch {
            first_seq: p.seq,
            last_seq: q.seq,
            first_offset: first.offset,
            last_offset: last.offset,
        },
    ))
}

struct State {
    ctx: HostCtx,
    id: u32,
    config: ClusterConfig,
    bugs: BugSet,
    replicas: BTreeMap<(String, u32), Replica>,
    /// The last batches stored per producer, topic and partition, oldest first.
    sequences: BTreeMap<(u64, String, u32), ProducerBatches>,
    /// The controller's metadata image as this broker last heard it.
    image: Image,
    image_version: u64,
    /// The brokers that may join an ISR, from the same image.
    eligible: Vec<u32>,
    /// The durable log start offsets, by `topic-partition`.
    log_starts: BTreeMap<String, u64>,
    /// The durable work of the log cleaner, by `topic-partition`.
    cleaned: BTreeMap<String, Cleaned>,
    controller: RpcClient<ControllerRequest, ControllerResponse>,
    peers: BTreeMap<u32, RpcClient<BrokerRequest, BrokerResponse>>,
    coordinator: Coordinator,
    /// Asked to stop: its heartbeats ask the controller for a controlled shutdown.
    shutting_down: bool,
}

type Shared = Rc<RefCell<State>>;

/// Every replica this broker holds open, for the run's view of its Kafka stage.
fn replica_ends(state: &State) -> Vec<ReplicaEnd> {
    state
        .replicas
        .iter()
        .map(|((topic, partition), replica)| ReplicaEnd {
            topic: topic.clone(),
            partition: *partition,
            log_end: replica.log_end(),
            high_watermark: replica.high_watermark,
            leads: matches!(replica.role, Role::Leader { .. }),
        })
        .collect()
}

/// The consumer groups this broker coordinates while it leads `__consumer_offsets`,
/// loaded from that log when it took over (Kafka's `GroupMetadataManager` loads every
/// group's last stored generation and its members, whose sessions start again).
#[derive(Default)]
struct Coordinator {
    /// The offsets partition's leader epoch the groups were loaded under.
    epoch: Option<u64>,
    groups: BTreeMap<String, Group>,
    /// Groups whose next generation is being written.
    writing: std::collections::BTreeSet<String>,
}

impl State {
    /// This broker's replica of a partition, opened from its log on first use.
    fn replica(&mut self, topic: &str, partition: u32) -> &mut Replica {
        let ctx = &self.ctx;
        let sequences = &mut self.sequences;
        let (log_starts, cleaned) = (&self.log_starts, &self.cleaned);
        self.replicas
            .entry((topic.to_string(), partition))
            .or_insert_with(|| {
                let name = format!("{topic}-{partition}");
                let log_start = log_starts.get(&name).copied().unwrap_or(0);
                let cleaned = cleaned.get(&name).cloned().unwrap_or_default();
                let (log, recovered) =
                    LogFile::open_replaying(ctx.disk(), &log_file(topic, partition), ReplicaLog::default);
                let ReplicaLog {
                    records,
                    frames,
                    epochs,
                    stored,
                    end: _,
                } = recovered.state;
                for (producer, batch) in stored {
                    sequences
                        .entry((producer, topic.to_string(), partition))
                        .or_default()
                        .push(batch);
                }
                Replica {
                    log,
                    records,
                    frames,
                    log_start,
                    cleaned,
                    high_watermark: 0,
                    epochs,
                    role: Role::Unknown,
                    isr: Vec::new(),
                    partition_epoch: 0,
                    arrived: Rc::new(Notify::new()),
                    committed: Rc::new(Notify::new()),
                    writer: Rc::default(),
                    pending_isr: None,
                    fetching: false,
                }
            })
    }

    fn peer(&mut self, broker: u32) -> RpcClient<BrokerRequest, BrokerResponse> {
        let ctx = &self.ctx;
        self.peers
            .entry(broker)
            .or_insert_with(|| {
                RpcClient::new(
                    ctx,
                    BROKER_HOSTS[broker as usize - 1],
                    BROKER_PORT,
                    REPLICA_FETCH_TIMEOUT,
                )
            })
            .clone()
    }

    /// Takes a newer metadata image: each partition this broker has a replica of
    /// becomes led or followed as the controller says. Returns the partitions whose
    /// follower fetcher is to start.
    fn apply_image(&mut self, version: u64, image: Image, eligible: Vec<u32>) -> Vec<(String, u32)> {
        if version <= self.image_version {
            return Vec::new();
        }
        self.image_version = version;
        self.image = image;
        self.eligible = eligible;
        let me = self.id;
        let min_insync = self.config.min_insync_replicas as usize;
        let now = self.ctx.now().as_millis();
        let mut followers_to_start = Vec::new();
        let mine: Vec<((String, u32), PartitionState)> = self
            .image
            .iter()
            .filter(|(_, p)| p.replicas.contains(&me))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        for ((topic, partition), meta) in mine {
            let replica = self.replica(&topic, partition);
            replica.isr = meta.isr.clone();
            replica.partition_epoch = meta.partition_epoch;
            let role_changed = if meta.leader == Some(me) {
                if replica.leader_epoch() == Some(meta.leader_epoch) {
                    false
                } else {
                    // Kafka writes the new epoch's start into its epoch cache at once;
                    // here the epoch's first batch marks it, which answers followers
                    // the same (an epoch with no batch ends where the log ends).
                    let end = replica.log_end();
                    let followers = meta
                        .replicas
                        .iter()
                        .filter(|&&b| b != me)
                        .map(|&b| {
                            (
                                b,
                                FollowerState {
                                    log_end: 0,
                                    caught_up_at_ms: now,
                                    last_fetch_ms: now,
                                    last_fetch_leader_end: end,
                                },
                            )
                        })
                        .collect();
                    replica.role = Role::Leader {
                        epoch: meta.leader_epoch,
                        followers,
                    };
                    true
                }
            } else {
                let follows = matches!(replica.role, Role::Follower { leader, epoch }
                    if leader == meta.leader && epoch == meta.leader_epoch);
                if !follows {
                    replica.role = Role::Follower {
                        leader: meta.leader,
                        epoch: meta.leader_epoch,
                    };
                }
                if !replica.fetching {
                    replica.fetching = true;
                    followers_to_start.push((topic.clone(), partition));
                }
                !follows
            };
            if role_changed {
                let role = match replica.role {
                    Role::Leader { epoch, .. } => format!("leader epoch={epoch}"),
                    Role::Follower { leader, epoch } => format!(
                        "follower of {} epoch={epoch}",
                        leader.map_or("none".to_string(), |b| format!("broker-{b}"))
                    ),
                    Role::Unknown => unreachable!("set above"),
                };
                let isr = isr_text(&replica.isr);
                self.ctx
                    .record("replica-role", format!("{topic}/{partition} {role} isr={isr}"));
            }
            let replica = self.replica(&topic, partition);
            replica.advance_high_watermark(me, min_insync);
            // Produces waiting on a leadership this broker lost must hear of it.
            replica.committed.notify_waiters();
            replica.arrived.notify_waiters();
        }
        followers_to_start
    }

    /// The leader's answer to a follower's fetch (after its position was noted).
    fn serve_replica_fetch(&mut self, topic: &str, partition: u32, offset: u64) -> BrokerResponse {
        let replica = self.replica(topic, partition);
        let at = replica.frames.partition_point(|&(first, _)| first < offset);
        let aligned =
            offset == replica.log_end() || replica.frames.get(at).is_some_and(|&(first, _)| first == offset);
        if !aligned {
            // A follower inside one of our batches holds a different batch there.
            let start = at.checked_sub(1).map_or(0, |i| replica.frames[i].0);
            return BrokerResponse::Diverging {
                epoch: replica.records.get(start as usize).map_or(0, |r| r.epoch),
                end_offset: start,
            };
        }
        let mut batches = Vec::new();
        let mut count = 0;
        for i in at..replica.frames.len() {
            let first = replica.frames[i].0 as usize;
            let end = replica
                .frames
                .get(i + 1)
                .map_or(replica.records.len(), |&(f, _)| f as usize);
            if count > 0 && count + (end - first) > FETCH_MAX_RECORDS as usize {
                break;
            }
            count += end - first;
            batches.push(replica.records[first..end].to_vec());
        }
        BrokerResponse::Batches {
            batches,
            high_watermark: replica.high_watermark,
            log_start: replica.log_start,
        }
    }

    /// A consumer's read: up to the high watermark, at the leader only.
    fn serve_fetch(&mut self, topic: &str, partition: u32, offset: u64, max: u32) -> BrokerResponse {
        let replica = self.replica(topic, partition);
        if replica.leader_epoch().is_none() {
            return BrokerResponse::NotLeader;
        }
        let readable = replica.high_watermark.min(replica.log_end());
        // A start past the end (records lost after their deletion was recorded) means
        // an empty partition: the consumer resets to the end.
        let log_start = replica.log_start.min(readable);
        // Out of range only past the log end: a new leader's high watermark may lag
        // behind what consumers already read until its followers fetch.
        if offset < log_start || offset > replica.log_end() {
            return BrokerResponse::OutOfRange {
                start: log_start,
                end: readable,
            };
        }
        if offset >= readable {
            return BrokerResponse::Records(Vec::new());
        }
        // Past what the cleaner removed: a consumer's position jumps its gaps.
        let records = replica.records[offset as usize..readable as usize]
            .iter()
            .filter(|r| !replica.cleaned.removed(r))
            .take(max.min(FETCH_MAX_RECORDS) as usize)
            .cloned()
            .collect();
        BrokerResponse::Records(records)
    }

    /// The group's last committed offset, from the coordinator's replica of the
    /// offsets topic. A new coordinator loads its whole log when it becomes leader
    /// (Kafka's `GroupMetadataManager` reads to the log end), so it sees every commit
    /// written under earlier leaders even while its high watermark catches up; a commit
    /// it takes itself counts once the in-sync replicas have it. A group that never
    /// committed here is at 0: the integration was deployed before the run, its group
    /// with it, and had read nothing yet. An expired offset (a tombstone) is none.
    fn committed_offset(&mut self, key: &str) -> BrokerResponse {
        let replica = self.replica(OFFSETS_TOPIC, 0);
        let Some(epoch) = replica.leader_epoch() else {
            return BrokerResponse::NotLeader;
        };
        let offset = replica
            .last_committed(key, epoch)
            .map_or(Some(0), |r| r.payload.parse().ok());
        BrokerResponse::Offset(offset)
    }

    /// A partition's log start and high watermark, at the leader only.
    fn list_offsets(&mut self, topic: &str, partition: u32) -> BrokerResponse {
        let replica = self.replica(topic, partition);
        if replica.leader_epoch().is_none() {
            return BrokerResponse::NotLeader;
        }
        let end = replica.high_watermark.min(replica.log_end());
        BrokerResponse::Offsets {
            start: replica.log_start.min(end),
            end,
        }
    }

    /// Takes a batch just written to a replica's log at `pos` into memory: its records,
    /// its frame and epoch, and its producer's sequences.
    fn keep_batch(&mut self, topic: &str, partition: u32, batch: Vec<BrokerRecord>, pos: LogPos) {
        if let Some((producer, stored)) = stored_batch(&batch) {
            self.sequences
                .entry((producer, topic.to_string(), partition))
                .or_default()
                .push(stored);
        }
        let replica = self.replica(topic, partition);
        replica.note_batch(&batch, pos);
        replica.records.extend(batch);
    }

    /// Cuts a replica's log back to `offset` (a batch boundary at or below it): the
    /// records, the frames, the epochs and the producer state past it go.
    fn truncate(&mut self, topic: &str, partition: u32, offset: u64) {
        let replica = self.replica(topic, partition);
        let at = replica.frames.partition_point(|&(first, _)| first < offset);
        let Some(&(first, pos)) = replica.frames.get(at) else {
            return;
        };
        replica.log.truncate(pos);
        replica.frames.truncate(at);
        replica.records.truncate(first as usize);
        // What the cleaner did past the cut is moot; it cleans the new records anew.
        replica.cleaned.removed.retain(|&o, _| o < first);
        replica.cleaned.horizons.retain(|&o, _| o < first);
        replica.cleaned.first_dirty = replica.cleaned.first_dirty.min(first);
        replica.epochs.retain(|&(_, start)| start < first);
        replica.high_watermark = replica.high_watermark.min(first);
        self.ctx
            .record("replica-truncated", format!("{topic}/{partition} to {first}"));
        // Rebuild the producer state of the partition from what remains.
        let topic_s = topic.to_string();
        self.sequences
            .retain(|(_, t, p), _| !(t == &topic_s && *p == partition));
        let replica = &self.replicas[&(topic_s.clone(), partition)];
        let mut rebuilt: Vec<(u64, StoredBatch)> = Vec::new();
        for (i, &(start, _)) in replica.frames.iter().enumerate() {
            let end = replica
                .frames
                .get(i + 1)
                .map_or(replica.records.len(), |&(f, _)| f as usize);
            if let Some(b) = stored_batch(&replica.records[start as usize..end]) {
                rebuilt.push(b);
            }
        }
        for (producer, stored) in rebuilt {
            self.sequences
                .entry((producer, topic_s.clone(), partition))
                .or_default()
                .push(stored);
        }
    }
}

/// What a produce waits for once its batch is in the leader's log.
enum Stored {
    /// Answer now (`acks=0`/`1`, or refused).
    Answer(BrokerResponse),
    /// Answer once the high watermark passes `end` under leader epoch `epoch`.
    AwaitReplicas { first: u64, end: u64, epoch: u64 },
}

/// Appends a batch to the leader's log, one batch at a time per partition (the
/// partition's append lock), and answers as `acks` asks.
async fn produce(
    state: &Shared,
    topic: String,
    partition: u32,
    records: Vec<(String, String)>,
    producer: Option<ProducerSeq>,
    acks: Acks,
) -> BrokerResponse {
    let stored = append_as_leader(state, &topic, partition, records, producer, acks).await;
    let (first, end, epoch) = match stored {
        Stored::Answer(answer) => return answer,
        Stored::AwaitReplicas { first, end, epoch } => (first, end, epoch),
    };
    let deadline = state.borrow().ctx.now() + Duration::from_millis(PRODUCE_WAIT_MS);
    loop {
        let committed = {
            let mut s = state.borrow_mut();
            let min_insync = s.config.min_insync_replicas as usize;
            let replica = s.replica(&topic, partition);
            if replica.leader_epoch() != Some(epoch) {
                return BrokerResponse::NotLeader;
            }
            if replica.high_watermark >= end {
                if replica.isr.len() < min_insync {
                    return BrokerResponse::NotEnoughReplicas;
                }
                return BrokerResponse::Produced { offset: first };
            }
            Rc::clone(&replica.committed)
        };
        let now = state.borrow().ctx.now();
        if now >= deadline {
            return BrokerResponse::Error("request timed out waiting for the in-sync replicas".to_string());
        }
        let _ = faultline_sim::timer::timeout(deadline.saturating_since(now), committed.notified()).await;
    }
}

async fn append_as_leader(
    state: &Shared,
    topic: &str,
    partition: u32,
    records: Vec<(String, String)>,
    producer: Option<ProducerSeq>,
    acks: Acks,
) -> Stored {
    if !state.borrow().image.contains_key(&(topic.to_string(), partition)) {
        return Stored::Answer(BrokerResponse::NotLeader);
    }
    let writer = Rc::clone(&state.borrow_mut().replica(topic, partition).writer);
    let _appending = writer.lock().await;
    let (log, batch, epoch, flush) = {
        let mut s = state.borrow_mut();
        let min_insync = s.config.min_insync_replicas as usize;
        let skip_replicas = s.bugs.has(Bug::BrokerAcksBeforeReplication);
        let replica = s.replica(topic, partition);
        let Some(epoch) = replica.leader_epoch() else {
            return Stored::Answer(BrokerResponse::NotLeader);
        };
        if acks == Acks::All && replica.isr.len() < min_insync {
            return Stored::Answer(BrokerResponse::NotEnoughReplicas);
        }
        if let Some(p) = producer {
            let last_seq = p.seq + records.len().saturating_sub(1) as u64;
            let check = s
                .sequences
                .get(&(p.producer, topic.to_string(), partition))
                .map_or(SequenceCheck::Append, |b| b.check(p.seq, last_seq));
            match check {
                SequenceCheck::Append => {}
                // A retry of a stored batch is answered as the first time, once it
                // is as replicated as the first time needed.
                SequenceCheck::Duplicate(stored) => {
                    return if acks == Acks::All && !skip_replicas {
                        Stored::AwaitReplicas {
                            first: stored.first_offset,
                            end: stored.last_offset + 1,
                            epoch,
                        }
                    } else {
                        Stored::Answer(BrokerResponse::Produced {
                            offset: stored.first_offset,
                        })
                    };
                }
                SequenceCheck::OutOfOrder { expected } => {
                    return Stored::Answer(BrokerResponse::OutOfOrderSequence { expected });
                }
            }
        }
        let appended_at_ms = Some(s.ctx.now().as_millis());
        let flush = s.config.flush_every_batch;
        let replica = s.replica(topic, partition);
        let first = replica.log_end();
        let batch: Vec<BrokerRecord> = records
            .into_iter()
            .enumerate()
            .map(|(i, (key, payload))| BrokerRecord {
                offset: first + i as u64,
                key: key.into(),
                payload: payload.into(),
                producer: producer.map(|p| ProducerSeq {
                    producer: p.producer,
                    seq: p.seq + i as u64,
                }),
                appended_at_ms,
                epoch,
            })
            .collect();
        (replica.log.clone(), batch, epoch, flush)
    };
    let pos = match write_batch(&log, &batch, flush).await {
        Ok(pos) => pos,
        Err(e) => return Stored::Answer(BrokerResponse::Error(e)),
    };
    let mut s = state.borrow_mut();
    let me = s.id;
    let min_insync = s.config.min_insync_replicas as usize;
    let skip_replicas = s.bugs.has(Bug::BrokerAcksBeforeReplication);
    let first = batch.first().map_or(0, |r| r.offset);
    let end = first + batch.len() as u64;
    s.keep_batch(topic, partition, batch, pos);
    let replica = s.replica(topic, partition);
    replica.arrived.notify_waiters();
    replica.advance_high_watermark(me, min_insync);
    match acks {
        // Planted bug: answered as if replicated once the leader has it.
        Acks::All if !skip_replicas => Stored::AwaitReplicas { first, end, epoch },
        _ => Stored::Answer(BrokerResponse::Produced { offset: first }),
    }
}

/// Writes one batch as one frame (synced when every batch is flushed); a batch that
/// failed leaves nothing, not even bytes a failed fsync left readable but not durable.
async fn write_batch(log: &LogFile, batch: &[BrokerRecord], flush: bool) -> Result<LogPos, String> {
    let start = log.end();
    // Binary, as Kafka's record batches are: a record's JSON payload is stored as it
    // is, not escaped again inside a JSON array (positional MessagePack, every field
    // written).
    let bytes = faultline_sim::omit::positionally(|| rmp_serde::to_vec(batch)).expect("records serialise");
    let mut written = log
        .append_noted::<ReplicaLog>(&bytes, |kept, pos, next| kept.add_batch(batch, pos, next))
        .await
        .map(|_| ());
    if written.is_ok() && flush {
        written = log.sync().await;
    }
    match written {
        Ok(()) => Ok(start),
        Err(e) => {
            log.truncate(start);
            Err(e.to_string())
        }
    }
}

/// The leader's side of a follower's fetch: checks the follower's log against its own,
/// notes its position (which may advance the high watermark or return it to the ISR),
/// waits for records if it has them all, and answers with whole batches.
async fn replica_fetch(
    state: &Shared,
    follower: u32,
    topic: String,
    partition: u32,
    offset: u64,
    last_epoch: Option<u64>,
    leader_epoch: u64,
) -> BrokerResponse {
    let arrived = {
        let mut s = state.borrow_mut();
        let me = s.id;
        let min_insync = s.config.min_insync_replicas as usize;
        let now = s.ctx.now().as_millis();
        // Kafka's `isReplicaIsrEligible`: a broker the image shows fenced or shutting
        // down is not proposed (the controller would refuse it).
        let may_join = s.eligible.contains(&follower);
        let replica = s.replica(&topic, partition);
        if replica.leader_epoch() != Some(leader_epoch) {
            return BrokerResponse::NotLeader;
        }
        if let Some(last) = last_epoch {
            let (epoch, end) = replica.end_of_epoch(last);
            if epoch < last || end < offset {
                return BrokerResponse::Diverging {
                    epoch,
                    end_offset: end,
                };
            }
        }
        let log_end = replica.log_end();
        let high_watermark = replica.high_watermark;
        let in_isr = replica.isr.contains(&follower);
        let Role::Leader { followers, .. } = &mut replica.role else {
            unreachable!("checked above");
        };
        let Some(f) = followers.get_mut(&follower) else {
            return BrokerResponse::NotLeader;
        };
        f.log_end = offset.min(log_end);
        // Kafka's rule: caught up if it has the leader's end now, or had the end the
        // leader had at its previous fetch (then as of that fetch).
        if offset >= log_end {
            f.caught_up_at_ms = now;
        } else if offset >= f.last_fetch_leader_end {
            f.caught_up_at_ms = f.caught_up_at_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_ms = now;
        f.last_fetch_leader_end = log_end;
        let rejoins = !in_isr && may_join && offset >= high_watermark;
        replica.advance_high_watermark(me, min_insync);
        if rejoins {
            let mut isr = replica.isr.clone();
            isr.push(follower);
            isr.sort_unstable();
            propose_isr(state, &mut s, &topic, partition, isr);
        }
        let replica = s.replica(&topic, partition);
        (offset >= replica.log_end()).then(|| Rc::clone(&replica.arrived))
    };
    if let Some(arrived) = arrived {
        let _ =
            faultline_sim::timer::timeout(Duration::from_millis(REPLICA_FETCH_WAIT_MS), arrived.notified())
                .await;
    }
    let mut s = state.borrow_mut();
    if s.replica(&topic, partition).leader_epoch() != Some(leader_epoch) {
        return BrokerResponse::NotLeader;
    }
    s.serve_replica_fetch(&topic, partition, offset)
}

/// Sends an ISR change to the controller unless one is pending; the answer's image is
/// taken either way.
fn propose_isr(state: &Shared, s: &mut State, topic: &str, partition: u32, isr: Vec<u32>) {
    let replica = s.replica(topic, partition);
    if replica.pending_isr.is_some() {
        return;
    }
    replica.pending_isr = Some(isr.clone());
    let partition_epoch = replica.partition_epoch;
    let request = ControllerRequest::AlterPartition {
        broker: s.id,
        topic: topic.to_string(),
        partition,
        partition_epoch,
        isr,
    };
    let controller = s.controller.clone();
    let state = Rc::clone(state);
    let key = (topic.to_string(), partition);
    tokio::task::spawn_local(async move {
        let answer = controller.call(&request).await;
        let start = {
            let mut s = state.borrow_mut();
            s.replica(&key.0, key.1).pending_isr = None;
            match answer {
                Ok(
                    ControllerResponse::Image {
                        version,
                        image,
                        eligible,
                    }
                    | ControllerResponse::Stale {
                        version,
                        image,
                        eligible,
                    },
                ) => s.apply_image(version, image, eligible),
                _ => Vec::new(),
            }
        };
        start_followers(&state, start);
    });
}

/// The leader drops from the ISR each follower that has not caught up for
/// `replica.lag.time.max.ms` (Kafka's `maybeShrinkIsr`, run every half of it).
fn shrink_isrs(state: &Shared) {
    let mut s = state.borrow_mut();
    let now = s.ctx.now().as_millis();
    let lag_max = s.config.replica_lag_max_ms;
    let me = s.id;
    let mut proposals = Vec::new();
    for ((topic, partition), replica) in &s.replicas {
        let Role::Leader { followers, .. } = &replica.role else {
            continue;
        };
        let lagging =
            |b: &u32| *b != me && followers.get(b).is_none_or(|f| f.caught_up_at_ms + lag_max < now);
        if replica.isr.iter().any(lagging) {
            let isr: Vec<u32> = replica.isr.iter().copied().filter(|b| !lagging(b)).collect();
            proposals.push((topic.clone(), *partition, isr));
        }
    }
    for (topic, partition, isr) in proposals {
        propose_isr(state, &mut s, &topic, partition, isr);
    }
}

/// Spawns the follower fetchers of newly followed partitions.
fn start_followers(state: &Shared, partitions: Vec<(String, u32)>) {
    for (topic, partition) in partitions {
        tokio::task::spawn_local(follow(Rc::clone(state), topic, partition));
    }
}

/// A follower's fetcher for one partition, for as long as the process lives: copies
/// the leader's batches into its own log, or cuts its log where the leader says it
/// diverged.
async fn follow(state: Shared, topic: String, partition: u32) {
    loop {
        let plan = {
            let mut s = state.borrow_mut();
            let me = s.id;
            let replica = s.replica(&topic, partition);
            match replica.role {
                Role::Follower {
                    leader: Some(leader),
                    epoch,
                } if leader != me => Some((
                    leader,
                    BrokerRequest::ReplicaFetch {
                        broker: me,
                        topic: topic.clone(),
                        partition,
                        offset: replica.log_end(),
                        last_epoch: replica.last_epoch(),
                        leader_epoch: epoch,
                    },
                    epoch,
                )),
                Role::Leader { .. } => {
                    replica.fetching = false;
                    return;
                }
                _ => None,
            }
        };
        let Some((leader, request, epoch)) = plan else {
            faultline_sim::timer::sleep(Duration::from_millis(HEARTBEAT_MS)).await;
            continue;
        };
        let peer = state.borrow_mut().peer(leader);
        match peer.call(&request).await {
            Ok(BrokerResponse::Batches {
                batches,
                high_watermark,
                log_start,
            }) => {
                for batch in batches {
                    if !append_as_follower(&state, &topic, partition, epoch, batch).await {
                        break;
                    }
                }
                let mut s = state.borrow_mut();
                let replica = s.replica(&topic, partition);
                replica.high_watermark = replica.high_watermark.max(high_watermark.min(replica.log_end()));
                // The leader's deletions hold here at once (reads, and an election of
                // this replica); retention makes them durable at its next check, as
                // Kafka checkpoints log starts apart from the fetch.
                let start = log_start.min(replica.high_watermark);
                if start > replica.log_start {
                    replica.log_start = start;
                    s.ctx
                        .record("log-start-followed", format!("{topic}/{partition} below {start}"));
                }
            }
            Ok(BrokerResponse::Diverging {
                epoch: leaders,
                end_offset,
            }) => {
                let writer = Rc::clone(&state.borrow_mut().replica(&topic, partition).writer);
                let _cutting = writer.lock().await;
                let mut s = state.borrow_mut();
                let replica = s.replica(&topic, partition);
                let (_, own_end) = replica.end_of_epoch(leaders);
                s.truncate(&topic, partition, end_offset.min(own_end));
            }
            _ => faultline_sim::timer::sleep(Duration::from_millis(REPLICA_BACKOFF_MS)).await,
        }
    }
}

/// Appends a batch copied from the leader, if this replica still follows at `epoch`
/// and the batch continues its log.
async fn append_as_follower(
    state: &Shared,
    topic: &str,
    partition: u32,
    epoch: u64,
    batch: Vec<BrokerRecord>,
) -> bool {
    let writer = Rc::clone(&state.borrow_mut().replica(topic, partition).writer);
    let _appending = writer.lock().await;
    let (log, flush) = {
        let mut s = state.borrow_mut();
        let flush = s.config.flush_every_batch;
        let replica = s.replica(topic, partition);
        let follows = matches!(replica.role, Role::Follower { epoch: e, .. } if e == epoch);
        if !follows || batch.first().map(|r| r.offset) != Some(replica.log_end()) {
            return false;
        }
        (replica.log.clone(), flush)
    };
    let Ok(pos) = write_batch(&log, &batch, flush).await else {
        return false;
    };
    state.borrow_mut().keep_batch(topic, partition, batch, pos);
    true
}

/// The broker's heartbeat to the controller, every [`HEARTBEAT_MS`] for as long as the
/// process lives, each on its own (a lost one does not hold up the next, so a session
/// ends only after several in a row are lost); each answer's newer image changes the
/// roles of its replicas.
async fn heartbeat(state: Shared) {
    loop {
        let (controller, request) = {
            let s = state.borrow();
            (
                s.controller.clone(),
                ControllerRequest::Heartbeat {
                    broker: s.id,
                    incarnation: s.ctx.incarnation(),
                    known: s.image_version,
                    shutting_down: s.shutting_down,
                },
            )
        };
        let state = Rc::clone(&state);
        tokio::task::spawn_local(async move {
            if let Ok(ControllerResponse::Image {
                version,
                image,
                eligible,
            }) = controller.call(&request).await
            {
                let start = state.borrow_mut().apply_image(version, image, eligible);
                start_followers(&state, start);
            }
        });
        faultline_sim::timer::sleep(Duration::from_millis(HEARTBEAT_MS)).await;
    }
}

/// Which broker leads a partition, creating the partition through the controller when
/// it does not exist yet.
async fn metadata(state: &Shared, topic: String, partition: u32) -> BrokerResponse {
    let key = (topic, partition);
    if !state.borrow().image.contains_key(&key) {
        let controller = state.borrow().controller.clone();
        let request = ControllerRequest::Create {
            topic: key.0.clone(),
            partition,
        };
        if let Ok(ControllerResponse::Image {
            version,
            image,
            eligible,
        }) = controller.call(&request).await
        {
            let start = state.borrow_mut().apply_image(version, image, eligible);
            start_followers(state, start);
        }
    }
    match state.borrow().image.get(&key) {
        Some(p) => BrokerResponse::Leader {
            broker: p.leader,
            epoch: p.leader_epoch,
        },
        None => BrokerResponse::Leader {
            broker: None,
            epoch: 0,
        },
    }
}

fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{group}/{topic}/{partition}")
}

/// The key of a group's stored generation in `__consumer_offsets`.
fn generation_key(group: &str) -> String {
    format!("generation/{group}")
}

/// Runs `f` on `group` as this broker's coordinator knows it now (after dropping the
/// members whose session or rebalance time ran out); `None` when this broker does not
/// coordinate (it does not lead `__consumer_offsets`).
fn with_group<R>(
    state: &Shared,
    group: &str,
    f: impl FnOnce(&mut Group, faultline_sim::SimTime) -> R,
) -> Option<R> {
    let mut guard = state.borrow_mut();
    let s = &mut *guard;
    let now = s.ctx.now();
    let ctx = s.ctx.clone();
    let entry = coordinator(s)?.groups.entry(group.to_string()).or_default();
    for member in entry.expire(now) {
        ctx.record("group-member-dropped", format!("{group} member={member}"));
    }
    Some(f(entry, now))
}

/// The groups this broker coordinates, loaded when it took the offsets topic's
/// leadership; `None` when it does not lead it.
fn coordinator(s: &mut State) -> Option<&mut Coordinator> {
    if !s.image.contains_key(&(OFFSETS_TOPIC.to_string(), 0)) {
        return None;
    }
    let now = s.ctx.now();
    let loaded_under = s.coordinator.epoch;
    let replica = s.replica(OFFSETS_TOPIC, 0);
    let epoch = replica.leader_epoch()?;
    if loaded_under != Some(epoch) {
        // Took over: every group's last generation the log holds, as committed offsets
        // are read (below the high watermark or written under an earlier leader).
        let high_watermark = replica.high_watermark;
        let mut groups = BTreeMap::new();
        for record in replica
            .records
            .iter()
            .filter(|r| r.offset < high_watermark || r.epoch < epoch)
        {
            if let Some(name) = record.key.strip_prefix("generation/") {
                let stored: Generation =
                    serde_json::from_str(&record.payload).expect("generations are written by this module");
                groups.insert(name.to_string(), Group::loaded(stored, now));
            }
        }
        s.coordinator = Coordinator {
            epoch: Some(epoch),
            groups,
            writing: Default::default(),
        };
    }
    Some(&mut s.coordinator)
}

/// Deletes the committed offsets of every group that has had no member for
/// `offsets.retention.minutes` (KIP-211; a group this coordinator never saw a member of,
/// such as a consumer that assigns itself its partitions, counts from its last commit),
/// as Kafka's `GroupMetadataManager` cleans up every
/// `offsets.retention.check.interval.ms`: a tombstone per offset, written `acks=all`.
/// A consumer of the group finds no offset and goes where `auto.offset.reset` says.
async fn expire_offsets(state: &Shared, retention_ms: u64) {
    let expired: Vec<String> = {
        let mut guard = state.borrow_mut();
        let s = &mut *guard;
        let now = s.ctx.now();
        if coordinator(s).is_none() {
            return;
        }
        let Some(replica) = s.replicas.get(&(OFFSETS_TOPIC.to_string(), 0)) else {
            return;
        };
        let Some(epoch) = replica.leader_epoch() else {
            return;
        };
        let mut latest: BTreeMap<&str, &BrokerRecord> = BTreeMap::new();
        for r in replica
            .records
            .iter()
            .filter(|r| r.offset < replica.high_watermark || r.epoch < epoch)
            .filter(|r| !r.key.starts_with("generation/"))
        {
            latest.insert(&r.key, r);
        }
        let groups = &mut s.coordinator.groups;
        let ctx = &s.ctx;
        latest
            .into_iter()
            .filter(|(_, r)| !r.payload.is_empty())
            .filter(|(key, r)| {
                let committed_at = r.appended_at_ms.unwrap_or(0);
                let group = key.split('/').next().unwrap_or_default();
                let empty_since = match groups.get_mut(group) {
                    Some(g) => {
                        for member in g.expire(now) {
                            ctx.record("group-member-dropped", format!("{group} member={member}"));
                        }
                        if !g.is_empty() {
                            return false;
                        }
                        g.empty_since()
                            .map_or(committed_at, |t| t.as_millis().max(committed_at))
                    }
                    None => committed_at,
                };
                now.as_millis() >= empty_since + retention_ms
            })
            .map(|(key, _)| key.to_string())
            .collect()
    };
    if expired.is_empty() {
        return;
    }
    let tombstones = expired.iter().map(|key| (key.clone(), String::new())).collect();
    if let BrokerResponse::Produced { .. } =
        produce(state, OFFSETS_TOPIC.to_string(), 0, tombstones, None, Acks::All).await
    {
        let s = state.borrow();
        for key in expired {
            s.ctx.record("offset-expired", key);
        }
    }
}

/// A member's join: answers its place once the rebalance completes; the coordinator
/// writes the new generation (`acks=all`) before it counts, and a member asks again
/// until then.
async fn join_group(
    state: &Shared,
    group: String,
    member: String,
    instance: Option<String>,
    partitions: u32,
) -> BrokerResponse {
    let joined = with_group(state, &group, |g, now| {
        let answer = g.join(&member, instance.as_deref(), partitions, now);
        (answer, g.ready(now))
    });
    let next = match joined {
        None => return BrokerResponse::NotLeader,
        Some((
            Join::Joined {
                generation,
                partitions,
            },
            _,
        )) => {
            return BrokerResponse::Joined {
                generation,
                partitions,
            };
        }
        Some((Join::MemberIdRequired, _)) => return BrokerResponse::MemberIdRequired,
        Some((Join::Pending, None)) => return BrokerResponse::JoinPending,
        Some((Join::Pending, Some(next))) => next,
    };
    if !state.borrow_mut().coordinator.writing.insert(group.clone()) {
        return BrokerResponse::JoinPending;
    }
    let record = (
        generation_key(&group),
        serde_json::to_string(&next).expect("generations serialise"),
    );
    let written = produce(state, OFFSETS_TOPIC.to_string(), 0, vec![record], None, Acks::All).await;
    state.borrow_mut().coordinator.writing.remove(&group);
    if !matches!(written, BrokerResponse::Produced { .. }) {
        // Not stored: the rebalance completes at a later join.
        return BrokerResponse::JoinPending;
    }
    let text = format!("{group} gen={} {:?}", next.generation, next.assignment);
    let answer = with_group(state, &group, |g, now| {
        let completed = g.complete(next);
        (completed, g.rejoin(&member, instance.as_deref(), partitions, now))
    });
    match answer {
        None => BrokerResponse::NotLeader,
        Some((completed, answer)) => {
            if completed {
                state.borrow().ctx.record("group-generation", text);
            }
            match answer {
                Join::Joined {
                    generation,
                    partitions,
                } => BrokerResponse::Joined {
                    generation,
                    partitions,
                },
                Join::Pending | Join::MemberIdRequired => BrokerResponse::JoinPending,
            }
        }
    }
}

/// Deletes, per partition, what retention no longer keeps from the head of the log
/// (each batch its own segment: Kafka's `segment.ms` compressed away), advancing the log
/// start; the new starts are made durable first, so nothing deleted returns after a
/// restart. Each replica applies it to its own log, by the append times the leader
/// stamped and its own sizes. The offsets topic is compacted, not deleted.
async fn enforce_retention(state: &Shared) {
    let (disk, next) = {
        let s = state.borrow();
        let now = s.ctx.now().as_millis();
        // An operator's purge is a shorter `log.retention.ms` on this broker.
        let retention_ms = match (s.config.retention_ms, s.ctx.purge_keep_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut next = s.log_starts.clone();
        for ((topic, partition), replica) in &s.replicas {
            if topic == OFFSETS_TOPIC {
                continue;
            }
            let name = format!("{topic}-{partition}");
            let durable = s.log_starts.get(&name).copied().unwrap_or(0);
            let start = replica.retained_start(RetentionCheck {
                now_ms: now,
                retention_ms,
                retention_bytes: s.config.retention_bytes,
            });
            if start > durable {
                next.insert(name, start);
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
    for ((topic, partition), replica) in s.replicas.iter_mut() {
        let name = format!("{topic}-{partition}");
        if let Some(&start) = next.get(&name) {
            if s.log_starts.get(&name).is_none_or(|&durable| start > durable) {
                s.ctx
                    .record("retention-deleted", format!("{topic}/{partition} below {start}"));
                replica.log_start = replica.log_start.max(start);
            }
        }
    }
    s.log_starts = next;
}

/// The log cleaner (compacted topics): a pass over every replica of this broker (the
/// offsets topic aside, which is read whole here); what it removes is made durable
/// before readers miss it, as Kafka swaps a cleaned segment in.
async fn clean_logs(state: &Shared, delete_retention_ms: u64) {
    let (disk, next) = {
        let s = state.borrow();
        let now = s.ctx.now().as_millis();
        let mut next = s.cleaned.clone();
        for ((topic, partition), replica) in &s.replicas {
            if topic == OFFSETS_TOPIC {
                continue;
            }
            if let Some(cleaned) = replica.clean(now, delete_retention_ms) {
                next.insert(format!("{topic}-{partition}"), cleaned);
            }
        }
        if next == s.cleaned {
            return;
        }
        (s.ctx.disk().clone(), next)
    };
    let bytes = serde_json::to_vec(&next).expect("the cleaner's state serialises");
    if disk.replace(CLEANED_FILE, &bytes).await.is_err() {
        return;
    }
    let mut guard = state.borrow_mut();
    let s = &mut *guard;
    for ((topic, partition), replica) in s.replicas.iter_mut() {
        let Some(cleaned) = next.get(&format!("{topic}-{partition}")) else {
            continue;
        };
        // A cut since (a new leader's log) drops what the pass decided past it.
        let end = replica.log_end();
        let mut cleaned = cleaned.clone();
        cleaned.removed.retain(|&o, _| o < end);
        cleaned.horizons.retain(|&o, _| o < end);
        cleaned.first_dirty = cleaned.first_dirty.min(end);
        if cleaned != replica.cleaned {
            let removed = cleaned
                .removed
                .len()
                .saturating_sub(replica.cleaned.removed.len());
            s.ctx.record(
                "log-cleaned",
                format!(
                    "{topic}/{partition} removed {removed}, clean below {}",
                    cleaned.first_dirty
                ),
            );
            replica.cleaned = cleaned;
        }
    }
    s.cleaned = next;
}

fn log_file(topic: &str, partition: u32) -> String {
    format!("{topic}-{partition}.log")
}

/// Creates the (empty) logs of `topics` (name, partitions) and of the offsets topic on a
/// broker's disk before the run, durably: the topics were created before the
/// integration started, as a deployment creates them. A topic created at first use has
/// a log whose name is durable only once the OS writes it back.
pub fn install_logs(disk: &faultline_sim::Disk, topics: &[(String, u32)]) {
    disk.install(&log_file(OFFSETS_TOPIC, 0), &[]);
    for (topic, partitions) in topics {
        for partition in 0..*partitions {
            disk.install(&log_file(topic, partition), &[]);
        }
    }
}

/// The broker number of a host called `broker-N`.
fn broker_id(ctx: &HostCtx) -> u32 {
    ctx.name()
        .strip_prefix("broker-")
        .and_then(|n| n.parse().ok())
        .expect("brokers run on hosts called broker-N")
}

/// Runs a broker on this host (`broker-N`) until it stops.
pub async fn run_broker(
    ctx: HostCtx,
    bugs: BugSet,
    config: ClusterConfig,
    kafka: KafkaProgress,
) -> faultline_sim::HostResult {
    let bytes = ctx.disk().read_all(LOG_STARTS_FILE);
    let log_starts = if bytes.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_slice(&bytes).expect("the broker's log starts are written by this module")
    };
    let bytes = ctx.disk().read_all(CLEANED_FILE);
    let cleaned = if bytes.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_slice(&bytes).expect("the cleaner's state is written by this module")
    };
    // Log recovery: every partition's log made durable before it serves a fetch (what a
    // crash left in the page cache would otherwise be served, and then taken back by a
    // later power loss).
    for file in ctx.disk().list().into_iter().filter(|f| f.ends_with(".log")) {
        LogFile::open_durably_unread(ctx.disk(), &file).await;
    }
    let state = Rc::new(RefCell::new(State {
        ctx: ctx.clone(),
        id: broker_id(&ctx),
        config,
        bugs,
        replicas: BTreeMap::new(),
        sequences: BTreeMap::new(),
        image: Image::new(),
        image_version: 0,
        eligible: Vec::new(),
        log_starts,
        cleaned,
        controller: RpcClient::new(&ctx, CONTROLLER, CONTROLLER_PORT, CONTROLLER_TIMEOUT),
        peers: BTreeMap::new(),
        coordinator: Coordinator::default(),
        shutting_down: false,
    }));
    let reporting = Rc::downgrade(&state);
    kafka.broker(move || reporting.upgrade().map(|state| replica_ends(&state.borrow())));
    ctx.report_progress("kafka", move || kafka.pending());
    let stopping = Rc::clone(&state);
    let stop_ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        stop_ctx.stop_requested().await;
        stopping.borrow_mut().shutting_down = true;
    });
    tokio::task::spawn_local(heartbeat(Rc::clone(&state)));
    let shrinking = Rc::clone(&state);
    tokio::task::spawn_local(async move {
        loop {
            faultline_sim::timer::sleep(Duration::from_millis(config.replica_lag_max_ms / 2)).await;
            shrink_isrs(&shrinking);
        }
    });
    if let Some(retention_ms) = config.offsets_retention_ms {
        let expiring = Rc::clone(&state);
        tokio::task::spawn_local(async move {
            loop {
                faultline_sim::timer::sleep(Duration::from_millis(RETENTION_CHECK_MS)).await;
                expire_offsets(&expiring, retention_ms).await;
            }
        });
    }
    if config.compact {
        let cleaning = Rc::clone(&state);
        tokio::task::spawn_local(async move {
            loop {
                faultline_sim::timer::sleep(Duration::from_millis(CLEANER_BACKOFF_MS)).await;
                clean_logs(&cleaning, config.delete_retention_ms).await;
            }
        });
    }
    // Always on: an operator may purge any broker.
    let retaining = Rc::clone(&state);
    tokio::task::spawn_local(async move {
        loop {
            faultline_sim::timer::sleep(Duration::from_millis(RETENTION_CHECK_MS)).await;
            enforce_retention(&retaining).await;
        }
    });
    if !config.flush_every_batch {
        // The OS writes dirty pages back on its own schedule.
        let syncing = Rc::clone(&state);
        tokio::task::spawn_local(async move {
            loop {
                faultline_sim::timer::sleep(Duration::from_millis(WRITEBACK_MS)).await;
                let logs: Vec<LogFile> = syncing
                    .borrow()
                    .replicas
                    .values()
                    .map(|r| r.log.clone())
                    .collect();
                for log in logs {
                    let _ = log.sync().await;
                }
            }
        });
    }
    serve(ctx, BROKER_PORT, move |request: BrokerRequest| {
        let state = Rc::clone(&state);
        async move { handle(&state, request).await }
    })
    .await?;
    Ok(())
}

async fn handle(state: &Shared, request: BrokerRequest) -> BrokerResponse {
    match request {
        BrokerRequest::Produce {
            topic,
            partition,
            records,
            producer,
            acks,
        } => produce(state, topic, partition, records, producer, acks).await,
        BrokerRequest::Fetch {
            topic,
            partition,
            offset,
            max,
            wait_ms,
        } => {
            // A long poll waits (without holding the state) until the high watermark
            // moves.
            let waiting = {
                let mut s = state.borrow_mut();
                if !s.image.contains_key(&(topic.clone(), partition)) {
                    return BrokerResponse::NotLeader;
                }
                let replica = s.replica(&topic, partition);
                (replica.leader_epoch().is_some() && !replica.readable_from(offset) && wait_ms > 0)
                    .then(|| Rc::clone(&replica.committed))
            };
            if let Some(committed) = waiting {
                let wait = Duration::from_millis(wait_ms.min(FETCH_WAIT_MAX_MS));
                let _ = faultline_sim::timer::timeout(wait, committed.notified()).await;
            }
            state.borrow_mut().serve_fetch(&topic, partition, offset, max)
        }
        BrokerRequest::CommitOffset {
            group,
            member,
            topic,
            partition,
            offset,
        } => {
            let admitted = with_group(state, &group, |g, now| {
                g.may_commit(member.as_ref().map(|(m, gen)| (m.as_str(), *gen)), now)
            });
            match admitted {
                Some(Ok(())) => {}
                Some(Err(fenced)) => return BrokerResponse::Fenced(fenced),
                None => return BrokerResponse::NotLeader,
            }
            let record = (offset_key(&group, &topic, partition), offset.to_string());
            match produce(state, OFFSETS_TOPIC.to_string(), 0, vec![record], None, Acks::All).await {
                BrokerResponse::Produced { .. } => BrokerResponse::Committed,
                other => other,
            }
        }
        BrokerRequest::FetchOffset {
            group,
            topic,
            partition,
        } => {
            let mut s = state.borrow_mut();
            if !s.image.contains_key(&(OFFSETS_TOPIC.to_string(), 0)) {
                return BrokerResponse::NotLeader;
            }
            s.committed_offset(&offset_key(&group, &topic, partition))
        }
        BrokerRequest::ListOffsets { topic, partition } => state.borrow_mut().list_offsets(&topic, partition),
        BrokerRequest::Metadata { topic, partition } => metadata(state, topic, partition).await,
        BrokerRequest::JoinGroup {
            group,
            member,
            instance,
            partitions,
        } => join_group(state, group, member, instance, partitions).await,
        BrokerRequest::LeaveGroup { group, member } => {
            match with_group(state, &group, |g, now| g.leave(&member, now)) {
                Some(()) => BrokerResponse::Alive,
                None => BrokerResponse::NotLeader,
            }
        }
        BrokerRequest::Heartbeat {
            group,
            member,
            generation,
        } => match with_group(state, &group, |g, now| g.heartbeat(&member, generation, now)) {
            Some(Ok(())) => BrokerResponse::Alive,
            Some(Err(fenced)) => BrokerResponse::Fenced(fenced),
            None => BrokerResponse::NotLeader,
        },
        BrokerRequest::ReplicaFetch {
            broker,
            topic,
            partition,
            offset,
            last_epoch,
            leader_epoch,
        } => {
            if !state.borrow().image.contains_key(&(topic.clone(), partition)) {
                return BrokerResponse::NotLeader;
            }
            replica_fetch(state, broker, topic, partition, offset, last_epoch, leader_epoch).await
        }
    }
}

/// What a client knows of the cluster (Kafka's `Metadata`): the brokers to bootstrap
/// from and each partition's leader as last heard. A call that meets a broker that does
/// not lead, or fails, forgets the leader, so the next call asks again.
pub struct Cluster {
    ctx: HostCtx,
    brokers: u32,
    timeout: Duration,
    leaders: RefCell<BTreeMap<(String, u32), u32>>,
    clients: RefCell<BTreeMap<u32, RpcClient<BrokerRequest, BrokerResponse>>>,
    /// The bootstrap broker asked next (`bootstrap.servers`, tried in turn).
    next_bootstrap: Cell<u32>,
}

impl Cluster {
    /// A client's view of a cluster of `brokers` brokers; calls give up after `timeout`.
    pub fn new(ctx: &HostCtx, brokers: u32, timeout: Duration) -> Rc<Cluster> {
        Rc::new(Cluster {
            ctx: ctx.clone(),
            brokers,
            timeout,
            leaders: RefCell::default(),
            clients: RefCell::default(),
            next_bootstrap: Cell::new(0),
        })
    }

    /// The RPC client of one broker.
    fn client(&self, broker: u32) -> RpcClient<BrokerRequest, BrokerResponse> {
        self.clients
            .borrow_mut()
            .entry(broker)
            .or_insert_with(|| {
                RpcClient::new(
                    &self.ctx,
                    BROKER_HOSTS[broker as usize - 1],
                    BROKER_PORT,
                    self.timeout,
                )
            })
            .clone()
    }

    /// The partition's leader, from the cache or a metadata request.
    pub async fn leader(&self, topic: &str, partition: u32) -> Result<u32, BrokerError> {
        if let Some(&leader) = self.leaders.borrow().get(&(topic.to_string(), partition)) {
            return Ok(leader);
        }
        let bootstrap = self.next_bootstrap.get() % self.brokers + 1;
        let request = BrokerRequest::Metadata {
            topic: topic.to_string(),
            partition,
        };
        match self.client(bootstrap).call(&request).await {
            Ok(BrokerResponse::Leader {
                broker: Some(leader), ..
            }) => {
                self.leaders
                    .borrow_mut()
                    .insert((topic.to_string(), partition), leader);
                Ok(leader)
            }
            Ok(_) => Err(BrokerError::NotLeader),
            Err(e) => {
                self.next_bootstrap.set(self.next_bootstrap.get() + 1);
                Err(BrokerError::Call(e))
            }
        }
    }

    /// Forgets a partition's leader after a call to it failed or met another broker.
    pub fn forget(&self, topic: &str, partition: u32) {
        self.leaders.borrow_mut().remove(&(topic.to_string(), partition));
    }

    /// Calls the partition's leader; a failed call or a `NotLeader` forgets it.
    async fn call(
        &self,
        topic: &str,
        partition: u32,
        request: &BrokerRequest,
    ) -> Result<BrokerResponse, BrokerError> {
        let leader = self.leader(topic, partition).await?;
        match self.client(leader).call(request).await {
            Ok(BrokerResponse::NotLeader) => {
                self.forget(topic, partition);
                Err(BrokerError::NotLeader)
            }
            Ok(BrokerResponse::Error(e)) => Err(BrokerError::Refused(e)),
            Ok(BrokerResponse::NotEnoughReplicas) => Err(BrokerError::NotEnoughReplicas),
            Ok(other) => Ok(other),
            Err(e) => {
                self.forget(topic, partition);
                Err(BrokerError::Call(e))
            }
        }
    }
}

/// What a produce's answer means to its sender.
pub(crate) fn produced(response: BrokerResponse) -> Result<u64, BrokerError> {
    match response {
        BrokerResponse::Produced { offset } => Ok(offset),
        BrokerResponse::OutOfOrderSequence { expected } => Err(BrokerError::OutOfOrderSequence { expected }),
        BrokerResponse::NotLeader => Err(BrokerError::NotLeader),
        BrokerResponse::NotEnoughReplicas => Err(BrokerError::NotEnoughReplicas),
        BrokerResponse::Error(e) => Err(BrokerError::Refused(e)),
        _ => Err(BrokerError::Unexpected),
    }
}

/// A client of the cluster for consumers (and one-off produces): each call goes to its
/// partition's leader, or the group coordinator for offsets.
#[derive(Clone)]
pub struct BrokerClient {
    cluster: Rc<Cluster>,
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
    /// The broker called does not lead the partition (or there is no leader now).
    #[error("not the partition's leader")]
    NotLeader,
    /// Fewer in-sync replicas than `min.insync.replicas`.
    #[error("not enough in-sync replicas")]
    NotEnoughReplicas,
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
    /// The group coordinator refused a member's commit or heartbeat (Kafka's
    /// CommitFailedException: the member was dropped or the group moved on).
    #[error("fenced by the group coordinator: {0:?}")]
    Fenced(Fenced),
    /// The broker answered with something else than asked for.
    #[error("unexpected broker response")]
    Unexpected,
}

impl BrokerClient {
    /// A client on this host of a cluster of `brokers` brokers; calls give up after
    /// `timeout`.
    pub fn new(ctx: &HostCtx, brokers: u32, timeout: Duration) -> Self {
        BrokerClient {
            cluster: Cluster::new(ctx, brokers, timeout),
        }
    }

    /// Appends a batch of `(key, payload)` records to one partition with `acks=all`;
    /// returns the first one's offset.
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
            acks: Acks::All,
        };
        produced(self.cluster.call(topic, partition, &request).await?)
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
        match self.cluster.call(topic, partition, &request).await? {
            BrokerResponse::Records(records) => Ok(records),
            BrokerResponse::OutOfRange { start, end } => Err(BrokerError::OutOfRange { start, end }),
            _ => Err(BrokerError::Unexpected),
        }
    }

    /// A partition's earliest and latest offsets (its log start and high watermark).
    pub async fn list_offsets(&self, topic: &str, partition: u32) -> Result<(u64, u64), BrokerError> {
        let request = BrokerRequest::ListOffsets {
            topic: topic.to_string(),
            partition,
        };
        match self.cluster.call(topic, partition, &request).await? {
            BrokerResponse::Offsets { start, end } => Ok((start, end)),
            _ => Err(BrokerError::Unexpected),
        }
    }

    /// Commits `group`'s position (the next offset to process) through the group
    /// coordinator, as `member` of its generation (`None`: a consumer that assigned
    /// itself the partition).
    pub async fn commit_offset(
        &self,
        group: &str,
        member: Option<(&str, u64)>,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), BrokerError> {
        let request = BrokerRequest::CommitOffset {
            group: group.to_string(),
            member: member.map(|(m, generation)| (m.to_string(), generation)),
            topic: topic.to_string(),
            partition,
            offset,
        };
        match self.cluster.call(OFFSETS_TOPIC, 0, &request).await? {
            BrokerResponse::Committed => Ok(()),
            BrokerResponse::Fenced(why) => Err(BrokerError::Fenced(why)),
            other => Err(produced(other).err().unwrap_or(BrokerError::Unexpected)),
        }
    }

    /// Joins `group` (or answers a rebalance) as `member`, a static member when it
    /// names its `instance`: its generation and partitions once the rebalance
    /// completed, `None` while it waits. A first join answered MEMBER_ID_REQUIRED is
    /// sent again at once with the id, as Kafka's consumer does (KIP-394).
    pub async fn join_group(
        &self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        partitions: u32,
    ) -> Result<Option<(u64, Vec<u32>)>, BrokerError> {
        let request = BrokerRequest::JoinGroup {
            group: group.to_string(),
            member: member.to_string(),
            instance: instance.map(str::to_string),
            partitions,
        };
        let mut answer = self.cluster.call(OFFSETS_TOPIC, 0, &request).await?;
        if matches!(answer, BrokerResponse::MemberIdRequired) {
            answer = self.cluster.call(OFFSETS_TOPIC, 0, &request).await?;
        }
        match answer {
            BrokerResponse::Joined {
                generation,
                partitions,
            } => Ok(Some((generation, partitions))),
            BrokerResponse::JoinPending | BrokerResponse::MemberIdRequired => Ok(None),
            _ => Err(BrokerError::Unexpected),
        }
    }

    /// A stopping member leaves `group`.
    pub async fn leave_group(&self, group: &str, member: &str) -> Result<(), BrokerError> {
        let request = BrokerRequest::LeaveGroup {
            group: group.to_string(),
            member: member.to_string(),
        };
        match self.cluster.call(OFFSETS_TOPIC, 0, &request).await? {
            BrokerResponse::Alive => Ok(()),
            _ => Err(BrokerError::Unexpected),
        }
    }

    /// A member's heartbeat: `Fenced` when it must rejoin.
    pub async fn heartbeat(&self, group: &str, member: &str, generation: u64) -> Result<(), BrokerError> {
        let request = BrokerRequest::Heartbeat {
            group: group.to_string(),
            member: member.to_string(),
            generation,
        };
        match self.cluster.call(OFFSETS_TOPIC, 0, &request).await? {
            BrokerResponse::Alive => Ok(()),
            BrokerResponse::Fenced(why) => Err(BrokerError::Fenced(why)),
            _ => Err(BrokerError::Unexpected),
        }
    }

    /// `group`'s committed position; `None` when it expired (offsets retention).
    pub async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, BrokerError> {
        let request = BrokerRequest::FetchOffset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        };
        match self.cluster.call(OFFSETS_TOPIC, 0, &request).await? {
            BrokerResponse::Offset(o) => Ok(o),
            _ => Err(BrokerError::Unexpected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `batches` batches of two records each, appended 100 ms apart from 0.
    fn log(batches: u64) -> (Vec<BrokerRecord>, Vec<(u64, LogPos)>) {
        let mut records = Vec::new();
        let mut frames = Vec::new();
        for b in 0..batches {
            frames.push((2 * b, LogPos(b)));
            for offset in [2 * b, 2 * b + 1] {
                records.push(BrokerRecord {
                    offset,
                    key: "k".into(),
                    payload: "0123456789".into(),
                    producer: None,
                    appended_at_ms: Some(100 * b),
                    epoch: 0,
                });
            }
        }
        (records, frames)
    }

    #[test]
    fn time_retention_deletes_only_what_every_in_sync_replica_has() {
        let (records, frames) = log(5);
        let check = RetentionCheck {
            now_ms: 10_000,
            retention_ms: Some(1_000),
            retention_bytes: None,
        };
        assert_eq!(retained_start(&records, &frames, 0, 10, check), 10, "all expired");
        assert_eq!(
            retained_start(&records, &frames, 0, 5, check),
            5,
            "expired, but not past the high watermark"
        );
        assert_eq!(
            retained_start(&records, &frames, 7, 5, check),
            7,
            "never backwards"
        );
    }

    #[test]
    fn size_retention_deletes_whole_segments_below_the_high_watermark() {
        let (records, frames) = log(5);
        // 11 bytes a record, 22 a batch: keep at least 22 bytes.
        let check = RetentionCheck {
            now_ms: 0,
            retention_ms: None,
            retention_bytes: Some(22),
        };
        assert_eq!(
            retained_start(&records, &frames, 0, 10, check),
            8,
            "every segment but the active one"
        );
        assert_eq!(
            retained_start(&records, &frames, 0, 5, check),
            4,
            "segments wholly below the high watermark only"
        );
    }
}
