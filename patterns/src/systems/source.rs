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

use faultline_sim::{serve, HostCtx, LogFile, LogPos, RpcMessage, SimTime};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::domain::{fields, Action, ActionId, ActionRequest, EntityKey, RowImage, Table, TxId, Version};
use crate::history::{Failure, Recorder, RowState, Rows};

/// The source's log file.
pub const SOURCE_LOG: &str = "source.log";

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
    OutboxSent {
        tx: TxId,
    },
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
    recorder: Recorder,
    config: SourceConfig,
}

/// A handle to the running source. Clones share it; it dies with its host.
#[derive(Clone)]
pub struct Source(Rc<RefCell<State>>);

/// Replays `log`'s records over `initial`, returning the rows, the next tx id and the
/// unsent outbox. `durable_only` stops at the last synced byte.
fn replay(
    log: &LogFile,
    records: Vec<faultline_sim::LogRecord>,
    initial: &Rows,
    durable_only: bool,
) -> (Rows, u64, BTreeMap<TxId, OutboxMessage>) {
    let durable_end = log.durable_end();
    let mut rows = initial.clone();
    let mut next_tx = 1;
    let mut outbox = BTreeMap::new();
    for record in records {
        if durable_only && record.next > durable_end {
            break;
        }
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
            LogEntry::OutboxSent { tx } => {
                outbox.remove(&tx);
            }
        }
    }
    (rows, next_tx, outbox)
}

/// The source's durable rows as a power loss now would leave them (for the final check).
pub fn durable_rows(disk: &faultline_sim::Disk, initial: &Rows) -> Rows {
    let log = LogFile::open(disk, SOURCE_LOG).0;
    let records = log.read_from(faultline_sim::LogPos(0), usize::MAX);
    replay(&log, records, initial, true).0
}

impl Source {
    /// Opens the source on this host's disk, replaying its log over `initial`.
    pub fn recover(ctx: &HostCtx, config: SourceConfig, recorder: Recorder, initial: &Rows) -> Source {
        let (log, recovery) = LogFile::open(ctx.disk(), SOURCE_LOG);
        let (rows, next_tx, outbox_unsent) = replay(&log, recovery.records, initial, false);
        if ctx.incarnation() > 0 {
            recorder.source_recovered(ctx.now(), &rows);
            ctx.record(
                "source-recovered",
                format!("next_tx={next_tx} torn_bytes={}", recovery.truncated_bytes),
            );
        }
        Source(Rc::new(RefCell::new(State {
            ctx: ctx.clone(),
            log,
            rows,
            next_tx,
            outbox_unsent,
            recorder,
            config,
        })))
    }

    /// Runs the periodic sync (when the policy asks for it) until the host stops.
    pub async fn run_sync_loop(&self) {
        let SyncPolicy::Periodic { every_ms } = self.0.borrow().config.sync else {
            return;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(every_ms)).await;
            let _ = self.sync_or_reload();
        }
    }

    /// Rebuilds memory from the disk, as crash recovery would, without restarting.
    fn reload(&self) {
        let mut guard = self.0.borrow_mut();
        let state = &mut *guard;
        let initial = state.recorder.initial_rows();
        let records = state.log.read_from(faultline_sim::LogPos(0), usize::MAX);
        let (rows, next_tx, outbox) = replay(&state.log, records, &initial, false);
        state.rows = rows;
        state.next_tx = next_tx;
        state.outbox_unsent = outbox;
        state.recorder.source_recovered(state.ctx.now(), &state.rows);
    }

    /// The row images `action` would write, or why the business rules refuse it.
    fn plan(&self, action: &Action) -> Result<Vec<RowImage>, Failure> {
        let state = self.0.borrow();
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
            (Ok(rows), None) => self.commit(request, rows),
            (Ok(rows), Some(hook)) => match hook(request.id, rows.clone()).await {
                Ok(()) => self.commit(request, rows),
                Err(reason) => Err(Failure::Integration(reason)),
            },
        };
        let state = self.0.borrow();
        let at = state.ctx.now();
        state.recorder.outcome(
            request.id,
            at,
            result.as_ref().map(|c| c.tx).map_err(Clone::clone),
        );
        result
    }

    fn commit(&self, request: &ActionRequest, rows: Vec<RowImage>) -> Result<Commit, Failure> {
        let mut state = self.0.borrow_mut();
        let tx = TxId(state.next_tx);
        let entry = LogEntry::Commit {
            tx,
            action: request.id,
            rows: rows.clone(),
            outbox: state.config.outbox,
        };
        let bytes = serde_json::to_vec(&entry).expect("log entries serialise");
        state
            .log
            .append(&bytes)
            .map_err(|e| Failure::Storage(e.to_string()))?;
        // The planted bug acknowledges without syncing, whatever the policy says.
        if state.config.sync == SyncPolicy::OnCommit && !state.config.bugs.has(Bug::SourceSkipsSync) {
            state.log.sync().map_err(|e| Failure::Storage(e.to_string()))?;
        }
        state.next_tx += 1;
        for image in &rows {
            state.rows.insert(
                image.key,
                RowState {
                    version: image.version,
                    data: image.data.clone(),
                },
            );
        }
        let commit = Commit {
            tx,
            action: request.id,
            rows,
        };
        if state.config.outbox {
            state.outbox_unsent.insert(tx, commit.to_outbox_message());
        }
        let detail = format!(
            "{tx} action={} {}",
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
            .commit(tx, request.id, state.ctx.now(), &commit.rows, event);
        Ok(commit)
    }

    /// The current state of one row (the REST read pull patterns use).
    pub fn read(&self, key: EntityKey) -> Option<RowState> {
        self.0.borrow().rows.get(&key).cloned()
    }

    /// Up to `max` unsent outbox messages, oldest first.
    pub fn outbox_unsent(&self, max: usize) -> Vec<OutboxMessage> {
        self.0
            .borrow()
            .outbox_unsent
            .values()
            .take(max)
            .cloned()
            .collect()
    }

    /// Marks an outbox message sent, durably. On failure it stays unsent.
    pub fn mark_sent(&self, tx: TxId) -> Result<(), faultline_sim::DiskError> {
        let bytes = serde_json::to_vec(&LogEntry::OutboxSent { tx }).expect("log entries serialise");
        self.0.borrow().log.append(&bytes)?;
        self.sync_or_reload()?;
        self.0.borrow_mut().outbox_unsent.remove(&tx);
        Ok(())
    }

    /// Syncs the log. A failed sync has discarded every unsynced record from the disk,
    /// possibly acknowledged commits among them: like PostgreSQL after an fsync error,
    /// memory then starts over from the disk, so it never holds what the disk lost.
    fn sync_or_reload(&self) -> Result<(), faultline_sim::DiskError> {
        let result = self.0.borrow().log.sync();
        if let Err(e) = &result {
            self.0.borrow().ctx.record("source-sync-failed", e.to_string());
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
        let now = self.0.borrow().ctx.now();
        let start = schedule.partition_point(|(at, _)| *at < now);
        for (at, request) in &schedule[start..] {
            let wait = at.saturating_since(self.0.borrow().ctx.now());
            tokio::time::sleep(wait).await;
            if let Ok(commit) = self.execute(request, before_commit.as_ref()).await {
                after_commit(&commit);
            }
        }
    }

    /// Every row the source holds now: a consistent snapshot (one instant, no
    /// interleaved commit).
    pub fn snapshot(&self) -> Vec<(EntityKey, RowState)> {
        self.0
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
        let state = self.0.borrow();
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
