//! The replica: a table store on the world's disk that applies changes from the
//! integration.
//!
//! One local transaction per apply: the accepted rows and the message id for the inbox
//! (when on), written as one synced log record, so an apply and its inbox entry are
//! atomic. With the version check on, an image older than (or as old as) the held
//! version is skipped; without it the target applies blindly, as many real consumers do.
//!
//! The side effect is a welcome per created customer, sent to the notification service
//! ([`super::notifier`]) as an event handler sends it when it handles "customer
//! created": per handled create, not per customer. Without an inbox it is sent after the
//! local commit, with retries: a crash in between loses it, a retry after a lost
//! response or a redelivered message sends it again. With an inbox the welcome is
//! stored in the apply's own transaction with an idempotency key (the message id) and
//! dispatched after it, again after a restart until acknowledged: the outbox on the
//! consuming side that NServiceBus and MassTransit keep, so it is performed once.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use faultline_sim::{DiskError, HostCtx, LogFile, LogPos, WallTime};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::domain::{CustomerId, EntityKey, RowImage, Table};
use crate::history::{Recorder, RowState, RowVersion, Rows};
use crate::systems::notifier::Welcomer;
use crate::RPC_TIMEOUT;

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

/// What makes the target's handler welcome a customer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EffectTrigger {
    /// Handling a change that creates the customer (its row at version 1): what an
    /// event or REST handler for "customer created" does. A redelivered create welcomes
    /// again.
    #[default]
    CreateMessage,
    /// A customer row appearing that the target did not hold: what a job that compares
    /// states does (a full copy, a pull of the current state).
    NewRow,
}

/// How the target applies changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetConfig {
    /// Which images it takes.
    pub rule: ApplyRule,
    /// Remember processed message ids in the apply's transaction and skip repeats; store
    /// welcomes in the same transaction, keyed for the notification service.
    pub inbox: bool,
    /// What triggers a welcome.
    pub effects: EffectTrigger,
    /// Planted bugs.
    pub bugs: BugSet,
}

/// A welcome stored in an apply's transaction, to be dispatched with its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StoredWelcome {
    customer: CustomerId,
    key: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TargetTx {
    rows: Vec<RowImage>,
    message: Option<String>,
    /// Welcomes to dispatch (with an inbox only).
    welcomes: Vec<StoredWelcome>,
    /// Keys of stored welcomes the notification service acknowledged.
    dispatched: Vec<String>,
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
    /// Stored welcomes not yet acknowledged, by key.
    undispatched: BTreeMap<String, CustomerId>,
    welcomer: Welcomer,
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
    undispatched: BTreeMap<String, CustomerId>,
}

fn replay(records: Vec<faultline_sim::LogRecord>, initial: &Rows, durable_end: Option<LogPos>) -> Replayed {
    let mut out = Replayed {
        rows: initial.clone(),
        stamps: BTreeMap::new(),
        inbox: BTreeSet::new(),
        undispatched: BTreeMap::new(),
    };
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
        out.undispatched
            .extend(tx.welcomes.into_iter().map(|w| (w.key, w.customer)));
        for key in tx.dispatched {
            out.undispatched.remove(&key);
        }
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
            undispatched,
        } = replay(recovery.records, initial, None);
        if ctx.incarnation() > 0 {
            recorder.target_recovered(ctx.now(), &rows);
        }
        let target = Target(Rc::new(RefCell::new(State {
            ctx: ctx.clone(),
            log,
            rows,
            stamps,
            inbox,
            undispatched: undispatched.clone(),
            welcomer: Welcomer::new(ctx, RPC_TIMEOUT),
            recorder,
            config,
        })));
        // Welcomes stored before a crash and never acknowledged go out again (the key
        // makes a repeat harmless).
        for (key, customer) in undispatched {
            target.dispatch(customer, key);
        }
        target
    }

    /// Sends a stored welcome in the background; records its acknowledgement.
    fn dispatch(&self, customer: CustomerId, key: String) {
        let target = self.clone();
        let welcomer = self.0.borrow().welcomer.clone();
        tokio::task::spawn_local(async move {
            if welcomer.welcome(customer, Some(key.clone())).await {
                target.mark_dispatched(key);
            }
        });
    }

    /// Remembers that a stored welcome was acknowledged; if that fails to commit, the
    /// welcome goes out again after a restart, and its key absorbs it.
    fn mark_dispatched(&self, key: String) {
        let mut state = self.0.borrow_mut();
        let tx = TargetTx {
            dispatched: vec![key.clone()],
            ..TargetTx::default()
        };
        if state.write(&tx).is_ok() {
            state.undispatched.remove(&key);
        }
    }

    /// Sends a welcome without a key in the background, with retries.
    fn welcome_unkeyed(&self, customer: CustomerId) {
        let welcomer = self.0.borrow().welcomer.clone();
        tokio::task::spawn_local(async move {
            welcomer.welcome(customer, None).await;
        });
    }

    /// Whether the inbox holds message `id` (it was applied, durably).
    pub fn inbox_contains(&self, id: &str) -> bool {
        self.0.borrow().inbox.contains(id)
    }

    /// Records that a copy of an applied message was dropped before its apply.
    pub fn note_duplicate(&self, what: &str) {
        self.0.borrow().ctx.record(INBOX_DUPLICATE, what.to_string());
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
                        message: Some(id.to_string()),
                        ..TargetTx::default()
                    })?;
                }
                tokio::time::sleep(SEPARATE_COMMIT_GAP).await;
                self.apply_now(images, None)
            }
            _ if self.0.borrow().config.bugs.has(Bug::EffectBeforeCommit) => {
                // Planted: the handler sends the welcome itself, before the commit that
                // records the apply; a commit that then fails is retried and welcomes
                // again.
                let (created, welcomer) = {
                    let state = self.0.borrow();
                    (state.created(&state.accept(images)), state.welcomer.clone())
                };
                for customer in created {
                    welcomer.welcome(customer, None).await;
                }
                self.apply_now(images, message)
            }
            _ if self.0.borrow().config.bugs.has(Bug::TargetAppliesRowsSeparately) => {
                // Planted: each row in its own local transaction, the last one carrying
                // the inbox entry.
                let Some((last, rows)) = images.split_last() else {
                    return self.apply_now(images, message);
                };
                for row in rows {
                    self.apply_now(std::slice::from_ref(row), None)?;
                    tokio::time::sleep(SEPARATE_COMMIT_GAP).await;
                }
                self.apply_now(std::slice::from_ref(last), message)
            }
            _ => self.apply_now(images, message),
        }
    }

    /// The apply proper: one local transaction holding the rows and the inbox entry
    /// (and, with an inbox, the welcomes to dispatch); then the welcomes go out.
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
        let mut accepted = state.accept(images);
        if bugs.has(Bug::TargetDeletesWithoutCascade) {
            // Planted: the customer row goes; its children stay.
            let deletes_customer = accepted
                .iter()
                .any(|r| r.key.table == Table::Customer && r.is_delete());
            if deletes_customer {
                accepted.retain(|r| r.key.table == Table::Customer || !r.is_delete());
            }
        }
        if bugs.has(Bug::TargetPanicsOnLongHistory) {
            // Planted: the last nine phone numbers in a fixed array, indexed by version.
            let mut phones: [u64; 9] = [0; 9];
            for image in accepted.iter().filter(|r| r.key.table == Table::Contact) {
                phones[image.version.0 as usize - 1] = image.version.0;
            }
        }
        let skipped = images.len() - accepted.len();
        if accepted.is_empty() && message.is_none() {
            return Ok(Applied::Rows { applied: 0, skipped });
        }
        // The planted effect-before-commit bug sent these already.
        let created = if bugs.has(Bug::EffectBeforeCommit) {
            Vec::new()
        } else {
            state.created(&accepted)
        };
        let welcomes: Vec<StoredWelcome> = match &message {
            Some(id) => created
                .iter()
                .map(|c| StoredWelcome {
                    customer: *c,
                    key: format!("{id}/welcome/{}", c.0),
                })
                .collect(),
            None => Vec::new(),
        };
        let tx = TargetTx {
            rows: accepted,
            message,
            welcomes,
            dispatched: Vec::new(),
        };
        state.write(&tx)?;
        state.expose(&tx.rows);
        drop(guard);
        if tx.message.is_some() {
            for w in tx.welcomes {
                self.dispatch(w.customer, w.key);
            }
        } else {
            for customer in created {
                self.welcome_unkeyed(customer);
            }
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
        self.undispatched
            .extend(tx.welcomes.iter().map(|w| (w.key.clone(), w.customer)));
        Ok(())
    }

    /// The customers this apply creates, by the configured trigger.
    fn created(&self, accepted: &[RowImage]) -> Vec<CustomerId> {
        accepted
            .iter()
            .filter(|r| r.key.table == Table::Customer && !r.is_delete())
            .filter(|r| match self.config.effects {
                EffectTrigger::CreateMessage => r.version.0 == 1,
                EffectTrigger::NewRow => self.rows.get(&r.key).is_none_or(|held| held.data.is_none()),
            })
            .map(|r| r.key.customer)
            .collect()
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
}
