//! The after-commit publisher: right after a commit, each record is handed to the Kafka
//! producer, which batches, sends and retries it (`send()` without waiting, as a
//! Spring `@TransactionalEventListener(AFTER_COMMIT)` calling `KafkaTemplate.send`
//! does). Until the broker acknowledges it the record lives only in the producer's
//! memory: a crash loses it, the weakness these patterns have.

use std::cell::RefCell;
use std::rc::Rc;

use faultline_sim::{HostCtx, WindowGuard};

use crate::systems::broker::Producer;
use crate::windows;

/// Publishes records after commits; clones share the producer and the pending count.
#[derive(Clone)]
pub struct AfterCommitPublisher {
    producer: Producer,
    ctx: HostCtx,
    /// Records handed over and not yet acknowledged, and the coverage window open while
    /// there are any (a crash then loses committed changes).
    pending: Rc<RefCell<(usize, Option<WindowGuard>)>>,
}

impl AfterCommitPublisher {
    /// A publisher over `producer`.
    pub fn new(ctx: &HostCtx, producer: Producer) -> Self {
        let pending: Rc<RefCell<(usize, Option<WindowGuard>)>> = Rc::default();
        let reported = Rc::downgrade(&pending);
        ctx.report_progress("after-commit", move || {
            let n = reported.upgrade().map_or(0, |p| p.borrow().0);
            (n > 0).then(|| format!("{n} record(s) not yet acknowledged"))
        });
        AfterCommitPublisher {
            producer,
            ctx: ctx.clone(),
            pending,
        }
    }

    /// Hands one record to the producer; a background task waits for its delivery and
    /// records a failure (after `delivery.timeout.ms`) in the trace.
    pub fn publish(&self, topic: &str, partition: u32, key: String, payload: String, what: String) {
        let delivery = self.producer.send_async(topic, partition, key, payload);
        {
            let mut pending = self.pending.borrow_mut();
            pending.0 += 1;
            if pending.1.is_none() {
                pending.1 = Some(self.ctx.window(windows::AFTER_COMMIT_BEFORE_PUBLISH));
            }
        }
        let this = self.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = delivery.await {
                this.ctx.record("publish-failed", format!("{what}: {e}"));
            }
            let mut pending = this.pending.borrow_mut();
            pending.0 -= 1;
            if pending.0 == 0 {
                pending.1 = None;
            }
        });
    }
}
