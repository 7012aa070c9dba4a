//! An in-memory queue of outgoing changes, sent in order with retries: the shape of every
//! "after commit, tell the other side" integration (REST push, publish after commit,
//! notifications).
//!
//! Each item is retried with exponential backoff until it succeeds or its attempts run
//! out. With one worker the next item waits for the one before, so order holds; with
//! several (a pool of concurrent calls, as HTTP clients have) items overtake each other.
//! The queue lives in the process: a crash loses everything in it, which is exactly the
//! weakness these patterns have.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::rc::Rc;

use faultline_sim::{HostCtx, WindowGuard};

use crate::backoff::Backoff;
use crate::bugs::{Bug, BugSet};
use crate::windows;
use tokio::sync::Notify;

/// How hard the queue tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per item before giving it up.
    pub attempts_max: u32,
    /// First retry delay; doubles per attempt.
    pub backoff_initial_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// Items the queue holds; more are dropped.
    pub queue_max: usize,
    /// Items in flight at once (1 keeps order).
    pub concurrency: usize,
    /// With several in flight, never two of the same key at once, and each key's items
    /// in queue order (a sender that serialises calls per entity).
    pub per_key_order: bool,
}

/// The default policy: one at a time, 8 attempts, 20 ms doubling to 500 ms, 10,000
/// items.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    attempts_max: 8,
    backoff_initial_ms: 20,
    backoff_max_ms: 500,
    queue_max: 10_000,
    concurrency: 1,
    per_key_order: false,
};

/// A handle to the queue; clones share it.
pub struct RetryQueue<T> {
    items: Rc<RefCell<VecDeque<T>>>,
    /// The ordering key of each item, when the policy orders per key.
    key: fn(&T) -> u64,
    /// Keys with an item in flight.
    in_flight: Rc<RefCell<BTreeSet<u64>>>,
    wake: Rc<Notify>,
    /// Items pushed and not yet sent or given up, and the coverage window open while
    /// there are any (a crash then loses committed changes).
    outstanding: Rc<RefCell<(usize, Option<WindowGuard>)>>,
    policy: RetryPolicy,
    ctx: HostCtx,
    bugs: BugSet,
}

impl<T> Clone for RetryQueue<T> {
    fn clone(&self) -> Self {
        RetryQueue {
            items: Rc::clone(&self.items),
            key: self.key,
            in_flight: Rc::clone(&self.in_flight),
            wake: Rc::clone(&self.wake),
            outstanding: Rc::clone(&self.outstanding),
            policy: self.policy,
            ctx: self.ctx.clone(),
            bugs: self.bugs,
        }
    }
}

impl<T: Clone + Display + 'static> RetryQueue<T> {
    /// An empty queue on this host; `key` names an item's entity, for a policy that
    /// orders per key.
    pub fn new(ctx: &HostCtx, policy: RetryPolicy, bugs: BugSet, key: fn(&T) -> u64) -> Self {
        let outstanding: Rc<RefCell<(usize, Option<WindowGuard>)>> = Rc::default();
        let reported = Rc::downgrade(&outstanding);
        ctx.report_progress("retry-queue", move || {
            let n = reported.upgrade().map_or(0, |o| o.borrow().0);
            (n > 0).then(|| format!("{n} item(s) not yet sent or given up"))
        });
        RetryQueue {
            items: Rc::default(),
            key,
            in_flight: Rc::default(),
            wake: Rc::new(Notify::new()),
            outstanding,
            policy,
            ctx: ctx.clone(),
            bugs,
        }
    }

    /// Enqueues an item, or drops it (and says so in the trace) when the queue is full.
    pub fn push(&self, item: T) {
        if self.items.borrow().len() >= self.policy.queue_max {
            self.ctx.record("queue-dropped", format!("{item} queue full"));
            return;
        }
        self.items.borrow_mut().push_back(item);
        let mut outstanding = self.outstanding.borrow_mut();
        outstanding.0 += 1;
        if outstanding.1.is_none() {
            outstanding.1 = Some(self.ctx.window(windows::AFTER_COMMIT_BEFORE_PUBLISH));
        }
        drop(outstanding);
        self.wake.notify_one();
    }

    /// An item was sent or given up.
    fn settled(&self) {
        let mut outstanding = self.outstanding.borrow_mut();
        outstanding.0 = outstanding.0.saturating_sub(1);
        if outstanding.0 == 0 {
            outstanding.1 = None;
        }
    }

    /// Starts sending in the background (see [`RetryQueue::run`]); the handle ends only
    /// with the host.
    pub fn spawn<F, Fut>(&self, send: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(T) -> Fut + Clone + 'static,
        Fut: Future<Output = bool> + 'static,
    {
        let queue = self.clone();
        tokio::task::spawn_local(async move { queue.run(send).await })
    }

    /// Sends items forever with `concurrency` workers; `send` answers whether an attempt
    /// succeeded.
    pub async fn run<F, Fut>(&self, send: F)
    where
        F: Fn(T) -> Fut + Clone + 'static,
        Fut: Future<Output = bool> + 'static,
    {
        let workers: Vec<_> = (0..self.policy.concurrency.max(1))
            .map(|_| tokio::task::spawn_local(self.clone().work(send.clone())))
            .collect();
        for worker in workers {
            let _ = worker.await;
        }
    }

    async fn work<F, Fut>(self, send: F)
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = bool>,
    {
        loop {
            let Some(item) = self.take_next() else {
                self.wake.notified().await;
                continue;
            };
            // Another worker may be idle while this one sends: pass the wake-up on.
            if !self.items.borrow().is_empty() {
                self.wake.notify_one();
            }
            let mut backoff = Backoff::new(self.policy.backoff_initial_ms, self.policy.backoff_max_ms);
            for attempt in 1..=self.policy.attempts_max {
                if send(item.clone()).await {
                    self.settled();
                    break;
                }
                if self.bugs.has(Bug::RetryQueueReorders) {
                    // Planted: after the backoff, behind everything queued since, newer
                    // changes included (a "retry later" queue).
                    backoff.wait().await;
                    self.items.borrow_mut().push_back(item.clone());
                    self.wake.notify_one();
                    break;
                }
                if attempt == self.policy.attempts_max {
                    self.ctx
                        .record("gave-up", format!("{item} after {attempt} attempts"));
                    self.settled();
                    break;
                }
                backoff.wait().await;
            }
            if self.policy.per_key_order {
                self.in_flight.borrow_mut().remove(&(self.key)(&item));
                // The key's next item may be waiting for it.
                self.wake.notify_one();
            }
        }
    }

    /// The next item to send: the queue's first, or with per-key order the first whose
    /// key has nothing in flight (which is that key's oldest).
    fn take_next(&self) -> Option<T> {
        let mut items = self.items.borrow_mut();
        if !self.policy.per_key_order {
            return items.pop_front();
        }
        let mut in_flight = self.in_flight.borrow_mut();
        let at = items
            .iter()
            .position(|item| !in_flight.contains(&(self.key)(item)))?;
        let item = items.remove(at)?;
        in_flight.insert((self.key)(&item));
        Some(item)
    }
}
