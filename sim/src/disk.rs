//! Simulated durable storage, one disk per host, that outlives the host's crashes.
//!
//! The model is a Linux file system over a device with a volatile write cache:
//!
//! - **I/O takes simulated time.** A write, an fsync and a directory fsync each wait a
//!   latency drawn per disk ([`IoLatency`]: fsync much slower than a write, with a
//!   tail), so a crash or a power loss can land between a write and its sync, or between
//!   a commit and what the process does after it.
//! - A **process crash** keeps everything written: the data was already handed to the
//!   operating system, as with `kill -9`. The page cache, readable by the next
//!   incarnation, is lost only by a power loss.
//! - A **power loss** drops each file's unsynced tail, or with `torn_write_probability`
//!   keeps a strict prefix of it (a torn write) that readers must detect.
//! - A **failed fsync** leaves the data readable but not durable: Linux marks the dirty
//!   pages clean after an fsync error, so a later fsync succeeds without writing them
//!   and a power loss turns them into zeros ("fsyncgate", the behaviour that broke
//!   PostgreSQL's retry-the-fsync assumption). Careful code cuts the file back to its
//!   last durable length, or restarts and recovers from what is durable.
//! - **Names are durable only after a directory fsync**: a created file, or a rename
//!   over an old one, can be undone by a power loss until the directory is synced.
//!   [`Disk::replace`] is the careful sequence (write a temporary file, fsync it, rename
//!   it over the old one, fsync the directory).
//!
//! Files are inodes named by a directory; the disk keeps the directory the process sees
//! and the one a power loss would leave. Fault windows from the plan switch write
//! errors, sync errors and disk-full on and off. This is faultline's own disk rather
//! than turmoil's `unstable-fs`: that one reports ENOSPC and EIO only as
//! `ErrorKind::Other` text, cannot model the power-loss versus process-kill difference,
//! and scans every pending write on each operation.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::coverage::windows;
use crate::rng::SimRng;
use crate::time::SimTime;
use crate::trace::{kind, Trace};

mod log;
pub use log::{frames, LogFile, LogPos, LogRecord, Recovered, Recovery, Replay};

/// How long one kind of disk operation takes: uniform in `min_us..=max_us`, or with
/// `tail_probability` uniform in `max_us..=tail_max_us` instead (a device's slow tail:
/// garbage collection, a queue behind other I/O, a cloud volume's hiccup).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoLatency {
    /// Fastest operation, in microseconds.
    pub min_us: u64,
    /// Slowest operation outside the tail.
    pub max_us: u64,
    /// Chance that an operation falls in the tail.
    pub tail_probability: f64,
    /// Slowest operation in the tail.
    pub tail_max_us: u64,
}

impl IoLatency {
    /// Instant operations (unit tests of the disk's failure semantics).
    pub const ZERO: IoLatency = IoLatency {
        min_us: 0,
        max_us: 0,
        tail_probability: 0.0,
        tail_max_us: 0,
    };

    /// A buffered write into the page cache: tens of microseconds.
    pub const WRITE: IoLatency = IoLatency {
        min_us: 10,
        max_us: 100,
        tail_probability: 0.0,
        tail_max_us: 100,
    };

    /// An fsync on a network-attached SSD volume: 0.5–3 ms, and one in fifty up to
    /// 25 ms.
    pub const SYNC: IoLatency = IoLatency {
        min_us: 500,
        max_us: 3_000,
        tail_probability: 0.02,
        tail_max_us: 25_000,
    };

    fn draw(&self, rng: &mut SimRng) -> Duration {
        if *self == IoLatency::ZERO {
            return Duration::ZERO;
        }
        let tail = self.tail_probability > 0.0 && rng.gen_bool(self.tail_probability);
        let (low, high) = if tail {
            (self.max_us, self.tail_max_us)
        } else {
            (self.min_us, self.max_us)
        };
        Duration::from_micros(if high > low {
            rng.gen_range(low..=high)
        } else {
            low
        })
    }
}

/// How a disk behaves when nothing is switched on by the plan.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// Chance that a power loss keeps a strict prefix of a file's unsynced tail instead
    /// of dropping it whole.
    pub torn_write_probability: f64,
    /// Total bytes the disk holds; `None` for unbounded.
    pub capacity_bytes: Option<u64>,
    /// How long a write takes.
    pub write_latency: IoLatency,
    /// How long an fsync (of a file or a directory) takes.
    pub sync_latency: IoLatency,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            torn_write_probability: 0.5,
            capacity_bytes: None,
            write_latency: IoLatency::WRITE,
            sync_latency: IoLatency::SYNC,
        }
    }
}

impl DiskConfig {
    /// Operations that take no time (unit tests of the failure semantics alone).
    pub fn instant() -> Self {
        DiskConfig {
            write_latency: IoLatency::ZERO,
            sync_latency: IoLatency::ZERO,
            ..DiskConfig::default()
        }
    }
}

/// The disk fault kinds a plan can switch on for a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFaultKind {
    /// Every write fails with an I/O error.
    WriteError,
    /// Every sync fails; the unsynced data stays readable but will not be durable.
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
    /// The fsync returned EIO: the unsynced data is still readable but not durable, and
    /// a later fsync will not write it.
    #[error("fsync failed (EIO); unsynced data not durable")]
    SyncFailed,
    /// The write returned ENOSPC; nothing was written.
    #[error("no space left on device (ENOSPC)")]
    Full,
}

type Ino = u64;

#[derive(Debug, Default)]
struct Inode {
    /// What the process reads: the page cache.
    data: Vec<u8>,
    /// How much of `data` a power loss keeps (before tearing and holes).
    durable_len: usize,
    /// Ranges whose fsync failed: readable now, zeros after a power loss.
    holes: Vec<(usize, usize)>,
    /// What a reader derived from a prefix of `data`, while that prefix is unchanged.
    memo: Option<Kept>,
}

impl Inode {
    fn unsynced_len(&self) -> usize {
        self.data.len() - self.durable_len
    }

    /// Bytes from `from` on changed (cut, zeroed or replaced): the memo is cut back to
    /// what the bytes before them give, or forgotten when it cannot be.
    fn changed_from(&mut self, from: usize) {
        let Some(kept) = self.memo.as_mut() else {
            return;
        };
        if from >= kept.covers {
            return;
        }
        let cut = Rc::get_mut(&mut kept.value).and_then(|value| value.cut(from as u64));
        match cut {
            Some(covers) if covers as usize <= from => kept.covers = covers as usize,
            _ => self.memo = None,
        }
    }
}

/// A value derived from a prefix of a file's bytes, kept beside it ([`Disk::remember`]).
pub trait Memo: Any {
    /// Cuts the value back to what the bytes before `at` give, when it can; answers how
    /// many bytes it is derived from then (at most `at`). `None` forgets it.
    fn cut(&mut self, at: u64) -> Option<u64>;
}

/// A value derived from the first `covers` bytes of a file.
struct Kept {
    covers: usize,
    value: Rc<dyn Memo>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kept {{ covers: {} }}", self.covers)
    }
}

#[derive(Debug)]
struct DiskState {
    host: Arc<str>,
    /// The directory as the process sees it.
    names: BTreeMap<String, Ino>,
    /// The directory as a power loss would leave it (as of the last directory fsync).
    durable_names: BTreeMap<String, Ino>,
    inodes: BTreeMap<Ino, Inode>,
    /// What was derived from files not created yet (their empty content): given to the
    /// file when it is created.
    unborn: BTreeMap<String, Kept>,
    next_ino: Ino,
    write_error: bool,
    sync_error: bool,
    full: bool,
    config: DiskConfig,
    /// Fault draws (torn writes); apart from latency draws, so that the amount of I/O
    /// does not shift them.
    rng: SimRng,
    latency_rng: SimRng,
    trace: Trace,
    /// Files a [`Disk::replace`] is writing: two at once would share its temporary file.
    replacing: std::collections::BTreeSet<String>,
}

impl DiskState {
    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|f| f.data.len() as u64).sum()
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

    fn inode(&self, file: &str) -> Option<&Inode> {
        self.names.get(file).and_then(|ino| self.inodes.get(ino))
    }

    /// The inode named `file`, created (empty, its name not yet durable) when absent.
    fn open_or_create(&mut self, file: &str) -> &mut Inode {
        let ino = match self.names.get(file) {
            Some(ino) => *ino,
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                self.names.insert(file.to_string(), ino);
                let memo = self.unborn.remove(file);
                self.inodes.insert(
                    ino,
                    Inode {
                        memo,
                        ..Inode::default()
                    },
                );
                ino
            }
        };
        self.inodes.entry(ino).or_default()
    }

    /// Drops inodes no directory names any more.
    fn collect_garbage(&mut self) {
        let names = &self.names;
        let durable = &self.durable_names;
        self.inodes
            .retain(|ino, _| names.values().any(|i| i == ino) || durable.values().any(|i| i == ino));
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

async fn wait(latency: Duration) {
    if !latency.is_zero() {
        crate::timer::sleep(latency).await;
    }
}

/// A handle to one host's disk. Clones share the disk; it lives as long as the world.
#[derive(Clone, Debug)]
pub struct Disk(Rc<RefCell<DiskState>>);

/// A [`Disk::replace`] in progress, until it ends or its task is dropped.
struct Replacing {
    disk: Disk,
    file: String,
}

impl Replacing {
    fn start(disk: &Disk, file: &str) -> Replacing {
        let first = disk.0.borrow_mut().replacing.insert(file.to_string());
        debug_assert!(first, "two replaces of {file} at once");
        Replacing {
            disk: disk.clone(),
            file: file.to_string(),
        }
    }
}

impl Drop for Replacing {
    fn drop(&mut self) {
        self.disk.0.borrow_mut().replacing.remove(&self.file);
    }
}

impl Disk {
    /// A new empty disk for `host`. The world makes one per host; tests may make their own.
    pub fn new(host: Arc<str>, config: DiskConfig, rng: SimRng, latency_rng: SimRng, trace: Trace) -> Self {
        Disk(Rc::new(RefCell::new(DiskState {
            host,
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            inodes: BTreeMap::new(),
            unborn: BTreeMap::new(),
            next_ino: 1,
            write_error: false,
            sync_error: false,
            full: false,
            config,
            rng,
            latency_rng,
            trace,
            replacing: std::collections::BTreeSet::new(),
        })))
    }

    fn draw_write(&self) -> Duration {
        let mut state = self.0.borrow_mut();
        let latency = state.config.write_latency;
        latency.draw(&mut state.latency_rng)
    }

    fn draw_sync(&self) -> Duration {
        let mut state = self.0.borrow_mut();
        let latency = state.config.sync_latency;
        latency.draw(&mut state.latency_rng)
    }

    /// Writes `bytes` at the end of `file` (created if absent; the new name is durable
    /// only after [`Disk::sync_dir`]) and returns the offset they start at. The bytes are
    /// readable once the write returns, durable only after [`Disk::sync`].
    pub async fn append(&self, file: &str, bytes: &[u8]) -> Result<u64, DiskError> {
        // A refused write fails at once (the file system answers ENOSPC or EIO without
        // queueing I/O): a loop that retries it without backoff spins in place.
        self.0.borrow().check_growth(file, bytes.len() as u64)?;
        wait(self.draw_write()).await;
        let mut state = self.0.borrow_mut();
        state.check_growth(file, bytes.len() as u64)?;
        let inode = state.open_or_create(file);
        let offset = inode.data.len() as u64;
        inode.data.extend_from_slice(bytes);
        Ok(offset)
    }

    /// fsync: makes what was written to `file` before the call durable (not the file's
    /// name: see [`Disk::sync_dir`]). On a sync error the unsynced data stays readable
    /// but is not durable, and no later sync will write it.
    pub async fn sync(&self, file: &str) -> Result<(), DiskError> {
        let (ino, upto) = {
            let state = self.0.borrow();
            let Some(&ino) = state.names.get(file) else {
                return Ok(());
            };
            let inode = &state.inodes[&ino];
            if inode.unsynced_len() == 0 {
                return Ok(());
            }
            (ino, inode.data.len())
        };
        wait(self.draw_sync()).await;
        let mut guard = self.0.borrow_mut();
        let state = &mut *guard;
        let Some(inode) = state.inodes.get_mut(&ino) else {
            return Ok(());
        };
        let upto = upto.min(inode.data.len());
        if upto <= inode.durable_len {
            return Ok(());
        }
        let bytes = upto - inode.durable_len;
        if state.sync_error {
            // Linux marks the pages clean: readable, never written, zeros after a power
            // loss once a later sync has made the length around them durable.
            inode.holes.push((inode.durable_len, upto));
            state
                .trace
                .coverage()
                .hit(now(), windows::SYNC_ERROR_READABLE_NOT_DURABLE);
            let detail = format!("{file} not-durable={bytes}");
            state.trace.record(now(), &state.host, kind::SYNC_ERROR, detail);
            return Err(DiskError::SyncFailed);
        }
        inode.durable_len = upto;
        state.trace.record_fmt(
            now(),
            &state.host,
            kind::SYNC,
            format_args!("{file} bytes={bytes}"),
        );
        Ok(())
    }

    /// fsync of the directory: makes every name as the process sees it now (created
    /// files, renames) survive a power loss.
    pub async fn sync_dir(&self) -> Result<(), DiskError> {
        if self.dir_synced() {
            return Ok(());
        }
        wait(self.draw_sync()).await;
        let mut state = self.0.borrow_mut();
        if state.sync_error {
            state
                .trace
                .record(now(), &state.host, kind::SYNC_ERROR, "directory".to_string());
            return Err(DiskError::SyncFailed);
        }
        state.durable_names = state.names.clone();
        state.collect_garbage();
        Ok(())
    }

    /// The first file (in name order) holding writes a power loss now would drop, or
    /// whose name (or removal) is not yet durable: what a sync still to come would
    /// change about the disk's durable state.
    pub fn unsynced(&self) -> Option<String> {
        let state = self.0.borrow();
        let unsynced = state.names.iter().find(|(name, ino)| {
            state.durable_names.get(*name) != Some(ino)
                || state.inodes.get(ino).is_some_and(|f| f.unsynced_len() > 0)
        });
        let removed = || {
            state
                .durable_names
                .keys()
                .find(|name| !state.names.contains_key(*name))
        };
        unsynced.map(|(name, _)| name).or_else(removed).cloned()
    }

    /// Whether every name the process sees would survive a power loss now.
    pub fn dir_synced(&self) -> bool {
        let state = self.0.borrow();
        state.names == state.durable_names
    }

    /// Renames `from` over `to` (atomically for readers; durable after
    /// [`Disk::sync_dir`]). Nothing happens when `from` does not exist.
    pub fn rename(&self, from: &str, to: &str) {
        let mut state = self.0.borrow_mut();
        if let Some(ino) = state.names.remove(from) {
            state.names.insert(to.to_string(), ino);
            state.collect_garbage();
        }
    }

    /// Replaces the whole content of `file` the careful way: write a temporary file,
    /// fsync it, rename it over `file`, fsync the directory. Readers see the old content
    /// or the new one, never a mix; a crash or a power loss before the directory fsync
    /// may keep the old one. On failure the old content stays.
    ///
    /// One replace of a file at a time: its callers serialise them (two at once would
    /// write the same temporary file; debug builds assert it).
    pub async fn replace(&self, file: &str, bytes: &[u8]) -> Result<(), DiskError> {
        let _replacing = Replacing::start(self, file);
        let tmp = format!("{file}.tmp");
        {
            let mut state = self.0.borrow_mut();
            state.names.remove(&tmp);
            state.collect_garbage();
        }
        self.append(&tmp, bytes).await?;
        self.sync(&tmp).await?;
        self.rename(&tmp, file);
        self.sync_dir().await
    }

    /// Writes `file` durably, name included, before the run starts: data restored from a
    /// backup that the run begins with. Takes no simulated time.
    pub fn install(&self, file: &str, bytes: &[u8]) {
        let mut state = self.0.borrow_mut();
        let inode = state.open_or_create(file);
        inode.changed_from(0);
        inode.data = bytes.to_vec();
        inode.durable_len = bytes.len();
        inode.holes.clear();
        let ino = state.names[file];
        state.durable_names.insert(file.to_string(), ino);
    }

    /// Cuts `file` to `len` bytes, durably (recovery dropping a torn tail, or a writer
    /// cutting off what a failed fsync left undurable).
    pub fn truncate(&self, file: &str, len: u64) {
        let mut state = self.0.borrow_mut();
        let Some(&ino) = state.names.get(file) else {
            return;
        };
        let inode = state.inodes.get_mut(&ino).expect("named inodes exist");
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(inode.data.len());
        inode.changed_from(len);
        inode.data.truncate(len);
        inode.durable_len = inode.durable_len.min(len);
        inode.holes.retain(|(start, _)| *start < len);
        for hole in &mut inode.holes {
            hole.1 = hole.1.min(len);
        }
    }

    /// Up to `max_len` bytes of `file` from `offset`, as the process sees them (synced
    /// or not). Empty past the end or for a missing file.
    pub fn read(&self, file: &str, offset: u64, max_len: usize) -> Vec<u8> {
        let state = self.0.borrow();
        let Some(inode) = state.inode(file) else {
            return Vec::new();
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(inode.data.len());
        let end = start.saturating_add(max_len).min(inode.data.len());
        inode.data[start..end].to_vec()
    }

    /// The whole content of `file` as the process sees it.
    pub fn read_all(&self, file: &str) -> Vec<u8> {
        self.read(file, 0, usize::MAX)
    }

    /// Length of `file` as the process sees it (0 when absent).
    pub fn len(&self, file: &str) -> u64 {
        self.0.borrow().inode(file).map_or(0, |f| f.data.len() as u64)
    }

    /// Length of the synced prefix of `file`: what the process's own successful syncs
    /// covered (a power loss may still zero ranges whose sync failed).
    pub fn durable_len(&self, file: &str) -> u64 {
        self.0.borrow().inode(file).map_or(0, |f| f.durable_len as u64)
    }

    /// Every file name in the directory, in name order (`readdir`).
    pub fn list(&self) -> Vec<String> {
        self.0.borrow().names.keys().cloned().collect()
    }

    /// Whether `file` exists (as the process sees the directory).
    pub fn exists(&self, file: &str) -> bool {
        self.0.borrow().names.contains_key(file)
    }

    /// The content of `file` as a power loss now would leave it, with the tail dropped
    /// whole (no tearing): what an outside reader of the durable state decodes.
    pub fn durable_content(&self, file: &str) -> Vec<u8> {
        let state = self.0.borrow();
        let Some(inode) = state
            .durable_names
            .get(file)
            .and_then(|ino| state.inodes.get(ino))
        else {
            return Vec::new();
        };
        let mut data = inode.data[..inode.durable_len].to_vec();
        zero_holes(&mut data, &inode.holes);
        data
    }

    /// Keeps `value`, which the caller derived from the first `len` bytes of `file`,
    /// beside the file for as long as those bytes stay as they are: appends keep it; a
    /// cut, a power loss's zeroing or dropping, or a new install below `len` cut it back
    /// ([`Memo::cut`]) or forget it. A missing file's (empty) content can be derived
    /// from too: the value goes to the file when it is created.
    ///
    /// It survives the process's crashes, as the file does, but it is not data: nothing
    /// in the run reads it but [`Disk::take_memo`], so it only saves deriving the same
    /// value from the same bytes again (a log replayed at each recovery). The derivation
    /// must depend on those bytes alone, and on settings fixed for the run.
    pub fn remember<T: Memo>(&self, file: &str, len: u64, value: Rc<T>) {
        let mut state = self.0.borrow_mut();
        let covers = usize::try_from(len).expect("file lengths fit");
        let Some(&ino) = state.names.get(file) else {
            assert_eq!(covers, 0, "a memo covers bytes the file has");
            state.unborn.insert(file.to_string(), Kept { covers, value });
            return;
        };
        let inode = state.inodes.get_mut(&ino).expect("named inodes exist");
        assert!(covers <= inode.data.len(), "a memo covers bytes the file has");
        inode.memo = Some(Kept { covers, value });
    }

    /// How many of `file`'s first bytes the value remembered beside it was derived from,
    /// if those bytes are unchanged since.
    pub fn memo_covers(&self, file: &str) -> Option<u64> {
        let state = self.0.borrow();
        let memo = match state.inode(file) {
            Some(inode) => inode.memo.as_ref()?,
            None => state.unborn.get(file)?,
        };
        Some(memo.covers as u64)
    }

    /// The value last remembered beside `file` as a `T`, and how many of its first bytes
    /// it was derived from, if those bytes are unchanged since. Taking it leaves nothing
    /// behind (the caller extends it and remembers the result).
    pub fn take_memo<T: Memo>(&self, file: &str) -> Option<(u64, Rc<T>)> {
        let mut state = self.0.borrow_mut();
        let kept = match state.names.get(file) {
            Some(&ino) => state.inodes.get_mut(&ino)?.memo.take()?,
            None => state.unborn.remove(file)?,
        };
        let value: Rc<dyn Any> = kept.value;
        let value = value.downcast::<T>().ok()?;
        Some((kept.covers as u64, value))
    }

    /// Brings the value remembered beside `file` from its first `at` bytes to its first
    /// `to` (bytes the caller just appended there), by `extend`, when it is a `T` derived
    /// from exactly the first `at` bytes; otherwise leaves it as it is (a later derivation
    /// reads the new bytes itself).
    pub fn extend_memo<T: Memo>(&self, file: &str, at: u64, to: u64, extend: impl FnOnce(&mut T)) {
        let mut state = self.0.borrow_mut();
        let Some(&ino) = state.names.get(file) else {
            return;
        };
        let Some(inode) = state.inodes.get_mut(&ino) else {
            return;
        };
        let len = inode.data.len() as u64;
        let Some(kept) = inode.memo.as_mut() else {
            return;
        };
        if kept.covers as u64 != at || to > len {
            return;
        }
        let value = Rc::get_mut(&mut kept.value).map(|value| value as &mut dyn Any);
        if let Some(value) = value.and_then(|value| value.downcast_mut::<T>()) {
            extend(value);
            kept.covers = usize::try_from(to).expect("file lengths fit");
        }
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

    /// A power loss at `at`: names not durable in the directory are undone, every file
    /// drops its unsynced tail (or keeps a torn prefix of it), and ranges whose sync
    /// failed read as zeros.
    pub fn lose_power(&self, at: SimTime) {
        let mut guard = self.0.borrow_mut();
        let state = &mut *guard;
        for (name, ino) in &state.names {
            if state.durable_names.get(name) != Some(ino) {
                let undone = if state.durable_names.contains_key(name) {
                    "rename undone"
                } else {
                    "created, never durable"
                };
                state
                    .trace
                    .record(at, &state.host, kind::NAME_UNDONE, format!("{name} {undone}"));
                state.trace.coverage().hit(at, windows::POWER_LOSS_UNDURABLE_NAME);
            }
        }
        state.names = state.durable_names.clone();
        state.collect_garbage();
        let names: BTreeMap<Ino, String> = state.names.iter().map(|(n, i)| (*i, n.clone())).collect();
        for (ino, inode) in state.inodes.iter_mut() {
            let name = names.get(ino).map_or("?", String::as_str);
            let unsynced = inode.unsynced_len();
            if unsynced > 0 {
                let torn = unsynced > 1 && state.rng.gen_bool(state.config.torn_write_probability);
                if torn {
                    // A fixed-width draw: a usize draw differs on 32-bit targets.
                    let kept = state.rng.gen_range(1..unsynced as u64) as usize;
                    inode.durable_len += kept;
                    inode.changed_from(inode.durable_len);
                    inode.data.truncate(inode.durable_len);
                    let detail = format!("{name} kept={kept} lost={}", unsynced - kept);
                    state.trace.record(at, &state.host, kind::TORN, detail);
                    state.trace.coverage().hit(at, windows::POWER_LOSS_TORN_TAIL);
                } else {
                    inode.changed_from(inode.durable_len);
                    inode.data.truncate(inode.durable_len);
                    let detail = format!("{name} lost={unsynced}");
                    state.trace.record(at, &state.host, kind::UNSYNCED_LOST, detail);
                    state.trace.coverage().hit(at, windows::POWER_LOSS_UNSYNCED_TAIL);
                }
            }
            if let Some(first) = inode.holes.iter().map(|h| h.0).min() {
                inode.changed_from(first);
            }
            let zeroed = zero_holes(&mut inode.data, &inode.holes);
            inode.holes.clear();
            if zeroed > 0 {
                let detail = format!("{name} zeroed={zeroed}");
                state.trace.record(at, &state.host, kind::SYNC_ERROR_LOST, detail);
                state
                    .trace
                    .coverage()
                    .hit(at, windows::POWER_LOSS_FAILED_SYNC_RANGE);
            }
        }
    }
}

/// Zeroes `holes` inside `data`; returns how many bytes it zeroed.
fn zero_holes(data: &mut [u8], holes: &[(usize, usize)]) -> usize {
    let mut zeroed = 0;
    for &(start, end) in holes {
        let end = end.min(data.len());
        if start < end {
            data[start..end].fill(0);
            zeroed += end - start;
        }
    }
    zeroed
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rng::{RngStreams, Seed};

    /// Runs an operation of a disk whose I/O takes no time: it never waits.
    pub(crate) fn now_or_never<T>(future: impl std::future::Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("an instant disk operation waited"),
        }
    }

    fn disk(torn_write_probability: f64) -> (Disk, Trace) {
        let trace = Trace::new(true);
        let streams = RngStreams::new(Seed(1));
        let d = Disk::new(
            Arc::from("h"),
            DiskConfig {
                torn_write_probability,
                ..DiskConfig::instant()
            },
            streams.stream("disk/h"),
            streams.stream("disk-latency/h"),
            trace.clone(),
        );
        (d, trace)
    }

    fn kinds(trace: &Trace) -> Vec<String> {
        trace.events().iter().map(|e| e.kind.to_string()).collect()
    }

    /// A file whose name and `bytes` are durable.
    fn durable_file(d: &Disk, file: &str, bytes: &[u8]) {
        now_or_never(d.append(file, bytes)).unwrap();
        now_or_never(d.sync(file)).unwrap();
        now_or_never(d.sync_dir()).unwrap();
    }

    #[test]
    fn unsynced_writes_are_lost_on_power_loss_synced_ones_kept() {
        let (d, trace) = disk(0.0);
        durable_file(&d, "f", b"durable");
        now_or_never(d.append("f", b"+volatile")).unwrap();
        assert_eq!(
            d.read_all("f"),
            b"durable+volatile",
            "the process reads its own writes"
        );
        d.lose_power(SimTime::from_millis(5));
        assert_eq!(d.read_all("f"), b"durable");
        assert!(kinds(&trace).iter().any(|k| k == kind::UNSYNCED_LOST));
    }

    #[test]
    fn unsynced_names_what_a_sync_still_to_come_would_change() {
        let (d, _) = disk(0.0);
        assert_eq!(d.unsynced(), None);
        now_or_never(d.append("f", b"abc")).unwrap();
        assert_eq!(d.unsynced().as_deref(), Some("f"), "data and name not durable");
        now_or_never(d.sync("f")).unwrap();
        assert_eq!(d.unsynced().as_deref(), Some("f"), "the name is not durable");
        now_or_never(d.sync_dir()).unwrap();
        assert_eq!(d.unsynced(), None);
        d.rename("f", "g");
        assert_eq!(d.unsynced().as_deref(), Some("g"), "a rename not yet durable");
        now_or_never(d.sync_dir()).unwrap();
        assert_eq!(d.unsynced(), None);
    }

    #[test]
    fn unsynced_writes_survive_when_power_stays_on() {
        let (d, _) = disk(0.0);
        now_or_never(d.append("f", b"abc")).unwrap();
        // A process crash does not touch the disk: only lose_power does.
        assert_eq!(d.read_all("f"), b"abc");
        assert_eq!(d.durable_len("f"), 0);
    }

    #[test]
    fn torn_power_loss_keeps_a_strict_prefix_of_the_unsynced_tail() {
        let (d, trace) = disk(1.0);
        durable_file(&d, "f", b"0123");
        now_or_never(d.append("f", b"456789")).unwrap();
        d.lose_power(SimTime::ZERO);
        let kept = d.read_all("f");
        assert!(kept.len() > 4 && kept.len() < 10, "kept {} bytes", kept.len());
        assert_eq!(&kept[..], &b"0123456789"[..kept.len()]);
        assert!(kinds(&trace).iter().any(|k| k == kind::TORN));
    }

    #[test]
    fn a_failed_fsync_leaves_data_readable_but_lost_on_power_loss() {
        let (d, trace) = disk(0.0);
        durable_file(&d, "f", b"kept");
        now_or_never(d.append("f", b"-gone")).unwrap();
        d.set_fault(DiskFaultKind::SyncError, true);
        assert_eq!(now_or_never(d.sync("f")), Err(DiskError::SyncFailed));
        d.set_fault(DiskFaultKind::SyncError, false);
        assert_eq!(d.read_all("f"), b"kept-gone", "still readable after the error");
        // Retrying the fsync "succeeds": the pages were marked clean, nothing is written.
        now_or_never(d.append("f", b"+later")).unwrap();
        now_or_never(d.sync("f")).unwrap();
        assert_eq!(d.read_all("f"), b"kept-gone+later");
        d.lose_power(SimTime::ZERO);
        assert_eq!(d.read_all("f"), b"kept\0\0\0\0\0+later");
        let kinds = kinds(&trace);
        assert!(kinds.iter().any(|k| k == kind::SYNC_ERROR));
        assert!(kinds.iter().any(|k| k == kind::SYNC_ERROR_LOST));
    }

    #[test]
    fn a_failed_fsync_at_the_tail_loses_the_tail_on_power_loss() {
        let (d, _) = disk(0.0);
        durable_file(&d, "f", b"kept");
        now_or_never(d.append("f", b"-gone")).unwrap();
        d.set_fault(DiskFaultKind::SyncError, true);
        assert_eq!(now_or_never(d.sync("f")), Err(DiskError::SyncFailed));
        d.lose_power(SimTime::ZERO);
        assert_eq!(d.read_all("f"), b"kept");
    }

    #[test]
    fn cutting_the_file_back_after_a_failed_fsync_leaves_no_hole() {
        let (d, trace) = disk(0.0);
        durable_file(&d, "f", b"kept");
        now_or_never(d.append("f", b"-gone")).unwrap();
        d.set_fault(DiskFaultKind::SyncError, true);
        assert!(now_or_never(d.sync("f")).is_err());
        d.set_fault(DiskFaultKind::SyncError, false);
        d.truncate("f", d.durable_len("f"));
        now_or_never(d.append("f", b"+again")).unwrap();
        now_or_never(d.sync("f")).unwrap();
        d.lose_power(SimTime::ZERO);
        assert_eq!(d.read_all("f"), b"kept+again");
        assert!(!kinds(&trace).iter().any(|k| k == kind::SYNC_ERROR_LOST));
    }

    #[test]
    fn a_created_file_needs_its_directory_synced_to_survive_a_power_loss() {
        let (d, trace) = disk(0.0);
        now_or_never(d.append("f", b"data")).unwrap();
        now_or_never(d.sync("f")).unwrap();
        assert!(!d.dir_synced());
        d.lose_power(SimTime::ZERO);
        assert!(!d.exists("f"), "the name was never durable");
        assert!(kinds(&trace).iter().any(|k| k == kind::NAME_UNDONE));
    }

    #[test]
    fn a_rename_without_a_directory_sync_can_be_undone_by_a_power_loss() {
        let (d, _) = disk(0.0);
        durable_file(&d, "m", b"old");
        now_or_never(d.append("m.new", b"new")).unwrap();
        now_or_never(d.sync("m.new")).unwrap();
        d.rename("m.new", "m");
        assert_eq!(d.read_all("m"), b"new", "readers see the rename at once");
        d.lose_power(SimTime::ZERO);
        assert_eq!(d.read_all("m"), b"old");
        assert!(!d.exists("m.new"));
    }

    #[test]
    fn replace_is_atomic_and_durable() {
        let (d, _) = disk(0.0);
        now_or_never(d.replace("m", b"old")).unwrap();
        d.set_fault(DiskFaultKind::SyncError, true);
        assert_eq!(now_or_never(d.replace("m", b"new")), Err(DiskError::SyncFailed));
        d.set_fault(DiskFaultKind::SyncError, false);
        assert_eq!(d.read_all("m"), b"old");
        now_or_never(d.replace("m", b"new")).unwrap();
        d.lose_power(SimTime::ZERO);
        assert_eq!(d.read_all("m"), b"new");
        assert!(!d.exists("m.tmp"));
    }

    #[test]
    fn write_error_window_fails_writes_and_writes_nothing() {
        let (d, _) = disk(0.0);
        d.set_fault(DiskFaultKind::WriteError, true);
        assert_eq!(now_or_never(d.append("f", b"x")), Err(DiskError::WriteFailed));
        assert_eq!(now_or_never(d.replace("g", b"x")), Err(DiskError::WriteFailed));
        d.set_fault(DiskFaultKind::WriteError, false);
        assert_eq!(d.len("f"), 0);
        assert_eq!(now_or_never(d.append("f", b"x")), Ok(0));
    }

    #[test]
    fn disk_full_window_refuses_every_write_that_needs_space() {
        let (d, trace) = disk(0.0);
        now_or_never(d.replace("meta", b"0123456789")).unwrap();
        d.set_fault(DiskFaultKind::Full, true);
        assert_eq!(now_or_never(d.append("log", b"x")), Err(DiskError::Full));
        // A replace writes a new file before the old one goes: it needs space too.
        assert_eq!(now_or_never(d.replace("meta", b"0123")), Err(DiskError::Full));
        assert_eq!(d.read_all("meta"), b"0123456789");
        assert!(kinds(&trace).iter().any(|k| k == kind::DISK_FULL));
    }

    #[test]
    fn disk_full_by_capacity() {
        let (d, _) = disk(0.0);
        d.0.borrow_mut().config.capacity_bytes = Some(8);
        now_or_never(d.append("f", b"12345678")).unwrap();
        assert_eq!(now_or_never(d.append("f", b"9")), Err(DiskError::Full));
    }

    #[test]
    fn durable_content_is_what_a_power_loss_would_leave() {
        let (d, _) = disk(0.0);
        durable_file(&d, "f", b"kept");
        now_or_never(d.append("f", b"+tail")).unwrap();
        now_or_never(d.append("g", b"new")).unwrap();
        now_or_never(d.sync("g")).unwrap();
        assert_eq!(d.durable_content("f"), b"kept");
        assert_eq!(d.durable_content("g"), b"", "its name is not durable");
        d.install("h", b"restored");
        assert_eq!(d.durable_content("h"), b"restored");
    }

    #[test]
    fn latency_draws_stay_in_their_ranges() {
        let mut rng = RngStreams::new(Seed(3)).stream("l");
        let draws: Vec<Duration> = (0..2_000).map(|_| IoLatency::SYNC.draw(&mut rng)).collect();
        let tail = draws.iter().filter(|d| d.as_micros() > 3_000).count();
        assert!(draws
            .iter()
            .all(|d| (500..=25_000).contains(&(d.as_micros() as u64))));
        assert!((10..=80).contains(&tail), "{tail} of 2000 in the tail");
        assert_eq!(IoLatency::ZERO.draw(&mut rng), Duration::ZERO);
    }
}
