//! The consumer loop every broker-based target shares: fetch from a partition, hand each
//! record to a pattern's handler, commit the offset.
//!
//! Each instance of the target's service is a member of the consumer group
//! [`GROUP`] (see [`crate::systems::group`]): it joins, consumes the partitions its
//! generation assigns it, one task each, and heartbeats. When the group rebalances (a
//! member joined, or one was dropped) it stops its partitions at their next fetch
//! (Kafka's eager protocol: the records handled so far are committed first) and joins
//! again. A member that was dropped while it could not heartbeat (paused, cut off)
//! goes on handling what it fetched until a commit or heartbeat is refused (Kafka's
//! CommitFailedException): a zombie. Its partitions' new owner starts from the last
//! committed offset, so for a while both may handle the same records.
//!
//! A handler either finishes a record (`Done`) or keeps it for later (`Buffered`, e.g.
//! until a whole transaction or a dedup window is in); `flush` runs at the end of every
//! fetched batch. The offset is committed only past records that are finished with
//! nothing buffered before them. When handling fails, the buffers are dropped, what was
//! stored before the failed record is committed, and the loop resumes after it: the
//! failed record and whatever was buffered are delivered again, the rest is not (Spring
//! Kafka's error handler seeks to the failed record).
//!
//! [`CommitPoint::BeforeProcessing`] commits each offset before handling the record: a
//! crash in between loses the record (at-most-once). It exists because real consumers
//! are configured that way (auto-commit), and faultline shows what it costs.
//!
//! A record that keeps failing (a poison record: the host runs a deployed defect, see
//! [`faultline_sim::Fault::Defect`]) meets the [`ErrorPolicy`]: retried for ever, the
//! partition stuck behind it; skipped after `error_attempts`; or sent to a dead-letter
//! topic after them and replayed from there later, behind the records that followed it.

use std::collections::BTreeSet;
use std::time::Duration;

use faultline_sim::HostCtx;

use std::cell::Cell;
use std::rc::Rc;

use crate::backoff::Backoff;
use crate::bugs::{Bug, BugSet};
use crate::history::{KafkaRead, KafkaRecord, Recorder};
use crate::systems::broker::{
    BrokerClient, BrokerError, BrokerRecord, ClusterConfig, CLUSTER, FETCH_WAIT_MS,
};
use crate::systems::group::{Fenced, HEARTBEAT_INTERVAL_MS};
use crate::systems::kafka_progress::KafkaProgress;
use crate::windows;
use crate::RPC_TIMEOUT;

/// The consumer group of the target.
pub const GROUP: &str = "target";

/// `default.api.timeout.ms`, how long a synchronous commit keeps trying: Kafka's 60 s,
/// compressed 20× like the group's sessions.
pub const DEFAULT_API_TIMEOUT_MS: u64 = 3_000;

/// The consumer's `retry.backoff.ms` and `retry.backoff.max.ms` (Kafka's defaults,
/// KIP-580): the waits between a commit's attempts.
const COMMIT_RETRY_BACKOFF_MS: u64 = 100;
const COMMIT_RETRY_BACKOFF_MAX_MS: u64 = 1_000;

/// When a consumer commits a record's offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitPoint {
    /// After the record's effects are stored: at-least-once.
    AfterProcessing,
    /// Before handling it: at-most-once.
    BeforeProcessing,
    /// Kafka's `enable.auto.commit=true`: at a poll, once `auto.commit.interval.ms` has
    /// passed since the last, the position after everything handed to the handler. A
    /// crash redelivers what was handled since (duplicates); a handler that buffers has
    /// records committed before it applied them (lost on a crash).
    Auto,
}

/// Where a consumer goes when its position is not in the partition (deleted by
/// retention, or past the end after the broker lost records): Kafka's
/// `auto.offset.reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    /// The earliest record the partition still holds.
    Earliest,
    /// The end: only records written from now on.
    Latest,
}

/// What a consumer does with a record whose handling keeps failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Retry it for ever: the partition waits behind it (Kafka Connect's
    /// `errors.tolerance=none` restarted by hand, or a listener with unbounded retries).
    Block,
    /// Log it and go on after `error_attempts` (Spring Kafka's `DefaultErrorHandler`
    /// default: ten attempts, then the record is logged and skipped).
    Skip,
    /// Publish it to the dead-letter topic `<topic>.DLT` after `error_attempts` and go
    /// on; a re-drive consumes that topic every `dead_letter_replay_ms` and applies what
    /// now succeeds (Spring's `DeadLetterPublishingRecoverer` or retry topics, Connect's
    /// `errors.deadletterqueue.topic.name`).
    DeadLetter,
}

/// The consumer group of the dead-letter re-drive.
pub const DEAD_LETTER_GROUP: &str = "target-dlt";

/// Whether the host's deployed defect fails this record (see
/// [`crate::systems::target::defect_rejects`]).
pub fn poisoned(ctx: &HostCtx, record: &BrokerRecord) -> bool {
    crate::systems::target::defect_rejects(ctx, &record.key)
}

/// How a consumer fetches and commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Partitions of the topic; one consumer task each, on the instance that owns it.
    pub partitions: u32,
    /// Instances of the target's service sharing the partitions in one consumer group
    /// (`target`, beside the database, then `target-2`, ...).
    pub instances: u32,
    /// Static membership (Kafka's `group.instance.id`, one per instance): a restarted
    /// instance takes its partitions back without a rebalance, and a stopping one does
    /// not leave the group.
    pub static_membership: bool,
    /// How long an empty fetch waits at the broker for records (a long poll).
    pub fetch_wait_ms: u64,
    /// Wait after a failure.
    pub retry_ms: u64,
    /// Retry a failed batch at once, in place, instead of after `retry_ms` from the last
    /// committed offset. Only a planted bug sets it: it spins while the failure lasts.
    pub retry_at_once: bool,
    /// End the partition's task on a failed fetch. Only a planted bug sets it.
    pub exit_on_fetch_error: bool,
    /// When offsets are committed.
    pub commit: CommitPoint,
    /// `auto.commit.interval.ms`: how often [`CommitPoint::Auto`] commits.
    pub auto_commit_interval_ms: u64,
    /// `auto.offset.reset`: where to go when the position is out of range.
    pub auto_offset_reset: OffsetReset,
    /// The cluster the topic lives on and its topic settings (`retention.ms`,
    /// replication), kept here beside `partitions`.
    pub cluster: ClusterConfig,
    /// What happens to a record whose handling keeps failing.
    pub error_policy: ErrorPolicy,
    /// Attempts at a failing record before `Skip` or `DeadLetter` gives up on it.
    pub error_attempts: u32,
    /// How often the dead-letter re-drive consumes the dead-letter topic.
    pub dead_letter_replay_ms: u64,
}

impl ConsumerConfig {
    /// The configuration as a planted bug changes it.
    pub fn with_bugs(self, bugs: BugSet) -> Self {
        let mut config = self;
        if bugs.has(Bug::OffsetBeforeApply) {
            config.commit = CommitPoint::BeforeProcessing;
        }
        if bugs.has(Bug::ConsumerRetriesWithoutBackoff) {
            config.retry_at_once = true;
        }
        if bugs.has(Bug::ConsumerExitsOnFetchError) {
            config.exit_on_fetch_error = true;
        }
        config
    }
}

/// The default: 4 partitions shared by 2 instances, 200 ms long polls, 50 ms retries,
/// commit after processing.
pub const DEFAULT_CONSUMER: ConsumerConfig = ConsumerConfig {
    partitions: 4,
    instances: 2,
    static_membership: false,
    fetch_wait_ms: FETCH_WAIT_MS,
    retry_ms: 50,
    retry_at_once: false,
    exit_on_fetch_error: false,
    commit: CommitPoint::AfterProcessing,
    auto_commit_interval_ms: 5_000,
    auto_offset_reset: OffsetReset::Earliest,
    cluster: CLUSTER,
    error_policy: ErrorPolicy::Block,
    error_attempts: 10,
    dead_letter_replay_ms: 1_000,
};

/// What a handler did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Its effects, and those of everything buffered before it, are stored.
    Done,
    /// It is kept for later; the offset must not pass it yet.
    Buffered,
}

/// A pattern's target-side logic for one partition.
#[allow(async_fn_in_trait)] // Handlers run on one host's local task set: no Send needed.
pub trait Handler {
    /// Handles one record; `Err` means "try again later".
    async fn handle(&mut self, record: &BrokerRecord) -> Result<Handled, ()>;

    /// Finishes what it can of what is buffered; called at the end of each fetched
    /// batch. Answers whether anything is still buffered.
    async fn flush(&mut self) -> Result<bool, ()> {
        Ok(false)
    }

    /// Drops whatever is buffered (handling failed; records will come again).
    fn reset(&mut self) {}
}

/// The dead-letter topic of `topic` (Spring Kafka's and Connect's `<topic>.DLT`
/// naming).
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.DLT")
}

/// Runs this instance's member of the group on `topic` until the host stops: a
/// consumer task per partition its generation assigns it, and, on the first instance,
/// the dead-letter re-drive when the policy has one.
pub async fn run_consumers<H, F>(
    ctx: &HostCtx,
    recorder: &Recorder,
    kafka: &KafkaProgress,
    topic: &'static str,
    config: ConsumerConfig,
    make_handler: F,
) where
    H: Handler + 'static,
    F: Fn(u32) -> H,
{
    let broker = BrokerClient::new(ctx, config.cluster.brokers, RPC_TIMEOUT);
    if config.cluster.compact {
        recorder.kafka_topic_compacted(topic);
    }
    kafka.consumed(topic, config.partitions);
    // Out of the group (joining, or between a revocation and the next join): its
    // partitions may come back to this member.
    let outside = faultline_sim::progress::Work::default();
    ctx.report_progress("consumer", outside.probe("member(s) joining the group"));
    if config.error_policy == ErrorPolicy::DeadLetter && ctx.name() == crate::hosts::TARGET {
        kafka.consumed(&dead_letter_topic(topic), 1);
        let redrive = replay_dead_letters(
            ctx.clone(),
            broker.clone(),
            kafka.clone(),
            topic,
            config,
            make_handler(config.partitions),
        );
        tokio::task::spawn_local(redrive);
    }
    let heartbeat = Duration::from_millis(HEARTBEAT_INTERVAL_MS);
    let mut stop = std::pin::pin!(ctx.stop_requested());
    // Member ids are unique for ever, as Kafka's (a coordinator-made UUID): the host's
    // process life and the joins it made as a new member.
    let mut new_joins = 0;
    let mut member = format!("{}#{}", ctx.name(), ctx.incarnation());
    let instance = config.static_membership.then(|| ctx.name());
    loop {
        let joining = outside.start();
        let joined = loop {
            if let Ok(Some(joined)) = broker
                .join_group(GROUP, &member, instance, config.partitions)
                .await
            {
                break Some(joined);
            }
            tokio::select! {
                biased;
                () = &mut stop => break None,
                () = faultline_sim::timer::sleep(heartbeat) => {}
            }
        };
        let Some((generation, partitions)) = joined else {
            leave(ctx, &broker, &member, config).await;
            // The process waits for its kill; what runs beside it serves until then.
            return std::future::pending().await;
        };
        ctx.record(
            "group-joined",
            format!("{GROUP} member={member} gen={generation} partitions={partitions:?}"),
        );
        drop(joining);
        let membership = Rc::new(Membership {
            member: member.clone(),
            generation,
            revoked: Cell::new(false),
            revocation: tokio::sync::Notify::new(),
            fenced: Cell::new(None),
        });
        let tasks: Vec<_> = partitions
            .iter()
            .map(|&p| {
                let task = consume(
                    Assigned {
                        ctx: ctx.clone(),
                        broker: broker.clone(),
                        recorder: recorder.clone(),
                        kafka: kafka.clone(),
                        topic,
                        partition: p,
                        membership: Rc::clone(&membership),
                    },
                    config,
                    make_handler(p),
                );
                tokio::task::spawn_local(task)
            })
            .collect();
        let mut stopped = tokio::task::spawn_local(async move {
            for task in tasks {
                let _ = task.await;
            }
        });
        // Every partition's task ended (only a planted bug's exit ends one early).
        let mut ended = false;
        // Heartbeats until the group moves on, a commit was refused, or the process is
        // asked to stop (`None`).
        let rejoin = loop {
            tokio::select! {
                biased;
                () = &mut stop => break None,
                _ = &mut stopped, if !ended => {
                    ended = true;
                    continue;
                }
                () = faultline_sim::timer::sleep(heartbeat) => {}
            }
            if let Some(why) = membership.fenced.get() {
                break Some(why);
            }
            if let Err(BrokerError::Fenced(why)) = broker.heartbeat(GROUP, &member, generation).await {
                break Some(why);
            }
        };
        // Eager rebalance: every partition stops after committing what it handled (a
        // fetch waiting at the broker is abandoned, as a poll that rebalances or is
        // woken up returns); heartbeats go on meanwhile, so that the session lasts
        // while the tasks finish.
        let _rejoining = outside.start();
        membership.revoke();
        while !ended {
            tokio::select! {
                biased;
                _ = &mut stopped => ended = true,
                () = faultline_sim::timer::sleep(heartbeat) => {
                    let _ = broker.heartbeat(GROUP, &member, generation).await;
                }
            }
        }
        let Some(rejoin) = rejoin else {
            leave(ctx, &broker, &member, config).await;
            // The process waits for its kill; what runs beside it serves until then.
            return std::future::pending().await;
        };
        ctx.record(
            "group-revoked",
            format!("{GROUP} member={member} gen={generation} ({rejoin:?})"),
        );
        if rejoin == Fenced::UnknownMember {
            new_joins += 1;
            member = format!("{}#{}.{new_joins}", ctx.name(), ctx.incarnation());
        }
    }
}

/// Records a fetch in the run's history, for the checkers' Kafka-level anomalies.
fn record_read(
    recorder: &Recorder,
    ctx: &HostCtx,
    (reader, start, rewound): (&str, u64, bool),
    topic: &str,
    partition: u32,
    records: &[BrokerRecord],
) {
    if records.is_empty() {
        return;
    }
    let records = records
        .iter()
        .map(|r| KafkaRecord {
            at: ctx.now(),
            topic: topic.to_string(),
            partition,
            offset: r.offset,
            key: r.key.to_string(),
            digest: crate::history::record_digest(&r.key, &r.payload),
        })
        .collect();
    recorder.kafka_read(KafkaRead {
        reader: reader.to_string(),
        start,
        rewound,
        records,
    });
}

/// A stopping instance's goodbye (Kafka's `close()` sends LeaveGroup): the group
/// rebalances at once instead of waiting out the member's session. One attempt: the
/// process is on its way out. A static member stays (its restart takes its place).
async fn leave(ctx: &HostCtx, broker: &BrokerClient, member: &str, config: ConsumerConfig) {
    if config.static_membership {
        return;
    }
    let left = broker.leave_group(GROUP, member).await.is_ok();
    ctx.record(
        "group-left",
        format!("{GROUP} member={member} acknowledged={left}"),
    );
}

/// This instance's place in one generation of the group, shared by its partitions'
/// tasks.
struct Membership {
    member: String,
    generation: u64,
    /// The group is rebalancing, or the process stopping: the tasks stop at their next
    /// fetch.
    revoked: Cell<bool>,
    /// Wakes the tasks' waiting fetches when the partitions are revoked.
    revocation: tokio::sync::Notify,
    /// A commit was refused, and why: the member was dropped or the group moved on.
    fenced: Cell<Option<Fenced>>,
}

impl Membership {
    fn id(&self) -> Option<(&str, u64)> {
        Some((self.member.as_str(), self.generation))
    }

    fn revoke(&self) {
        self.revoked.set(true);
        self.revocation.notify_waiters();
    }

    /// Completes once the partitions are revoked.
    async fn revoked(&self) {
        let notified = self.revocation.notified();
        if self.revoked.get() {
            return;
        }
        notified.await;
    }
}

/// What a partition's consumer task owns and talks through.
struct Assigned {
    ctx: HostCtx,
    broker: BrokerClient,
    recorder: Recorder,
    kafka: KafkaProgress,
    topic: &'static str,
    partition: u32,
    membership: Rc<Membership>,
}

async fn consume<H: Handler>(assigned: Assigned, config: ConsumerConfig, mut handler: H) {
    let Assigned {
        ctx,
        broker,
        recorder,
        kafka,
        topic,
        partition,
        membership,
    } = assigned;
    let reader = format!("{} gen={}", membership.member, membership.generation);
    // The position went back on purpose (a failed record is tried again).
    let mut rewound = false;
    let assignment = Assignment {
        ctx: &ctx,
        broker: &broker,
        topic,
        partition,
        membership: &membership,
    };
    let retry = Duration::from_millis(config.retry_ms);
    let committed = loop {
        if !assignment.owned() {
            return;
        }
        match broker.committed_offset(GROUP, topic, partition).await {
            Ok(Some(offset)) => break offset,
            // Expired (offsets retention): Kafka's auto.offset.reset, from the
            // partition's earliest or latest offset.
            Ok(None) => match broker.list_offsets(topic, partition).await {
                Ok((start, end)) => {
                    let to = match config.auto_offset_reset {
                        OffsetReset::Earliest => start,
                        OffsetReset::Latest => end,
                    };
                    ctx.record(
                        "offset-reset",
                        format!("{topic}/{partition} no committed offset, to {to} (holds {start}..{end})"),
                    );
                    break to;
                }
                Err(_) => faultline_sim::timer::sleep(retry).await,
            },
            Err(_) => faultline_sim::timer::sleep(retry).await,
        }
    };
    let mut position = committed;
    // The partition's owner in the run's view of its Kafka stage, while this task lives.
    let progress = kafka.task(topic, partition, committed);
    let mut at = Positions {
        committed,
        stored: committed,
    };
    // The record failing now and its attempts so far; the records given up on.
    let mut failing: Option<(u64, u32)> = None;
    let mut given_up: BTreeSet<u64> = BTreeSet::new();
    // Auto-commit: when the last one was, and the window open from the first record
    // handled after it until the next.
    let mut auto_committed_at = ctx.now();
    let mut auto_uncommitted = None;
    loop {
        if !assignment.owned() {
            // Revoked, or fenced: what is buffered comes again to the next owner.
            handler.reset();
            return;
        }
        if config.commit == CommitPoint::Auto {
            let interval = Duration::from_millis(config.auto_commit_interval_ms);
            if position > at.committed && ctx.now().saturating_since(auto_committed_at) >= interval {
                // Kafka commits asynchronously in poll and goes on: a failed commit is
                // only tried again at the next interval.
                if assignment.commit_once(position).await == Ok(true) {
                    at.committed = position;
                    auto_uncommitted = None;
                }
                auto_committed_at = ctx.now();
            }
        }
        progress.at(position, at.committed);
        progress.fetching(true);
        let fetched = tokio::select! {
            biased;
            () = membership.revoked() => continue,
            fetched = broker.fetch(topic, partition, position, config.fetch_wait_ms) => fetched,
        };
        progress.fetching(false);
        let records = match fetched {
            Ok(records) => {
                let read = (reader.as_str(), committed, rewound);
                record_read(&recorder, &ctx, read, topic, partition, &records);
                rewound = false;
                records
            }
            Err(BrokerError::OutOfRange { start, end }) => {
                // Kafka's auto.offset.reset: what lay between the position and where it
                // goes is never seen (earliest skips only what retention deleted).
                let to = match config.auto_offset_reset {
                    OffsetReset::Earliest => start,
                    OffsetReset::Latest => end,
                };
                ctx.record(
                    "offset-reset",
                    format!("{topic}/{partition} from {position} to {to} (holds {start}..{end})"),
                );
                handler.reset();
                position = to;
                at.stored = to;
                continue;
            }
            Err(_) if config.exit_on_fetch_error => return,
            Err(_) => {
                faultline_sim::timer::sleep(retry).await;
                continue;
            }
        };
        if records.is_empty() {
            // The broker already waited for records (a long poll): ask again.
            continue;
        }
        let handled = loop {
            let handled = handle_batch(&assignment, config, &mut handler, &records, &given_up, &mut at).await;
            if handled.is_ok() || !config.retry_at_once {
                break handled;
            }
            // No backoff: the same records again, at once.
            handler.reset();
        };
        match handled {
            Ok(next) => {
                position = next;
                if config.commit == CommitPoint::Auto && auto_uncommitted.is_none() {
                    auto_uncommitted = Some(ctx.window(windows::AFTER_APPLY_BEFORE_OFFSET_COMMIT));
                }
            }
            Err(failed) => {
                handler.reset();
                rewound = true;
                position = failed.resume.max(at.committed);
                at.stored = position;
                // What was stored before the failure is committed, as Spring Kafka's
                // container commits the records acknowledged before a listener error.
                if config.commit == CommitPoint::AfterProcessing
                    && position > at.committed
                    && assignment.commit(position).await
                {
                    at.committed = position;
                }
                if let Some(record) = failed
                    .record
                    .and_then(|offset| records.iter().find(|r| r.offset == offset))
                {
                    let attempts = match failing {
                        Some((offset, n)) if offset == record.offset => n + 1,
                        _ => 1,
                    };
                    failing = Some((record.offset, attempts));
                    if config.error_policy != ErrorPolicy::Block
                        && attempts >= config.error_attempts
                        && give_up(&ctx, &broker, topic, config.error_policy, record).await
                    {
                        given_up.insert(record.offset);
                        failing = None;
                        continue;
                    }
                }
                faultline_sim::timer::sleep(retry).await;
            }
        }
        // What the committed offset passed cannot come again.
        given_up = given_up.split_off(&at.committed);
    }
}

/// Gives up on a record that keeps failing: logs it, or publishes it to the dead-letter
/// topic first (answers false when that publish failed: the record is tried again).
async fn give_up(
    ctx: &HostCtx,
    broker: &BrokerClient,
    topic: &str,
    policy: ErrorPolicy,
    record: &BrokerRecord,
) -> bool {
    if policy == ErrorPolicy::DeadLetter {
        let dead_letters = dead_letter_topic(topic);
        let copy = vec![(record.key.to_string(), record.payload.to_string())];
        if broker.produce(&dead_letters, 0, copy, None).await.is_err() {
            return false;
        }
        ctx.record(
            "dead-lettered",
            format!("{topic}@{} key={}", record.offset, record.key),
        );
    } else {
        ctx.record(
            "record-skipped",
            format!("{topic}@{} key={}", record.offset, record.key),
        );
    }
    true
}

/// The dead-letter re-drive: every `dead_letter_replay_ms`, the dead letters from its
/// committed offset on, in order, each handled and committed; the first that still fails
/// ends the round (it waits for the next).
async fn replay_dead_letters<H: Handler>(
    ctx: HostCtx,
    broker: BrokerClient,
    kafka: KafkaProgress,
    topic: &'static str,
    config: ConsumerConfig,
    mut handler: H,
) {
    let dead_letters = dead_letter_topic(topic);
    let every = Duration::from_millis(config.dead_letter_replay_ms);
    // Idle only between rounds, at the position its last round reached.
    let progress = kafka.task(&dead_letters, 0, 0);
    loop {
        progress.fetching(true);
        faultline_sim::timer::sleep(every).await;
        progress.fetching(false);
        // An expired position starts again from the first dead letter (the re-drive's
        // auto.offset.reset is earliest).
        let Ok(committed) = broker.committed_offset(DEAD_LETTER_GROUP, &dead_letters, 0).await else {
            continue;
        };
        let mut committed = committed.unwrap_or(0);
        let Ok(records) = broker.fetch(&dead_letters, 0, committed, 0).await else {
            continue;
        };
        for record in &records {
            if poisoned(&ctx, record) || handler.handle(record).await.is_err() {
                break;
            }
            if !matches!(handler.flush().await, Ok(false)) {
                break;
            }
            ctx.record(
                "dead-letter-replayed",
                format!("{dead_letters}@{} key={}", record.offset, record.key),
            );
            if broker
                .commit_offset(DEAD_LETTER_GROUP, None, &dead_letters, 0, record.offset + 1)
                .await
                .is_err()
            {
                break;
            }
            committed = record.offset + 1;
        }
        progress.at(committed, committed);
        handler.reset();
    }
}

/// The partition a consumer task owns, and what it talks through.
struct Assignment<'a> {
    ctx: &'a HostCtx,
    broker: &'a BrokerClient,
    topic: &'a str,
    partition: u32,
    membership: &'a Membership,
}

impl Assignment<'_> {
    /// Whether the partition is still this member's: no rebalance began and no commit
    /// was refused.
    fn owned(&self) -> bool {
        !self.membership.revoked.get() && self.membership.fenced.get().is_none()
    }

    /// Commits `offset` as the member of its generation, as `commitSync` does (Spring
    /// Kafka's container commits each batch so): a failure that may pass (the
    /// coordinator moved or did not answer, the offsets topic lacks in-sync replicas) is
    /// tried again after `retry.backoff.ms` until `default.api.timeout.ms`. Answers
    /// whether it was stored. A refusal fences the member: its partitions stop, and it
    /// joins again.
    async fn commit(&self, offset: u64) -> bool {
        let started = self.ctx.now();
        let mut backoff = Backoff::new(COMMIT_RETRY_BACKOFF_MS, COMMIT_RETRY_BACKOFF_MAX_MS);
        loop {
            match self.commit_once(offset).await {
                Ok(stored) => return stored,
                Err(()) => {
                    let waited = self.ctx.now().saturating_since(started) + backoff.next_delay();
                    if waited >= Duration::from_millis(DEFAULT_API_TIMEOUT_MS) {
                        return false;
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    /// One attempt at a commit, as `commitAsync` (and auto-commit in a poll) makes it:
    /// whether it was stored, or `Err` when it failed in a way that may pass.
    async fn commit_once(&self, offset: u64) -> Result<bool, ()> {
        let committed = self
            .broker
            .commit_offset(GROUP, self.membership.id(), self.topic, self.partition, offset)
            .await;
        match committed {
            Ok(()) => Ok(true),
            Err(BrokerError::Fenced(why)) => {
                if self.membership.fenced.replace(Some(why)).is_none() {
                    self.ctx.record(
                        "commit-fenced",
                        format!(
                            "{}/{}@{offset} member={} gen={} ({why:?})",
                            self.topic, self.partition, self.membership.member, self.membership.generation
                        ),
                    );
                }
                Ok(false)
            }
            Err(_) => Err(()),
        }
    }
}

/// Where a partition's consumer stands.
struct Positions {
    /// The group's committed offset, as far as this consumer knows.
    committed: u64,
    /// Everything before it is handled and stored, nothing buffered (at least
    /// `committed`).
    stored: u64,
}

/// A batch whose handling failed.
struct BatchFailed {
    /// The record that failed (`None` when the flush failed).
    record: Option<u64>,
    /// Where to resume: after the last record whose effects, and those of everything
    /// before it, are stored. Retrying from there, not from the committed offset, hands
    /// the records handled before the failure to the handler only once (Spring Kafka's
    /// error handler seeks to the failed record).
    resume: u64,
}

/// Handles one fetched batch; returns the next position to fetch from.
async fn handle_batch<H: Handler>(
    assignment: &Assignment<'_>,
    config: ConsumerConfig,
    handler: &mut H,
    records: &[BrokerRecord],
    given_up: &BTreeSet<u64>,
    positions: &mut Positions,
) -> Result<u64, BatchFailed> {
    let Positions { committed, stored } = positions;
    let stored_before = *stored;
    let ctx = assignment.ctx;
    let mut safe_to_commit = None;
    // Open from the first apply until the offset commit that covers it.
    let mut uncommitted = None;
    for record in records {
        if config.commit == CommitPoint::BeforeProcessing && assignment.commit(record.offset + 1).await {
            *committed = record.offset + 1;
        }
        if assignment.membership.fenced.get().is_some() {
            // The partition is another member's now: stop handling its records.
            return Err(BatchFailed {
                record: None,
                resume: safe_to_commit.unwrap_or(stored_before),
            });
        }
        if given_up.contains(&record.offset) {
            // Skipped or dead-lettered: nothing of it is stored here.
            continue;
        }
        let handled = if poisoned(ctx, record) {
            Err(())
        } else {
            handler.handle(record).await
        };
        let failed = |record| BatchFailed {
            record,
            resume: safe_to_commit.unwrap_or(stored_before),
        };
        match handled.map_err(|()| failed(Some(record.offset)))? {
            Handled::Done => safe_to_commit = Some(record.offset + 1),
            Handled::Buffered => {}
        }
        if config.commit == CommitPoint::AfterProcessing && uncommitted.is_none() {
            uncommitted = Some(ctx.window(windows::AFTER_APPLY_BEFORE_OFFSET_COMMIT));
        }
    }
    let still_buffered = handler.flush().await.map_err(|()| BatchFailed {
        record: None,
        resume: safe_to_commit.unwrap_or(stored_before),
    })?;
    let next = records.last().map_or(*committed, |r| r.offset + 1);
    let commit_to = if still_buffered {
        safe_to_commit
    } else {
        Some(next)
    };
    if let Some(offset) = commit_to {
        *stored = offset;
    }
    if let (CommitPoint::AfterProcessing, Some(offset)) = (config.commit, commit_to) {
        // A lost commit only means a redelivery later.
        if assignment.commit(offset).await {
            *committed = offset;
        }
    }
    drop(uncommitted);
    Ok(next)
}
