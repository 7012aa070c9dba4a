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
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{Disk, DiskError, HostCtx, LogFile, Replay, SimTime, WallTime};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::domain::{CustomerId, EntityKey, RowImage, Table, Version};
use crate::history::{Recorder, RowState, RowVersion, Rows};
use crate::systems::notifier::Welcomer;
use crate::windows;
use crate::RPC_TIMEOUT;

/// The trace event kind of a delivery the inbox recognised as a repeat.
pub const INBOX_DUPLICATE: &str = "inbox-duplicate";

/// How often the planted exposes-before-sync target flushes its log.
const LAZY_SYNC_PERIOD: std::time::Duration = std::time::Duration::from_millis(200);

/// Whether the host's deployed defect ([`faultline_sim::Fault::Defect`]) rejects input
/// keyed `key`: one key in eight, on every attempt while the defect is live (the data
/// shape a bad release cannot handle). Consumers and the push API ask it.
pub fn defect_rejects(ctx: &HostCtx, key: &str) -> bool {
    ctx.defective() && faultline_sim::trace::fnv1a64(key.as_bytes()).is_multiple_of(8)
}

/// The target's log file.
pub const TARGET_LOG: &str = "target.log";
/// The table data the target starts from (a restored backup), written before the run.
pub const TARGET_BASE: &str = "target.base";

/// Writes the rows the target starts with to its disk, durably, before the run.
pub fn install_base(disk: &Disk, rows: &Rows) {
    disk.install(TARGET_BASE, &super::source::encode_base(rows));
}

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

/// The idempotency key a welcome carries to the notification service, which sends one
/// welcome per key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WelcomeKey {
    /// The handled message's id, where an inbox stores the welcome with it; none
    /// otherwise (a handler has no other id to give).
    #[default]
    Message,
    /// `welcome/<customer>`: one welcome per customer, whatever is redelivered.
    Customer,
}

/// How the target applies changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetConfig {
    /// Which images it takes.
    pub rule: ApplyRule,
    /// Remember processed message ids in the apply's transaction and skip repeats; store
    /// welcomes in the same transaction, keyed for the notification service.
    pub inbox: bool,
    /// With an inbox: entries older than this are deleted by a cleanup job (run
    /// continuously here), so a copy delivered later is applied again; `None` keeps
    /// them for the whole run.
    pub inbox_cleanup_after_ms: Option<u64>,
    /// What triggers a welcome.
    pub effects: EffectTrigger,
    /// The key a welcome carries.
    pub welcome_key: WelcomeKey,
    /// Planted bugs.
    pub bugs: BugSet,
}

impl TargetConfig {
    /// A target that takes images by `rule` and keys welcomes by `welcome_key`, with
    /// no inbox, welcoming on a create message.
    pub fn new(rule: ApplyRule, welcome_key: WelcomeKey) -> TargetConfig {
        TargetConfig {
            rule,
            welcome_key,
            ..TargetConfig::default()
        }
    }
}

/// The per-customer idempotency key of a welcome.
fn customer_key(customer: CustomerId) -> String {
    format!("welcome/{}", customer.0)
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
    /// When the transaction committed (simulated µs), kept only where an inbox cleanup
    /// needs an entry's age.
    #[serde(default, skip_serializing_if = "faultline_sim::omit::none")]
    at_us: Option<u64>,
    /// Welcomes to dispatch (with an inbox only).
    welcomes: Vec<StoredWelcome>,
    /// Keys of stored welcomes the notification service acknowledged.
    dispatched: Vec<String>,
    /// The bootstrap's copy finished (written with its last rows).
    #[serde(default, skip_serializing_if = "faultline_sim::omit::no")]
    bootstrapped: bool,
}

/// A welcome an apply leaves to its handler, to send after the commit (there is no
/// inbox to store it in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterCommitWelcome {
    /// The customer created.
    pub customer: CustomerId,
    /// Its idempotency key, when welcomes are keyed by customer.
    pub key: Option<String>,
}

/// Sends a welcome in the background on `ctx`'s host, with retries: a crash of that
/// host before it lands loses it.
pub fn send_welcome_after_commit(
    ctx: &HostCtx,
    welcomer: &Welcomer,
    customer: CustomerId,
    key: Option<String>,
) {
    let welcomer = welcomer.clone();
    let pending = ctx.window(windows::AFTER_COMMIT_BEFORE_EFFECT);
    tokio::task::spawn_local(async move {
        let _pending = pending;
        welcomer.welcome(customer, key).await;
    });
}

/// What an apply did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A bootstrap's copy finished.
    bootstrapped: bool,
    rows: Rows,
    /// The writer's wall-clock stamp of each row, where images carried one.
    stamps: BTreeMap<EntityKey, WallTime>,
    /// Applied message ids and when they were applied.
    inbox: BTreeMap<String, SimTime>,
    /// Stored welcomes not yet acknowledged, by key.
    undispatched: BTreeMap<String, CustomerId>,
    welcomer: Welcomer,
    recorder: Recorder,
    config: TargetConfig,
}

/// A handle to the running target. Clones share it; it dies with its host.
#[derive(Clone)]
pub struct Target {
    state: Rc<RefCell<State>>,
    /// One local transaction at a time, from its checks to its commit (a store with
    /// serialisable transactions): concurrent applies of one key, or of one message
    /// delivered twice, cannot both pass the version or inbox check.
    writer: Rc<tokio::sync::Mutex<()>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Replayed {
    bootstrapped: bool,
    rows: Rows,
    stamps: BTreeMap<EntityKey, WallTime>,
    inbox: BTreeMap<String, SimTime>,
    undispatched: BTreeMap<String, CustomerId>,
}

impl Replayed {
    /// Before any record: the base rows.
    fn base(rows: Rows) -> Replayed {
        Replayed {
            bootstrapped: false,
            rows,
            stamps: BTreeMap::new(),
            inbox: BTreeMap::new(),
            undispatched: BTreeMap::new(),
        }
    }
}

impl Replay for Replayed {
    fn apply(&mut self, record: faultline_sim::LogRecord) {
        let tx: TargetTx =
            serde_json::from_slice(&record.payload).expect("target log records are written by this module");
        for image in tx.rows {
            if let Some(at) = image.written_at {
                self.stamps.insert(image.key, at);
            }
            self.rows.insert(
                image.key,
                RowState {
                    version: image.version,
                    data: image.data,
                },
            );
        }
        let at = SimTime::from_micros(tx.at_us.unwrap_or(0));
        self.inbox.extend(tx.message.map(|id| (id, at)));
        self.undispatched
            .extend(tx.welcomes.into_iter().map(|w| (w.key, w.customer)));
        for key in tx.dispatched {
            self.undispatched.remove(&key);
        }
        self.bootstrapped |= tx.bootstrapped;
    }
}

impl Target {
    /// Opens the target on this host's disk: its base rows, then its log replayed.
    pub async fn recover(ctx: &HostCtx, config: TargetConfig, recorder: Recorder) -> Target {
        let initial = || Replayed::base(super::source::read_base(ctx.disk(), TARGET_BASE));
        let (log, recovered) = LogFile::open_durably_replaying(ctx.disk(), TARGET_LOG, initial).await;
        let Replayed {
            bootstrapped,
            rows,
            stamps,
            inbox,
            undispatched,
        } = recovered.state;
        if ctx.incarnation() > 0 {
            // Readers now see the recovered state, whatever they saw before the crash.
            let event = ctx.record("target-recovered", format!("rows={}", rows.len()));
            recorder.target_recovered(ctx.now(), &rows, event);
        }
        let target = Target {
            state: Rc::new(RefCell::new(State {
                ctx: ctx.clone(),
                log,
                bootstrapped,
                rows,
                stamps,
                inbox,
                undispatched: undispatched.clone(),
                welcomer: if config.bugs.has(Bug::WelcomeKeyPerAttempt) {
                    Welcomer::new(ctx, RPC_TIMEOUT).with_key_per_attempt()
                } else {
                    Welcomer::new(ctx, RPC_TIMEOUT)
                },
                recorder,
                config,
            })),
            writer: Rc::default(),
        };
        if config.bugs.has(Bug::TargetExposesBeforeSync) {
            let log = target.state.borrow().log.clone();
            tokio::task::spawn_local(async move {
                loop {
                    faultline_sim::timer::sleep(LAZY_SYNC_PERIOD).await;
                    if log.sync().await.is_err() {
                        log.discard_unsynced();
                    }
                }
            });
        }
        // Welcomes stored before a crash and never acknowledged go out again (the key
        // makes a repeat harmless).
        for (key, customer) in undispatched {
            target.dispatch(customer, key);
        }
        target
    }

    /// The coverage window from a committed change to its acknowledged welcome.
    fn effect_pending(&self) -> faultline_sim::WindowGuard {
        self.state
            .borrow()
            .ctx
            .window(windows::AFTER_COMMIT_BEFORE_EFFECT)
    }

    /// Sends a stored welcome in the background; records its acknowledgement.
    fn dispatch(&self, customer: CustomerId, key: String) {
        let target = self.clone();
        let welcomer = self.state.borrow().welcomer.clone();
        let pending = self.effect_pending();
        tokio::task::spawn_local(async move {
            let _pending = pending;
            if welcomer.welcome(customer, Some(key.clone())).await {
                target.mark_dispatched(key).await;
            }
        });
    }

    /// Remembers that a stored welcome was acknowledged; if that fails to commit, the
    /// welcome goes out again after a restart, and its key absorbs it.
    async fn mark_dispatched(&self, key: String) {
        let _writing = self.writer.lock().await;
        let tx = TargetTx {
            dispatched: vec![key.clone()],
            ..TargetTx::default()
        };
        if self.write(&tx).await.is_ok() {
            self.state.borrow_mut().undispatched.remove(&key);
        }
    }

    /// Sends a welcome not stored with the apply in the background, with retries: a
    /// crash before it lands loses it.
    fn welcome_after_commit(&self, customer: CustomerId, key: Option<String>) {
        let (ctx, welcomer) = {
            let state = self.state.borrow();
            (state.ctx.clone(), state.welcomer.clone())
        };
        send_welcome_after_commit(&ctx, &welcomer, customer, key);
    }

    /// Whether the inbox holds message `id` (it was applied, durably, and its entry is
    /// not cleaned up yet).
    pub fn inbox_contains(&self, id: &str) -> bool {
        self.state.borrow().inbox_holds(id)
    }

    /// Records that a copy of an applied message was dropped before its apply.
    pub fn note_duplicate(&self, what: &str) {
        self.state.borrow().ctx.record(INBOX_DUPLICATE, what.to_string());
    }

    /// Writes rows a bootstrap copies, in one local transaction, only where the target
    /// holds nothing for the key (`INSERT … ON CONFLICT DO NOTHING`: what the live
    /// integration already wrote or deleted stays) and without a handler (no welcomes:
    /// these customers are not new); `last` marks the copy finished in the same
    /// transaction.
    pub async fn load(&self, images: &[RowImage], last: bool) -> Result<usize, DiskError> {
        let _writing = self.writer.lock().await;
        let rows: Vec<RowImage> = {
            let state = self.state.borrow();
            images
                .iter()
                .filter(|image| !state.rows.contains_key(&image.key))
                .cloned()
                .collect()
        };
        let tx = TargetTx {
            rows,
            bootstrapped: last,
            ..TargetTx::default()
        };
        self.write(&tx).await?;
        Ok(tx.rows.len())
    }

    /// Applies a connector's snapshot rows (Debezium's `op=r` events) by the apply rule,
    /// in one local transaction, without a handler: reading a row is not creating it.
    pub async fn apply_snapshot(&self, images: &[RowImage]) -> Result<usize, DiskError> {
        let _writing = self.writer.lock().await;
        let rows = self.state.borrow().accept(images);
        if rows.is_empty() {
            return Ok(0);
        }
        let tx = TargetTx {
            rows,
            ..TargetTx::default()
        };
        self.write(&tx).await?;
        Ok(tx.rows.len())
    }

    /// Whether a bootstrap's copy finished (durably).
    pub fn is_bootstrapped(&self) -> bool {
        self.state.borrow().bootstrapped
    }

    /// Reports a bootstrap's copy as pending work until it is done. The probe holds
    /// the target weakly: a dead life's target (its clients' connections among it)
    /// must go with its process.
    pub fn report_bootstrap_progress(&self) {
        let state = Rc::downgrade(&self.state);
        self.state.borrow().ctx.report_progress("initial-copy", move || {
            let state = state.upgrade()?;
            let done = state.borrow().bootstrapped;
            (!done).then(|| "the initial copy is not done".to_string())
        });
    }

    /// Every row the target holds now (live or tombstoned).
    pub fn rows(&self) -> Rows {
        self.state.borrow().rows.clone()
    }

    /// Applies `images` in one local transaction; `message` is the id the inbox keys on.
    /// Welcomes not stored with the apply go out from this host after the commit.
    pub async fn apply(&self, images: &[RowImage], message: Option<&str>) -> Result<Applied, DiskError> {
        let (applied, welcomes) = self.apply_leaving_welcomes(images, message).await?;
        for welcome in welcomes {
            self.welcome_after_commit(welcome.customer, welcome.key);
        }
        Ok(applied)
    }

    /// Applies as [`Target::apply`] does, for a handler on another host (a second
    /// consumer instance using this database over the network): the welcomes not stored
    /// with the apply are answered, for that handler to send after the commit.
    pub async fn apply_leaving_welcomes(
        &self,
        images: &[RowImage],
        message: Option<&str>,
    ) -> Result<(Applied, Vec<AfterCommitWelcome>), DiskError> {
        let _writing = self.writer.lock().await;
        let bugs = self.state.borrow().config.bugs;
        let inbox = self.state.borrow().config.inbox;
        match message {
            Some(id) if inbox && bugs.has(Bug::InboxSeparateTx) => {
                if self.state.borrow().inbox_holds(id) {
                    self.note_duplicate(id);
                    return Ok((Applied::Duplicate, Vec::new()));
                }
                // Planted: the inbox entry commits on its own, before the apply, which
                // commits as a second transaction.
                self.write(&TargetTx {
                    message: Some(id.to_string()),
                    ..TargetTx::default()
                })
                .await?;
                self.apply_locked(images, None).await
            }
            _ if bugs.has(Bug::EffectBeforeCommit) => {
                // Planted: the handler sends the welcome itself, before the commit that
                // records the apply; a commit that then fails, or a crash before it,
                // makes the message come again and welcome again.
                let (created, welcomer) = {
                    let state = self.state.borrow();
                    (state.created(&state.accept(images)), state.welcomer.clone())
                };
                for customer in created {
                    welcomer.welcome(customer, None).await;
                }
                self.apply_locked(images, message).await
            }
            _ if bugs.has(Bug::TargetAppliesRowsSeparately) => {
                // Planted: each row in its own local transaction, the last one carrying
                // the inbox entry.
                let Some((last, rows)) = images.split_last() else {
                    return self.apply_locked(images, message).await;
                };
                let mut welcomes = Vec::new();
                for row in rows {
                    welcomes.extend(self.apply_locked(std::slice::from_ref(row), None).await?.1);
                }
                let (applied, last_welcomes) = self.apply_locked(std::slice::from_ref(last), message).await?;
                welcomes.extend(last_welcomes);
                Ok((applied, welcomes))
            }
            _ => self.apply_locked(images, message).await,
        }
    }

    /// The apply proper (the caller holds the writer): one local transaction holding
    /// the rows and the inbox entry (and, with an inbox, the welcomes to dispatch); then
    /// the stored welcomes go out, and the others are answered for the handler to send.
    async fn apply_locked(
        &self,
        images: &[RowImage],
        message: Option<&str>,
    ) -> Result<(Applied, Vec<AfterCommitWelcome>), DiskError> {
        let (tx, created, skipped) = {
            let state = self.state.borrow();
            let bugs = state.config.bugs;
            let message = message.filter(|_| state.config.inbox).map(str::to_string);
            if let Some(id) = message.as_ref().filter(|m| state.inbox_holds(m)) {
                state.ctx.record(INBOX_DUPLICATE, id.clone());
                return Ok((Applied::Duplicate, Vec::new()));
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
                return Ok((Applied::Rows { applied: 0, skipped }, Vec::new()));
            }
            // The planted effect-before-commit bug sent these already.
            let created = if bugs.has(Bug::EffectBeforeCommit) {
                Vec::new()
            } else {
                state.created(&accepted)
            };
            let welcome_key = state.config.welcome_key;
            let welcomes: Vec<StoredWelcome> = match &message {
                Some(id) => created
                    .iter()
                    .map(|c| StoredWelcome {
                        customer: *c,
                        key: match welcome_key {
                            WelcomeKey::Message => format!("{id}/welcome/{}", c.0),
                            WelcomeKey::Customer => customer_key(*c),
                        },
                    })
                    .collect(),
                None => Vec::new(),
            };
            let at_us = (message.is_some() && state.config.inbox_cleanup_after_ms.is_some())
                .then(|| state.ctx.now().as_micros());
            let tx = TargetTx {
                rows: accepted,
                message,
                at_us,
                welcomes,
                dispatched: Vec::new(),
                bootstrapped: false,
            };
            (tx, created, skipped)
        };
        self.write(&tx).await?;
        let mut after_commit = Vec::new();
        if tx.message.is_some() {
            for w in tx.welcomes {
                self.dispatch(w.customer, w.key);
            }
        } else {
            let keyed = self.state.borrow().config.welcome_key == WelcomeKey::Customer;
            after_commit.extend(created.into_iter().map(|customer| AfterCommitWelcome {
                customer,
                key: keyed.then(|| customer_key(customer)),
            }));
        }
        let applied = Applied::Rows {
            applied: tx.rows.len(),
            skipped,
        };
        Ok((applied, after_commit))
    }

    /// Commits one local transaction (the caller holds the writer): its record
    /// written and synced, then its rows visible to readers. After a failed fsync the
    /// record is still readable but will never be durable, so it is cut off.
    async fn write(&self, tx: &TargetTx) -> Result<(), DiskError> {
        let (log, exposes_early) = {
            let state = self.state.borrow();
            (
                state.log.clone(),
                state.config.bugs.has(Bug::TargetExposesBeforeSync),
            )
        };
        log.append(&serde_json::to_vec(tx).expect("target txs serialise"))
            .await?;
        let _unsynced = self.state.borrow().ctx.window(windows::APPLY_NOT_SYNCED);
        if exposes_early {
            // Planted: acknowledged and shown from the page cache; a background flush
            // makes it durable later, and a power loss before that takes back what
            // readers saw.
            self.state.borrow_mut().remember(tx);
            return Ok(());
        }
        if let Err(e) = log.sync().await {
            log.discard_unsynced();
            return Err(e);
        }
        self.state.borrow_mut().remember(tx);
        Ok(())
    }
}

impl State {
    /// Whether message `id` is in the inbox and not yet old enough to be cleaned up.
    fn inbox_holds(&self, id: &str) -> bool {
        self.inbox.get(id).is_some_and(|at| {
            self.config
                .inbox_cleanup_after_ms
                .is_none_or(|after| self.ctx.now().saturating_since(*at) < Duration::from_millis(after))
        })
    }

    /// The images this apply takes: all of them, or with the version check only those
    /// newer than what is held.
    /// A delete by key alone ([`Version::ANY`]: a tombstone) is a `DELETE` by primary
    /// key: it removes the live row at whatever version it holds, whatever the rule,
    /// and does nothing when no row is live.
    fn accept(&self, images: &[RowImage]) -> Vec<RowImage> {
        images
            .iter()
            .filter_map(|image| {
                let held = self.rows.get(&image.key);
                if image.version == Version::ANY {
                    return held
                        .filter(|held| held.data.is_some())
                        .map(|held| RowImage::new(image.key, held.version, None));
                }
                let newer = match self.config.rule {
                    ApplyRule::Blind => true,
                    ApplyRule::NewerVersion => held.is_none_or(|held| held.version < image.version),
                    ApplyRule::LaterWallClock => match (self.stamps.get(&image.key), image.written_at) {
                        (Some(held), Some(incoming)) => incoming > *held,
                        _ => true,
                    },
                };
                newer.then(|| image.clone())
            })
            .collect()
    }

    /// Takes a committed transaction into memory: readers see its rows from now on.
    fn remember(&mut self, tx: &TargetTx) {
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
        let at = tx.at_us.map_or_else(|| self.ctx.now(), SimTime::from_micros);
        self.inbox.extend(tx.message.clone().map(|id| (id, at)));
        self.bootstrapped |= tx.bootstrapped;
        self.undispatched
            .extend(tx.welcomes.iter().map(|w| (w.key.clone(), w.customer)));
        self.expose(&tx.rows);
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
