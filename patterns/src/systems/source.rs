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
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{serve, Disk, DiskError, HostCtx, LogFile, LogPos, RpcMessage, SimTime};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::domain::{fields, Action, ActionId, ActionRequest, EntityKey, RowImage, Table, TxId, Version};
use crate::history::{Failure, Recorder, RowState, Rows};
use crate::windows;

/// How long the planted fsync-retrying source waits between attempts.
const FSYNC_RETRY_WAIT: Duration = Duration::from_millis(10);

/// The source's log file.
pub const SOURCE_LOG: &str = "source.log";
/// The table data the source starts from (a restored backup), written before the run.
pub const SOURCE_BASE: &str = "source.base";

/// Writes the rows the source starts with to its disk, durably, before the run.
pub fn install_base(disk: &Disk, rows: &Rows) {
    disk.install(SOURCE_BASE, &encode_base(rows));
}

/// The rows of a base file (as `install_base` writes them).
pub fn encode_base(rows: &Rows) -> Vec<u8> {
    let list: Vec<(&EntityKey, &RowState)> = rows.iter().collect();
    serde_json::to_vec(&list).expect("rows serialise")
}

/// The rows of the base file `file` (empty when there is none).
pub(crate) fn read_base(disk: &Disk, file: &str) -> Rows {
    let bytes = disk.read_all(file);
    if bytes.is_empty() {
        return Rows::new();
    }
    let list: Vec<(EntityKey, RowState)> =
        serde_json::from_slice(&bytes).expect("base files are written by install_base");
    list.into_iter().collect()
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
    /// The outbox message describing this commit.
    pub fn to_outbox_message(&self) -> OutboxMessage {
        OutboxMessage {
            id: format!("msg-{}", self.tx.0),
            tx: self.tx,
            action: self.action,
            rows: self.rows.clone(),
        }
    }
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
    /// Stamp every row image with the source's wall clock (for last-writer-wins).
    pub stamp_writes: bool,
    /// Planted bugs.
    pub bugs: BugSet,
}

struct State {
    ctx: HostCtx,
    log: LogFile,
    rows: Rows,
    next_tx: u64,
    outbox_unsent: BTreeMap<TxId, OutboxMessage>,
    /// The log as replayed at its durable end by the last reload: a reload after a
    /// failed fsync replays only what came after it. Durable records do not change
    /// while the process lives, so this is the replay of that prefix, kept.
    replayed: Option<(LogPos, Replayed)>,
    recorder: Recorder,
    config: SourceConfig,
}

/// What replaying a log gives: the rows, the next tx id and the unsent outbox.
#[derive(Clone, Debug, PartialEq)]
struct Replayed {
    rows: Rows,
    next_tx: u64,
    outbox: BTreeMap<TxId, OutboxMessage>,
}

/// A handle to the running source. Clones share it; it dies with its host.
#[derive(Clone)]
pub struct Source {
    state: Rc<RefCell<State>>,
    /// One writer of the log at a time (the log writer of a database): a failed fsync
    /// then cuts back exactly the record it was syncing.
    writer: Rc<tokio::sync::Mutex<()>>,
}

/// Replays `log`'s records over the base rows, returning the rows, the next tx id and
/// the unsent outbox.
fn replay(base: Rows, records: Vec<faultline_sim::LogRecord>) -> (Rows, u64, BTreeMap<TxId, OutboxMessage>) {
    let start = Replayed {
        rows: base,
        next_tx: 1,
        outbox: BTreeMap::new(),
    };
    let Replayed {
        rows,
        next_tx,
        outbox,
    } = replay_onto(start, records);
    (rows, next_tx, outbox)
}

/// Replays records over an earlier replay's result.
fn replay_onto(start: Replayed, records: Vec<faultline_sim::LogRecord>) -> Replayed {
    let Replayed {
        mut rows,
        mut next_tx,
        mut outbox,
    } = start;
    for record in records {
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
                    rows.insert(
                        image.key,
                        RowState {
                            version: image.version,
                            data: image.data.clone(),
                        },
                    );
                }
                if with_outbox {
                    let commit = Commit {
                        tx,
                        action,
                        rows: images,
                    };
                    outbox.insert(tx, commit.to_outbox_message());
                }
                next_tx = tx.0 + 1;
            }
            LogEntry::OutboxSent { txs } => {
                for tx in txs {
                    outbox.remove(&tx);
                }
            }
        }
    }
    Replayed {
        rows,
        next_tx,
        outbox,
    }
}

impl Source {
    /// Opens the source on this host's disk: its base rows, then its log replayed.
    pub async fn recover(ctx: &HostCtx, config: SourceConfig, recorder: Recorder) -> Source {
        let (log, recovery) = if config.bugs.has(Bug::SourceKeepsTornTail) {
            // Planted: the torn bytes stay; the next commit is appended after them.
            let (log, recovery) = LogFile::open_unrepaired(ctx.disk(), SOURCE_LOG);
            let _ = ctx.disk().sync(SOURCE_LOG).await;
            (log, recovery)
        } else {
            LogFile::open_durably(ctx.disk(), SOURCE_LOG).await
        };
        let base = read_base(ctx.disk(), SOURCE_BASE);
        let read_to = recovery.records.last().map_or(LogPos(0), |r| r.next);
        let (rows, next_tx, outbox_unsent) = replay(base, recovery.records);
        // What recovery read is durable (open_durably synced it), so a later reload
        // can start after it.
        let replayed = (read_to <= log.durable_end()).then(|| {
            let replayed = Replayed {
                rows: rows.clone(),
                next_tx,
                outbox: outbox_unsent.clone(),
            };
            (read_to, replayed)
        });
        if ctx.incarnation() > 0 {
            recorder.source_recovered(ctx.now(), &rows);
            ctx.record(
                "source-recovered",
                format!("next_tx={next_tx} torn_bytes={}", recovery.truncated_bytes),
            );
        }
        Source {
            state: Rc::new(RefCell::new(State {
                ctx: ctx.clone(),
                log,
                rows,
                next_tx,
                outbox_unsent,
                replayed,
                recorder,
                config,
            })),
            writer: Rc::default(),
        }
    }

    /// Runs the periodic sync (when the policy asks for it) until the host stops.
    pub async fn run_sync_loop(&self) {
        let SyncPolicy::Periodic { every_ms } = self.state.borrow().config.sync else {
            return;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(every_ms)).await;
            let _writing = self.writer.lock().await;
            let _ = self.sync_or_reload().await;
        }
    }

    /// Rebuilds memory from the disk, as crash recovery would, without restarting:
    /// the base rows and the log, from where the last reload left off (replaying the
    /// whole log on every failed fsync made long faulty runs quadratic).
    fn reload(&self) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let end = state.log.end();
        let (from, start) = match state.replayed.take() {
            Some((pos, replayed)) if pos <= end => (pos, replayed),
            _ => {
                let base = read_base(state.ctx.disk(), SOURCE_BASE);
                let start = Replayed {
                    rows: base,
                    next_tx: 1,
                    outbox: BTreeMap::new(),
                };
                (LogPos(0), start)
            }
        };
        let records = state.log.read_from(from, usize::MAX);
        // Where replay stopped: past the last intact record (a torn frame stops it).
        let read_to = records.last().map_or(from, |r| r.next);
        let replayed = replay_onto(start, records);
        if cfg!(debug_assertions) {
            // The kept prefix is the replay of the disk's: check it against a full one.
            let base = read_base(state.ctx.disk(), SOURCE_BASE);
            let (rows, next_tx, outbox) = replay(base, state.log.read_from(LogPos(0), usize::MAX));
            assert_eq!(
                replayed,
                Replayed {
                    rows,
                    next_tx,
                    outbox
                },
                "incremental reload"
            );
        }
        state.rows = replayed.rows.clone();
        state.next_tx = replayed.next_tx;
        state.outbox_unsent = replayed.outbox.clone();
        state.replayed = Some((read_to, replayed));
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
            Action::DeleteCustomer { .. } => Ok(vec![
                image(child(Table::Contact), None),
                image(child(Table::Address), None),
                image(customer, None),
            ]),
        }
    }

    /// Executes one action as one local transaction and records its outcome. The hook
    /// runs inside the operation, after the rows are known and before the commit: when
    /// it fails, the action fails and nothing is committed.
    pub async fn execute(
        &self,
        request: &ActionRequest,
        before_commit: Option<&BeforeCommit>,
    ) -> Result<Commit, Failure> {
        let result = match (self.plan(&request.action), before_commit) {
            (Err(failure), _) => Err(failure),
            (Ok(rows), None) => self.commit(request, rows).await,
            (Ok(rows), Some(hook)) => match hook(request.id, rows.clone()).await {
                Ok(()) => self.commit(request, rows).await,
                Err(reason) => Err(Failure::Integration(reason)),
            },
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

    /// Writes the commit record and, with [`SyncPolicy::OnCommit`], waits for it to be
    /// durable before the rows become visible and the action is acknowledged. The
    /// history learns of the commit once its record is written: from then on a process
    /// crash keeps it (the operating system has it) and only a power loss before the
    /// sync can take it, which the final durable state then shows.
    async fn commit(&self, request: &ActionRequest, rows: Vec<RowImage>) -> Result<Commit, Failure> {
        let storage = |e: DiskError| Failure::Storage(e.to_string());
        let _writing = self.writer.lock().await;
        let (commit, log, bytes, sync_now) = {
            let state = self.state.borrow();
            let commit = Commit {
                tx: TxId(state.next_tx),
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
            let mut state = self.state.borrow_mut();
            state.next_tx += 1;
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
        }
        if state.config.outbox {
            state.outbox_unsent.insert(commit.tx, commit.to_outbox_message());
        }
        Ok(commit)
    }

    /// The current state of one row (the REST read pull patterns use).
    pub fn read(&self, key: EntityKey) -> Option<RowState> {
        self.state.borrow().rows.get(&key).cloned()
    }

    /// Up to `max` unsent outbox messages, oldest first.
    pub fn outbox_unsent(&self, max: usize) -> Vec<OutboxMessage> {
        self.state
            .borrow()
            .outbox_unsent
            .values()
            .take(max)
            .cloned()
            .collect()
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
                tokio::time::sleep(FSYNC_RETRY_WAIT).await;
            }
            return Ok(());
        }
        if let Err(e) = &result {
            self.state
                .borrow()
                .ctx
                .record("source-sync-failed", e.to_string());
            log.discard_unsynced();
            self.reload();
        }
        result
    }

    /// Runs the workload's actions that are still due, each at its instant, calling
    /// `after_commit` for each commit. Actions whose instant passed while the host was
    /// down are skipped (the runner records them as failed: source down).
    pub async fn run_workload(
        &self,
        schedule: Rc<Vec<(SimTime, ActionRequest)>>,
        before_commit: Option<BeforeCommit>,
        after_commit: impl Fn(&Commit),
    ) {
        let now = self.state.borrow().ctx.now();
        let start = schedule.partition_point(|(at, _)| *at < now);
        for (at, request) in &schedule[start..] {
            let wait = at.saturating_since(self.state.borrow().ctx.now());
            tokio::time::sleep(wait).await;
            if let Ok(commit) = self.execute(request, before_commit.as_ref()).await {
                after_commit(&commit);
            }
        }
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

    /// Committed transactions from `from` on, up to `max` log records, and the position
    /// after the last record read. Only durable records are served, as a log-based
    /// reader (a replication slot) sees only flushed log.
    pub fn read_log(&self, from: LogPos, max: usize) -> (Vec<Commit>, LogPos) {
        let state = self.state.borrow();
        let durable_end = state.log.durable_end();
        let mut commits = Vec::new();
        let mut next = from;
        for record in state.log.read_from(from, max) {
            if record.next > durable_end {
                break;
            }
            next = record.next;
            let entry: LogEntry = serde_json::from_slice(&record.payload)
                .expect("source log records are written by this module");
            if let LogEntry::Commit { tx, action, rows, .. } = entry {
                commits.push(Commit { tx, action, rows });
            }
        }
        (commits, next)
    }
}

/// The port of the source's REST API.
pub const SOURCE_API_PORT: u16 = 8080;
/// Log records one log read returns at most.
pub const LOG_READ_MAX_RECORDS: usize = 64;

/// A request to the source's API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SourceRequest {
    /// The current state of one row (GET /entity/key).
    Read(EntityKey),
    /// Every row, from one consistent snapshot.
    Snapshot,
    /// Committed transactions from a log position (a replication stream).
    ReadLog {
        /// Where to start.
        from: LogPos,
    },
}

/// The source's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SourceResponse {
    /// The row, or `None` when the source never had it.
    Row(Option<RowState>),
    /// Every row.
    Snapshot(Vec<(EntityKey, RowState)>),
    /// Committed transactions and the position to continue from.
    Log {
        /// The transactions, in commit order.
        commits: Vec<Commit>,
        /// Where the next read starts.
        next: LogPos,
    },
}

impl RpcMessage for SourceRequest {
    fn label(&self) -> String {
        match self {
            SourceRequest::Read(key) => format!("GET {key}"),
            SourceRequest::Snapshot => "GET snapshot".to_string(),
            SourceRequest::ReadLog { from } => format!("read log @{}", from.0),
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
            SourceResponse::Log { commits, next } => format!("log commits={} next={}", commits.len(), next.0),
        }
    }
}

/// Serves the source's API on this host until it stops.
pub async fn serve_api(ctx: HostCtx, source: Source) -> std::io::Result<()> {
    serve(ctx, SOURCE_API_PORT, move |request: SourceRequest| {
        let response = match request {
            SourceRequest::Read(key) => SourceResponse::Row(source.read(key)),
            SourceRequest::Snapshot => SourceResponse::Snapshot(source.snapshot()),
            SourceRequest::ReadLog { from } => {
                let (commits, next) = source.read_log(from, LOG_READ_MAX_RECORDS);
                SourceResponse::Log { commits, next }
            }
        };
        async move { response }
    })
    .await
}
