//! The replica: a table store on the world's disk that applies changes from the
//! integration.
//!
//! One local transaction per apply: the accepted rows, the message id for the inbox (when
//! on) and the customers welcomed, written as one synced log record, so an apply and its
//! inbox entry are atomic. With the version check on, an image older than (or as old as)
//! the held version is skipped; without it the target applies blindly, as many real
//! consumers do. The side effect, a welcome message for each first-seen customer, is
//! performed after the local commit: a crash in between loses it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use faultline_sim::{DiskError, HostCtx, LogFile, LogPos, WallTime};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::domain::{CustomerId, EntityKey, RowImage, Table};
use crate::history::{Recorder, RowState, RowVersion, Rows};

/// The trace event kind of a delivery the inbox recognised as a repeat.
pub const INBOX_DUPLICATE: &str = "inbox-duplicate";

/// Time between two transactions committed one after the other (one sync's worth).
const SEPARATE_COMMIT_GAP: std::time::Duration = std::time::Duration::from_millis(1);

/// The target's log file.
pub const TARGET_LOG: &str = "target.log";

/// Which incoming images the target takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApplyRule {
    /// Every image, in arrival order.
    #[default]
    Blind,
    /// Only images with a newer version than the held one.
    NewerVersion,
    /// Only images whose writer's wall-clock stamp is later than the held one's (last
    /// writer wins): as good as the writer's clock.
    LaterWallClock,
}

/// How the target applies changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetConfig {
    /// Which images it takes.
    pub rule: ApplyRule,
    /// Remember processed message ids in the apply's transaction and skip repeats.
    pub inbox: bool,
    /// Planted bugs.
    pub bugs: BugSet,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TargetTx {
    rows: Vec<RowImage>,
    message: Option<String>,
    welcomed: Vec<CustomerId>,
}

/// What an apply did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The rows were applied (some may have been skipped as stale).
    Rows {
        /// How many images were applied.
        applied: usize,
        /// How many were skipped by the version check.
        skipped: usize,
    },
    /// The message id was in the inbox: nothing done.
    Duplicate,
}

struct State {
    ctx: HostCtx,
    log: LogFile,
    rows: Rows,
    /// The writer's wall-clock stamp of each row, where images carried one.
    stamps: BTreeMap<EntityKey, WallTime>,
    inbox: BTreeSet<String>,
    welcomed: BTreeSet<CustomerId>,
    recorder: Recorder,
    config: TargetConfig,
}

/// A handle to the running target. Clones share it; it dies with its host.
#[derive(Clone)]
pub struct Target(Rc<RefCell<State>>);

struct Replayed {
    rows: Rows,
    stamps: BTreeMap<EntityKey, WallTime>,
    inbox: BTreeSet<String>,
    welcomed: BTreeSet<CustomerId>,
}

fn replay(records: Vec<faultline_sim::LogRecord>, initial: &Rows, durable_end: Option<LogPos>) -> Replayed {
    let mut out = Replayed {
        rows: initial.clone(),
        stamps: BTreeMap::new(),
        inbox: BTreeSet::new(),
        welcomed: BTreeSet::new(),
    };
    out.welcomed.extend(
        initial
            .keys()
            .filter(|k| k.table == Table::Customer)
            .map(|k| k.customer),
    );
    for record in records {
        if durable_end.is_some_and(|end| record.next > end) {
            break;
        }
        let tx: TargetTx =
            serde_json::from_slice(&record.payload).expect("target log records are written by this module");
        for image in tx.rows {
            if let Some(at) = image.written_at {
                out.stamps.insert(image.key, at);
            }
            out.rows.insert(
                image.key,
                RowState {
                    version: image.version,
                    data: image.data,
                },
            );
        }
        out.inbox.extend(tx.message);
        out.welcomed.extend(tx.welcomed);
    }
    out
}

/// The target's durable rows (for the final check).
pub fn durable_rows(disk: &faultline_sim::Disk, initial: &Rows) -> Rows {
    let log = LogFile::open(disk, TARGET_LOG).0;
    replay(
        log.read_from(LogPos(0), usize::MAX),
        initial,
        Some(log.durable_end()),
    )
    .rows
}

impl Target {
    /// Opens the target on this host's disk, replaying its log over `initial`.
    pub fn recover(ctx: &HostCtx, config: TargetConfig, recorder: Recorder, initial: &Rows) -> Target {
        let (log, recovery) = LogFile::open(ctx.disk(), TARGET_LOG);
        let Replayed {
            rows,
            stamps,
            inbox,
            welcomed,
        } = replay(recovery.records, initial, None);
        if ctx.incarnation() > 0 {
            recorder.target_recovered(ctx.now(), &rows);
        }
        Target(Rc::new(RefCell::new(State {
            ctx: ctx.clone(),
            log,
            rows,
            stamps,
            inbox,
            welcomed,
            recorder,
            config,
        })))
    }

    /// Every row the target holds now (live or tombstoned).
    pub fn rows(&self) -> Rows {
        self.0.borrow().rows.clone()
    }

    /// Applies `images` in one local transaction; `message` is the id the inbox keys on.
    pub async fn apply(&self, images: &[RowImage], message: Option<&str>) -> Result<Applied, DiskError> {
        let separate = {
            let state = self.0.borrow();
            state.config.inbox && state.config.bugs.has(Bug::InboxSeparateTx)
        };
        match message {
            Some(id) if separate => {
                {
                    let mut state = self.0.borrow_mut();
                    if state.inbox.contains(id) {
                        state.ctx.record(INBOX_DUPLICATE, id.to_string());
                        return Ok(Applied::Duplicate);
                    }
                    // Planted: the inbox entry commits on its own, before the apply,
                    // which commits a moment later as a second transaction does.
                    state.write(&TargetTx {
                        rows: Vec::new(),
                        message: Some(id.to_string()),
                        welcomed: Vec::new(),
                    })?;
                }
                tokio::time::sleep(SEPARATE_COMMIT_GAP).await;
                self.apply_now(images, None)
            }
            _ => self.apply_now(images, message),
        }
    }

    /// The apply proper: one local transaction holding the rows, the inbox entry and
    /// the welcomes.
    fn apply_now(&self, images: &[RowImage], message: Option<&str>) -> Result<Applied, DiskError> {
        let mut guard = self.0.borrow_mut();
        let state = &mut *guard;
        let bugs = state.config.bugs;
        let message = message.filter(|_| state.config.inbox).map(str::to_string);
        if message.as_ref().is_some_and(|m| state.inbox.contains(m)) {
            state
                .ctx
                .record(INBOX_DUPLICATE, message.clone().unwrap_or_default());
            return Ok(Applied::Duplicate);
        }
        let accepted = state.accept(images);
        if bugs.has(Bug::TargetPanicsOnLongHistory) {
            // Planted: the last nine phone numbers in a fixed array, indexed by version.
            let mut phones: [u64; 9] = [0; 9];
            for image in accepted.iter().filter(|r| r.key.table == Table::Contact) {
                phones[image.version.0 as usize - 1] = image.version.0;
            }
        }
        let skipped = images.len() - accepted.len();
        let welcomed: Vec<CustomerId> = accepted
            .iter()
            .filter(|r| {
                r.key.table == Table::Customer && !r.is_delete() && !state.welcomed.contains(&r.key.customer)
            })
            .map(|r| r.key.customer)
            .collect();
        if accepted.is_empty() && message.is_none() {
            return Ok(Applied::Rows { applied: 0, skipped });
        }
        if bugs.has(Bug::EffectBeforeCommit) {
            // Planted: the welcome goes out before the commit that remembers it.
            state.send_welcomes(&welcomed);
        }
        let tx = TargetTx {
            rows: accepted,
            message,
            welcomed,
        };
        state.write(&tx)?;
        state.expose(&tx.rows);
        if !bugs.has(Bug::EffectBeforeCommit) {
            state.send_welcomes(&tx.welcomed);
        }
        Ok(Applied::Rows {
            applied: tx.rows.len(),
            skipped,
        })
    }
}

impl State {
    /// The images this apply takes: all of them, or with the version check only those
    /// newer than what is held.
    fn accept(&self, images: &[RowImage]) -> Vec<RowImage> {
        let ignore_unknown_deletes = self.config.bugs.has(Bug::TargetIgnoresUnknownDeletes);
        images
            .iter()
            .filter(|image| {
                let held = self.rows.get(&image.key);
                if ignore_unknown_deletes && image.is_delete() && held.is_none() {
                    // Planted: nothing to delete, so no tombstone to stop a late PUT.
                    return false;
                }
                match self.config.rule {
                    ApplyRule::Blind => true,
                    ApplyRule::NewerVersion => held.is_none_or(|held| held.version < image.version),
                    ApplyRule::LaterWallClock => match (self.stamps.get(&image.key), image.written_at) {
                        (Some(held), Some(incoming)) => incoming > *held,
                        _ => true,
                    },
                }
            })
            .cloned()
            .collect()
    }

    /// Commits one local transaction durably, then updates memory.
    fn write(&mut self, tx: &TargetTx) -> Result<(), DiskError> {
        self.log
            .append(&serde_json::to_vec(tx).expect("target txs serialise"))?;
        self.log.sync()?;
        for image in &tx.rows {
            if let Some(at) = image.written_at {
                self.stamps.insert(image.key, at);
            }
        }
        for image in &tx.rows {
            self.rows.insert(
                image.key,
                RowState {
                    version: image.version,
                    data: image.data.clone(),
                },
            );
        }
        self.inbox.extend(tx.message.clone());
        self.welcomed.extend(tx.welcomed.iter().copied());
        Ok(())
    }

    /// Tells the history what readers can now see.
    fn expose(&self, rows: &[RowImage]) {
        if rows.is_empty() {
            return;
        }
        let detail = rows.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
        let event = self.ctx.record("apply", detail);
        self.recorder
            .apply(self.ctx.now(), rows.iter().map(RowVersion::from).collect(), event);
    }

    /// Sends the welcome message to each customer.
    fn send_welcomes(&self, customers: &[CustomerId]) {
        for customer in customers {
            let event = self.ctx.record("welcome", format!("customer/{}", customer.0));
            self.recorder.effect(*customer, self.ctx.now(), event);
        }
    }
}
