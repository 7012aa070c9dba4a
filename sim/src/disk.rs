//! Simulated durable storage, one disk per host, that outlives the host's crashes.
//!
//! A file is a byte vector with a durable prefix. Writes land in the volatile part (the
//! OS page cache) until a sync makes them durable. What a failure keeps:
//!
//! - a **process crash** keeps everything written: the data was already handed to the
//!   operating system, as with `kill -9`;
//! - a **power loss** drops the unsynced tail, or with `torn_write_probability` keeps a
//!   strict prefix of it (a torn write) that readers must detect;
//! - a **failed sync** discards the unsynced tail at once and reports it, the way Linux
//!   marks dirty pages clean after an fsync error: retrying the sync cannot save them.
//!
//! Fault windows from the plan switch write errors, sync errors and disk-full on and off.
//! This is faultline's own disk rather than turmoil's `unstable-fs`: that one reports
//! ENOSPC and EIO only as `ErrorKind::Other` text, cannot model the power-loss versus
//! process-kill difference, and scans every pending write on each operation.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::rng::SimRng;
use crate::time::SimTime;
use crate::trace::{kind, Trace};

mod log;
pub use log::{LogFile, LogPos, LogRecord, Recovery};

/// How a disk behaves when nothing is switched on by the plan.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// Chance that a power loss keeps a strict prefix of a file's unsynced tail instead
    /// of dropping it whole.
    pub torn_write_probability: f64,
    /// Total bytes the disk holds; `None` for unbounded.
    pub capacity_bytes: Option<u64>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            torn_write_probability: 0.5,
            capacity_bytes: None,
        }
    }
}

/// The disk fault kinds a plan can switch on for a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFaultKind {
    /// Every write fails with an I/O error.
    WriteError,
    /// Every sync fails, and the unsynced data is lost.
    SyncError,
    /// Every write that would grow the disk fails with "no space".
    Full,
}

impl DiskFaultKind {
    /// The kebab-case name used in plans and traces.
    pub fn name(self) -> &'static str {
        match self {
            DiskFaultKind::WriteError => "write-error",
            DiskFaultKind::SyncError => "sync-error",
            DiskFaultKind::Full => "full",
        }
    }
}

/// Why a disk operation failed; what real code could observe from `write`/`fsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// The write returned EIO; nothing was written.
    #[error("write failed (EIO)")]
    WriteFailed,
    /// The sync returned EIO; the unsynced tail of the file is lost.
    #[error("sync failed (EIO); unsynced data lost")]
    SyncFailed,
    /// The write returned ENOSPC; nothing was written.
    #[error("no space left on device (ENOSPC)")]
    Full,
}

#[derive(Debug, Default)]
struct FileState {
    data: Vec<u8>,
    durable_len: usize,
}

impl FileState {
    fn unsynced_len(&self) -> usize {
        self.data.len() - self.durable_len
    }
}

#[derive(Debug)]
struct DiskState {
    host: Arc<str>,
    files: BTreeMap<String, FileState>,
    write_error: bool,
    sync_error: bool,
    full: bool,
    config: DiskConfig,
    rng: SimRng,
    trace: Trace,
}

impl DiskState {
    fn used_bytes(&self) -> u64 {
        self.files.values().map(|f| f.data.len() as u64).sum()
    }

    fn check_growth(&self, file: &str, growth: u64) -> Result<(), DiskError> {
        if self.write_error {
            self.trace
                .record(now(), &self.host, kind::WRITE_ERROR, file.to_string());
            return Err(DiskError::WriteFailed);
        }
        let over_capacity = self
            .config
            .capacity_bytes
            .is_some_and(|cap| self.used_bytes() + growth > cap);
        if growth > 0 && (self.full || over_capacity) {
            self.trace
                .record(now(), &self.host, kind::DISK_FULL, file.to_string());
            return Err(DiskError::Full);
        }
        Ok(())
    }
}

/// The instant of a disk operation: the running host's time, or the start when the
/// world itself touches the disk between steps (the world passes its own time for
/// crashes).
fn now() -> SimTime {
    turmoil::sim_elapsed()
        .map(SimTime::from_duration)
        .unwrap_or_default()
}

/// A handle to one host's disk. Clones share the disk; it lives as long as the world.
#[derive(Clone, Debug)]
pub struct Disk(Rc<RefCell<DiskState>>);

impl Disk {
    /// A new empty disk for `host`. The world makes one per host; tests may make their own.
    pub fn new(host: Arc<str>, config: DiskConfig, rng: SimRng, trace: Trace) -> Self {
        Disk(Rc::new(RefCell::new(DiskState {
            host,
            files: BTreeMap::new(),
            write_error: false,
            sync_error: false,
            full: false,
            config,
            rng,
            trace,
        })))
    }

    /// Appends `bytes` to `file` (created if absent) and returns the offset they start at.
    /// The bytes are readable at once but not durable until [`Disk::sync`].
    pub fn append(&self, file: &str, bytes: &[u8]) -> Result<u64, DiskError> {
        let mut state = self.0.borrow_mut();
        state.check_growth(file, bytes.len() as u64)?;
        let f = state.files.entry(file.to_string()).or_default();
        let offset = f.data.len() as u64;
        f.data.extend_from_slice(bytes);
        Ok(offset)
    }

    /// Makes everything written to `file` durable. On a sync error the unsynced tail is
    /// discarded and the file is back at its last durable length.
    pub fn sync(&self, file: &str) -> Result<(), DiskError> {
        let mut state = self.0.borrow_mut();
        let sync_error = state.sync_error;
        let Some(f) = state.files.get_mut(file) else {
            return Ok(());
        };
        let unsynced = f.unsynced_len();
        if unsynced == 0 {
            return Ok(());
        }
        if sync_error {
            f.data.truncate(f.durable_len);
            let detail = format!("{file} lost={unsynced}");
            state.trace.record(now(), &state.host, kind::SYNC_ERROR, detail);
            return Err(DiskError::SyncFailed);
        }
        f.durable_len = f.data.len();
        let detail = format!("{file} bytes={unsynced}");
        state.trace.record(now(), &state.host, kind::SYNC, detail);
        Ok(())
    }

    /// Replaces the whole content of `file` atomically and durably (write a temporary
    /// file, sync it, rename it over the old one). On failure the old content stays.
    pub fn replace(&self, file: &str, bytes: &[u8]) -> Result<(), DiskError> {
        let mut state = self.0.borrow_mut();
        let old_len = state.files.get(file).map_or(0, |f| f.data.len());
        state.check_growth(file, (bytes.len() as u64).saturating_sub(old_len as u64))?;
        if state.sync_error {
            state
                .trace
                .record(now(), &state.host, kind::SYNC_ERROR, format!("{file} replace"));
            return Err(DiskError::SyncFailed);
        }
        let f = state.files.entry(file.to_string()).or_default();
        f.data.clear();
        f.data.extend_from_slice(bytes);
        f.durable_len = f.data.len();
        Ok(())
    }

    /// Cuts `file` to `len` bytes, durably (used to drop a torn tail on recovery).
    pub fn truncate(&self, file: &str, len: u64) {
        let mut state = self.0.borrow_mut();
        if let Some(f) = state.files.get_mut(file) {
            let len = usize::try_from(len).unwrap_or(usize::MAX).min(f.data.len());
            f.data.truncate(len);
            f.durable_len = f.durable_len.min(len);
        }
    }

    /// Up to `max_len` bytes of `file` from `offset`, as the process sees them (synced
    /// or not). Empty past the end or for a missing file.
    pub fn read(&self, file: &str, offset: u64, max_len: usize) -> Vec<u8> {
        let state = self.0.borrow();
        let Some(f) = state.files.get(file) else {
            return Vec::new();
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(f.data.len());
        let end = start.saturating_add(max_len).min(f.data.len());
        f.data[start..end].to_vec()
    }

    /// The whole content of `file` as the process sees it.
    pub fn read_all(&self, file: &str) -> Vec<u8> {
        self.read(file, 0, usize::MAX)
    }

    /// Length of `file` as the process sees it (0 when absent).
    pub fn len(&self, file: &str) -> u64 {
        self.0.borrow().files.get(file).map_or(0, |f| f.data.len() as u64)
    }

    /// Length of the durable prefix of `file`: what a power loss now would keep at least.
    pub fn durable_len(&self, file: &str) -> u64 {
        self.0
            .borrow()
            .files
            .get(file)
            .map_or(0, |f| f.durable_len as u64)
    }

    /// Whether `file` exists.
    pub fn exists(&self, file: &str) -> bool {
        self.0.borrow().files.contains_key(file)
    }

    /// Switches a fault kind on or off (the world calls this at the plan's instants).
    pub fn set_fault(&self, fault: DiskFaultKind, on: bool) {
        let mut state = self.0.borrow_mut();
        match fault {
            DiskFaultKind::WriteError => state.write_error = on,
            DiskFaultKind::SyncError => state.sync_error = on,
            DiskFaultKind::Full => state.full = on,
        }
    }

    /// A power loss at `at`: every file drops its unsynced tail, or keeps a torn prefix.
    pub fn lose_power(&self, at: SimTime) {
        let mut guard = self.0.borrow_mut();
        let state = &mut *guard;
        for (name, f) in state.files.iter_mut() {
            let unsynced = f.unsynced_len();
            if unsynced == 0 {
                continue;
            }
            let torn = unsynced > 1 && state.rng.gen_bool(state.config.torn_write_probability);
            if torn {
                // A fixed-width draw: a usize draw differs on 32-bit targets.
                let kept = state.rng.gen_range(1..unsynced as u64) as usize;
                f.durable_len += kept;
                f.data.truncate(f.durable_len);
                let detail = format!("{name} kept={kept} lost={}", unsynced - kept);
                state.trace.record(at, &state.host, kind::TORN, detail);
            } else {
                f.data.truncate(f.durable_len);
                let detail = format!("{name} lost={unsynced}");
                state.trace.record(at, &state.host, kind::UNSYNCED_LOST, detail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{RngStreams, Seed};

    fn disk(config: DiskConfig) -> (Disk, Trace) {
        let trace = Trace::new(true);
        let d = Disk::new(
            Arc::from("h"),
            config,
            RngStreams::new(Seed(1)).stream("disk/h"),
            trace.clone(),
        );
        (d, trace)
    }

    fn never_torn() -> DiskConfig {
        DiskConfig {
            torn_write_probability: 0.0,
            capacity_bytes: None,
        }
    }

    #[test]
    fn unsynced_writes_are_lost_on_power_loss_synced_ones_kept() {
        let (d, trace) = disk(never_torn());
        d.append("f", b"durable").unwrap();
        d.sync("f").unwrap();
        d.append("f", b"+volatile").unwrap();
        assert_eq!(
            d.read_all("f"),
            b"durable+volatile",
            "the process reads its own writes"
        );
        d.lose_power(SimTime::from_millis(5));
        assert_eq!(d.read_all("f"), b"durable");
        assert!(trace.events().iter().any(|e| e.kind == kind::UNSYNCED_LOST));
    }

    #[test]
    fn unsynced_writes_survive_when_power_stays_on() {
        let (d, _) = disk(never_torn());
        d.append("f", b"abc").unwrap();
        // A process crash does not touch the disk: only lose_power does.
        assert_eq!(d.read_all("f"), b"abc");
        assert_eq!(d.durable_len("f"), 0);
    }

    #[test]
    fn torn_power_loss_keeps_a_strict_prefix_of_the_unsynced_tail() {
        let (d, trace) = disk(DiskConfig {
            torn_write_probability: 1.0,
            capacity_bytes: None,
        });
        d.append("f", b"0123").unwrap();
        d.sync("f").unwrap();
        d.append("f", b"456789").unwrap();
        d.lose_power(SimTime::ZERO);
        let kept = d.read_all("f");
        assert!(kept.len() > 4 && kept.len() < 10, "kept {} bytes", kept.len());
        assert_eq!(&kept[..], &b"0123456789"[..kept.len()]);
        assert!(trace.events().iter().any(|e| e.kind == kind::TORN));
    }

    #[test]
    fn sync_error_discards_the_unsynced_tail_and_retry_cannot_save_it() {
        let (d, trace) = disk(never_torn());
        d.append("f", b"kept").unwrap();
        d.sync("f").unwrap();
        d.append("f", b"-gone").unwrap();
        d.set_fault(DiskFaultKind::SyncError, true);
        assert_eq!(d.sync("f"), Err(DiskError::SyncFailed));
        d.set_fault(DiskFaultKind::SyncError, false);
        d.sync("f").unwrap();
        assert_eq!(d.read_all("f"), b"kept");
        assert!(trace.events().iter().any(|e| e.kind == kind::SYNC_ERROR));
    }

    #[test]
    fn write_error_window_fails_writes_and_writes_nothing() {
        let (d, _) = disk(never_torn());
        d.set_fault(DiskFaultKind::WriteError, true);
        assert_eq!(d.append("f", b"x"), Err(DiskError::WriteFailed));
        assert_eq!(d.replace("g", b"x"), Err(DiskError::WriteFailed));
        d.set_fault(DiskFaultKind::WriteError, false);
        assert_eq!(d.len("f"), 0);
        assert_eq!(d.append("f", b"x"), Ok(0));
    }

    #[test]
    fn disk_full_window_refuses_growth_but_allows_shrinking_replace() {
        let (d, trace) = disk(never_torn());
        d.replace("meta", b"0123456789").unwrap();
        d.set_fault(DiskFaultKind::Full, true);
        assert_eq!(d.append("log", b"x"), Err(DiskError::Full));
        assert_eq!(d.replace("meta", b"0123"), Ok(()));
        assert!(trace.events().iter().any(|e| e.kind == kind::DISK_FULL));
    }

    #[test]
    fn disk_full_by_capacity() {
        let (d, _) = disk(DiskConfig {
            torn_write_probability: 0.0,
            capacity_bytes: Some(8),
        });
        d.append("f", b"12345678").unwrap();
        assert_eq!(d.append("f", b"9"), Err(DiskError::Full));
    }

    #[test]
    fn replace_is_atomic_and_durable() {
        let (d, _) = disk(never_torn());
        d.replace("m", b"old").unwrap();
        d.set_fault(DiskFaultKind::SyncError, true);
        assert_eq!(d.replace("m", b"new"), Err(DiskError::SyncFailed));
        d.set_fault(DiskFaultKind::SyncError, false);
        assert_eq!(d.read_all("m"), b"old");
        d.replace("m", b"new").unwrap();
        d.lose_power(SimTime::ZERO);
        assert_eq!(d.read_all("m"), b"new");
    }
}
