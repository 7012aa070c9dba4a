//! What Kafka Connect's worker does for a source task's position: the CDC connector and
//! the log-tailing outbox relay (Debezium's outbox event router) both run as one.
//!
//! The task's source offset moves on in memory as its records are acknowledged, and
//! the worker flushes it to offset storage every `offset.flush.interval.ms` (60 s by
//! default). After a crash the task resumes from the last *flushed* offset, so up to one
//! interval of events is published again: the duplicates Debezium's documentation
//! warns consumers about ("Duplicates after a crash" depend on the flush period and
//! the change volume before it). A flush that fails is tried again at the next one, as
//! Connect keeps the offsets for its next attempt.
//!
//! Connect acknowledges record by record and flushes the offset of the last record
//! acknowledged in order, wherever it falls, so a flushed offset can stand inside a
//! transaction. The position is therefore a log record and the number of its events
//! already published, as Debezium's MySQL offsets carry a binlog position with the
//! events and rows to skip past it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{HostCtx, LogPos, WindowGuard};
use serde::{Deserialize, Serialize};

use crate::history::Recorder;
use crate::windows;

/// Kafka Connect's `offset.flush.interval.ms` default.
pub const OFFSET_FLUSH_INTERVAL_MS: u64 = 60_000;

/// Where a source task resumes: a log record, and how many of its events are already
/// published (0: none of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePosition {
    /// The log record.
    pub log: LogPos,
    /// Events of that record published before this position.
    pub skip: u32,
}

impl SourcePosition {
    /// The start of the record at `log`.
    pub fn at(log: LogPos) -> Self {
        SourcePosition { log, skip: 0 }
    }

    /// How offset storage holds it: `log` alone at a record's start, `log/skip` inside one.
    fn encode(self) -> String {
        if self.skip == 0 {
            self.log.0.to_string()
        } else {
            format!("{}/{}", self.log.0, self.skip)
        }
    }

    fn decode(text: &str) -> Option<SourcePosition> {
        let (log, skip) = text.split_once('/').unwrap_or((text, "0"));
        Some(SourcePosition {
            log: LogPos(log.parse().ok()?),
            skip: skip.parse().ok()?,
        })
    }
}

/// A source task's position: acknowledged in memory, flushed to disk every interval by
/// a task of its own (Connect's `SourceTaskOffsetCommitter` runs on a scheduler beside
/// the task's poll loop), whatever the task is doing then: waiting for a delivery that
/// a broker outage holds up, or between two events of one transaction.
pub struct SourceOffsets {
    shared: Rc<Shared>,
}

struct Shared {
    ctx: HostCtx,
    file: &'static str,
    /// Whether offset storage held a position when the task started.
    saved: bool,
    state: RefCell<Positions>,
    /// One flush at a time (the periodic one, or a planted bug's early save).
    flushing: tokio::sync::Mutex<()>,
    on_flushed: Box<dyn Fn(SourcePosition)>,
}

struct Positions {
    /// Everything before it is acknowledged by the broker.
    acknowledged: SourcePosition,
    /// What the disk holds.
    flushed: SourcePosition,
    /// Open while the position is ahead of what the disk holds.
    unflushed: Option<WindowGuard>,
}

impl SourceOffsets {
    /// The position saved in `file` (the log's start when there is none), flushed every
    /// `interval_ms` from now on for as long as the process lives; `on_flushed` is told
    /// of each position flushed (Debezium then confirms it to the replication slot:
    /// `lsn.flush.mode=connector`).
    pub fn open(
        ctx: &HostCtx,
        file: &'static str,
        interval_ms: u64,
        on_flushed: impl Fn(SourcePosition) + 'static,
    ) -> Self {
        let saved = ctx.disk().read_all(file);
        let position = std::str::from_utf8(&saved)
            .ok()
            .and_then(SourcePosition::decode)
            .unwrap_or_default();
        let offsets = SourceOffsets {
            shared: Rc::new(Shared {
                ctx: ctx.clone(),
                file,
                saved: !saved.is_empty(),
                state: RefCell::new(Positions {
                    acknowledged: position,
                    flushed: position,
                    unflushed: None,
                }),
                flushing: tokio::sync::Mutex::new(()),
                on_flushed: Box::new(on_flushed),
            }),
        };
        let flusher = SourceOffsets {
            shared: Rc::clone(&offsets.shared),
        };
        let interval = Duration::from_millis(interval_ms);
        tokio::task::spawn_local(async move {
            loop {
                faultline_sim::timer::sleep(interval).await;
                flusher.flush().await;
            }
        });
        offsets
    }

    /// Whether offset storage held a position when the task started: a connector with
    /// none snapshots first (Debezium's `snapshot.mode=initial`).
    pub fn was_saved(&self) -> bool {
        self.shared.saved
    }

    /// Where to read from next.
    pub fn position(&self) -> SourcePosition {
        self.shared.state.borrow().acknowledged
    }

    /// Everything before `to` is acknowledged by the broker.
    pub fn acknowledged(&self, to: SourcePosition) {
        let mut state = self.shared.state.borrow_mut();
        state.acknowledged = to;
        if state.acknowledged != state.flushed && state.unflushed.is_none() {
            state.unflushed = Some(
                self.shared
                    .ctx
                    .window(windows::AFTER_PUBLISH_BEFORE_POSITION_FLUSH),
            );
        }
    }

    /// Writes the acknowledged position to disk now (the periodic flush, or a planted
    /// bug's early save). A failed write is tried again at the next flush.
    pub async fn flush(&self) {
        let _one_at_a_time = self.shared.flushing.lock().await;
        let position = self.position();
        if position == self.shared.state.borrow().flushed {
            return;
        }
        let shared = &self.shared;
        match shared
            .ctx
            .disk()
            .replace(shared.file, position.encode().as_bytes())
            .await
        {
            Ok(()) => {
                {
                    let mut state = shared.state.borrow_mut();
                    state.flushed = position;
                    if state.acknowledged == position {
                        state.unflushed = None;
                    }
                }
                (shared.on_flushed)(position);
            }
            Err(e) => {
                shared
                    .ctx
                    .record("offset-flush-failed", format!("{} {e}", shared.file));
            }
        }
    }
}

/// A source task that meets an error it cannot get past stops, FAILED, and stays so
/// (Kafka Connect restarts a failed task only when asked; a worker restart runs it
/// again, and it fails again): the trace and the history say so, loudly.
pub async fn fail_task(ctx: &HostCtx, recorder: &Recorder, error: String) -> faultline_sim::HostResult {
    ctx.record("task-failed", error.clone());
    recorder.component_failed(ctx.now(), ctx.name(), error);
    std::future::pending::<()>().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_inside_a_record_reads_back_as_written_and_a_bare_one_as_its_start() {
        for position in [
            SourcePosition::at(LogPos(0)),
            SourcePosition::at(LogPos(4096)),
            SourcePosition {
                log: LogPos(4096),
                skip: 2,
            },
        ] {
            assert_eq!(SourcePosition::decode(&position.encode()), Some(position));
        }
        assert_eq!(SourcePosition::decode("77"), Some(SourcePosition::at(LogPos(77))));
        assert_eq!(SourcePosition::decode("77/x"), None);
    }
}
