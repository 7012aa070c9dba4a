//! Runs many independent runs on several threads.
//!
//! Each run is single-threaded and shares nothing, so seeds spread over worker threads
//! that take the next spec from a shared counter. Results come back in spec order
//! whatever the number of threads, so everything built from them is deterministic.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use faultline_sim::WorldError;

use crate::runner::{run, Outcome, RunOptions, RunSpec};

/// The number of worker threads to use when the caller does not say: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs every spec, `jobs` at a time, turning each outcome into a `T` on the worker (so
/// that large outcomes need not be kept). `progress` is called after each run with the
/// number done. When `stop` is set, runs not yet started are skipped: their slot is
/// `None`.
pub fn sweep<T, F, P>(
    specs: &[RunSpec],
    jobs: usize,
    summarise: F,
    progress: P,
    stop: &AtomicBool,
) -> Vec<Option<T>>
where
    T: Send,
    F: Fn(&RunSpec, Result<Outcome, WorldError>) -> T + Sync,
    P: Fn(usize) + Sync,
{
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..specs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, specs.len().max(1)) {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { return };
                let summary = summarise(spec, run(spec, RunOptions::default()));
                results.lock().expect("no worker panics while holding the lock")[i] = Some(summary);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    results.into_inner().expect("workers are done")
}
