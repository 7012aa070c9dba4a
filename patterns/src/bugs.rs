//! Planted bugs: deliberate defects in components, switchable by name, that prove the
//! checker sharp. Each is a mistake real integrations make; the registry says which
//! variant and fault profile expose it, and which invariant should catch it.

use serde::{Deserialize, Serialize};

/// A deliberate defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bug {
    /// The outbox relay marks a message sent before publishing it.
    RelayMarksBeforePublish,
    /// The inbox entry is committed in its own transaction, before the apply.
    InboxSeparateTx,
    /// The consumer commits its offset before applying the record.
    OffsetBeforeApply,
    /// The CDC connector saves its log position before publishing the events.
    CdcPositionBeforePublish,
    /// The retry queue puts a failed item at the back instead of retrying it in place.
    RetryQueueReorders,
    /// The target sends its side effect before its local commit.
    EffectBeforeCommit,
    /// The source acknowledges a commit without syncing it.
    SourceSkipsSync,
    /// The partition leader answers `acks=all` before the in-sync replicas have the batch.
    BrokerAcksBeforeReplication,
    /// The target's apply panics on a contact row's tenth version (an index past a
    /// fixed-size history).
    TargetPanicsOnLongHistory,
    /// The consumer retries a failed record at once, in place, with no backoff.
    ConsumerRetriesWithoutBackoff,
    /// The target applies a message's rows each in its own local transaction.
    TargetAppliesRowsSeparately,
    /// The target deletes a customer without its address and contact (no cascade).
    TargetDeletesWithoutCascade,
    /// The outbox relay waits its poll interval after every message, not every poll.
    RelaySleepsPerMessage,
    /// A consumer task ends on its first failed fetch and is never restarted.
    ConsumerExitsOnFetchError,
    /// The source retries a failed fsync until it succeeds instead of cutting back.
    SourceRetriesFailedFsync,
    /// The target shows an apply's rows to readers before its commit record is synced
    /// (a background flush every 200 ms makes them durable).
    TargetExposesBeforeSync,
    /// The source's recovery reads up to a torn tail but does not cut it off.
    SourceKeepsTornTail,
    /// The source fsyncs its new commit log but never the directory that names it.
    SourceSkipsDirSync,
    /// The target's welcomer makes a fresh idempotency key for each attempt.
    WelcomeKeyPerAttempt,
    /// The CDC connector resumes after the log record its saved offset stands in.
    CdcResumesPastSharedPosition,
    /// The CDC connector recreates a lost replication slot and streams from it.
    CdcRecreatesLostSlot,
}

/// A bug's name, what it does, and where it shows.
pub struct BugInfo {
    /// The bug.
    pub bug: Bug,
    /// Its CLI name.
    pub name: &'static str,
    /// What the defect is.
    pub description: &'static str,
    /// A variant that has the code path (on brokers that fsync every batch where the
    /// profile crashes hosts or cuts their power: with Kafka's page-cache default, a
    /// partition whose last in-sync replica loses power loses acknowledged records with
    /// no bug at all, and a bug's detection could not be told apart).
    pub variant: &'static str,
    /// A profile that exposes it.
    pub profile: &'static str,
    /// The invariant that should catch it (`convergence`, or with its kind,
    /// `convergence/missing`), or `run-failed` for a bug that makes the run fail
    /// instead of giving a verdict (a panic, a runaway the budget stops).
    pub breaks: &'static str,
}

/// Every planted bug.
pub const BUGS: &[BugInfo] = &[
    BugInfo {
        bug: Bug::RelayMarksBeforePublish,
        name: "relay-marks-before-publish",
        description: "the outbox relay marks a message sent before publishing it; a crash in between loses it",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "crashes",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::InboxSeparateTx,
        name: "inbox-separate-tx",
        description: "the inbox entry commits in its own transaction before the apply; a crash in between skips the message as a duplicate",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "crashes",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::OffsetBeforeApply,
        name: "offset-before-apply",
        description: "the consumer commits its offset before applying; a crash in between loses the record",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "crashes",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::CdcPositionBeforePublish,
        name: "cdc-position-before-publish",
        description: "the CDC connector saves its log position before publishing; a crash in between loses the events",
        variant: "cdc-tx+broker.log.flush.interval.messages=1",
        profile: "crashes",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::RetryQueueReorders,
        name: "retry-queue-reorders",
        description: "a failed send goes to the back of the retry queue, behind newer changes of the same row",
        variant: "push-ordered",
        profile: "partitions",
        breaks: "monotonic",
    },
    BugInfo {
        bug: Bug::EffectBeforeCommit,
        name: "effect-before-commit",
        description: "the target sends the welcome message before its local commit; a failed commit is retried and welcomes again",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "storage",
        breaks: "exactly-once-effects",
    },
    BugInfo {
        bug: Bug::SourceSkipsSync,
        name: "source-skips-sync",
        description: "the source acknowledges a commit without syncing it; a power loss takes back what the relay already published",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "storage",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::BrokerAcksBeforeReplication,
        name: "broker-acks-before-replication",
        description: "the partition leader answers acks=all as soon as its own log has the batch, before the in-sync replicas do; a failover to a follower without it loses records the relay marked sent",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        // A leader cut off from the controller is fenced and a follower takes over: what
        // the old leader acknowledged alone is cut when it follows again.
        profile: "partitions",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::TargetPanicsOnLongHistory,
        name: "target-panics-on-long-history",
        description: "the target's apply keeps a contact's last nine phone numbers in a fixed array and panics (index out of bounds) on its tenth version",
        variant: "outbox-inbox",
        profile: "none",
        breaks: "run-failed",
    },
    BugInfo {
        bug: Bug::ConsumerRetriesWithoutBackoff,
        name: "consumer-retries-without-backoff",
        description: "the consumer retries a failed apply at once, in place, with no backoff: while the target's disk fails it spins without letting time pass (a livelock the run's budget stops)",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "storage",
        breaks: "run-failed",
    },
    BugInfo {
        bug: Bug::TargetAppliesRowsSeparately,
        name: "target-applies-rows-separately",
        description: "the target's handler saves the rows it applies together (a message's, a reassembled transaction's) one by one, each in its own local transaction, so readers see half an action",
        variant: "cdc-tx",
        profile: "none",
        breaks: "atomic-actions",
    },
    BugInfo {
        bug: Bug::TargetDeletesWithoutCascade,
        name: "target-deletes-without-cascade",
        description: "the target deletes a customer row but keeps its address and contact (a missing ON DELETE CASCADE)",
        variant: "outbox-inbox",
        profile: "none",
        breaks: "referential",
    },
    BugInfo {
        bug: Bug::RelaySleepsPerMessage,
        name: "relay-sleeps-per-message",
        description: "the outbox relay waits its poll interval after every message instead of every poll: a backlog it works off too slowly",
        variant: "outbox-inbox",
        profile: "none",
        breaks: "bounded-staleness",
    },
    BugInfo {
        bug: Bug::ConsumerExitsOnFetchError,
        name: "consumer-exits-on-fetch-error",
        description: "a consumer task returns on its first failed fetch (an error propagated with ?) and nothing restarts it: its partition stops",
        variant: "outbox-inbox",
        profile: "flaky-net",
        breaks: "liveness",
    },
    BugInfo {
        bug: Bug::TargetExposesBeforeSync,
        name: "target-exposes-before-sync",
        description: "the target acknowledges and shows an apply's rows from the page cache and flushes its log every 200 ms: a power loss takes back what readers saw",
        variant: "full-copy",
        profile: "storage",
        breaks: "monotonic",
    },
    BugInfo {
        bug: Bug::SourceRetriesFailedFsync,
        name: "source-retries-failed-fsync",
        description: "the source retries a failed fsync until it succeeds and acknowledges the commit (code written before fsyncgate): the pages were marked clean, so a power loss zeroes them and the log ends there",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "storage",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::SourceKeepsTornTail,
        name: "source-keeps-torn-tail",
        description: "the source's recovery reads its log up to a torn tail but leaves the torn bytes in place: new commits land after them, are published, and every later read of the log stops at the tear",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "storage",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::SourceSkipsDirSync,
        name: "source-skips-dir-sync",
        description: "the source creates its commit log and fsyncs the file, never its directory: a power loss takes the log's name, and every commit with it",
        variant: "outbox-inbox+broker.log.flush.interval.messages=1",
        profile: "storage",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::WelcomeKeyPerAttempt,
        name: "welcome-key-per-attempt",
        description: "the target makes the welcome's idempotency key inside its retry loop, one per attempt: a retry after a lost response, or a first attempt arriving late, welcomes again",
        variant: "outbox-inbox",
        profile: "flaky-net",
        breaks: "exactly-once-effects",
    },
    BugInfo {
        bug: Bug::CdcResumesPastSharedPosition,
        name: "cdc-resumes-past-shared-position",
        description: "the CDC connector reads its saved offset at log-position granularity: restarted from an offset flushed inside a transaction, it resumes after that transaction's record and never publishes the rest of its events (debezium dbz#1554, DBZ-6204). Shows where a transaction outgrows a produce batch (here one record per batch) and offsets are flushed about as often as events are acknowledged (here every 10 ms), so the last flush before a crash often stands inside a transaction whose rest is not out yet",
        variant: "cdc-tx+connect.offset.flush.interval.ms=10+producer.batch.size=1+broker.log.flush.interval.messages=1",
        profile: "crashes",
        breaks: "convergence",
    },
    BugInfo {
        bug: Bug::CdcRecreatesLostSlot,
        name: "cdc-recreates-lost-slot",
        description: "the CDC connector, finding its replication slot invalidated, creates a new one and streams from where it starts, skipping every change in between instead of snapshotting again (what Debezium's default offset.mismatch.strategy=no_validation does on PostgreSQL 15+ when it finds its slot recreated ahead of its offsets): changes are missing where a re-snapshot would have brought them; shows where slots are bounded (max_slot_wal_keep_size) and a connector stays down",
        // One static consumer instance, and no tombstones: with two instances the
        // re-snapshots' rows applied over the network to the target's database, or a
        // dynamic group's waits for dead members, and with tombstones the extra record
        // per delete in each replay (seed 100), can outlast the run, and what is missing
        // then is not the connector's.
        variant: "cdc-row+source.max.slot.wal.keep.size=16384+source.checkpoint.timeout.ms=250+connect.offset.flush.interval.ms=250+connector.snapshot.mode=when_needed+broker.log.flush.interval.messages=1+consumer.instances=1+consumer.group.instance.id=per-instance+connector.tombstones.on.delete=false",
        profile: "crashes",
        breaks: "convergence/missing",
    },
];

impl Bug {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        Self::info(self).name
    }

    /// The registry entry.
    pub fn info(self) -> &'static BugInfo {
        BUGS.iter()
            .find(|b| b.bug == self)
            .expect("every bug is registered")
    }

    /// The bug called `name`.
    pub fn from_name(name: &str) -> Option<Bug> {
        BUGS.iter().find(|b| b.name == name).map(|b| b.bug)
    }

    /// Every bug name, for error messages.
    pub fn names() -> Vec<&'static str> {
        BUGS.iter().map(|b| b.name).collect()
    }
}

/// The bugs switched on in a run (usually none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BugSet(u32);

impl BugSet {
    /// No bugs.
    pub const NONE: BugSet = BugSet(0);

    /// The set holding `bugs`.
    pub fn of(bugs: &[Bug]) -> BugSet {
        BugSet(bugs.iter().fold(0, |acc, b| acc | 1 << (*b as u32)))
    }

    /// Whether `bug` is on.
    pub fn has(self, bug: Bug) -> bool {
        self.0 & (1 << (bug as u32)) != 0
    }

    /// The bugs that are on, in registry order.
    pub fn bugs(self) -> Vec<Bug> {
        BUGS.iter().map(|b| b.bug).filter(|b| self.has(*b)).collect()
    }
}
