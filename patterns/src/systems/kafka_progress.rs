//! Whether the Kafka stage of a run still holds work: records a leader has not yet
//! committed, or a consumed partition whose consumer is behind, busy, not yet committed
//! or missing.
//!
//! No single host can tell: a consumer sees only the high watermark of its last fetch
//! (the leader may have moved and committed more since), a broker sees only its own
//! replicas, and a partition whose owner died is nobody's until the group rebalances.
//! So the brokers and the consumers of a run report into one view, and every host of
//! the Kafka stage registers the view's answer as its probe ([`faultline_sim::progress`]).
//! It answers what `kafka-consumer-groups --describe` and a leader's under-replication
//! metrics would show an operator: a lag, an unassigned partition, records above the
//! high watermark.
//!
//! Reports hold no strong reference to a host's state: what a crash drops drops out of
//! the view with it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

/// One replica as its broker holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaEnd {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Its log end offset.
    pub log_end: u64,
    /// Its high watermark.
    pub high_watermark: u64,
    /// Whether this broker leads the partition (as it last heard).
    pub leads: bool,
}

/// A broker's replicas now; `None` once the broker's process life ended.
type BrokerReport = Box<dyn Fn() -> Option<Vec<ReplicaEnd>>>;

/// Where one consumer task of one partition stands.
#[derive(Debug)]
pub struct PartitionTask {
    topic: String,
    partition: u32,
    /// The next offset it fetches.
    position: Cell<u64>,
    /// The offset it last committed.
    committed: Cell<u64>,
    /// Parked in a fetch (a long poll): not handling records, not backing off.
    fetching: Cell<bool>,
}

impl PartitionTask {
    /// Moves the position and the committed offset.
    pub fn at(&self, position: u64, committed: u64) {
        self.position.set(position);
        self.committed.set(committed);
    }

    /// Marks the task parked in a fetch (`true`) or doing anything else.
    pub fn fetching(&self, fetching: bool) {
        self.fetching.set(fetching);
    }
}

/// The run's view of its Kafka stage; clones share it.
#[derive(Clone, Default)]
pub struct KafkaProgress {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    brokers: RefCell<Vec<BrokerReport>>,
    /// Consumed topics and their partition counts.
    topics: RefCell<BTreeMap<String, u32>>,
    tasks: RefCell<Vec<Weak<PartitionTask>>>,
}

impl KafkaProgress {
    /// A broker's process life reports its replicas through `report`.
    pub fn broker(&self, report: impl Fn() -> Option<Vec<ReplicaEnd>> + 'static) {
        self.inner.brokers.borrow_mut().push(Box::new(report));
    }

    /// A group consumes `topic`, of `partitions` partitions: each must have an owner
    /// that is caught up and committed.
    pub fn consumed(&self, topic: &str, partitions: u32) {
        self.inner
            .topics
            .borrow_mut()
            .insert(topic.to_string(), partitions);
    }

    /// A consumer task took `topic`/`partition`, starting at `position`; it counts as
    /// the partition's owner for as long as the returned handle lives.
    pub fn task(&self, topic: &str, partition: u32, position: u64) -> Rc<PartitionTask> {
        let task = Rc::new(PartitionTask {
            topic: topic.to_string(),
            partition,
            position: Cell::new(position),
            committed: Cell::new(position),
            fetching: Cell::new(false),
        });
        self.inner.tasks.borrow_mut().push(Rc::downgrade(&task));
        task
    }

    /// What the stage still holds, if anything.
    pub fn pending(&self) -> Option<String> {
        let mut replicas: Vec<ReplicaEnd> = Vec::new();
        {
            let mut brokers = self.inner.brokers.borrow_mut();
            let mut live = Vec::with_capacity(brokers.len());
            for report in brokers.drain(..) {
                if let Some(ends) = report() {
                    replicas.extend(ends);
                    live.push(report);
                }
            }
            *brokers = live;
        }
        if let Some(r) = replicas.iter().find(|r| r.leads && r.log_end > r.high_watermark) {
            return Some(format!(
                "{}/{}: offsets {}..{} not yet committed",
                r.topic, r.partition, r.high_watermark, r.log_end
            ));
        }
        let tasks: Vec<Rc<PartitionTask>> = {
            let mut tasks = self.inner.tasks.borrow_mut();
            tasks.retain(|t| t.strong_count() > 0);
            tasks.iter().filter_map(Weak::upgrade).collect()
        };
        for (topic, &partitions) in self.inner.topics.borrow().iter() {
            for partition in 0..partitions {
                // The committed end: no replica's high watermark is above the leader's.
                let high_watermark = replicas
                    .iter()
                    .filter(|r| r.topic == *topic && r.partition == partition)
                    .map(|r| r.high_watermark)
                    .max()
                    .unwrap_or(0);
                let mut owners = tasks
                    .iter()
                    .filter(|t| t.topic == *topic && t.partition == partition)
                    .peekable();
                if owners.peek().is_none() {
                    return Some(format!("{topic}/{partition}: no consumer owns it"));
                }
                for task in owners {
                    let (position, committed) = (task.position.get(), task.committed.get());
                    if !task.fetching.get() {
                        return Some(format!("{topic}/{partition}: its consumer is busy at {position}"));
                    }
                    if position < high_watermark {
                        return Some(format!(
                            "{topic}/{partition}: its consumer is at {position} of {high_watermark}"
                        ));
                    }
                    if committed < position {
                        return Some(format!(
                            "{topic}/{partition}: its consumer committed {committed} of {position}"
                        ));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(log_end: u64, high_watermark: u64, leads: bool) -> ReplicaEnd {
        ReplicaEnd {
            topic: "t".to_string(),
            partition: 0,
            log_end,
            high_watermark,
            leads,
        }
    }

    #[test]
    fn a_partition_is_done_only_when_owned_caught_up_and_committed() {
        let kafka = KafkaProgress::default();
        kafka.consumed("t", 1);
        let leader = Rc::new(Cell::new((5, 5)));
        let seen = Rc::clone(&leader);
        kafka.broker(move || {
            let (end, hw) = seen.get();
            Some(vec![replica(end, hw, true), replica(end, hw - 1, false)])
        });
        assert_eq!(kafka.pending().as_deref(), Some("t/0: no consumer owns it"));
        let task = kafka.task("t", 0, 3);
        assert_eq!(kafka.pending().as_deref(), Some("t/0: its consumer is busy at 3"));
        task.fetching(true);
        assert_eq!(kafka.pending().as_deref(), Some("t/0: its consumer is at 3 of 5"));
        task.at(5, 3);
        assert_eq!(
            kafka.pending().as_deref(),
            Some("t/0: its consumer committed 3 of 5")
        );
        task.at(5, 5);
        assert_eq!(kafka.pending(), None);
        leader.set((7, 5));
        assert_eq!(
            kafka.pending().as_deref(),
            Some("t/0: offsets 5..7 not yet committed")
        );
        leader.set((7, 7));
        assert!(kafka.pending().is_some());
        // The owner's process died: nobody owns the partition any more.
        task.at(7, 7);
        assert_eq!(kafka.pending(), None);
        drop(task);
        assert_eq!(kafka.pending().as_deref(), Some("t/0: no consumer owns it"));
    }
}
