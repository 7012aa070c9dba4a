//! Fault coverage ("sometimes" assertions): which fault landed in which operation
//! window, counted per run.
//!
//! A green verdict says nothing about a window no fault ever reached. As FoundationDB's
//! code probes and Antithesis's "sometimes" assertions do, components mark the windows
//! that matter (after a commit, before its publish; after an apply, before its offset
//! commit) with [`HostCtx::window`](crate::HostCtx::window); when the world crashes or
//! powers off a host, every window open on it counts as hit (`crash/<window>`,
//! `power-loss/<window>`). The disk and the network count their own windows
//! (`power-loss/unsynced-tail`, `sync-error/readable-not-durable`,
//! `lost-response/after-handler`, `timeout/late-arrival`). Counts are kept beside the
//! trace and do not enter its hash.

/// The windows the world counts itself.
pub mod windows {
    /// A power loss dropped a file's unsynced tail.
    pub const POWER_LOSS_UNSYNCED_TAIL: &str = "power-loss/unsynced-tail";
    /// A power loss kept a torn prefix of a file's unsynced tail.
    pub const POWER_LOSS_TORN_TAIL: &str = "power-loss/torn-tail";
    /// A power loss undid a file name never made durable by a directory sync.
    pub const POWER_LOSS_UNDURABLE_NAME: &str = "power-loss/undurable-name";
    /// A power loss zeroed a range whose fsync had failed: reached only by code that
    /// keeps writing after a failed fsync instead of cutting back (the planted
    /// `source-retries-failed-fsync`; a leftover temporary file).
    pub const POWER_LOSS_FAILED_SYNC_RANGE: &str = "power-loss/failed-sync-range";
    /// An fsync failed with unsynced data still readable.
    pub const SYNC_ERROR_READABLE_NOT_DURABLE: &str = "sync-error/readable-not-durable";
    /// A server ran its handler and the response was lost.
    pub const LOST_RESPONSE_AFTER_HANDLER: &str = "lost-response/after-handler";
    /// A request reached its server after the caller's deadline.
    pub const TIMEOUT_LATE_ARRIVAL: &str = "timeout/late-arrival";
}

use std::cell::RefCell;

use crate::time::SimTime;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug, Default)]
struct Inner {
    /// Open windows per host: how many of each, and the host's epoch (bumped on each
    /// crash, so that guards of a dead incarnation close nothing).
    open: BTreeMap<Arc<str>, HostWindows>,
    hits: BTreeMap<String, u64>,
    /// Every hit in order, with its instant: what a violation can be traced back to.
    timeline: Vec<(SimTime, Rc<str>)>,
}

#[derive(Debug, Default)]
struct HostWindows {
    epoch: u64,
    open: BTreeMap<&'static str, u32>,
}

/// A run's coverage counters. Clones share them.
#[derive(Clone, Debug, Default)]
pub struct Coverage(Rc<RefCell<Inner>>);

impl Coverage {
    /// Counts one hit of `window` (a fault kind and the window it landed in) at `at`.
    pub fn hit(&self, at: SimTime, window: &str) {
        let mut inner = self.0.borrow_mut();
        *inner.hits.entry(window.to_string()).or_insert(0) += 1;
        inner.timeline.push((at, Rc::from(window)));
    }

    /// Opens `window` on `host` until the guard drops.
    pub fn open(&self, host: &Arc<str>, window: &'static str) -> WindowGuard {
        let mut inner = self.0.borrow_mut();
        let entry = inner.open.entry(Arc::clone(host)).or_default();
        *entry.open.entry(window).or_insert(0) += 1;
        WindowGuard {
            coverage: self.clone(),
            host: Arc::clone(host),
            window,
            epoch: entry.epoch,
        }
    }

    /// A fault named `fault` (`crash`, `power-loss`) stopped `host`: every window open
    /// there is hit once, and the host's windows close.
    pub fn landed(&self, at: SimTime, fault: &str, host: &str) {
        let open: Vec<&'static str> = {
            let mut inner = self.0.borrow_mut();
            let Some(entry) = inner.open.get_mut(host) else {
                return;
            };
            entry.epoch += 1;
            let open = entry
                .open
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(w, _)| *w)
                .collect();
            entry.open.clear();
            open
        };
        for window in open {
            self.hit(at, &format!("{fault}/{window}"));
        }
    }

    /// Every window hit so far, with its count.
    pub fn hits(&self) -> BTreeMap<String, u64> {
        self.0.borrow().hits.clone()
    }

    /// Every hit so far, in order, with its instant.
    pub fn timeline(&self) -> Vec<(SimTime, String)> {
        self.0
            .borrow()
            .timeline
            .iter()
            .map(|(at, w)| (*at, w.to_string()))
            .collect()
    }
}

/// An open window; dropping it closes it.
#[derive(Debug)]
pub struct WindowGuard {
    coverage: Coverage,
    host: Arc<str>,
    window: &'static str,
    epoch: u64,
}

impl Drop for WindowGuard {
    fn drop(&mut self) {
        let mut inner = self.coverage.0.borrow_mut();
        let Some(entry) = inner.open.get_mut(&self.host) else {
            return;
        };
        if entry.epoch != self.epoch {
            return;
        }
        if let Some(n) = entry.open.get_mut(self.window) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_hits_the_windows_open_on_its_host_only() {
        let coverage = Coverage::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let _open = coverage.open(&a, "after-commit");
        let closed = coverage.open(&a, "after-apply");
        drop(closed);
        let _elsewhere = coverage.open(&b, "after-apply");
        coverage.landed(SimTime::ZERO, "crash", "a");
        assert_eq!(
            coverage.hits(),
            BTreeMap::from([("crash/after-commit".to_string(), 1)])
        );
    }

    #[test]
    fn guards_of_a_crashed_incarnation_close_nothing() {
        let coverage = Coverage::default();
        let a: Arc<str> = Arc::from("a");
        let old = coverage.open(&a, "w");
        coverage.landed(SimTime::ZERO, "crash", "a");
        let _new = coverage.open(&a, "w");
        drop(old);
        coverage.landed(SimTime::ZERO, "power-loss", "a");
        assert_eq!(coverage.hits().get("power-loss/w"), Some(&1));
    }
}
