//! An append-only record log on a [`Disk`]: the storage shape of commit logs, broker
//! partitions and outboxes.
//!
//! Each record is framed as `len: u32 LE | crc32: u32 LE | payload`. A power loss can
//! tear the last frames; [`LogFile::open`] reads frames until the first incomplete or
//! corrupt one and truncates the file there, so a torn tail never reaches a reader.

use std::rc::Rc;

use super::{Disk, DiskError, Memo};

const HEADER_BYTES: usize = 8;
/// Bytes read from disk per step when scanning frames.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Byte offset of a record's frame in its log file.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct LogPos(pub u64);

/// One record read back from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Where the record's frame starts.
    pub pos: LogPos,
    /// Where the next record's frame starts.
    pub next: LogPos,
    /// The record's payload.
    pub payload: Vec<u8>,
}

/// What [`LogFile::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Every intact record, in order.
    pub records: Vec<LogRecord>,
    /// Bytes cut off the end because they did not form an intact frame.
    pub truncated_bytes: u64,
}

/// The payloads of the intact frames at the start of `bytes`, up to the first
/// incomplete, empty or corrupt one: how an outside reader decodes a log's durable
/// content ([`Disk::durable_content`]).
pub fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + HEADER_BYTES {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let end = at + HEADER_BYTES + len;
        if len == 0 || bytes.len() < end || crc32fast::hash(&bytes[at + HEADER_BYTES..end]) != crc {
            break;
        }
        out.push(&bytes[at + HEADER_BYTES..end]);
        at = end;
    }
    out
}

/// A state a log's records fold into, in order: what a recovery rebuilds from a log.
///
/// [`LogFile::replay`] keeps the state beside the file ([`Disk::remember`]), so the next
/// recovery applies only the records appended since. `apply` must depend on the record
/// and the state alone (settings fixed for the run may live in the state): debug builds
/// check every replay that started from a kept state against one from the start.
pub trait Replay: Clone + PartialEq + std::fmt::Debug + 'static {
    /// Applies the next record.
    fn apply(&mut self, record: LogRecord);

    /// Cuts the state back to the records that end at or before `at`, when it knows where
    /// they end; answers where they end. `None` (the default) forgets the kept state when
    /// the log is cut or torn below its end.
    fn cut(&mut self, at: LogPos) -> Option<LogPos> {
        let _ = at;
        None
    }
}

impl<S: Replay> Memo for S {
    fn cut(&mut self, at: u64) -> Option<u64> {
        Replay::cut(self, LogPos(at)).map(|end| end.0)
    }
}

/// What opening a log by replaying it found.
#[derive(Debug)]
pub struct Recovered<S> {
    /// The intact records folded onto the initial state.
    pub state: S,
    /// Bytes cut off the end because they did not form an intact frame.
    pub truncated_bytes: u64,
}

/// A log of framed records in one file of a [`Disk`].
#[derive(Clone, Debug)]
pub struct LogFile {
    disk: Disk,
    file: String,
}

impl LogFile {
    /// Opens (or creates) the log in `file`, recovering it: intact records are returned
    /// and a torn tail is truncated away.
    pub fn open(disk: &Disk, file: &str) -> (LogFile, Recovery) {
        let (log, recovery) = LogFile::open_unrepaired(disk, file);
        if recovery.truncated_bytes > 0 {
            disk.truncate(file, disk.len(file) - recovery.truncated_bytes);
        }
        (log, recovery)
    }

    /// Opens the log and reads its intact records, but leaves whatever follows them in
    /// place: a recovery that forgets to cut a torn tail. Appends then land after the
    /// torn bytes, where every later reader stops. Planted bugs use it; careful code
    /// calls [`LogFile::open`].
    pub fn open_unrepaired(disk: &Disk, file: &str) -> (LogFile, Recovery) {
        let log = LogFile {
            disk: disk.clone(),
            file: file.to_string(),
        };
        let records = log.read_from(LogPos(0), usize::MAX);
        let intact_end = records.last().map_or(0, |r| r.next.0);
        let truncated_bytes = disk.len(file) - intact_end;
        (
            log,
            Recovery {
                records,
                truncated_bytes,
            },
        )
    }

    /// Opens the log as [`LogFile::open`] does, then makes what it recovered durable
    /// before anyone reads it: an end-of-recovery checkpoint. A process crash leaves
    /// records in the page cache that were never synced (the crash landed in their
    /// sync); served as they are, a later power loss would take back what readers saw.
    /// When that sync fails, the log is cut back to what is durable and read again.
    pub async fn open_durably(disk: &Disk, file: &str) -> (LogFile, Recovery) {
        let (log, recovery) = LogFile::open(disk, file);
        if log.end() == log.durable_end() || log.sync().await.is_ok() {
            return (log, recovery);
        }
        log.discard_unsynced();
        let (log, again) = LogFile::open(disk, file);
        (
            log,
            Recovery {
                records: again.records,
                truncated_bytes: recovery.truncated_bytes,
            },
        )
    }

    /// The log in `file`, read nothing yet (see [`LogFile::replay`]).
    pub fn of(disk: &Disk, file: &str) -> LogFile {
        LogFile {
            disk: disk.clone(),
            file: file.to_string(),
        }
    }

    /// Opens the log as [`LogFile::open_durably`] does, for a caller that does not read
    /// its records: only the frames past the last replay ([`LogFile::replay`], whose
    /// frames were intact and are unchanged) are scanned for a torn tail.
    pub async fn open_durably_unread(disk: &Disk, file: &str) -> LogFile {
        let log = LogFile::of(disk, file);
        log.cut_torn_tail();
        if log.end() != log.durable_end() && log.sync().await.is_err() {
            log.discard_unsynced();
            log.cut_torn_tail();
        }
        log
    }

    /// Cuts whatever follows the last intact frame, scanning from the end of the last
    /// replay when one is kept beside the file.
    fn cut_torn_tail(&self) {
        let intact = LogPos(self.disk.memo_covers(&self.file).unwrap_or(0));
        let intact_end = self
            .read_from(intact, usize::MAX)
            .last()
            .map_or(intact, |r| r.next);
        if cfg!(debug_assertions) && intact > LogPos(0) {
            let full = self.read_from(LogPos(0), usize::MAX).last().map(|r| r.next);
            assert_eq!(
                Some(intact_end),
                full,
                "the intact end of {} from its replay",
                self.file
            );
        }
        if self.end() > intact_end {
            self.truncate(intact_end);
        }
    }

    /// Opens the log as [`LogFile::open`] does, folding its intact records onto
    /// `initial()` ([`LogFile::replay`]) instead of returning them.
    pub fn open_replaying<S: Replay>(
        disk: &Disk,
        file: &str,
        initial: impl Fn() -> S,
    ) -> (LogFile, Recovered<S>) {
        let log = LogFile::of(disk, file);
        let (state, intact_end) = log.replay(initial);
        let truncated_bytes = disk.len(file) - intact_end.0;
        if truncated_bytes > 0 {
            log.truncate(intact_end);
        }
        (
            log,
            Recovered {
                state,
                truncated_bytes,
            },
        )
    }

    /// Opens the log as [`LogFile::open_durably`] does, folding its intact records onto
    /// `initial()` ([`LogFile::replay`]) instead of returning them.
    pub async fn open_durably_replaying<S: Replay>(
        disk: &Disk,
        file: &str,
        initial: impl Fn() -> S,
    ) -> (LogFile, Recovered<S>) {
        let (log, recovered) = LogFile::open_replaying(disk, file, &initial);
        if log.end() == log.durable_end() || log.sync().await.is_ok() {
            return (log, recovered);
        }
        log.discard_unsynced();
        let (log, again) = LogFile::open_replaying(disk, file, &initial);
        (
            log,
            Recovered {
                state: again.state,
                truncated_bytes: recovered.truncated_bytes,
            },
        )
    }

    /// The log's intact records folded onto `initial()` in order, and where they end.
    ///
    /// The fold starts from the state the last replay of this file left beside it, in
    /// this process life or an earlier one, when the bytes that replay read are
    /// unchanged ([`Disk::remember`]): a recovery then reads and decodes only what was
    /// appended since, where reading the whole log again made each recovery of a long
    /// run cost more than the last. It leaves its own result there for the next one.
    /// The records read are the same either way, so the run is the same.
    pub fn replay<S: Replay>(&self, initial: impl Fn() -> S) -> (S, LogPos) {
        let (from, mut state) = match self.disk.take_memo::<S>(&self.file) {
            Some((covers, kept)) => (
                LogPos(covers),
                Rc::try_unwrap(kept).unwrap_or_else(|shared| (*shared).clone()),
            ),
            None => (LogPos(0), initial()),
        };
        let records = self.read_from(from, usize::MAX);
        let end = records.last().map_or(from, |r| r.next);
        for record in records {
            state.apply(record);
        }
        if cfg!(debug_assertions) && from > LogPos(0) {
            let mut full = initial();
            for record in self.read_from(LogPos(0), usize::MAX) {
                full.apply(record);
            }
            assert_eq!(state, full, "a replay from the kept state of {}", self.file);
        }
        self.disk.remember(&self.file, end.0, Rc::new(state.clone()));
        (state, end)
    }

    /// The file the log lives in.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Appends one record (readable at once, not yet durable) and returns where it
    /// starts. Records are never empty: a zeroed range (a failed fsync's hole after a
    /// power loss) then reads as corrupt, not as empty records.
    pub async fn append(&self, payload: &[u8]) -> Result<LogPos, DiskError> {
        assert!(!payload.is_empty(), "log records are never empty");
        let len = u32::try_from(payload.len()).expect("log record over 4 GiB");
        let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        self.disk.append(&self.file, &frame).await.map(LogPos)
    }

    /// Appends one record as [`LogFile::append`] does and, when the replay kept beside
    /// the log ([`LogFile::replay`]) ends where the record starts, brings it past the
    /// record with `note` (the record applied as [`Replay::apply`] would, from what the
    /// writer holds decoded): the next recovery then decodes nothing of it.
    pub async fn append_noted<S: Replay>(
        &self,
        payload: &[u8],
        note: impl FnOnce(&mut S, LogPos, LogPos),
    ) -> Result<LogPos, DiskError> {
        let pos = self.append(payload).await?;
        let next = LogPos(pos.0 + (HEADER_BYTES + payload.len()) as u64);
        self.disk
            .extend_memo::<S>(&self.file, pos.0, next.0, |state| note(state, pos, next));
        Ok(pos)
    }

    /// Makes every appended record durable: fsync of the file, then of the directory
    /// while the file's name (a new log) is not yet durable.
    pub async fn sync(&self) -> Result<(), DiskError> {
        self.disk.sync(&self.file).await?;
        if !self.disk.dir_synced() {
            self.disk.sync_dir().await?;
        }
        Ok(())
    }

    /// Cuts the log back to `pos` (a record boundary), durably: a writer undoing a batch
    /// it could not complete.
    pub fn truncate(&self, pos: LogPos) {
        self.disk.truncate(&self.file, pos.0);
    }

    /// Cuts the log back to its last synced end, dropping what a failed fsync left
    /// readable but not durable (so that nothing later is written after a hole).
    pub fn discard_unsynced(&self) {
        self.disk.truncate(&self.file, self.disk.durable_len(&self.file));
    }

    /// The position just past the last record (as the process sees the file).
    pub fn end(&self) -> LogPos {
        LogPos(self.disk.len(&self.file))
    }

    /// The position just past the last durable byte.
    pub fn durable_end(&self) -> LogPos {
        LogPos(self.disk.durable_len(&self.file))
    }

    /// Up to `max_records` intact records starting at `from` (which must be a frame
    /// start). Stops early at a frame that is incomplete or fails its checksum.
    pub fn read_from(&self, from: LogPos, max_records: usize) -> Vec<LogRecord> {
        let mut records = Vec::new();
        let mut pos = from.0;
        let mut buf = Vec::new();
        let mut buf_start = pos;
        while records.len() < max_records {
            let at = usize::try_from(pos - buf_start).expect("offset fits");
            if buf.len() < at + HEADER_BYTES && !self.refill(&mut buf, &mut buf_start, pos) {
                break;
            }
            let at = usize::try_from(pos - buf_start).expect("offset fits");
            if buf.len() < at + HEADER_BYTES {
                break;
            }
            let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes"));
            if len == 0 {
                // Never written by `append`: zeros where a failed fsync left a hole.
                break;
            }
            let frame_end = at + HEADER_BYTES + len;
            if buf.len() < frame_end {
                let more = self
                    .disk
                    .read(&self.file, buf_start + buf.len() as u64, frame_end - buf.len());
                buf.extend_from_slice(&more);
                if buf.len() < frame_end {
                    break;
                }
            }
            let payload = &buf[at + HEADER_BYTES..frame_end];
            if crc32fast::hash(payload) != crc {
                break;
            }
            let next = pos + (HEADER_BYTES + len) as u64;
            records.push(LogRecord {
                pos: LogPos(pos),
                next: LogPos(next),
                payload: payload.to_vec(),
            });
            pos = next;
        }
        records
    }

    /// Drops consumed bytes from `buf` and reads the next chunk from `pos`; false at EOF.
    fn refill(&self, buf: &mut Vec<u8>, buf_start: &mut u64, pos: u64) -> bool {
        let consumed = usize::try_from(pos - *buf_start).expect("offset fits");
        buf.drain(..consumed.min(buf.len()));
        *buf_start = pos;
        let more = self
            .disk
            .read(&self.file, *buf_start + buf.len() as u64, READ_CHUNK_BYTES);
        let got = !more.is_empty();
        buf.extend_from_slice(&more);
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::tests::now_or_never as now;
    use crate::disk::{DiskConfig, DiskFaultKind};
    use crate::rng::{RngStreams, Seed};
    use crate::time::SimTime;
    use crate::trace::Trace;
    use std::sync::Arc;

    fn disk(torn: f64, seed: u64) -> Disk {
        let config = DiskConfig {
            torn_write_probability: torn,
            ..DiskConfig::instant()
        };
        let streams = RngStreams::new(Seed(seed));
        Disk::new(
            Arc::from("h"),
            config,
            streams.stream("d"),
            streams.stream("l"),
            Trace::new(false),
        )
    }

    #[test]
    fn records_round_trip_and_read_from_an_offset() {
        let d = disk(0.0, 1);
        let (log, rec) = LogFile::open(&d, "log");
        assert!(rec.records.is_empty());
        let p0 = now(log.append(b"one")).unwrap();
        let p1 = now(log.append(b"two")).unwrap();
        now(log.append(&vec![7u8; 100_000])).unwrap();
        let all = log.read_from(p0, usize::MAX);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].pos, p1);
        assert_eq!(all[2].payload.len(), 100_000);
        assert_eq!(log.read_from(p1, 1)[0].payload, b"two");
        assert_eq!(all[2].next, log.end());
    }

    #[test]
    fn recovery_truncates_a_torn_tail_and_keeps_every_synced_record() {
        // Over many seeds a torn power loss must never surface a partial record.
        for seed in 0..64 {
            let d = disk(1.0, seed);
            let (log, _) = LogFile::open(&d, "log");
            now(log.append(b"synced-1")).unwrap();
            now(log.append(b"synced-2")).unwrap();
            now(log.sync()).unwrap();
            now(log.append(b"unsynced-record-that-may-tear")).unwrap();
            now(log.append(b"another")).unwrap();
            d.lose_power(SimTime::ZERO);
            let (log, rec) = LogFile::open(&d, "log");
            let payloads: Vec<_> = rec.records.iter().map(|r| r.payload.clone()).collect();
            assert!(
                payloads.len() >= 2 && payloads.len() <= 3,
                "seed {seed}: {payloads:?}"
            );
            assert_eq!(payloads[0], b"synced-1");
            assert_eq!(payloads[1], b"synced-2");
            if payloads.len() == 3 {
                assert_eq!(payloads[2], b"unsynced-record-that-may-tear");
            }
            assert_eq!(log.end(), rec.records.last().unwrap().next, "torn bytes are gone");
            // New appends after recovery land right after the last intact record.
            now(log.append(b"after")).unwrap();
            assert_eq!(
                log.read_from(LogPos(0), usize::MAX).last().unwrap().payload,
                b"after"
            );
        }
    }

    #[test]
    fn a_corrupt_frame_ends_the_readable_log() {
        let d = disk(0.0, 1);
        let (log, _) = LogFile::open(&d, "log");
        now(log.append(b"good")).unwrap();
        // A frame whose checksum does not match its payload.
        let mut bad = Vec::new();
        bad.extend_from_slice(&3u32.to_le_bytes());
        bad.extend_from_slice(&0u32.to_le_bytes());
        bad.extend_from_slice(b"bad");
        now(d.append("log", &bad)).unwrap();
        let (_, rec) = LogFile::open(&d, "log");
        assert_eq!(rec.records.len(), 1);
        assert_eq!(rec.truncated_bytes, 11);
    }

    #[test]
    fn a_hole_left_by_a_failed_fsync_ends_the_log_after_a_power_loss() {
        let d = disk(0.0, 1);
        let (log, _) = LogFile::open(&d, "log");
        now(log.append(b"durable")).unwrap();
        now(log.sync()).unwrap();
        now(log.append(b"fsync-failed")).unwrap();
        d.set_fault(DiskFaultKind::SyncError, true);
        assert!(now(log.sync()).is_err());
        d.set_fault(DiskFaultKind::SyncError, false);
        now(log.append(b"synced-after")).unwrap();
        now(log.sync()).unwrap();
        assert_eq!(LogFile::open(&d, "log").1.records.len(), 3, "readable before");
        d.lose_power(SimTime::ZERO);
        let (_, rec) = LogFile::open(&d, "log");
        let payloads: Vec<_> = rec.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(payloads, vec![b"durable".to_vec()], "zeros are not records");
    }

    #[test]
    fn a_new_log_survives_a_power_loss_once_synced() {
        let d = disk(0.0, 1);
        let (log, _) = LogFile::open(&d, "log");
        now(log.append(b"one")).unwrap();
        now(log.sync()).unwrap();
        d.lose_power(SimTime::ZERO);
        assert_eq!(LogFile::open(&d, "log").1.records.len(), 1);
    }

    thread_local! {
        /// Records applied by [`Payloads`] on this thread: what a replay decoded.
        static APPLIED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Every payload in order.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Payloads(Vec<Vec<u8>>);

    impl Replay for Payloads {
        fn apply(&mut self, record: LogRecord) {
            APPLIED.with(|a| a.set(a.get() + 1));
            self.0.push(record.payload);
        }
    }

    /// The payloads a replay gives and how many records it decoded to get them (debug
    /// builds decode the whole log again after a replay from a kept state, to check it).
    fn replayed(log: &LogFile) -> (Vec<&'static str>, usize) {
        APPLIED.with(|a| a.set(0));
        let (state, end) = log.replay(Payloads::default);
        assert_eq!(
            end,
            log.read_from(LogPos(0), usize::MAX)
                .last()
                .map_or(LogPos(0), |r| r.next)
        );
        let payloads = state
            .0
            .into_iter()
            .map(|p| &*String::from_utf8(p).unwrap().leak())
            .collect();
        (payloads, APPLIED.with(|a| a.get()))
    }

    #[test]
    fn a_replay_decodes_only_what_was_appended_while_the_bytes_it_read_are_unchanged() {
        let d = disk(0.0, 1);
        let log = LogFile::of(&d, "log");
        now(log.append(b"a")).unwrap();
        now(log.append(b"b")).unwrap();
        let full_check = |new: usize, all: usize| if cfg!(debug_assertions) { new + all } else { new };
        assert_eq!(replayed(&log), (vec!["a", "b"], 2));
        now(log.append(b"c")).unwrap();
        assert_eq!(replayed(&log), (vec!["a", "b", "c"], full_check(1, 3)));
        // A power loss that drops only what follows the kept replay keeps it.
        now(log.sync()).unwrap();
        now(log.append(b"d")).unwrap();
        d.lose_power(SimTime::ZERO);
        assert_eq!(replayed(&log), (vec!["a", "b", "c"], full_check(0, 3)));
        // One that drops bytes the replay read forgets it: the next starts over.
        now(log.append(b"e")).unwrap();
        assert_eq!(replayed(&log).0, vec!["a", "b", "c", "e"]);
        d.lose_power(SimTime::ZERO);
        assert_eq!(replayed(&log), (vec!["a", "b", "c"], 3));
        // So does a cut below its end...
        log.truncate(log.read_from(LogPos(0), usize::MAX)[2].pos);
        assert_eq!(replayed(&log), (vec!["a", "b"], 2));
        // ...a failed fsync's range zeroed by a power loss...
        now(log.append(b"f")).unwrap();
        assert_eq!(replayed(&log).0, vec!["a", "b", "f"]);
        d.set_fault(DiskFaultKind::SyncError, true);
        assert!(now(log.sync()).is_err());
        d.set_fault(DiskFaultKind::SyncError, false);
        now(log.append(b"g")).unwrap();
        now(log.sync()).unwrap();
        assert_eq!(replayed(&log).0, vec!["a", "b", "f", "g"]);
        d.lose_power(SimTime::ZERO);
        assert_eq!(replayed(&log), (vec!["a", "b"], 2), "zeros end the log");
        // ...and a file installed in its place.
        d.install("log", &[]);
        assert_eq!(replayed(&log), (vec![], 0));
    }

    #[test]
    fn a_replay_of_another_kind_starts_from_its_own_initial_state() {
        #[derive(Clone, Debug, PartialEq)]
        struct Count(usize);
        impl Replay for Count {
            fn apply(&mut self, _: LogRecord) {
                self.0 += 1;
            }
        }
        let d = disk(0.0, 1);
        let log = LogFile::of(&d, "log");
        now(log.append(b"a")).unwrap();
        assert_eq!(replayed(&log).0, vec!["a"]);
        assert_eq!(log.replay(|| Count(10)).0, Count(11));
        now(log.append(b"b")).unwrap();
        assert_eq!(log.replay(|| Count(10)).0, Count(12));
        assert_eq!(replayed(&log), (vec!["a", "b"], 2));
    }

    #[test]
    fn opening_unread_cuts_a_torn_tail_as_opening_does() {
        for seed in 0..32 {
            let (read, unread) = (disk(1.0, seed), disk(1.0, seed));
            for d in [&read, &unread] {
                let log = LogFile::of(d, "log");
                now(log.append(b"synced")).unwrap();
                now(log.sync()).unwrap();
                log.replay(Payloads::default);
                now(log.append(b"unsynced-record-that-may-tear")).unwrap();
                d.lose_power(SimTime::ZERO);
            }
            let (opened, _) = now(LogFile::open_durably(&read, "log"));
            let opened_unread = now(LogFile::open_durably_unread(&unread, "log"));
            assert_eq!(opened.end(), opened_unread.end(), "seed {seed}");
            assert_eq!(opened.durable_end(), opened_unread.durable_end(), "seed {seed}");
            assert_eq!(read.read_all("log"), unread.read_all("log"), "seed {seed}");
        }
    }

    /// Every payload in order with where its frame ends: a state that can be cut back.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Framed(Vec<(Vec<u8>, LogPos)>);

    impl Replay for Framed {
        fn apply(&mut self, record: LogRecord) {
            APPLIED.with(|a| a.set(a.get() + 1));
            self.0.push((record.payload, record.next));
        }

        fn cut(&mut self, at: LogPos) -> Option<LogPos> {
            self.0.retain(|&(_, end)| end <= at);
            Some(self.0.last().map_or(LogPos(0), |&(_, end)| end))
        }
    }

    fn framed(log: &LogFile) -> (Vec<String>, usize) {
        APPLIED.with(|a| a.set(0));
        let (state, _) = log.replay(Framed::default);
        let payloads = state
            .0
            .into_iter()
            .map(|(p, _)| String::from_utf8(p).unwrap())
            .collect();
        (payloads, APPLIED.with(|a| a.get()))
    }

    #[test]
    fn noted_appends_and_cuts_keep_the_replay_beside_the_log_current() {
        // Debug builds decode the whole log again after a replay from a kept state.
        let check = |all: usize| if cfg!(debug_assertions) { all } else { 0 };
        let d = disk(1.0, 3);
        let log = LogFile::of(&d, "log");
        assert_eq!(framed(&log), (vec![], 0));
        let note = |state: &mut Framed, _: LogPos, next: LogPos, payload: &[u8]| {
            state.0.push((payload.to_vec(), next));
        };
        for payload in [&b"a"[..], b"b", b"c"] {
            now(log.append_noted::<Framed>(payload, |s, pos, next| note(s, pos, next, payload))).unwrap();
            assert_eq!(d.memo_covers("log"), Some(log.end().0), "the kept replay follows");
        }
        assert_eq!(framed(&log), (vec!["a".into(), "b".into(), "c".into()], check(3)));
        // A cut at a frame boundary cuts the kept replay back with it.
        log.truncate(log.read_from(LogPos(0), usize::MAX)[2].pos);
        assert_eq!(d.memo_covers("log"), Some(log.end().0));
        assert_eq!(framed(&log), (vec!["a".into(), "b".into()], check(2)));
        // A torn power loss leaves part of a frame: the kept replay keeps whole frames.
        now(log.sync()).unwrap();
        now(log.append_noted::<Framed>(b"unsynced-and-torn", |s, pos, next| {
            note(s, pos, next, b"unsynced-and-torn")
        }))
        .unwrap();
        d.lose_power(SimTime::ZERO);
        assert!(
            log.end() > log.read_from(LogPos(0), usize::MAX)[1].next,
            "a torn tail is left"
        );
        assert_eq!(framed(&log), (vec!["a".into(), "b".into()], check(2)));
        // An append by a writer that does not note it is decoded by the next replay.
        now(log.append(b"d")).unwrap();
        now(log.append_noted::<Framed>(b"e", |s, pos, next| note(s, pos, next, b"e"))).unwrap();
        assert_eq!(
            framed(&log).0,
            vec!["a", "b"],
            "frames after a torn tail are unreadable"
        );
    }
}
