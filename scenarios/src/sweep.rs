//! Runs many independent runs on several threads.
//!
//! Each run is single-threaded and shares nothing, so runs spread over worker threads
//! that take the next index from a shared counter. Specs are made from their index when
//! a worker takes them, and each result is folded into an aggregate as soon as it is
//! done, so a sweep of any length runs in flat memory. Aggregates must not depend on the
//! order results arrive in (sums, histograms, lowest seeds); then what a sweep reports is
//! the same for any number of threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::runner::{run, Outcome, RunFailure, RunOptions, RunSpec};

/// The number of worker threads to use when the caller does not say: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs specs `0..count` (made by `spec_at`), `jobs` at a time. Each outcome is turned
/// into a `T` on its worker, then handed to `fold` with its index, one at a time.
/// `progress` is told how many are done. When `stop` is set, runs not yet started are
/// skipped. Returns how many runs were done.
#[allow(clippy::too_many_arguments)]
pub fn sweep_fold<T, S, F, A, P>(
    count: usize,
    jobs: usize,
    options: RunOptions,
    spec_at: S,
    summarise: F,
    fold: A,
    progress: P,
    stop: &AtomicBool,
) -> usize
where
    T: Send,
    S: Fn(usize) -> RunSpec + Sync,
    F: Fn(&RunSpec, Result<Outcome, Box<RunFailure>>) -> T + Sync,
    A: FnMut(usize, T) + Send,
    P: Fn(usize) + Sync,
{
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let fold = Mutex::new(fold);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, count.max(1)) {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let spec = spec_at(i);
                let summary = summarise(&spec, run(&spec, options));
                (fold.lock().expect("no fold panics while holding the lock"))(i, summary);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    done.into_inner()
}

/// [`sweep_fold`] over a list of specs, keeping every result in spec order (`None` for
/// runs never started). For sweeps small enough to keep; large ones fold.
pub fn sweep<T, F, P>(
    specs: &[RunSpec],
    jobs: usize,
    summarise: F,
    progress: P,
    stop: &AtomicBool,
) -> Vec<Option<T>>
where
    T: Send,
    F: Fn(&RunSpec, Result<Outcome, Box<RunFailure>>) -> T + Sync,
    P: Fn(usize) + Sync,
{
    let mut results: Vec<Option<T>> = (0..specs.len()).map(|_| None).collect();
    sweep_fold(
        specs.len(),
        jobs,
        RunOptions::default(),
        |i| specs[i].clone(),
        summarise,
        |i, t| results[i] = Some(t),
        progress,
        stop,
    );
    results
}
