//! The consumer loop every broker-based target shares: fetch from a partition, hand each
//! record to a pattern's handler, commit the offset.
//!
//! A handler either finishes a record (`Done`) or keeps it for later (`Buffered`, e.g.
//! until a whole transaction or a dedup window is in); `flush` runs at the end of every
//! fetched batch. The offset is committed only past records that are finished with
//! nothing buffered before them. When handling fails, the buffers are dropped and the
//! loop resumes from the last committed offset, so the records are delivered again,
//! as after a restart.
//!
//! [`CommitPoint::BeforeProcessing`] commits each offset before handling the record: a
//! crash in between loses the record (at-most-once). It exists because real consumers
//! are configured that way (auto-commit), and faultline shows what it costs.

use std::time::Duration;

use faultline_sim::HostCtx;

use crate::bugs::{Bug, BugSet};
use crate::systems::broker::{BrokerClient, BrokerError, BrokerRecord, FETCH_WAIT_MS};
use crate::windows;
use crate::RPC_TIMEOUT;

/// The consumer group of the target.
pub const GROUP: &str = "target";

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

/// How a consumer fetches and commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Partitions of the topic; one consumer task each.
    pub partitions: u32,
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
    /// The topic's `retention.ms` (a topic setting, kept here beside `partitions`):
    /// records older are deleted; `None` keeps them for the run.
    pub topic_retention_ms: Option<u64>,
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

/// The default: 4 partitions, 200 ms long polls, 50 ms retries, commit after processing.
pub const DEFAULT_CONSUMER: ConsumerConfig = ConsumerConfig {
    partitions: 4,
    fetch_wait_ms: FETCH_WAIT_MS,
    retry_ms: 50,
    retry_at_once: false,
    exit_on_fetch_error: false,
    commit: CommitPoint::AfterProcessing,
    auto_commit_interval_ms: 5_000,
    auto_offset_reset: OffsetReset::Earliest,
    topic_retention_ms: None,
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

/// Runs one consumer per partition of `topic` until the host stops.
pub async fn run_consumers<H, F>(ctx: &HostCtx, topic: &'static str, config: ConsumerConfig, make_handler: F)
where
    H: Handler + 'static,
    F: Fn(u32) -> H,
{
    let broker = BrokerClient::new(ctx, RPC_TIMEOUT);
    let tasks: Vec<_> = (0..config.partitions)
        .map(|p| {
            let task = consume(ctx.clone(), broker.clone(), topic, p, config, make_handler(p));
            tokio::task::spawn_local(task)
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

async fn consume<H: Handler>(
    ctx: HostCtx,
    broker: BrokerClient,
    topic: &str,
    partition: u32,
    config: ConsumerConfig,
    mut handler: H,
) {
    let retry = Duration::from_millis(config.retry_ms);
    let mut committed = loop {
        match broker.committed_offset(GROUP, topic, partition).await {
            Ok(offset) => break offset,
            Err(_) => tokio::time::sleep(retry).await,
        }
    };
    let mut position = committed;
    // Auto-commit: when the last one was, and the window open from the first record
    // handled after it until the next.
    let mut auto_committed_at = ctx.now();
    let mut auto_uncommitted = None;
    loop {
        if config.commit == CommitPoint::Auto {
            let interval = Duration::from_millis(config.auto_commit_interval_ms);
            if position > committed && ctx.now().saturating_since(auto_committed_at) >= interval {
                // Kafka commits asynchronously in poll and goes on: a failed commit is
                // only tried again at the next interval.
                if broker
                    .commit_offset(GROUP, topic, partition, position)
                    .await
                    .is_ok()
                {
                    committed = position;
                    auto_uncommitted = None;
                }
                auto_committed_at = ctx.now();
            }
        }
        let records = match broker
            .fetch(topic, partition, position, config.fetch_wait_ms)
            .await
        {
            Ok(records) => records,
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
                continue;
            }
            Err(_) if config.exit_on_fetch_error => return,
            Err(_) => {
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if records.is_empty() {
            // The broker already waited for records (a long poll): ask again.
            continue;
        }
        let handled = loop {
            let handled = handle_batch(
                &Assignment {
                    ctx: &ctx,
                    broker: &broker,
                    topic,
                    partition,
                },
                config,
                &mut handler,
                &records,
                &mut committed,
            )
            .await;
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
            Err(()) => {
                handler.reset();
                position = committed;
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Handles one fetched batch; returns the next position to fetch from.
/// The partition a consumer task owns, and what it talks through.
struct Assignment<'a> {
    ctx: &'a HostCtx,
    broker: &'a BrokerClient,
    topic: &'a str,
    partition: u32,
}

async fn handle_batch<H: Handler>(
    assignment: &Assignment<'_>,
    config: ConsumerConfig,
    handler: &mut H,
    records: &[BrokerRecord],
    committed: &mut u64,
) -> Result<u64, ()> {
    let Assignment {
        ctx,
        broker,
        topic,
        partition,
    } = *assignment;
    let mut safe_to_commit = None;
    // Open from the first apply until the offset commit that covers it.
    let mut uncommitted = None;
    for record in records {
        if config.commit == CommitPoint::BeforeProcessing
            && broker
                .commit_offset(GROUP, topic, partition, record.offset + 1)
                .await
                .is_ok()
        {
            *committed = record.offset + 1;
        }
        match handler.handle(record).await? {
            Handled::Done => safe_to_commit = Some(record.offset + 1),
            Handled::Buffered => {}
        }
        if config.commit == CommitPoint::AfterProcessing && uncommitted.is_none() {
            uncommitted = Some(ctx.window(windows::AFTER_APPLY_BEFORE_OFFSET_COMMIT));
        }
    }
    let still_buffered = handler.flush().await?;
    let next = records.last().map_or(*committed, |r| r.offset + 1);
    let commit_to = if still_buffered {
        safe_to_commit
    } else {
        Some(next)
    };
    if let (CommitPoint::AfterProcessing, Some(offset)) = (config.commit, commit_to) {
        // A lost commit only means a redelivery later.
        if broker
            .commit_offset(GROUP, topic, partition, offset)
            .await
            .is_ok()
        {
            *committed = offset;
        }
    }
    drop(uncommitted);
    Ok(next)
}
