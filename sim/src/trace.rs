//! The run's trace: every observable step, in order, with a running fingerprint.
//!
//! The world appends an event for each send, delivery, drop, duplicate, sync, crash,
//! restart and fault switch; components append their own (commits, applies). The
//! running FNV-1a hash over every event is the run's fingerprint: two runs with the same
//! hash took the same steps. FNV with its fixed offset basis is used precisely because
//! it has no per-process key (unlike std's `RandomState`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use crate::time::SimTime;

/// Position of an event in its run's trace; evidence in violations points here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EventId(pub u64);

/// One observable step of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    /// Position in the trace, from 0.
    pub id: EventId,
    /// Simulated time at which it happened.
    #[serde(rename = "at_us")]
    pub at: SimTime,
    /// The host it happened on (`world` for the world's own actions).
    pub host: Arc<str>,
    /// What happened: one of [`kind`]'s names, or a component's own.
    pub kind: &'static str,
    /// Free-form detail, stable across runs (it is hashed).
    pub detail: String,
}

/// Names of the events the world itself records.
pub mod kind {
    /// An RPC request left its client.
    pub const SEND: &str = "send";
    /// An RPC request reached its server's handler.
    pub const DELIVER: &str = "deliver";
    /// A request was lost on purpose (message-fault window).
    pub const DROP: &str = "drop";
    /// A request was sent a second time on purpose.
    pub const DUPLICATE: &str = "duplicate";
    /// The wire held a request or a response back on purpose.
    pub const DELAY: &str = "delay";
    /// A request reached its server after its caller's deadline.
    pub const LATE_ARRIVAL: &str = "late-arrival";
    /// A handler ran but its response was lost on purpose.
    pub const LOST_RESPONSE: &str = "lost-response";
    /// A response reached its caller.
    pub const RESPONSE: &str = "response";
    /// A call gave up waiting (connect, request or response).
    pub const TIMEOUT: &str = "timeout";
    /// A call failed on a broken connection.
    pub const CALL_ERROR: &str = "call-error";
    /// Unsynced data of a file became durable.
    pub const SYNC: &str = "sync";
    /// A sync failed; the unsynced data is gone.
    pub const SYNC_ERROR: &str = "sync-error";
    /// A write failed (disk-fault window).
    pub const WRITE_ERROR: &str = "write-error";
    /// A write failed because the disk is full.
    pub const DISK_FULL: &str = "disk-full";
    /// A crash kept a torn prefix of the unsynced tail.
    pub const TORN: &str = "torn";
    /// A crash dropped unsynced data.
    pub const UNSYNCED_LOST: &str = "unsynced-lost";
    /// A power loss zeroed data whose fsync had failed (readable until then).
    pub const SYNC_ERROR_LOST: &str = "sync-error-lost";
    /// A power loss undid a file name never made durable by a directory sync.
    pub const NAME_UNDONE: &str = "name-undone";
    /// A host's process was asked to stop (its shutdown hooks run).
    pub const STOP: &str = "stop";
    /// A host's process was killed.
    pub const CRASH: &str = "crash";
    /// A host's process started again.
    pub const RESTART: &str = "restart";
    /// A fault from the plan took effect.
    pub const FAULT: &str = "fault";
}

/// FNV-1a, 64 bit: stable across processes, machines and versions.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET, bytes)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a64_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The run's fingerprint, printed as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceHash(pub u64);

impl std::fmt::Display for TraceHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for TraceHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The append-only log of a run's events.
#[derive(Debug)]
pub struct TraceLog {
    events: Vec<TraceEvent>,
    keep_events: bool,
    count: u64,
    /// The run's budget: recording more events than this stops the run.
    events_max: u64,
    hash: u64,
    counts_by_kind: BTreeMap<&'static str, u64>,
    coverage: crate::coverage::Coverage,
}

impl TraceLog {
    fn new(keep_events: bool) -> Self {
        TraceLog {
            events: Vec::new(),
            keep_events,
            count: 0,
            events_max: u64::MAX,
            hash: FNV_OFFSET,
            counts_by_kind: BTreeMap::new(),
            coverage: crate::coverage::Coverage::default(),
        }
    }

    fn record(&mut self, at: SimTime, host: &Arc<str>, kind: &'static str, detail: String) -> EventId {
        let id = self.begin(at, host, kind);
        self.hash = fnv1a64_extend(self.hash, detail.as_bytes());
        self.end(id, at, host, kind, detail)
    }

    /// As [`TraceLog::record`], formatting `detail` only if events are kept: otherwise
    /// its pieces go straight into the hash, which is the hash of the whole text
    /// (FNV-1a takes bytes one at a time).
    fn record_fmt(
        &mut self,
        at: SimTime,
        host: &Arc<str>,
        kind: &'static str,
        detail: fmt::Arguments<'_>,
    ) -> EventId {
        if self.keep_events {
            return self.record(at, host, kind, detail.to_string());
        }
        let id = self.begin(at, host, kind);
        let mut hashing = FnvWriter(self.hash);
        // Writing into a hash cannot fail; a Display impl that fails would have failed
        // `to_string` too.
        let _ = fmt::Write::write_fmt(&mut hashing, detail);
        self.hash = hashing.0;
        self.end(id, at, host, kind, String::new())
    }

    /// Counts the event and hashes what comes before its detail.
    fn begin(&mut self, at: SimTime, host: &Arc<str>, kind: &'static str) -> EventId {
        let id = EventId(self.count);
        self.count += 1;
        *self.counts_by_kind.entry(kind).or_insert(0) += 1;
        let mut h = fnv1a64_extend(self.hash, &at.as_micros().to_le_bytes());
        h = fnv1a64_extend(h, host.as_bytes());
        h = fnv1a64_extend(h, &[0]);
        h = fnv1a64_extend(h, kind.as_bytes());
        self.hash = fnv1a64_extend(h, &[0]);
        id
    }

    /// Closes the event's hash after its detail and keeps the event if asked to.
    fn end(
        &mut self,
        id: EventId,
        at: SimTime,
        host: &Arc<str>,
        kind: &'static str,
        detail: String,
    ) -> EventId {
        self.hash = fnv1a64_extend(self.hash, &[0xff]);
        if self.keep_events {
            self.events.push(TraceEvent {
                id,
                at,
                host: Arc::clone(host),
                kind,
                detail,
            });
        }
        id
    }
}

/// Extends an FNV-1a hash with whatever is written into it.
struct FnvWriter(u64);

impl fmt::Write for FnvWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = fnv1a64_extend(self.0, s.as_bytes());
        Ok(())
    }
}

/// A shared handle to the run's trace. Cheap to clone; lives on the run's one thread.
#[derive(Clone, Debug)]
pub struct Trace(Rc<RefCell<TraceLog>>);

impl Trace {
    /// A new trace. With `keep_events` false only the hash and count are kept, which is
    /// what large sweeps need.
    pub fn new(keep_events: bool) -> Self {
        Trace(Rc::new(RefCell::new(TraceLog::new(keep_events))))
    }

    /// Appends one event and returns its id.
    pub fn record(
        &self,
        at: SimTime,
        host: &Arc<str>,
        kind: &'static str,
        detail: impl Into<String>,
    ) -> EventId {
        let mut log = self.within_budget();
        log.record(at, host, kind, detail.into())
    }

    /// Records an event whose detail is formatted only if events are kept (`format_args!`
    /// at the call site): the same event, and the same hash, as [`Trace::record`] with
    /// the formatted text, without building the text when only the hash is kept.
    pub fn record_fmt(
        &self,
        at: SimTime,
        host: &Arc<str>,
        kind: &'static str,
        detail: fmt::Arguments<'_>,
    ) -> EventId {
        let mut log = self.within_budget();
        log.record_fmt(at, host, kind, detail)
    }

    /// The log, after checking the run's event budget.
    fn within_budget(&self) -> std::cell::RefMut<'_, TraceLog> {
        let mut log = self.0.borrow_mut();
        if log.count >= log.events_max {
            // Once: the unwind and whatever records during it must not panic again.
            log.events_max = u64::MAX;
            let limit = log.count;
            drop(log);
            crate::panic::panic_on_budget("trace events", limit);
            log = self.0.borrow_mut();
        }
        log
    }

    /// The run's fault coverage counters (kept beside the trace, not hashed).
    pub fn coverage(&self) -> crate::coverage::Coverage {
        self.0.borrow().coverage.clone()
    }

    /// How many events of each kind were recorded (kept or not).
    pub fn counts_by_kind(&self) -> BTreeMap<String, u64> {
        self.0
            .borrow()
            .counts_by_kind
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect()
    }

    /// Sets the run's budget: the event that would be number `events_max + 1` stops the
    /// run instead (see [`crate::panic`]). A flood of messages, retries or disk errors
    /// records events, so this bounds a runaway in work, not in wall time.
    pub fn set_events_max(&self, events_max: u64) {
        self.0.borrow_mut().events_max = events_max;
    }

    /// The fingerprint of everything recorded so far.
    pub fn hash(&self) -> TraceHash {
        TraceHash(self.0.borrow().hash)
    }

    /// How many events were recorded.
    pub fn len(&self) -> u64 {
        self.0.borrow().count
    }

    /// How many events of `kind` were recorded (kept even when events are not).
    pub fn count_of(&self, kind: &str) -> u64 {
        self.0.borrow().counts_by_kind.get(kind).copied().unwrap_or(0)
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the kept events (empty when events are not kept).
    pub fn events(&self) -> Vec<TraceEvent> {
        self.0.borrow().events.clone()
    }

    /// Takes the kept events out, leaving the hash and count.
    pub fn take_events(&self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.0.borrow_mut().events)
    }
}

/// Writes events as JSON lines: one object per event, in trace order.
pub fn write_jsonl<W: Write>(events: &[TraceEvent], mut out: W) -> io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn a_detail_hashed_as_it_is_written_hashes_as_the_formatted_text() {
        for keep in [false, true] {
            let (formatted, streamed) = (Trace::new(keep), Trace::new(keep));
            for (n, who) in [(7u64, "broker-1"), (1 << 33, "")] {
                let at = SimTime::from_millis(n);
                formatted.record(at, &host("a"), "send", format!("call={n} to={who} x"));
                streamed.record_fmt(at, &host("a"), "send", format_args!("call={n} to={who} x"));
            }
            assert_eq!(formatted.hash(), streamed.hash(), "keep_events={keep}");
            assert_eq!(formatted.len(), streamed.len());
            assert_eq!(formatted.take_events(), streamed.take_events());
        }
    }

    #[test]
    fn hash_depends_on_every_field_and_on_order() {
        let base = |f: &dyn Fn(&Trace)| {
            let t = Trace::new(false);
            f(&t);
            t.hash()
        };
        let a = base(&|t| {
            t.record(SimTime::from_millis(1), &host("a"), "x", "1");
            t.record(SimTime::from_millis(2), &host("b"), "y", "2");
        });
        let swapped = base(&|t| {
            t.record(SimTime::from_millis(2), &host("b"), "y", "2");
            t.record(SimTime::from_millis(1), &host("a"), "x", "1");
        });
        let other_time = base(&|t| {
            t.record(SimTime::from_millis(1), &host("a"), "x", "1");
            t.record(SimTime::from_millis(3), &host("b"), "y", "2");
        });
        let other_detail = base(&|t| {
            t.record(SimTime::from_millis(1), &host("a"), "x", "1");
            t.record(SimTime::from_millis(2), &host("b"), "y", "3");
        });
        assert_ne!(a, swapped);
        assert_ne!(a, other_time);
        assert_ne!(a, other_detail);
    }

    #[test]
    fn field_boundaries_are_part_of_the_hash() {
        let t1 = Trace::new(false);
        t1.record(SimTime::ZERO, &host("ab"), "c", "");
        let t2 = Trace::new(false);
        t2.record(SimTime::ZERO, &host("a"), "bc", "");
        assert_ne!(t1.hash(), t2.hash());
    }

    #[test]
    fn keeping_events_does_not_change_the_hash() {
        let kept = Trace::new(true);
        let dropped = Trace::new(false);
        for t in [&kept, &dropped] {
            t.record(SimTime::from_millis(4), &host("a"), "x", "detail");
        }
        assert_eq!(kept.hash(), dropped.hash());
        assert_eq!(kept.events().len(), 1);
        assert!(dropped.events().is_empty());
        assert_eq!(dropped.len(), 1);
    }

    #[test]
    fn jsonl_has_one_object_per_line() {
        let t = Trace::new(true);
        t.record(SimTime::from_millis(1), &host("a"), "send", "call=1");
        t.record(SimTime::from_millis(2), &host("b"), "deliver", "call=1");
        let mut out = Vec::new();
        write_jsonl(&t.events(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"{"id":0,"at_us":1000,"host":"a","kind":"send","detail":"call=1"}"#
        );
    }
}
