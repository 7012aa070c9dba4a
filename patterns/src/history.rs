//! The history: ground truth recorded outside the faulty world.
//!
//! Systems report into a [`Recorder`] at the moment something becomes true: the source
//! when a transaction commits and when an action ends, the target when it exposes rows
//! and when it sends a side effect. The recorder is not part of the world (no fault
//! touches it), so the history stays truthful whatever the world does. After the run the
//! runner adds both final states, read back from the disks; the checkers in
//! `faultline-scenarios` are pure functions of the result.
//!
//! The recorder also keeps the set of keys on which source and target currently
//! disagree, so that the runner can ask "has the integration caught up?" in O(1).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use faultline_sim::{EventId, SimTime};
use serde::{Deserialize, Serialize};

use crate::domain::{ActionId, CustomerId, EntityKey, Fields, RowImage, TxId, Version};

/// A row's current state in a store: its version and fields, or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowState {
    /// The version the store holds.
    pub version: Version,
    /// The fields, or `None` for a tombstone. Shared: a store's copy of a row (a kept
    /// replay, a snapshot) copies no text.
    pub data: Option<Arc<Fields>>,
}

/// A whole store: every key it knows, live or tombstoned.
pub type Rows = BTreeMap<EntityKey, RowState>;

/// A row version as exposed somewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowVersion {
    /// Which row.
    pub key: EntityKey,
    /// Which version.
    pub version: Version,
    /// Whether that version is a delete.
    pub deleted: bool,
}

impl From<&RowImage> for RowVersion {
    fn from(r: &RowImage) -> Self {
        RowVersion {
            key: r.key,
            version: r.version,
            deleted: r.is_delete(),
        }
    }
}

/// A committed source transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    /// The transaction.
    pub tx: TxId,
    /// The action that made it.
    pub action: ActionId,
    /// When it committed.
    pub at: SimTime,
    /// Every row image it wrote.
    pub rows: Vec<RowImage>,
    /// Its trace event.
    pub event: EventId,
}

/// Why an action did not commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "cause", content = "detail")]
pub enum Failure {
    /// The business rules said no (e.g. rename of an unknown customer). Not a fault.
    Rejected(String),
    /// The source was down when the action was due.
    SourceDown,
    /// The source's own storage failed.
    Storage(String),
    /// The integration made the action fail (e.g. a publish inside the operation).
    Integration(String),
}

/// How an action ended at the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeRecord {
    /// Which action.
    pub action: ActionId,
    /// When it ended.
    pub at: SimTime,
    /// The transaction it committed, or why it failed.
    pub result: Result<TxId, Failure>,
}

/// Rows the target exposed to its readers at one instant: one local transaction, or a
/// recovery that put back an older (or newer) state than readers last saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyRecord {
    /// When readers could first see it.
    pub at: SimTime,
    /// The row versions it made visible. After a recovery, every key whose state
    /// changed; a key the recovered state lacks shows as version 0, deleted.
    pub rows: Vec<RowVersion>,
    /// Its trace event.
    pub event: EventId,
    /// Whether this is a recovery rather than an apply.
    pub recovery: bool,
}

/// A side effect the target performed (a welcome message to a new customer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectRecord {
    /// When.
    pub at: SimTime,
    /// For whom.
    pub customer: CustomerId,
    /// Its trace event.
    pub event: EventId,
}

/// A Kafka record seen by a client: one a producer had acknowledged (written), or one a
/// consumer fetched (read). What the clients saw on the wire, not what the brokers say
/// about their logs: the checkers name Kafka-level anomalies from these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaRecord {
    /// When the client saw it.
    pub at: SimTime,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Its offset, as the broker answered.
    pub offset: u64,
    /// The key it was partitioned by.
    pub key: String,
    /// Its [`record_digest`]: the same record is the same digest.
    pub digest: u64,
}

/// FNV-1a of a record's key and payload: two tombstones (no payload) of different keys
/// are different records.
pub fn record_digest(key: &str, payload: &str) -> u64 {
    let mut bytes = Vec::with_capacity(key.len() + 1 + payload.len());
    bytes.extend_from_slice(key.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(payload.as_bytes());
    faultline_sim::trace::fnv1a64(&bytes)
}

/// What consumers fetched: each fetch, by the reader that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaRead {
    /// Who read: one consumer task's ownership of one partition (the instance's
    /// process life, member and generation); its reads are one sequence of positions.
    pub reader: String,
    /// The committed offset the reader started from: its first fetch should begin
    /// there.
    pub start: u64,
    /// The consumer went back on purpose before this fetch (it resumes at a record
    /// whose handling failed): a lower offset than its last is no anomaly.
    pub rewound: bool,
    /// The records fetched, in offset order.
    pub records: Vec<KafkaRecord>,
}

/// Everything that happened that the checkers need.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Actions the workload scheduled.
    pub actions_scheduled: u64,
    /// Source commits, in commit order.
    pub commits: Vec<CommitRecord>,
    /// Action outcomes, in the order they ended.
    pub outcomes: Vec<OutcomeRecord>,
    /// Target applies, in order.
    pub applies: Vec<ApplyRecord>,
    /// Target side effects, in order.
    pub effects: Vec<EffectRecord>,
    /// The rows the source started with (created before the run: their customers were
    /// welcomed then).
    pub initial: Rows,
    /// The rows the target started with: the source's, or none when the integration
    /// had to fill an empty target (a bootstrap).
    pub target_initial: Rows,
    /// The source's durable state at the end.
    pub final_source: Rows,
    /// The target's durable state at the end.
    pub final_target: Rows,
    /// When the run ended.
    pub end: SimTime,
    /// When the last fault healed.
    pub last_fault_at: SimTime,
    /// When the source's recovery put back a state other than the one its commits had
    /// built (a power loss took committed transactions with it).
    pub source_rollbacks: Vec<SimTime>,
    /// How soon every commit must be visible at the target, if the scenario says.
    pub staleness_bound: Option<std::time::Duration>,
    /// The most log the source's replication slots held back at once, in bytes
    /// (`None` when the source has no slot).
    pub source_log_retained_max: Option<u64>,
    /// Components that stopped on an error they cannot get past (a connector whose
    /// log position is gone), in the order they stopped: loud failures an operator
    /// would be paged for, as opposed to silent loss.
    pub component_failures: Vec<ComponentFailure>,
    /// How many times the applications handed each record to a producer, by topic,
    /// partition and payload digest: a record stored more often than it was sent was
    /// duplicated by Kafka (a retry), not by the application.
    pub kafka_sends: BTreeMap<(String, u32, u64), u64>,
    /// Records producers had acknowledged, with the offsets the brokers gave them.
    pub kafka_writes: Vec<KafkaRecord>,
    /// Consumers' fetches, in the order they returned.
    pub kafka_reads: Vec<KafkaRead>,
    /// The topics configured with `cleanup.policy=compact`: there a record a later one
    /// of the same key superseded may be gone by design.
    pub kafka_compacted_topics: std::collections::BTreeSet<String>,
}

/// A component that stopped on an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentFailure {
    /// When.
    pub at: SimTime,
    /// Which host's component.
    pub host: String,
    /// The error, as the component reports it.
    pub error: String,
}

impl History {
    /// For each commit (by position in [`History::commits`]), whether it is in the
    /// source's final durable state. Positions, not tx ids: after a power loss empties
    /// the log's tail, the source hands out the lost ids again.
    pub fn durable_commits(&self) -> Vec<bool> {
        // Later commits of a key supersede earlier ones, so walk backwards: a commit is
        // durable when, for every row it wrote, the final state holds that version or a
        // newer one written by a durable commit.
        let mut durable = vec![false; self.commits.len()];
        let mut claimed: BTreeMap<EntityKey, Version> = BTreeMap::new();
        for (i, c) in self.commits.iter().enumerate().rev() {
            durable[i] = c.rows.iter().all(|r| {
                let held = self.final_source.get(&r.key).map(|s| s.version);
                match claimed.get(&r.key) {
                    // A later durable commit of this key already accounts for the final
                    // version: this one is durable if it is older.
                    Some(v) => r.version < *v,
                    None => held == Some(r.version),
                }
            });
            if durable[i] {
                for r in &c.rows {
                    claimed.insert(r.key, r.version);
                }
            }
        }
        durable
    }
}

/// Live versions on each side, to know when they agree.
#[derive(Debug, Default)]
struct Agreement {
    source: BTreeMap<EntityKey, Version>,
    target: BTreeMap<EntityKey, Version>,
    differing: BTreeSet<EntityKey>,
    agreed_since: Option<SimTime>,
}

impl Agreement {
    fn update(&mut self, key: EntityKey, at: SimTime) {
        if self.source.get(&key) == self.target.get(&key) {
            self.differing.remove(&key);
        } else {
            self.differing.insert(key);
        }
        self.agreed_since = if self.differing.is_empty() {
            self.agreed_since.or(Some(at))
        } else {
            None
        };
    }

    fn set(side: &mut BTreeMap<EntityKey, Version>, key: EntityKey, live: Option<Version>) {
        match live {
            Some(v) => side.insert(key, v),
            None => side.remove(&key),
        };
    }
}

/// The keys whose live version in `live` (in key order) differs from `side`'s, with the
/// new one (`None`: no longer live), in key order.
fn live_changes(
    side: &BTreeMap<EntityKey, Version>,
    live: impl Iterator<Item = (EntityKey, Version)>,
) -> Vec<(EntityKey, Option<Version>)> {
    let mut changed = Vec::new();
    let mut old = side.iter().map(|(key, version)| (*key, *version)).peekable();
    let mut new = live.peekable();
    loop {
        match (old.peek().copied(), new.peek().copied()) {
            (None, None) => return changed,
            (Some((key, _)), None) => {
                changed.push((key, None));
                old.next();
            }
            (None, Some((key, version))) => {
                changed.push((key, Some(version)));
                new.next();
            }
            (Some((old_key, old_version)), Some((new_key, new_version))) => match old_key.cmp(&new_key) {
                std::cmp::Ordering::Less => {
                    changed.push((old_key, None));
                    old.next();
                }
                std::cmp::Ordering::Greater => {
                    changed.push((new_key, Some(new_version)));
                    new.next();
                }
                std::cmp::Ordering::Equal => {
                    if old_version != new_version {
                        changed.push((new_key, Some(new_version)));
                    }
                    old.next();
                    new.next();
                }
            },
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    history: History,
    agreement: Agreement,
    /// What the target's readers see now, per key, as the exposures said.
    exposed: BTreeMap<EntityKey, RowVersion>,
}

/// The handle systems record through. Clones share one history.
#[derive(Clone, Debug, Default)]
pub struct Recorder(Rc<RefCell<Inner>>);

impl Recorder {
    /// A recorder whose source and target both start with `initial`.
    pub fn new(initial: Rows) -> Self {
        Recorder::starting(initial.clone(), initial)
    }

    /// A recorder whose source starts with `initial` and target with `target_initial`
    /// (empty for a bootstrap).
    pub fn starting(initial: Rows, target_initial: Rows) -> Self {
        let recorder = Recorder::default();
        {
            let mut inner = recorder.0.borrow_mut();
            for (key, row) in &initial {
                if row.data.is_some() {
                    inner.agreement.source.insert(*key, row.version);
                }
            }
            for (key, row) in &target_initial {
                if row.data.is_some() {
                    inner.agreement.target.insert(*key, row.version);
                }
            }
            let agreement = &mut inner.agreement;
            let keys: BTreeSet<EntityKey> = agreement
                .source
                .keys()
                .chain(agreement.target.keys())
                .copied()
                .collect();
            agreement.differing = keys
                .into_iter()
                .filter(|k| agreement.source.get(k) != agreement.target.get(k))
                .collect();
            agreement.agreed_since = agreement.differing.is_empty().then_some(SimTime::ZERO);
            inner.exposed = target_initial
                .iter()
                .map(|(key, row)| {
                    let exposed = RowVersion {
                        key: *key,
                        version: row.version,
                        deleted: row.data.is_none(),
                    };
                    (*key, exposed)
                })
                .collect();
            inner.history.initial = initial;
            inner.history.target_initial = target_initial;
        }
        recorder
    }

    /// The source committed `rows` for `action` as `tx`.
    pub fn commit(&self, tx: TxId, action: ActionId, at: SimTime, rows: &[RowImage], event: EventId) {
        let mut inner = self.0.borrow_mut();
        for r in rows {
            Agreement::set(
                &mut inner.agreement.source,
                r.key,
                (!r.is_delete()).then_some(r.version),
            );
            inner.agreement.update(r.key, at);
        }
        inner.history.commits.push(CommitRecord {
            tx,
            action,
            at,
            rows: rows.to_vec(),
            event,
        });
    }

    /// The source recovered `rows` from its disk (commits may have vanished).
    pub fn source_recovered(&self, at: SimTime, rows: &Rows) {
        if self.replace_side(at, rows, true) {
            self.0.borrow_mut().history.source_rollbacks.push(at);
        }
    }

    /// The target recovered `rows` from its disk: readers now see them, whatever they
    /// saw before. Every key whose state differs from what readers last saw is exposed
    /// again, so a rollback (a power loss taking back what was shown) is in the history.
    pub fn target_recovered(&self, at: SimTime, rows: &Rows, event: EventId) {
        self.replace_side(at, rows, false);
        let mut inner = self.0.borrow_mut();
        // Every key either side knows, in key order, in one walk of both.
        let now = |key: EntityKey, row: Option<&RowState>| {
            row.map_or(
                RowVersion {
                    key,
                    version: Version(0),
                    deleted: true,
                },
                |row| RowVersion {
                    key,
                    version: row.version,
                    deleted: row.data.is_none(),
                },
            )
        };
        let mut changed = Vec::new();
        let mut exposed = inner.exposed.iter().peekable();
        let mut recovered = rows.iter().peekable();
        loop {
            let (shown, row) = match (exposed.peek(), recovered.peek()) {
                (None, None) => break,
                (Some(&(key, shown)), None) => {
                    exposed.next();
                    (Some(shown), now(*key, None))
                }
                (None, Some(&(key, row))) => {
                    recovered.next();
                    (None, now(*key, Some(row)))
                }
                (Some(&(shown_key, shown)), Some(&(key, row))) => match shown_key.cmp(key) {
                    std::cmp::Ordering::Less => {
                        exposed.next();
                        (Some(shown), now(*shown_key, None))
                    }
                    std::cmp::Ordering::Greater => {
                        recovered.next();
                        (None, now(*key, Some(row)))
                    }
                    std::cmp::Ordering::Equal => {
                        exposed.next();
                        recovered.next();
                        (Some(shown), now(*key, Some(row)))
                    }
                },
            };
            if shown != Some(&row) {
                changed.push(row);
            }
        }
        for row in &changed {
            inner.exposed.insert(row.key, *row);
        }
        if !changed.is_empty() {
            inner.history.applies.push(ApplyRecord {
                at,
                rows: changed,
                event,
                recovery: true,
            });
        }
    }

    /// Replaces one side's live versions with `rows`'; says whether they changed.
    ///
    /// Only the keys whose live version differs are touched: a reload usually changes a
    /// few rows of a large table, and walking both sides once (in key order) is linear,
    /// where re-deciding every key's agreement was linear times a map lookup per key.
    /// Deciding an unchanged key again changes nothing, so the outcome is the same.
    fn replace_side(&self, at: SimTime, rows: &Rows, source: bool) -> bool {
        let mut inner = self.0.borrow_mut();
        let agreement = &mut inner.agreement;
        let side = if source {
            &agreement.source
        } else {
            &agreement.target
        };
        let live = rows
            .iter()
            .filter(|(_, row)| row.data.is_some())
            .map(|(key, row)| (*key, row.version));
        let changed = live_changes(side, live);
        if changed.is_empty() {
            return false;
        }
        for (key, version) in changed {
            let side = if source {
                &mut agreement.source
            } else {
                &mut agreement.target
            };
            Agreement::set(side, key, version);
            agreement.update(key, at);
        }
        true
    }

    /// An action ended.
    pub fn outcome(&self, action: ActionId, at: SimTime, result: Result<TxId, Failure>) {
        self.0
            .borrow_mut()
            .history
            .outcomes
            .push(OutcomeRecord { action, at, result });
    }

    /// The target exposed `rows` in one local transaction.
    pub fn apply(&self, at: SimTime, rows: Vec<RowVersion>, event: EventId) {
        let mut inner = self.0.borrow_mut();
        for r in &rows {
            Agreement::set(
                &mut inner.agreement.target,
                r.key,
                (!r.deleted).then_some(r.version),
            );
            inner.agreement.update(r.key, at);
            inner.exposed.insert(r.key, *r);
        }
        inner.history.applies.push(ApplyRecord {
            at,
            rows,
            event,
            recovery: false,
        });
    }

    /// The target sent a side effect for `customer`.
    pub fn effect(&self, customer: CustomerId, at: SimTime, event: EventId) {
        self.0
            .borrow_mut()
            .history
            .effects
            .push(EffectRecord { at, customer, event });
    }

    /// The source's slots hold `bytes` of log back now.
    pub fn source_log_retained(&self, bytes: u64) {
        let history = &mut self.0.borrow_mut().history;
        history.source_log_retained_max = Some(history.source_log_retained_max.unwrap_or(0).max(bytes));
    }

    /// A component on `host` stopped on `error` and will not go on by itself.
    pub fn component_failed(&self, at: SimTime, host: &str, error: String) {
        self.0
            .borrow_mut()
            .history
            .component_failures
            .push(ComponentFailure {
                at,
                host: host.to_string(),
                error,
            });
    }

    /// A record handed to a producer (each `send`, retries not counted).
    pub fn kafka_send(&self, topic: &str, partition: u32, digest: u64) {
        let mut inner = self.0.borrow_mut();
        *inner
            .history
            .kafka_sends
            .entry((topic.to_string(), partition, digest))
            .or_default() += 1;
    }

    /// A producer's acknowledged record.
    pub fn kafka_write(&self, record: KafkaRecord) {
        self.0.borrow_mut().history.kafka_writes.push(record);
    }

    /// A topic's configuration says `cleanup.policy=compact`.
    pub fn kafka_topic_compacted(&self, topic: &str) {
        self.0
            .borrow_mut()
            .history
            .kafka_compacted_topics
            .insert(topic.to_string());
    }

    /// A consumer's fetch.
    pub fn kafka_read(&self, read: KafkaRead) {
        self.0.borrow_mut().history.kafka_reads.push(read);
    }

    /// Sets how many actions the workload scheduled.
    pub fn set_actions_scheduled(&self, count: u64) {
        self.0.borrow_mut().history.actions_scheduled = count;
    }

    /// Whether source and target hold the same live versions now, as the systems report
    /// them, and since when. A hint for the runner's early stop only: the verdicts judge
    /// agreement from the durable states (`faultline_scenarios::agreement`).
    pub fn agreed_since(&self) -> Option<SimTime> {
        self.0.borrow().agreement.agreed_since
    }

    /// Takes the history out, adding the final states and timing.
    pub fn finish(
        &self,
        final_source: Rows,
        final_target: Rows,
        end: SimTime,
        last_fault_at: SimTime,
    ) -> History {
        let mut inner = self.0.borrow_mut();
        let mut history = std::mem::take(&mut inner.history);
        history.final_source = final_source;
        history.final_target = final_target;
        history.end = end;
        history.last_fault_at = last_fault_at;
        history
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerId, Table};
    use proptest::prelude::*;

    fn key(n: u64) -> EntityKey {
        let table = [Table::Customer, Table::Address, Table::Contact][(n % 3) as usize];
        EntityKey {
            table,
            customer: CustomerId(n / 3),
        }
    }

    /// Rows from (key number, version, live) triples.
    fn rows(spec: &[(u64, u64, bool)]) -> Rows {
        spec.iter()
            .map(|&(k, v, live)| {
                let data = live.then(|| Arc::new(Fields::new()));
                (
                    key(k),
                    RowState {
                        version: Version(v),
                        data,
                    },
                )
            })
            .collect()
    }

    /// The agreement as replacing a side used to decide it: every key either side holds
    /// decided again, in key order.
    fn replaced_whole(mut agreement: Agreement, at: SimTime, rows: &Rows) -> Agreement {
        let live: BTreeMap<EntityKey, Version> = rows
            .iter()
            .filter(|(_, row)| row.data.is_some())
            .map(|(key, row)| (*key, row.version))
            .collect();
        let mut touched: BTreeSet<EntityKey> = agreement.source.keys().copied().collect();
        touched.extend(rows.keys().copied());
        agreement.source = live;
        for key in touched {
            agreement.update(key, at);
        }
        agreement
    }

    fn spec() -> impl Strategy<Value = Vec<(u64, u64, bool)>> {
        prop::collection::vec((0u64..24, 1u64..4, any::<bool>()), 0..20)
    }

    proptest! {
        /// Touching only the keys whose live version changed decides agreement exactly
        /// as deciding every key again did.
        #[test]
        fn replacing_a_side_touches_only_what_changed(
            source in spec(),
            target in spec(),
            reloaded in spec(),
            agreed_at in 0u64..5,
        ) {
            let recorder = Recorder::starting(rows(&source), rows(&target));
            {
                let mut inner = recorder.0.borrow_mut();
                // Sides that agree have agreed since some instant (never `None` then).
                if inner.agreement.differing.is_empty() {
                    inner.agreement.agreed_since = Some(SimTime::from_millis(agreed_at));
                }
            }
            let at = SimTime::from_millis(7);
            let reloaded = rows(&reloaded);
            let expected = {
                let inner = recorder.0.borrow();
                let before = Agreement {
                    source: inner.agreement.source.clone(),
                    target: inner.agreement.target.clone(),
                    differing: inner.agreement.differing.clone(),
                    agreed_since: inner.agreement.agreed_since,
                };
                replaced_whole(before, at, &reloaded)
            };
            let before_source = recorder.0.borrow().agreement.source.clone();
            let changed = recorder.replace_side(at, &reloaded, true);
            let inner = recorder.0.borrow();
            prop_assert_eq!(&inner.agreement.source, &expected.source);
            prop_assert_eq!(&inner.agreement.differing, &expected.differing);
            prop_assert_eq!(inner.agreement.agreed_since, expected.agreed_since);
            prop_assert_eq!(changed, before_source != expected.source);
        }

        /// A target's recovery exposes again exactly the keys whose state differs from
        /// what readers last saw, as comparing every key either side knows did.
        #[test]
        fn a_recovery_exposes_again_what_readers_saw_differently(
            shown in prop::collection::vec((0u64..24, 1u64..4, any::<bool>()), 0..20),
            recovered in spec(),
        ) {
            let recorder = Recorder::new(Rows::new());
            let exposures: Vec<RowVersion> = shown
                .iter()
                .map(|&(k, v, deleted)| RowVersion { key: key(k), version: Version(v), deleted })
                .collect();
            recorder.apply(SimTime::from_millis(1), exposures, EventId(1));
            let recovered = rows(&recovered);
            let expected = {
                let inner = recorder.0.borrow();
                let mut exposed = inner.exposed.clone();
                let mut keys: BTreeSet<EntityKey> = exposed.keys().copied().collect();
                keys.extend(recovered.keys().copied());
                let mut changed = Vec::new();
                for key in keys {
                    let now = recovered.get(&key).map_or(
                        RowVersion { key, version: Version(0), deleted: true },
                        |row| RowVersion { key, version: row.version, deleted: row.data.is_none() },
                    );
                    if exposed.get(&key) != Some(&now) {
                        changed.push(now);
                        exposed.insert(key, now);
                    }
                }
                (exposed, changed)
            };
            let applies_before = recorder.0.borrow().history.applies.len();
            recorder.target_recovered(SimTime::from_millis(2), &recovered, EventId(2));
            let inner = recorder.0.borrow();
            prop_assert_eq!(&inner.exposed, &expected.0);
            let recorded: Vec<RowVersion> = inner.history.applies[applies_before..]
                .iter()
                .flat_map(|a| a.rows.clone())
                .collect();
            prop_assert_eq!(recorded, expected.1);
        }
    }
}
