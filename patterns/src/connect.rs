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

use std::time::Duration;

use faultline_sim::{HostCtx, LogPos, SimTime, WindowGuard};

use crate::windows;

/// Kafka Connect's `offset.flush.interval.ms` default.
pub const OFFSET_FLUSH_INTERVAL_MS: u64 = 60_000;

/// A source task's position: acknowledged in memory, flushed to disk periodically.
pub struct SourceOffsets {
    ctx: HostCtx,
    file: &'static str,
    interval: Duration,
    /// Everything before it is acknowledged by the broker.
    position: LogPos,
    /// Whether offset storage held a position when the task started.
    saved: bool,
    /// What the disk holds.
    flushed: LogPos,
    /// When the last flush was due (the task's start for the first).
    flushed_at: SimTime,
    /// Open while the position is ahead of what the disk holds.
    unflushed: Option<WindowGuard>,
}

impl SourceOffsets {
    /// The position saved in `file` (the log's start when there is none).
    pub fn open(ctx: &HostCtx, file: &'static str, interval_ms: u64) -> Self {
        let saved = ctx.disk().read_all(file);
        let position = LogPos(
            std::str::from_utf8(&saved)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        );
        SourceOffsets {
            ctx: ctx.clone(),
            file,
            interval: Duration::from_millis(interval_ms),
            position,
            saved: !saved.is_empty(),
            flushed: position,
            flushed_at: ctx.now(),
            unflushed: None,
        }
    }

    /// Whether offset storage held a position when the task started: a connector with
    /// none snapshots first (Debezium's `snapshot.mode=initial`).
    pub fn was_saved(&self) -> bool {
        self.saved
    }

    /// Where to read from next.
    pub fn position(&self) -> LogPos {
        self.position
    }

    /// Everything before `to` is acknowledged by the broker.
    pub fn acknowledged(&mut self, to: LogPos) {
        self.position = to;
        if self.position != self.flushed && self.unflushed.is_none() {
            self.unflushed = Some(self.ctx.window(windows::AFTER_PUBLISH_BEFORE_POSITION_FLUSH));
        }
    }

    /// The worker's timer: flushes when the interval has passed. Tasks call it on every
    /// poll (every few milliseconds), which is as often as the timer can matter.
    pub async fn tick(&mut self) {
        if self.ctx.now() >= self.flushed_at + self.interval {
            self.flushed_at = self.ctx.now();
            self.flush().await;
        }
    }

    /// Writes the position to disk now (the periodic flush, or a planted bug's early
    /// save).
    pub async fn flush(&mut self) {
        if self.position == self.flushed {
            return;
        }
        match self
            .ctx
            .disk()
            .replace(self.file, self.position.0.to_string().as_bytes())
            .await
        {
            Ok(()) => {
                self.flushed = self.position;
                self.unflushed = None;
            }
            Err(e) => {
                self.ctx
                    .record("offset-flush-failed", format!("{} {e}", self.file));
            }
        }
    }
}
