//! The system of record: a transactional table store on the world's disk.
//!
//! A commit is one log record holding the transaction id, the action id, every row image
//! and (when the outbox is on) the outbox message, so business rows and outbox commit
//! atomically. Recovery replays the log on top of the initial rows. With
//! [`SyncPolicy::OnCommit`] an action is acknowledged only after its record is durable;
//! with [`SyncPolicy::Periodic`] it is acknowledged at once and a power loss before the
//! next sync makes it vanish.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use faultline_sim::{
    serve, Disk, DiskError, HostCtx, LogFile, LogPos, Recovered, Replay, RpcMessage, SimTime, WallTime,
};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::domain::{
    fields, Action, ActionId, ActionRequest, CustomerId, EntityKey, RowImage, Table, TxId, Version,
};
use crate::history::{Failure, Recorder, RowState, Rows};
use crate::keyed_locks::KeyedLocks;
use crate::windows;

/// How long the planted fsync-retrying source waits between attempts.
const FSYNC_RETRY_WAIT: Duration = Duration::from_millis(10);

/// The source's log file.
pub const SOURCE_LOG: &str = "source.log";
/// The table data the source starts from (a restored backup), written before the run.
pub const SOURCE_BASE: &str = "source.base";

/// The source's replication slots and the first log position it still keeps.
pub const SOURCE_SLOTS: &str = "source.slots";

/// Creates replication slots named `names` at the log's start, durably, before the run
/// (the connector or relay that reads through each was deployed before the run).
pub fn install_slots(disk: &Disk, names: &[&str]) {
    let slots = Slots {
        log_start: LogPos(0),
        slots: names
            .iter()
            .map(|name| (name.to_string(), SlotState::Live { confirmed: LogPos(0) }))
            .collect(),
    };
    disk.install(
        SOURCE_SLOTS,
        &serde_json::to_vec(&slots).expect("slots serialise"),
    );
}

/// How much log the source keeps for its replication slots, and when it removes the
/// rest (PostgreSQL's WAL kept for slots, removed at checkpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRetention {
    /// `max_slot_wal_keep_size`: bytes of log a slot may hold back; a slot further
    /// behind is invalidated at the next checkpoint and its log removed. `None`: a slot
    /// holds the log for as long as its reader stays away (PostgreSQL's default, -1).
    pub slot_max_keep_bytes: Option<u64>,
    /// `checkpoint_timeout`: how often a checkpoint removes the log no slot needs.
    pub checkpoint_ms: u64,
}

/// PostgreSQL's defaults: slots keep everything, a checkpoint every 5 minutes.
pub const POSTGRES_LOG_RETENTION: LogRetention = LogRetention {
    slot_max_keep_bytes: None,
    checkpoint_ms: 300_000,
};

/// The slots and the log start, as the source keeps them (persisted at checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Slots {
    /// Reads below it find nothing: the log before it is removed.
    log_start: LogPos,
    slots: BTreeMap<String, SlotState>,
}

/// One replication slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SlotState {
    /// Holds the log from the position its reader confirmed on.
    Live {
        /// Everything before it the reader has consumed for good.
        confirmed: LogPos,
    },
    /// Invalidated (`wal_status = lost`): it holds nothing and can stream nothing.
    Lost,
}

impl Slots {
    /// The oldest position a live slot still needs, if any slot is live.
    fn oldest_needed(&self) -> Option<LogPos> {
        self.slots
            .values()
            .filter_map(|slot| match slot {
                SlotState::Live { confirmed } => Some(*confirmed),
                SlotState::Lost => None,
            })
            .min()
    }
}

/// Why a log read through a slot finds nothing to stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogGone {
    /// The slot was invalidated (PostgreSQL: "can no longer get changes from
    /// replication slot").
    SlotLost(String),
    /// The position asked for was removed ("requested WAL segment has already been
    /// removed").
    Removed {
        /// What was asked for.
        from: LogPos,
        /// The first position still kept.
        start: LogPos,
    },
}

impl fmt::Display for LogGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogGone::SlotLost(slot) => write!(f, "replication slot {slot:?} was invalidated"),
            LogGone::Removed { from, start } => {
                write!(
                    f,
                    "log position {} was removed (the log starts at {})",
                    from.0, start.0
                )
            }
        }
    }
}

/// Writes the rows the source starts with to its disk, durably, before the run.
pub fn install_base(disk: &Disk, rows: &Rows) {
    disk.install(SOURCE_BASE, &encode_base(rows));
}

/// The rows of a base file (as `install_base` writes them).
pub fn encode_base(rows: &Rows) -> Vec<u8> {
    let list: Vec<(&EntityKey, &RowState)> = rows.iter().collect();
    serde_json::to_vec(&list).expect("rows serialise")
}

thread_local! {
    /// The last base file decoded on this thread, with its rows: every run of a sweep
    /// reads the same few kilobytes at each start, recovery and read-back, and decoding
    /// them was 3% of a run. The bytes are compared whole, so a different file is never
    /// mistaken for it.
    static LAST_BASE: RefCell<Option<(Vec<u8>, Rows)>> = const { RefCell::new(None) };
}

/// The rows of the base file `file` (empty when there is none).
pub(crate) fn read_base(disk: &Disk, file: &str) -> Rows {
    let bytes = disk.read_all(file);
    if bytes.is_empty() {
        return Rows::new();
    }
    LAST_BASE.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((cached, rows)) = last.as_ref() {
            if *cached == bytes {
                return rows.clone();
            }
        }
        let list: Vec<(EntityKey, RowState)> =
            serde_json::from_slice(&bytes).expect("base files are written by install_base");
        let rows: Rows = list.into_iter().collect();
        *last = Some((bytes, rows.clone()));
        rows
    })
}

/// When the source makes its commits durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum SyncPolicy {
    /// Sync before acknowledging each commit.
    OnCommit,
    /// Acknowledge at once; sync every `every_ms`.
    Periodic {
        /// Period between syncs.
        every_ms: u64,
    },
}

/// A logical change for the outbox: everything one action changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Unique message id (derived from the transaction).
    pub id: String,
    /// The source transaction.
    pub tx: TxId,
    /// The action.
    pub action: ActionId,
    /// Every row the action wrote.
    pub rows: Vec<RowImage>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum LogEntry {
    Commit {
        tx: TxId,
        action: ActionId,
        rows: Vec<RowImage>,
        outbox: bool,
    },
    /// Outbox messages the relay published, marked in one transaction.
    OutboxSent { txs: Vec<TxId> },
    /// The id of the last outbox message a cursor-reading relay published.
    RelayCursor { last: TxId },
    /// The relays' lease: who holds it, until when by its own clock (a ShedLock row).
    RelayLease { holder: String, until_us: i64 },
}

/// A committed transaction, as handed to post-commit hooks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The transaction.
    pub tx: TxId,
    /// The action.
    pub action: ActionId,
    /// Every row image written.
    pub rows: Vec<RowImage>,
}

impl Commit {
    /// The outbox messages describing this commit, cut as `events` says: one message
    /// for the whole transaction (`msg-<tx>`), or one per customer it wrote, each with
    /// that customer's rows (`msg-<tx>-<customer>` when there are several).
    pub fn to_outbox_messages(&self, events: OutboxEvents) -> Vec<OutboxMessage> {
        if events == OutboxEvents::PerTransaction {
            return vec![OutboxMessage {
                id: format!("msg-{}", self.tx.0),
                tx: self.tx,
                action: self.action,
                rows: self.rows.clone(),
            }];
        }
        let mut by_customer: Vec<(CustomerId, Vec<RowImage>)> = Vec::new();
        for row in &self.rows {
            match by_customer.iter_mut().find(|(c, _)| *c == row.key.customer) {
                Some((_, rows)) => rows.push(row.clone()),
                None => by_customer.push((row.key.customer, vec![row.clone()])),
            }
        }
        let several = by_customer.len() > 1;
        by_customer
            .into_iter()
            .map(|(customer, rows)| OutboxMessage {
                id: if several {
                    format!("msg-{}-{}", self.tx.0, customer.0)
                } else {
                    format!("msg-{}", self.tx.0)
                },
                tx: self.tx,
                action: self.action,
                rows,
            })
            .collect()
    }
}

/// How a commit's outbox rows become messages (each goes to the partition of its first
/// row's customer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxEvents {
    /// One message per customer (per aggregate: an outbox event keyed by its
    /// aggregate's id, as Debezium's outbox event router keys it): every customer's
    /// messages stay in its partition, in order, but an action over two customers is
    /// two messages, applied at the target in two local transactions.
    PerAggregate,
    /// One message per transaction, in the partition of the customer the action is
    /// about: applied whole, but a second customer's change travels in another
    /// customer's partition, out of order with its own.
    PerTransaction,
}

/// A step inside the operation, before the commit (e.g. a publish). Gets the action and
/// the rows it will write; an `Err` fails the action with that reason.
pub type BeforeCommit =
    Rc<dyn Fn(ActionId, Vec<RowImage>) -> Pin<Box<dyn Future<Output = Result<(), String>>>>>;

/// How the source is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// Durability of commits.
    pub sync: SyncPolicy,
    /// Whether each commit also writes an outbox message.
    pub outbox: bool,
    /// How a commit's outbox rows become messages.
    pub outbox_events: OutboxEvents,
    /// Stamp every row image with the source's wall clock (for last-writer-wins).
    pub stamp_writes: bool,
    /// Transactions that run at once (the application's connection pool); an action
    /// due while all are busy waits for one.
    pub workers: usize,
    /// How much log the source keeps for its replication slots.
    pub log_retention: LogRetention,
    /// Planted bugs.
    pub bugs: BugSet,
}

struct State {
    ctx: HostCtx,
    log: LogFile,
    rows: Rows,
    /// The writer's wall-clock stamp of each row, where commits carried one (an
    /// `updated_at` column: snapshots read it with the row).
    stamps: BTreeMap<EntityKey, WallTime>,
    next_tx: u64,
    /// Each unsent transaction's outbox messages.
    outbox_unsent: BTreeMap<TxId, Vec<OutboxMessage>>,
    /// The last outbox id a cursor-reading relay published (a row of the source's own
    /// database, written by the relay).
    relay_cursor: TxId,
    /// The relays' lease row: holder and expiry (microseconds of the holder's clock).
    relay_lease: Option<(String, i64)>,
    /// The replication slots and the log start (persisted at checkpoints).
    slots: Slots,
    /// Where each slot's reader last asked to read from in this process life: all it
    /// holds is before it (PostgreSQL's `pg_stat_replication.sent_lsn` as the reader
    /// acknowledged it).
    slot_reads: BTreeMap<String, LogPos>,
    /// Transactions holding an id and not yet committed or aborted, with the epoch they
    /// began in.
    open: BTreeMap<TxId, u64>,
    /// Bumped by every reload: a transaction begun before it is aborted at its commit,
    /// as PostgreSQL's restart after an fsync error ends every session.
    epoch: u64,
    recorder: Recorder,
    config: SourceConfig,
}

/// What replaying a log gives: the rows, the next tx id, the unsent outbox and the
/// relay's cursor.
#[derive(Clone, Debug, PartialEq)]
struct Replayed {
    rows: Rows,
    stamps: BTreeMap<EntityKey, WallTime>,
    next_tx: u64,
    outbox: BTreeMap<TxId, Vec<OutboxMessage>>,
    cursor: TxId,
    lease: Option<(String, i64)>,
    /// How a commit's outbox rows become messages (a setting of the run).
    events: OutboxEvents,
}

impl Replayed {
    /// Before any record: the base rows.
    fn base(rows: Rows, events: OutboxEvents) -> Replayed {
        Replayed {
            rows,
            stamps: BTreeMap::new(),
            next_tx: 1,
            outbox: BTreeMap::new(),
            cursor: TxId(0),
            lease: None,
            events,
        }
    }
}

impl Replay for Replayed {
    fn apply(&mut self, record: faultline_sim::LogRecord) {
        let entry: LogEntry =
            serde_json::from_slice(&record.payload).expect("source log records are written by this module");
        match entry {
            LogEntry::Commit {
                tx,
                action,
                rows: images,
                outbox: with_outbox,
            } => {
                for image in &images {
                    self.rows.insert(
                        image.key,
                        RowState {
                            version: image.version,
                            data: image.data.clone(),
                        },
                    );
                    if let Some(at) = image.written_at {
                        self.stamps.insert(image.key, at);
                    }
                }
                if with_outbox {
                    let commit = Commit {
                        tx,
                        action,
                        rows: images,
                    };
                    self.outbox.insert(tx, commit.to_outbox_messages(self.events));
                }
                // Ids are taken at insert and commits land in another order: the
                // sequence resumes after the highest committed.
                self.next_tx = self.next_tx.max(tx.0 + 1);
            }
            LogEntry::OutboxSent { txs } => {
                for tx in txs {
                    self.outbox.remove(&tx);
                }
            }
            LogEntry::RelayCursor { last } => self.cursor = last,
            LogEntry::RelayLease { holder, until_us } => self.lease = Some((holder, until_us)),
        }
    }
}

/// A handle to the running source. Clones share it; it dies with its host.
#[derive(Clone)]
pub struct Source {
    state: Rc<RefCell<State>>,
    /// One writer of the log at a time (the log writer of a database): a failed fsync
    /// then cuts back exactly the record it was syncing.
    writer: Rc<tokio::sync::Mutex<()>>,
    /// Row locks, one per customer (every action writes one customer's rows): held from
    /// a transaction's first read to its end, granted in request order.
    locks: KeyedLocks<CustomerId>,
    /// Told of every successful sync of the log: readers waiting for what follows the
    /// durable end (a replication stream) read again.
    log_synced: Rc<tokio::sync::Notify>,
    /// One writer of the slots file at a time (PostgreSQL saves a slot's state under its
    /// I/O lock): a checkpoint and a slot's creation write it through the same
    /// temporary file.
    slots_writer: Rc<tokio::sync::Mutex<()>>,
}

impl Source {
    /// Opens the source on this host's disk: its base rows, then its log replayed.
    pub async fn recover(ctx: &HostCtx, config: SourceConfig, recorder: Recorder) -> Source {
        let events = config.outbox_events;
        let initial = || Replayed::base(read_base(ctx.disk(), SOURCE_BASE), events);
        let (log, recovered) = if config.bugs.has(Bug::SourceKeepsTornTail) {
            // Planted: the torn bytes stay; the next commit is appended after them.
            let log = LogFile::of(ctx.disk(), SOURCE_LOG);
            let (state, intact_end) = log.replay(initial);
            let truncated_bytes = log.end().0 - intact_end.0;
            let _ = ctx.disk().sync(SOURCE_LOG).await;
            (
                log,
                Recovered {
                    state,
                    truncated_bytes,
                },
            )
        } else {
            LogFile::open_durably_replaying(ctx.disk(), SOURCE_LOG, initial).await
        };
        let Replayed {
            rows,
            stamps,
            next_tx,
            outbox: outbox_unsent,
            cursor: relay_cursor,
            lease: relay_lease,
            events: _,
        } = recovered.state;
        let slots: Slots = {
            let bytes = ctx.disk().read_all(SOURCE_SLOTS);
            if bytes.is_empty() {
                Slots::default()
            } else {
                serde_json::from_slice(&bytes).expect("slot files are written by this module")
            }
        };
        if ctx.incarnation() > 0 {
            recorder.source_recovered(ctx.now(), &rows);
            ctx.record(
                "source-recovered",
                format!("next_tx={next_tx} torn_bytes={}", recovered.truncated_bytes),
            );
        }
        Source {
            state: Rc::new(RefCell::new(State {
                ctx: ctx.clone(),
                log,
                rows,
                stamps,
                next_tx,
                outbox_unsent,
                relay_cursor,
                relay_lease,
                slots,
                slot_reads: BTreeMap::new(),
                open: BTreeMap::new(),
                epoch: 0,
                recorder,
                config,
            })),
            writer: Rc::default(),
            slots_writer: Rc::default(),
            locks: KeyedLocks::default(),
            log_synced: Rc::default(),
        }
        .reporting_progress()
    }

    /// Reports the durable log a live replication slot's reader has not yet asked
    /// past: a log tailer or connector still to publish it.
    fn reporting_progress(self) -> Source {
        let state = Rc::downgrade(&self.state);
        self.state.borrow().ctx.report_progress("replication", move || {
            let state = state.upgrade()?;
            let state = state.borrow();
            let durable_end = state.log.durable_end();
            state.slots.slots.iter().find_map(|(slot, at)| {
                let read = state.slot_reads.get(slot);
                // A reader below the log's start can never read on (it fails, or takes a
                // snapshot, which it reports itself).
                let behind = *at != SlotState::Lost
                    && read.is_none_or(|&from| from < durable_end && from >= state.slots.log_start);
                behind.then(|| match read {
                    Some(from) => format!("slot {slot} read to {} of {}", from.0, durable_end.0),
                    None => format!("slot {slot} not read since the restart"),
                })
            })
        });
        self
    }

    /// Runs the periodic sync (when the policy asks for it) until the host stops.
    pub async fn run_sync_loop(&self) {
        let SyncPolicy::Periodic { every_ms } = self.state.borrow().config.sync else {
            return;
        };
        loop {
            faultline_sim::timer::sleep(Duration::from_millis(every_ms)).await;
            let _writing = self.writer.lock().await;
            let _ = self.sync_or_reload().await;
        }
    }

    /// Rebuilds memory from the disk, as crash recovery would, without restarting:
    /// the base rows and the log, from where the last replay left off
    /// ([`LogFile::replay`]; replaying the whole log on every failed fsync made long
    /// faulty runs quadratic).
    fn reload(&self) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let events = state.config.outbox_events;
        let disk = state.ctx.disk().clone();
        let (replayed, _) = state
            .log
            .replay(|| Replayed::base(read_base(&disk, SOURCE_BASE), events));
        state.rows = replayed.rows;
        state.stamps = replayed.stamps;
        state.next_tx = replayed.next_tx;
        state.outbox_unsent = replayed.outbox;
        state.relay_cursor = replayed.cursor;
        state.relay_lease = replayed.lease;
        // Every open transaction planned on memory that is gone: each fails at its
        // commit.
        state.epoch += 1;
        state.open.clear();
        state.recorder.source_recovered(state.ctx.now(), &state.rows);
    }

    /// The row images `action` would write, or why the business rules refuse it.
    fn plan(&self, action: &Action) -> Result<Vec<RowImage>, Failure> {
        let state = self.state.borrow();
        let next = |key: EntityKey| {
            state
                .rows
                .get(&key)
                .map_or(Version(1), |r| Version(r.version.0 + 1))
        };
        let live = |key: EntityKey| state.rows.get(&key).is_some_and(|r| r.data.is_some());
        let customer = EntityKey::customer(action.customer());
        let child = |table| EntityKey {
            table,
            customer: action.customer(),
        };
        let written_at = state.config.stamp_writes.then(|| state.ctx.wall_clock());
        let image = |key: EntityKey, data| RowImage {
            key,
            version: next(key),
            data,
            written_at,
        };
        match action {
            Action::CreateCustomer {
                name,
                street,
                phone,
                email,
                ..
            } => {
                if state.rows.contains_key(&customer) {
                    return Err(Failure::Rejected(format!("{customer} exists")));
                }
                Ok(vec![
                    image(customer, Some(fields(&[("name", name)]))),
                    image(child(Table::Address), Some(fields(&[("street", street)]))),
                    image(
                        child(Table::Contact),
                        Some(fields(&[("phone", phone), ("email", email)])),
                    ),
                ])
            }
            _ if !live(customer) => Err(Failure::Rejected(format!("{customer} does not exist"))),
            Action::SaveContact { phone, street, .. } => {
                let email = state
                    .rows
                    .get(&child(Table::Contact))
                    .and_then(|r| r.data.as_ref())
                    .and_then(|d| d.get("email").cloned())
                    .unwrap_or_default();
                Ok(vec![
                    image(
                        child(Table::Contact),
                        Some(fields(&[("phone", phone), ("email", &email)])),
                    ),
                    image(child(Table::Address), Some(fields(&[("street", street)]))),
                ])
            }
            Action::RenameCustomer { name, .. } => Ok(vec![image(customer, Some(fields(&[("name", name)])))]),
            // A DELETE that matches no row changes nothing: a contact moved away earlier
            // is not deleted again.
            Action::DeleteCustomer { .. } => Ok([child(Table::Contact), child(Table::Address), customer]
                .into_iter()
                .filter(|key| live(*key))
                .map(|key| image(key, None))
                .collect()),
            Action::MoveContact { from, .. } => {
                let row = |table| EntityKey {
                    table,
                    customer: *from,
                };
                if !live(EntityKey::customer(*from)) {
                    return Err(Failure::Rejected(format!("customer/{} does not exist", from.0)));
                }
                let Some(details) = state.rows.get(&row(Table::Contact)).and_then(|r| r.data.clone()) else {
                    return Err(Failure::Rejected(format!("customer/{} has no contact", from.0)));
                };
                Ok(vec![
                    image(child(Table::Contact), Some(details)),
                    image(row(Table::Contact), None),
                ])
            }
            Action::MergeCustomers { from, .. } => {
                let row = |table| EntityKey {
                    table,
                    customer: *from,
                };
                let name_of = |key| {
                    state
                        .rows
                        .get(&key)
                        .and_then(|r: &RowState| r.data.as_ref())
                        .and_then(|d| d.get("name").cloned())
                };
                let Some(duplicate) = name_of(row(Table::Customer)) else {
                    return Err(Failure::Rejected(format!("customer/{} does not exist", from.0)));
                };
                let survivor = name_of(customer).unwrap_or_default();
                let merged = format!("{survivor} (merged with {duplicate})");
                let mut rows = vec![image(customer, Some(fields(&[("name", &merged)])))];
                rows.extend(
                    [row(Table::Contact), row(Table::Address), row(Table::Customer)]
                        .into_iter()
                        .filter(|key| live(*key))
                        .map(|key| image(key, None)),
                );
                Ok(rows)
            }
        }
    }

    /// Executes one action as one local transaction and records its outcome. The
    /// transaction locks its customers' rows, reads them, takes its id with its first
    /// insert, stays open for the request's `hold_ms`, runs the hook and commits. The
    /// hook runs inside the operation, after the rows are known and before the commit:
    /// when it fails, the action fails and nothing is committed.
    pub async fn execute(
        &self,
        request: &ActionRequest,
        before_commit: Option<&BeforeCommit>,
    ) -> Result<Commit, Failure> {
        // Every customer the action writes, locked in id order: two transactions over
        // the same two customers never wait for each other crosswise.
        let mut customers = request.action.customers();
        customers.sort_unstable();
        customers.dedup();
        let locks: Vec<_> = customers.iter().map(|c| self.locks.of(*c)).collect();
        let result = {
            let mut held = Vec::with_capacity(locks.len());
            for lock in &locks {
                held.push(lock.lock().await);
            }
            self.transact(request, before_commit).await
        };
        let state = self.state.borrow();
        let at = state.ctx.now();
        state.recorder.outcome(
            request.id,
            at,
            result.as_ref().map(|c| c.tx).map_err(Clone::clone),
        );
        result
    }

    /// The transaction of one action, its rows locked by the caller.
    async fn transact(
        &self,
        request: &ActionRequest,
        before_commit: Option<&BeforeCommit>,
    ) -> Result<Commit, Failure> {
        let rows = self.plan(&request.action)?;
        let (tx, epoch) = self.begin();
        let result = async {
            if request.hold_ms > 0 {
                faultline_sim::timer::sleep(Duration::from_millis(request.hold_ms)).await;
            }
            if let Some(hook) = before_commit {
                hook(request.id, rows.clone())
                    .await
                    .map_err(Failure::Integration)?;
            }
            self.commit(request, tx, epoch, rows).await
        }
        .await;
        // No await since the commit made its rows visible: the transaction leaves the
        // open set in the same instant.
        self.end(tx, epoch);
        result
    }

    /// Takes the next id (a sequence value taken by the transaction's first insert).
    fn begin(&self) -> (TxId, u64) {
        let mut state = self.state.borrow_mut();
        let tx = TxId(state.next_tx);
        state.next_tx += 1;
        let epoch = state.epoch;
        state.open.insert(tx, epoch);
        (tx, epoch)
    }

    /// The transaction is over (committed or not).
    fn end(&self, tx: TxId, epoch: u64) {
        let mut state = self.state.borrow_mut();
        if state.open.get(&tx) == Some(&epoch) {
            state.open.remove(&tx);
        }
    }

    /// Writes the commit record and, with [`SyncPolicy::OnCommit`], waits for it to be
    /// durable before the rows become visible and the action is acknowledged. The
    /// history learns of the commit once its record is written: from then on a process
    /// crash keeps it (the operating system has it) and only a power loss before the
    /// sync can take it, which the final durable state then shows.
    async fn commit(
        &self,
        request: &ActionRequest,
        tx: TxId,
        epoch: u64,
        rows: Vec<RowImage>,
    ) -> Result<Commit, Failure> {
        let storage = |e: DiskError| Failure::Storage(e.to_string());
        let _writing = self.writer.lock().await;
        if self.state.borrow().epoch != epoch {
            return Err(Failure::Storage(
                "transaction aborted: the source reloaded after a failed fsync".to_string(),
            ));
        }
        let (commit, log, bytes, sync_now) = {
            let state = self.state.borrow();
            let commit = Commit {
                tx,
                action: request.id,
                rows,
            };
            let entry = LogEntry::Commit {
                tx: commit.tx,
                action: request.id,
                rows: commit.rows.clone(),
                outbox: state.config.outbox,
            };
            let bytes = serde_json::to_vec(&entry).expect("log entries serialise");
            // The planted bug acknowledges without syncing, whatever the policy says.
            let sync_now =
                state.config.sync == SyncPolicy::OnCommit && !state.config.bugs.has(Bug::SourceSkipsSync);
            (commit, state.log.clone(), bytes, sync_now)
        };
        log.append(&bytes).await.map_err(storage)?;
        let _unsynced = sync_now.then(|| self.state.borrow().ctx.window(windows::COMMIT_NOT_SYNCED));
        {
            let state = self.state.borrow();
            let detail = format!(
                "{} action={} {}",
                commit.tx,
                request.id.0,
                commit
                    .rows
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let event = state.ctx.record("commit", detail);
            state
                .recorder
                .commit(commit.tx, request.id, state.ctx.now(), &commit.rows, event);
        }
        if sync_now {
            self.sync_or_reload().await.map_err(storage)?;
        }
        let mut state = self.state.borrow_mut();
        for image in &commit.rows {
            state.rows.insert(
                image.key,
                RowState {
                    version: image.version,
                    data: image.data.clone(),
                },
            );
            if let Some(at) = image.written_at {
                state.stamps.insert(image.key, at);
            }
        }
        if state.config.outbox {
            let messages = commit.to_outbox_messages(state.config.outbox_events);
            state.outbox_unsent.insert(commit.tx, messages);
        }
        Self::note_retained(&state);
        Ok(commit)
    }

    /// The current state of one row (the REST read pull patterns use).
    pub fn read(&self, key: EntityKey) -> Option<RowState> {
        self.state.borrow().rows.get(&key).cloned()
    }

    /// Unsent outbox messages, oldest first: whole transactions' messages until `max`
    /// or more are taken (a transaction is marked sent whole).
    pub fn outbox_unsent(&self, max: usize) -> Vec<OutboxMessage> {
        whole_transactions(self.state.borrow().outbox_unsent.values(), max)
    }

    /// Up to `max` outbox messages with ids above `after`, by id: the query of a relay
    /// that remembers the last id it published. With `below_open`, only ids below every
    /// open transaction's (no transaction can still commit one of them): the query made
    /// safe against commits that land out of id order.
    pub fn outbox_after(&self, after: TxId, max: usize, below_open: bool) -> Vec<OutboxMessage> {
        let state = self.state.borrow();
        let from = TxId(after.0.saturating_add(1));
        let horizon = match state.open.keys().next() {
            Some(oldest) if below_open => *oldest,
            _ => TxId(u64::MAX),
        };
        if horizon <= from {
            return Vec::new();
        }
        whole_transactions(state.outbox_unsent.range(from..horizon).map(|(_, m)| m), max)
    }

    /// Reports the outbox messages a relay still has to send: every unsent one, or
    /// with `cursor` (`Some(below_open)`) those its cursor query still finds (a message
    /// the cursor passed is never found again). Held weakly, as every probe is.
    pub fn report_outbox_progress(&self, cursor: Option<bool>) {
        let state = Rc::downgrade(&self.state);
        self.state.borrow().ctx.report_progress("outbox", move || {
            let state = state.upgrade()?;
            let state = state.borrow();
            let first = match cursor {
                None => state.outbox_unsent.keys().next().copied(),
                Some(below_open) => {
                    let from = TxId(state.relay_cursor.0.saturating_add(1));
                    let horizon = match state.open.keys().next() {
                        Some(oldest) if below_open => *oldest,
                        _ => TxId(u64::MAX),
                    };
                    (from < horizon)
                        .then(|| state.outbox_unsent.range(from..horizon).next().map(|(tx, _)| *tx))
                        .flatten()
                }
            };
            first.map(|tx| format!("outbox message {} not yet sent", tx.0))
        });
    }

    /// The last outbox id the cursor-reading relay published.
    pub fn relay_cursor(&self) -> TxId {
        self.state.borrow().relay_cursor
    }

    /// Saves the relay's cursor, durably, in one transaction.
    pub async fn save_relay_cursor(&self, last: TxId) -> Result<(), DiskError> {
        let bytes = serde_json::to_vec(&LogEntry::RelayCursor { last }).expect("log entries serialise");
        let _writing = self.writer.lock().await;
        let log = self.state.borrow().log.clone();
        log.append(&bytes).await?;
        self.sync_or_reload().await?;
        self.state.borrow_mut().relay_cursor = last;
        Ok(())
    }

    /// Takes or renews the relays' lease for `holder` until `now_us + lease_us` when it
    /// is free, expired or already `holder`'s, durably; answers whether `holder` holds
    /// it. Expiry is judged by the caller's clock, as a lock row compared with the
    /// application's time is (ShedLock without `usingDbTime`): skew moves it.
    pub async fn acquire_relay_lease(
        &self,
        holder: &str,
        now_us: i64,
        lease_us: i64,
    ) -> Result<bool, DiskError> {
        let _writing = self.writer.lock().await;
        let free = match &self.state.borrow().relay_lease {
            None => true,
            Some((current, until)) => current == holder || *until <= now_us,
        };
        if !free {
            return Ok(false);
        }
        let until_us = now_us + lease_us;
        let entry = LogEntry::RelayLease {
            holder: holder.to_string(),
            until_us,
        };
        let bytes = serde_json::to_vec(&entry).expect("log entries serialise");
        let log = self.state.borrow().log.clone();
        log.append(&bytes).await?;
        self.sync_or_reload().await?;
        self.state.borrow_mut().relay_lease = Some((holder.to_string(), until_us));
        Ok(true)
    }

    /// Marks outbox messages sent, durably, in one transaction. On failure they stay
    /// unsent.
    pub async fn mark_sent(&self, txs: &[TxId]) -> Result<(), DiskError> {
        let entry = LogEntry::OutboxSent { txs: txs.to_vec() };
        let bytes = serde_json::to_vec(&entry).expect("log entries serialise");
        let _writing = self.writer.lock().await;
        let log = self.state.borrow().log.clone();
        log.append(&bytes).await?;
        self.sync_or_reload().await?;
        let mut state = self.state.borrow_mut();
        for tx in txs {
            state.outbox_unsent.remove(tx);
        }
        Ok(())
    }

    /// Syncs the log (the caller holds the writer). After a failed fsync the unsynced
    /// records are still readable but will never be durable (Linux marks the pages
    /// clean), and acknowledged commits may be among them: the source cuts the log back
    /// to its last synced end and, like PostgreSQL after an fsync error, starts memory
    /// over from the disk, so it never serves what the disk will not keep.
    async fn sync_or_reload(&self) -> Result<(), DiskError> {
        let (log, skips_dir_sync) = {
            let state = self.state.borrow();
            (state.log.clone(), state.config.bugs.has(Bug::SourceSkipsDirSync))
        };
        let result = if skips_dir_sync {
            // Planted: the file's data is synced, the directory entry naming it never is.
            let disk = self.state.borrow().ctx.disk().clone();
            disk.sync(SOURCE_LOG).await
        } else {
            log.sync().await
        };
        if result.is_err() && self.state.borrow().config.bugs.has(Bug::SourceRetriesFailedFsync) {
            // Planted: fsync again until it "succeeds", as code written before
            // fsyncgate did; the failed pages were marked clean and are never written.
            self.state
                .borrow()
                .ctx
                .record("source-sync-retried", String::new());
            while log.sync().await.is_err() {
                faultline_sim::timer::sleep(FSYNC_RETRY_WAIT).await;
            }
            self.log_synced.notify_waiters();
            return Ok(());
        }
        if let Err(e) = &result {
            self.state
                .borrow()
                .ctx
                .record("source-sync-failed", e.to_string());
            log.discard_unsynced();
            self.reload();
        } else {
            self.log_synced.notify_waiters();
        }
        result
    }

    /// Runs the workload's actions that are still due, each from its instant on one of
    /// `workers` connections (waiting for a free one), calling `after_commit` for each
    /// commit, and returns when all are over. Actions whose instant passed while the
    /// host was down are skipped (the runner records them as failed: source down).
    pub async fn run_workload(
        &self,
        schedule: Rc<Vec<(SimTime, ActionRequest)>>,
        before_commit: Option<BeforeCommit>,
        after_commit: impl Fn(&Commit) + 'static,
    ) {
        let workers = self.state.borrow().config.workers.max(1);
        let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(workers));
        let after_commit = Rc::new(after_commit);
        let (now, ctx) = {
            let state = self.state.borrow();
            (state.ctx.now(), state.ctx.clone())
        };
        let start = schedule.partition_point(|(at, _)| *at < now);
        // Every action still to run counts until it ended (committed or not).
        let actions = faultline_sim::progress::Work::default();
        ctx.report_progress("workload", actions.probe("action(s) still to run"));
        let mut to_run: Vec<_> = (start..schedule.len()).map(|_| actions.start()).collect();
        for index in start..schedule.len() {
            let running = to_run.pop();
            let wait = schedule[index].0.saturating_since(self.state.borrow().ctx.now());
            faultline_sim::timer::sleep(wait).await;
            let connection = Arc::clone(&connections)
                .acquire_owned()
                .await
                .expect("the pool is never closed");
            let (source, schedule) = (self.clone(), Rc::clone(&schedule));
            let (before_commit, after_commit) = (before_commit.clone(), Rc::clone(&after_commit));
            tokio::task::spawn_local(async move {
                let request = &schedule[index].1;
                if let Ok(commit) = source.execute(request, before_commit.as_ref()).await {
                    after_commit(&commit);
                }
                drop(connection);
                drop(running);
            });
        }
        let _all = connections
            .acquire_many(workers as u32)
            .await
            .expect("the pool is never closed");
    }

    /// Every row the source holds now: a consistent snapshot (one instant, no
    /// interleaved commit).
    pub fn snapshot(&self) -> Vec<(EntityKey, RowState)> {
        self.state
            .borrow()
            .rows
            .iter()
            .map(|(k, r)| (*k, r.clone()))
            .collect()
    }

    /// A snapshot and the log position it stands at: taken between commits (the
    /// commit lock held), so every commit durable before the position is in the rows
    /// and a reader that takes the rows and then streams from the position misses
    /// nothing (the exported snapshot of a PostgreSQL replication slot). A commit in
    /// the rows but not yet durable comes again in the stream. With `slot`, the slot is
    /// created anew at that position (dropped first if it was lost), as a connector
    /// that re-snapshots creates its slot with an exported snapshot; `None` when the
    /// slot could not be written.
    pub async fn snapshot_at(&self, slot: Option<&str>) -> Option<(Vec<RowImage>, LogPos)> {
        let _between_commits = self.writer.lock().await;
        let (rows, position) = {
            let state = self.state.borrow();
            let rows = state
                .rows
                .iter()
                .map(|(key, row)| RowImage {
                    key: *key,
                    version: row.version,
                    data: row.data.clone(),
                    written_at: state.stamps.get(key).copied(),
                })
                .collect();
            (rows, state.log.durable_end())
        };
        if let Some(slot) = slot {
            self.create_slot_at(slot, position).await?;
        }
        Some((rows, position))
    }

    /// Creates the slot `slot` anew at the log's durable end, durably (dropping it
    /// first if it was lost), and returns that position: a reader streaming from it
    /// gets what commits from now on and nothing before. `None` when the slot file
    /// could not be written.
    pub async fn create_slot(&self, slot: &str) -> Option<LogPos> {
        let _between_commits = self.writer.lock().await;
        let position = self.state.borrow().log.durable_end();
        self.create_slot_at(slot, position).await?;
        Some(position)
    }

    async fn create_slot_at(&self, slot: &str, position: LogPos) -> Option<()> {
        let _writing = self.slots_writer.lock().await;
        let mut slots = self.state.borrow().slots.clone();
        slots
            .slots
            .insert(slot.to_string(), SlotState::Live { confirmed: position });
        self.persist_slots(&slots).await.ok()?;
        let state = &mut *self.state.borrow_mut();
        state
            .slots
            .slots
            .insert(slot.to_string(), SlotState::Live { confirmed: position });
        state
            .ctx
            .record("slot-created", format!("{slot} at {}", position.0));
        Some(())
    }

    /// Writes the slots file; the caller holds `slots_writer` from before it read the
    /// slots it writes, so no write carries an older state over a newer one.
    async fn persist_slots(&self, slots: &Slots) -> Result<(), DiskError> {
        let disk = self.state.borrow().ctx.disk().clone();
        disk.replace(SOURCE_SLOTS, &serde_json::to_vec(slots).expect("slots serialise"))
            .await
    }

    /// The reader of `slot` has consumed everything before `position` for good (its
    /// offsets are committed): the slot holds the log from there on. Kept in memory
    /// and persisted at the next checkpoint, as PostgreSQL does, so a crash of the
    /// source can move a slot back (the reader then gets some changes again).
    pub fn confirm_slot(&self, slot: &str, position: LogPos) {
        let state = &mut *self.state.borrow_mut();
        if let Some(SlotState::Live { confirmed }) = state.slots.slots.get_mut(slot) {
            *confirmed = (*confirmed).max(position);
        }
        Self::note_retained(state);
    }

    /// Tells the history how much log the slots hold back now (PostgreSQL's
    /// `pg_current_wal_lsn() - restart_lsn`): a reader that stays away makes it grow.
    fn note_retained(state: &State) {
        if let Some(oldest) = state.slots.oldest_needed() {
            let end = state.log.durable_end();
            state.recorder.source_log_retained(end.0.saturating_sub(oldest.0));
        }
    }

    /// Runs a checkpoint every `checkpoint_ms` when slots are bounded
    /// (`max_slot_wal_keep_size`); unbounded slots hold every byte their readers need,
    /// so removing the rest changes nothing a reader can see.
    pub async fn run_checkpoints(&self) {
        let retention = self.state.borrow().config.log_retention;
        let Some(max_keep) = retention.slot_max_keep_bytes else {
            return;
        };
        loop {
            faultline_sim::timer::sleep(Duration::from_millis(retention.checkpoint_ms)).await;
            self.checkpoint(max_keep).await;
        }
    }

    /// Invalidates every slot more than `max_keep` bytes behind the durable end, then
    /// removes the log below the oldest position a live slot needs, persisting both
    /// first (a failed write removes nothing this time).
    async fn checkpoint(&self, max_keep: u64) {
        let _writing = self.slots_writer.lock().await;
        let (mut next, end) = {
            let state = self.state.borrow();
            (state.slots.clone(), state.log.durable_end())
        };
        let mut invalidated = Vec::new();
        for (name, slot) in next.slots.iter_mut() {
            if let SlotState::Live { confirmed } = *slot {
                if end.0.saturating_sub(confirmed.0) > max_keep {
                    *slot = SlotState::Lost;
                    invalidated.push((name.clone(), confirmed));
                }
            }
        }
        next.log_start = next.log_start.max(next.oldest_needed().unwrap_or(end));
        if next == self.state.borrow().slots {
            return;
        }
        if self.persist_slots(&next).await.is_err() {
            return;
        }
        let state = &mut *self.state.borrow_mut();
        for (name, confirmed) in invalidated {
            state.slots.slots.insert(name.clone(), SlotState::Lost);
            state.ctx.record(
                "slot-invalidated",
                format!(
                    "{name}: confirmed {} is {} bytes behind {} (max_slot_wal_keep_size {max_keep})",
                    confirmed.0,
                    end.0 - confirmed.0,
                    end.0
                ),
            );
        }
        if next.log_start > state.slots.log_start {
            state
                .ctx
                .record("log-removed", format!("below {}", next.log_start.0));
            state.slots.log_start = next.log_start;
        }
        Self::note_retained(state);
    }

    /// [`Source::read_log`]; when nothing durable follows `from`, waits up to `wait` for
    /// the next sync of the log and reads again. A replication stream sends what is
    /// flushed as it is flushed (PostgreSQL's walsender): a reader waiting here learns
    /// of a commit when it becomes durable instead of at its next poll.
    pub async fn read_log_waiting(
        &self,
        slot: &str,
        from: LogPos,
        max: usize,
        wait: Duration,
    ) -> Result<(Vec<(LogPos, Commit)>, LogPos), LogGone> {
        // Registered before the read, so a sync between the read and the wait counts.
        let synced = self.log_synced.notified();
        let read = self.read_log(slot, from, max)?;
        if read.1 != from || wait.is_zero() {
            return Ok(read);
        }
        let _ = faultline_sim::timer::timeout(wait, synced).await;
        self.read_log(slot, from, max)
    }

    /// Committed transactions from `from` on, read through the replication slot
    /// `slot`, each with the position of its record, up to `max` log records, and the
    /// position after the last record read. Only durable records are served, as a
    /// replication slot streams only flushed log. A lost slot, or a position below the
    /// log's start, streams nothing.
    pub fn read_log(
        &self,
        slot: &str,
        from: LogPos,
        max: usize,
    ) -> Result<(Vec<(LogPos, Commit)>, LogPos), LogGone> {
        {
            let mut state = self.state.borrow_mut();
            match state.slot_reads.get_mut(slot) {
                Some(read) => *read = from,
                None => {
                    state.slot_reads.insert(slot.to_string(), from);
                }
            }
        }
        let state = self.state.borrow();
        if state.slots.slots.get(slot) == Some(&SlotState::Lost) {
            return Err(LogGone::SlotLost(slot.to_string()));
        }
        if from < state.slots.log_start {
            return Err(LogGone::Removed {
                from,
                start: state.slots.log_start,
            });
        }
        let durable_end = state.log.durable_end();
        let mut commits = Vec::new();
        let mut next = from;
        for record in state.log.read_from(from, max) {
            if record.next > durable_end {
                break;
            }
            let at = next;
            next = record.next;
            let entry: LogEntry = serde_json::from_slice(&record.payload)
                .expect("source log records are written by this module");
            if let LogEntry::Commit { tx, action, rows, .. } = entry {
                commits.push((at, Commit { tx, action, rows }));
            }
        }
        Ok((commits, next))
    }
}

/// The messages of whole transactions, in order, until `max` or more are taken.
fn whole_transactions<'a>(
    txs: impl Iterator<Item = &'a Vec<OutboxMessage>>,
    max: usize,
) -> Vec<OutboxMessage> {
    let mut messages = Vec::new();
    for tx in txs {
        if messages.len() >= max {
            break;
        }
        messages.extend(tx.iter().cloned());
    }
    messages
}

/// The port of the source's REST API.
pub const SOURCE_API_PORT: u16 = 8080;
/// Log records one log read returns at most.
pub const LOG_READ_MAX_RECORDS: usize = 64;
/// How long a log read with nothing new waits for the next sync (below the callers'
/// RPC timeout, as the broker's long poll is).
pub const LOG_READ_WAIT_MS: u64 = 200;

/// A request to the source's API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SourceRequest {
    /// The current state of one row (GET /entity/key).
    Read(EntityKey),
    /// Every row, from one consistent snapshot.
    Snapshot,
    /// Every row, and the log position the snapshot stands at (a CDC connector's
    /// snapshot), creating the named slot anew at that position.
    SnapshotAt {
        /// The slot to create at the snapshot's position (`None`: a copy job's
        /// snapshot, which streams nothing after it).
        slot: Option<String>,
    },
    /// Committed transactions from a log position (a replication stream).
    ReadLog {
        /// The replication slot read through.
        slot: String,
        /// Where to start.
        from: LogPos,
        /// How long to wait, when nothing durable follows `from`, for the next sync.
        wait_ms: u64,
    },
    /// The reader of a slot consumed everything before `position` (a standby status
    /// update with its flushed position).
    ConfirmSlot {
        /// The slot.
        slot: String,
        /// Everything before it is consumed.
        position: LogPos,
    },
    /// Create a slot anew at the log's end (dropping it first if it was lost).
    CreateSlot {
        /// The slot.
        slot: String,
    },
    /// Up to `max` unsent outbox messages (a relay's poll).
    OutboxUnsent {
        /// At most this many.
        max: usize,
    },
    /// Mark outbox messages sent.
    MarkSent {
        /// The messages' transactions.
        txs: Vec<TxId>,
    },
    /// Take or renew the relays' lease.
    AcquireLease {
        /// Who asks.
        holder: String,
        /// The asker's clock, in microseconds since the Unix epoch.
        now_us: i64,
        /// For how long.
        lease_us: i64,
    },
}

/// The source's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SourceResponse {
    /// The row, or `None` when the source never had it.
    Row(Option<RowState>),
    /// Every row.
    Snapshot(Vec<(EntityKey, RowState)>),
    /// Every row (deleted ones as deletes), and where to stream from after them.
    SnapshotAt {
        /// The rows, each with its writer's stamp where commits carry one.
        rows: Vec<RowImage>,
        /// The log position the snapshot stands at.
        position: LogPos,
    },
    /// The slot's log cannot be streamed.
    LogGone(LogGone),
    /// A slot created at this position.
    SlotAt(LogPos),
    /// Committed transactions and the position to continue from.
    Log {
        /// The transactions, in commit order, each with its record's position.
        commits: Vec<(LogPos, Commit)>,
        /// Where the next read starts.
        next: LogPos,
    },
    /// Unsent outbox messages.
    Outbox(Vec<OutboxMessage>),
    /// Whether the write (a mark, a lease) was made: `Done(false)` for a lease held by
    /// another or a failed write.
    Done(bool),
}

impl RpcMessage for SourceRequest {
    fn label(&self) -> String {
        match self {
            SourceRequest::Read(key) => format!("GET {key}"),
            SourceRequest::Snapshot => "GET snapshot".to_string(),
            SourceRequest::SnapshotAt { slot: None } => "GET snapshot with position".to_string(),
            SourceRequest::SnapshotAt { slot: Some(slot) } => format!("GET snapshot creating slot {slot}"),
            SourceRequest::ReadLog { from, .. } => format!("read log @{}", from.0),
            SourceRequest::ConfirmSlot { slot, position } => format!("confirm {slot} @{}", position.0),
            SourceRequest::CreateSlot { slot } => format!("create slot {slot}"),
            SourceRequest::OutboxUnsent { max } => format!("outbox unsent max={max}"),
            SourceRequest::MarkSent { txs } => format!("mark sent n={}", txs.len()),
            SourceRequest::AcquireLease { holder, .. } => format!("lease for {holder}"),
        }
    }
}

impl RpcMessage for SourceResponse {
    fn label(&self) -> String {
        match self {
            SourceResponse::Row(Some(r)) => format!(
                "row {}{}",
                r.version,
                if r.data.is_none() { " deleted" } else { "" }
            ),
            SourceResponse::Row(None) => "404".to_string(),
            SourceResponse::Snapshot(rows) => format!("snapshot rows={}", rows.len()),
            SourceResponse::SnapshotAt { rows, position } => {
                format!("snapshot rows={} at={}", rows.len(), position.0)
            }
            SourceResponse::Log { commits, next } => format!("log commits={} next={}", commits.len(), next.0),
            SourceResponse::LogGone(gone) => format!("log gone: {gone}"),
            SourceResponse::SlotAt(position) => format!("slot at {}", position.0),
            SourceResponse::Outbox(messages) => format!("outbox n={}", messages.len()),
            SourceResponse::Done(done) => format!("done={done}"),
        }
    }
}

/// Serves the source's API on this host until it stops.
pub async fn serve_api(ctx: HostCtx, source: Source) -> std::io::Result<()> {
    serve(ctx, SOURCE_API_PORT, move |request: SourceRequest| {
        let source = source.clone();
        async move {
            match request {
                SourceRequest::Read(key) => SourceResponse::Row(source.read(key)),
                SourceRequest::Snapshot => SourceResponse::Snapshot(source.snapshot()),
                SourceRequest::SnapshotAt { slot } => match source.snapshot_at(slot.as_deref()).await {
                    Some((rows, position)) => SourceResponse::SnapshotAt { rows, position },
                    None => SourceResponse::Done(false),
                },
                SourceRequest::ReadLog { slot, from, wait_ms } => {
                    let wait = Duration::from_millis(wait_ms.min(LOG_READ_WAIT_MS));
                    match source
                        .read_log_waiting(&slot, from, LOG_READ_MAX_RECORDS, wait)
                        .await
                    {
                        Ok((commits, next)) => SourceResponse::Log { commits, next },
                        Err(gone) => SourceResponse::LogGone(gone),
                    }
                }
                SourceRequest::ConfirmSlot { slot, position } => {
                    source.confirm_slot(&slot, position);
                    SourceResponse::Done(true)
                }
                SourceRequest::CreateSlot { slot } => match source.create_slot(&slot).await {
                    Some(position) => SourceResponse::SlotAt(position),
                    None => SourceResponse::Done(false),
                },
                SourceRequest::OutboxUnsent { max } => SourceResponse::Outbox(source.outbox_unsent(max)),
                SourceRequest::MarkSent { txs } => SourceResponse::Done(source.mark_sent(&txs).await.is_ok()),
                SourceRequest::AcquireLease {
                    holder,
                    now_us,
                    lease_us,
                } => SourceResponse::Done(matches!(
                    source.acquire_relay_lease(&holder, now_us, lease_us).await,
                    Ok(true)
                )),
            }
        }
    })
    .await
}
