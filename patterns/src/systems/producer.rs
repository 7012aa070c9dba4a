//! The Kafka producer: a record accumulator per partition, batches, pipelined requests
//! to each partition's leader, retries, idempotence.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::backoff::Backoff;
use crate::systems::broker::{
    produced, Acks, BrokerError, BrokerRequest, BrokerResponse, Cluster, ProducerSeq, BATCH_SIZE_BYTES,
    BROKER_HOSTS, BROKER_PORT,
};
use faultline_sim::HostCtx;

/// The offset a delivery reports under `acks=0`, where the producer never hears it
/// (Kafka's `RecordMetadata.offset()` is -1 then).
pub const UNKNOWN_OFFSET: u64 = u64::MAX;

/// How a producer sends, with the Kafka producer settings it mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// `enable.idempotence`: stamp records with a producer id and a per-partition
    /// sequence, so the broker drops a retry whose first attempt was stored and refuses
    /// one that would land out of order.
    pub idempotent: bool,
    /// `max.in.flight.requests.per.connection`: how many produce requests may await
    /// their answer at once (at most [`MAX_IN_FLIGHT_FOR_IDEMPOTENCE`] with idempotence).
    pub max_in_flight: usize,
    /// `retry.backoff.ms`: the first wait before a failed produce is sent again.
    pub retry_backoff_ms: u64,
    /// `retry.backoff.max.ms`: the longest wait; the wait doubles up to it.
    pub retry_backoff_max_ms: u64,
    /// `delivery.timeout.ms`: a record not acknowledged by then fails to the caller.
    pub delivery_timeout_ms: u64,
    /// `linger.ms`: how long a batch waits for more records after its first before it
    /// is sent (a full batch goes at once).
    pub linger_ms: u64,
    /// `batch.size`: bytes of keys and payloads one produce request carries at most.
    pub batch_size: usize,
    /// `acks`: what the leader waits for before it answers (`all` with idempotence).
    pub acks: Acks,
}

/// A Kafka 4.x application producer's defaults: `enable.idempotence=true`,
/// `acks=all`, `max.in.flight.requests.per.connection=5`, `retries=2147483647` bounded
/// by `delivery.timeout.ms=120000`, `retry.backoff.ms=100`, `retry.backoff.max.ms=1000`,
/// `linger.ms=5` (KIP-1030; 0 through 3.9).
pub const KAFKA_PRODUCER: ProducerConfig = ProducerConfig {
    idempotent: true,
    max_in_flight: 5,
    retry_backoff_ms: 100,
    retry_backoff_max_ms: 1_000,
    delivery_timeout_ms: 120_000,
    linger_ms: 5,
    batch_size: BATCH_SIZE_BYTES,
    acks: Acks::All,
};

/// The producer Kafka Connect gives a source task (Debezium's connectors run as one):
/// `enable.idempotence=false`, `acks=all`, `max.in.flight.requests.per.connection=1`,
/// `delivery.timeout.ms=Integer.MAX_VALUE` (Worker.java's overrides). A lost ack is
/// retried in place and stored twice, next to each other.
pub const CONNECT_SOURCE_PRODUCER: ProducerConfig = ProducerConfig {
    idempotent: false,
    max_in_flight: 1,
    delivery_timeout_ms: i32::MAX as u64,
    ..KAFKA_PRODUCER
};

/// Connect's source-task producer as a careful team runs it: the overrides above plus
/// `producer.override.enable.idempotence=true` in the connector's configuration, so a
/// batch retried after a lost ack is not stored twice (without it the copy of a whole
/// batch lands after the batch's own newer records). Replays after a restart remain.
pub const CONNECT_SOURCE_PRODUCER_IDEMPOTENT: ProducerConfig = ProducerConfig {
    idempotent: true,
    ..CONNECT_SOURCE_PRODUCER
};

/// What a delivery future resolves to: the record's offset, or why it failed.
pub type Delivery = Result<u64, BrokerError>;

/// A Kafka producer: a record accumulator per partition, a sender that forms batches
/// from it, and a pipelined connection per broker and partition with up to
/// `max.in.flight.requests.per.connection` requests awaiting their answer. A batch goes
/// to its partition's leader as the producer's metadata last heard it; an answer that
/// the broker does not lead (or a failed call) makes it ask again, and the batch is
/// retried like any failed one.
///
/// A failed batch is sent again after its backoff until it is acknowledged or
/// `delivery.timeout.ms` passes, where Kafka's `RecordAccumulator.reenqueue` puts it:
/// an idempotent producer keeps its batches in sequence order and sends a retried batch
/// only once every earlier one is resolved, so order holds; a plain producer puts it at
/// the head of the partition's queue (`Deque.addFirst`), so with several in flight a
/// batch that failed goes out after later ones that did not, and when a timed-out
/// request takes its connection's other requests down with it, they are re-queued
/// oldest first and so sent newest first. A batch the broker refuses as out of order
/// while an earlier one of its partition is unresolved is retried after it; refused
/// when it is the earliest, or expired while its fate is unknown, the partition starts
/// a new producer epoch (KIP-360): a new producer id, sequences from 0.
///
/// An idempotent producer's id belongs to its process life (a restart gets a new one,
/// as a producer without `transactional.id` does): nothing helps against a restarted
/// producer sending again what its process sent before the crash, that is the caller's
/// replay. The accumulator dies with the process; its deliveries are dropped unresolved.
#[derive(Clone)]
pub struct Producer {
    inner: Rc<ProducerInner>,
}

/// A pipelined connection to a broker.
type Connection = faultline_sim::PipelinedClient<BrokerRequest, BrokerResponse>;

/// The connections by broker and partition.
type Connections = BTreeMap<(u32, (String, u32)), Connection>;

struct ProducerInner {
    cluster: Rc<Cluster>,
    connections: RefCell<Connections>,
    request_timeout: Duration,
    config: ProducerConfig,
    ctx: HostCtx,
    /// Where acknowledged records are recorded, when the run records them.
    recorder: Option<crate::history::Recorder>,
    /// The producer id of epoch 0 on every partition (idempotent producers only).
    base_id: Option<u64>,
    partitions: Rc<RefCell<BTreeMap<(String, u32), PartitionQueue>>>,
}

/// A record handed to the producer and not yet in a batch.
struct Waiting {
    key: String,
    payload: String,
    done: tokio::sync::oneshot::Sender<Delivery>,
    /// Handed in by [`Producer::send_all`], which flushes: no lingering for it.
    flush: bool,
    at: faultline_sim::SimTime,
}

/// A batch sent or to be sent (again).
struct Batch {
    records: Vec<(String, String)>,
    done: Vec<tokio::sync::oneshot::Sender<Delivery>>,
    producer: Option<ProducerSeq>,
    deadline: faultline_sim::SimTime,
    backoff: Backoff,
    /// Not to be sent again before this instant.
    retry_at: faultline_sim::SimTime,
}

/// One partition's accumulator and sender state.
#[derive(Default)]
struct PartitionQueue {
    waiting: std::collections::VecDeque<Waiting>,
    /// Batches to send again, in the order they go.
    retries: std::collections::VecDeque<Batch>,
    in_flight: usize,
    /// First sequences of the batches sent and not yet resolved (idempotent only).
    unresolved: std::collections::BTreeSet<u64>,
    next_seq: u64,
    epoch: u64,
    /// A batch's fate became unknowable: start a new epoch once nothing is in flight.
    bump_epoch: bool,
    wake: Rc<Notify>,
    sender_running: bool,
}

/// What a partition's sender does next.
enum Next {
    Send(Batch),
    Sleep(Duration),
    Wait,
}

impl Producer {
    /// A producer on this host; each request gives up after `request_timeout`.
    /// A producer on this host of a cluster of `brokers` brokers (`bootstrap.servers`:
    /// asked for metadata in turn); each request gives up after `request_timeout`.
    pub fn new(ctx: &HostCtx, request_timeout: Duration, config: ProducerConfig, brokers: u32) -> Self {
        let base_id = config
            .idempotent
            .then(|| faultline_sim::trace::fnv1a64(ctx.name().as_bytes()) ^ u64::from(ctx.incarnation()));
        let partitions: Rc<RefCell<BTreeMap<(String, u32), PartitionQueue>>> = Rc::default();
        let reported = Rc::downgrade(&partitions);
        ctx.report_progress("producer", move || {
            let partitions = reported.upgrade()?;
            let partitions = partitions.borrow();
            partitions.iter().find_map(|((topic, partition), queue)| {
                let held = queue.waiting.len() + queue.retries.len() + queue.in_flight;
                (held > 0).then(|| {
                    format!("{topic}/{partition}: {held} record(s) or batch(es) not yet acknowledged")
                })
            })
        });
        Producer {
            inner: Rc::new(ProducerInner {
                cluster: Cluster::new(ctx, brokers, request_timeout),
                connections: RefCell::default(),
                request_timeout,
                config,
                ctx: ctx.clone(),
                recorder: None,
                base_id,
                partitions,
            }),
        }
    }

    /// The same producer, recording every record a broker acknowledged (with the offset
    /// it gave) in the run's history, for the checkers' Kafka-level anomalies.
    pub fn recorded_by(self, recorder: &crate::history::Recorder) -> Self {
        let inner = Rc::into_inner(self.inner).expect("recorded_by is called on a new producer");
        Producer {
            inner: Rc::new(ProducerInner {
                recorder: Some(recorder.clone()),
                ..inner
            }),
        }
    }

    /// Hands a record to the producer and returns at once with its delivery, as
    /// `KafkaProducer.send` does: the record joins its partition's batch, which is sent
    /// when full (`batch.size`) or `linger.ms` after its first record, each retried
    /// until acknowledged or `delivery.timeout.ms` passes. The delivery is dropped,
    /// unresolved, if the process dies first.
    pub fn send_async(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
    ) -> impl std::future::Future<Output = Delivery> + 'static {
        self.delivery(topic, partition, key, payload, false)
    }

    /// [`Producer::send_async`] for a record whose sender flushes (no lingering for
    /// it): a caller that hands a whole poll and then waits for each delivery in turn,
    /// as a Connect source task does between `poll()` and its acknowledgements.
    pub fn send_flushed(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
    ) -> impl std::future::Future<Output = Delivery> + 'static {
        self.delivery(topic, partition, key, payload, true)
    }

    /// Hands a record over; its delivery resolves to closed if the process dies first.
    fn delivery(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
        flush: bool,
    ) -> impl std::future::Future<Output = Delivery> + 'static {
        let delivery = self.hand(topic, partition, key, payload, flush);
        async move { delivery.await.unwrap_or_else(|_| Err(closed())) }
    }

    fn hand(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
        flush: bool,
    ) -> tokio::sync::oneshot::Receiver<Delivery> {
        let (done, delivery) = tokio::sync::oneshot::channel();
        if let Some(recorder) = &self.inner.recorder {
            recorder.kafka_send(topic, partition, crate::history::record_digest(&key, &payload));
        }
        let start = {
            let mut partitions = self.inner.partitions.borrow_mut();
            let queue = partitions.entry((topic.to_string(), partition)).or_default();
            queue.waiting.push_back(Waiting {
                key,
                payload,
                done,
                flush,
                at: self.inner.ctx.now(),
            });
            queue.wake.notify_one();
            !std::mem::replace(&mut queue.sender_running, true)
        };
        if start {
            tokio::task::spawn_local(self.clone().sender(topic.to_string(), partition));
        }
        delivery
    }

    /// Sends one record and waits for its acknowledgement; fails only when
    /// `delivery.timeout.ms` passes.
    pub async fn send(
        &self,
        topic: &str,
        partition: u32,
        key: String,
        payload: String,
    ) -> Result<u64, BrokerError> {
        self.send_all(topic, partition, vec![(key, payload)]).await
    }

    /// Hands `(key, payload)` records of one partition to the producer and flushes
    /// (`KafkaProducer.send` of each, then `flush()`: no lingering), in batches of up to
    /// `batch.size` bytes; waits for every delivery and returns the first record's
    /// offset, or the first failure.
    pub async fn send_all(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, String)>,
    ) -> Result<u64, BrokerError> {
        let deliveries: Vec<_> = records
            .into_iter()
            .map(|(key, payload)| self.hand(topic, partition, key, payload, true))
            .collect();
        let mut first = None;
        for delivery in deliveries {
            let offset = delivery.await.unwrap_or_else(|_| Err(closed()))?;
            first.get_or_insert(offset);
        }
        Ok(first.unwrap_or(0))
    }

    /// One partition's sender, for as long as the process lives: sends what is due,
    /// up to `max.in.flight.requests.per.connection` at once.
    async fn sender(self, topic: String, partition: u32) {
        let key = (topic, partition);
        let wake = Rc::clone(
            &self
                .inner
                .partitions
                .borrow_mut()
                .entry(key.clone())
                .or_default()
                .wake,
        );
        loop {
            match self.next(&key) {
                Next::Send(batch) => {
                    // The leader is looked up here, in the sender's order, so batches
                    // reach the connection in the order they were formed.
                    let leader = self.inner.cluster.leader(&key.0, key.1).await;
                    tokio::task::spawn_local(self.clone().send_batch(key.clone(), batch, leader));
                }
                Next::Sleep(wait) => {
                    let _ = faultline_sim::timer::timeout(wait, wake.notified()).await;
                }
                Next::Wait => wake.notified().await,
            }
        }
    }

    /// Chooses the partition's next batch to send, if one is due and a request may go.
    fn next(&self, key: &(String, u32)) -> Next {
        let inner = &self.inner;
        let config = inner.config;
        let now = inner.ctx.now();
        let mut partitions = inner.partitions.borrow_mut();
        let queue = partitions
            .get_mut(key)
            .expect("the sender's partition has a queue");
        if queue.in_flight >= config.max_in_flight {
            return Next::Wait;
        }
        if queue.bump_epoch {
            if queue.in_flight > 0 {
                return Next::Wait;
            }
            queue.start_epoch();
            inner.ctx.record(
                "producer-epoch",
                format!(
                    "{}/{} epoch={} pid={}",
                    key.0,
                    key.1,
                    queue.epoch,
                    inner.id(queue.epoch).unwrap_or(0)
                ),
            );
        }
        if let Some(front) = queue.retries.front() {
            // A retried batch of an idempotent producer goes only once every earlier
            // batch is resolved (Kafka's `shouldStopDrainBatchesForPartition`).
            let earliest = front
                .producer
                .is_none_or(|p| queue.unresolved.first() == Some(&p.seq));
            if !earliest {
                return Next::Wait;
            }
            if front.retry_at > now {
                return Next::Sleep(front.retry_at.saturating_since(now));
            }
            let mut batch = queue.retries.pop_front().expect("checked");
            if batch.producer.is_some() {
                // Renumbered batches (a new epoch) carry the partition's current id.
                batch.producer = batch.producer.map(|p| ProducerSeq {
                    producer: inner.id(queue.epoch).unwrap_or(p.producer),
                    seq: p.seq,
                });
            }
            queue.in_flight += 1;
            return Next::Send(batch);
        }
        let Some(oldest) = queue.waiting.front() else {
            return Next::Wait;
        };
        let bytes: usize = queue.waiting.iter().map(|w| w.key.len() + w.payload.len()).sum();
        let flush = queue.waiting.iter().any(|w| w.flush);
        let ready_at = oldest.at + Duration::from_millis(config.linger_ms);
        if bytes < config.batch_size && !flush && ready_at > now {
            return Next::Sleep(ready_at.saturating_since(now));
        }
        let mut records = Vec::new();
        let mut done = Vec::new();
        let mut size = 0;
        while let Some(w) = queue.waiting.front() {
            if !records.is_empty() && size + w.key.len() + w.payload.len() > config.batch_size {
                break;
            }
            let w = queue.waiting.pop_front().expect("checked");
            size += w.key.len() + w.payload.len();
            records.push((w.key, w.payload));
            done.push(w.done);
        }
        let producer = inner.id(queue.epoch).map(|producer| {
            let seq = queue.next_seq;
            queue.next_seq += records.len() as u64;
            queue.unresolved.insert(seq);
            ProducerSeq { producer, seq }
        });
        queue.in_flight += 1;
        Next::Send(Batch {
            records,
            done,
            producer,
            deadline: now + Duration::from_millis(config.delivery_timeout_ms),
            backoff: Backoff::new(config.retry_backoff_ms, config.retry_backoff_max_ms),
            retry_at: now,
        })
    }

    /// Sends one batch and settles it: acknowledged, queued again, or failed.
    async fn send_batch(self, key: (String, u32), mut batch: Batch, leader: Result<u32, BrokerError>) {
        let inner = &self.inner;
        let request = BrokerRequest::Produce {
            topic: key.0.clone(),
            partition: key.1,
            records: batch.records.clone(),
            producer: batch.producer,
            acks: inner.config.acks,
        };
        let sent = match leader {
            Ok(leader) if inner.config.acks == Acks::None => {
                // Nobody waits for the answer: the record counts as sent now, and
                // whatever happens to the request is never known.
                let connection = inner.connection(leader, &key);
                tokio::task::spawn_local(async move {
                    let _ = connection.call(&request).await;
                });
                Ok(UNKNOWN_OFFSET)
            }
            Ok(leader) => match inner.connection(leader, &key).call(&request).await {
                Ok(response) => produced(response),
                Err(e) => Err(BrokerError::Call(e)),
            },
            Err(e) => Err(e),
        };
        if matches!(sent, Err(BrokerError::NotLeader | BrokerError::Call(_))) {
            inner.cluster.forget(&key.0, key.1);
        }
        let now = inner.ctx.now();
        let mut partitions = inner.partitions.borrow_mut();
        let queue = partitions
            .get_mut(&key)
            .expect("a sent batch's partition has a queue");
        queue.in_flight -= 1;
        queue.wake.notify_one();
        let seq = batch.producer.map(|p| p.seq);
        let earliest = seq.is_none_or(|seq| queue.unresolved.first() == Some(&seq));
        let error = match sent {
            Ok(first) => {
                if let Some(seq) = seq {
                    queue.unresolved.remove(&seq);
                }
                if let (Some(recorder), false) = (&inner.recorder, first == UNKNOWN_OFFSET) {
                    for (i, (record_key, payload)) in batch.records.iter().enumerate() {
                        recorder.kafka_write(crate::history::KafkaRecord {
                            at: now,
                            topic: key.0.clone(),
                            partition: key.1,
                            offset: first + i as u64,
                            key: record_key.clone(),
                            digest: crate::history::record_digest(record_key, payload),
                        });
                    }
                }
                for (i, done) in batch.done.into_iter().enumerate() {
                    // A caller that stopped waiting dropped its receiver: nothing to tell.
                    let offset = if first == UNKNOWN_OFFSET {
                        first
                    } else {
                        first + i as u64
                    };
                    let _ = done.send(Ok(offset));
                }
                return;
            }
            // An earlier batch is unresolved: this one overtook it; retry after it.
            Err(BrokerError::OutOfOrderSequence { .. }) if !earliest || queue.bump_epoch => {
                batch.retry_at = now;
                queue.requeue(batch);
                return;
            }
            Err(e @ BrokerError::OutOfOrderSequence { .. }) => {
                queue.bump_epoch = true;
                e
            }
            Err(e) if now + batch.backoff.next_delay() >= batch.deadline => {
                // Its fate is unknown: later sequences can no longer follow it.
                queue.bump_epoch |= seq.is_some();
                e
            }
            Err(_) => {
                batch.retry_at = now + batch.backoff.next_delay();
                batch.backoff.advance();
                queue.requeue(batch);
                return;
            }
        };
        if let Some(seq) = seq {
            queue.unresolved.remove(&seq);
        }
        inner.ctx.record(
            "produce-expired",
            format!("{}/{} n={}: {error}", key.0, key.1, batch.records.len()),
        );
        for done in batch.done {
            let _ = done.send(Err(error.clone()));
        }
    }
}

impl ProducerInner {
    /// The pipelined connection to one broker.
    /// The pipelined connection a partition's batches take to `broker`. Kafka sends one
    /// request per broker carrying a batch of every ready partition, and the broker
    /// handles a connection's requests one at a time (an `acks=all` request holds the
    /// connection until the in-sync replicas have it); requests here carry one
    /// partition's batch, so each partition has its connection, and partitions do not
    /// wait behind each other's replication as they do not in Kafka.
    fn connection(&self, broker: u32, partition: &(String, u32)) -> Connection {
        self.connections
            .borrow_mut()
            .entry((broker, partition.clone()))
            .or_insert_with(|| {
                faultline_sim::PipelinedClient::new(
                    &self.ctx,
                    BROKER_HOSTS[broker as usize - 1],
                    BROKER_PORT,
                    self.request_timeout,
                )
            })
            .clone()
    }

    /// The producer id of a partition's epoch (idempotent producers only).
    fn id(&self, epoch: u64) -> Option<u64> {
        self.base_id
            .map(|base| base.wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }
}

impl PartitionQueue {
    /// Puts a failed batch back where Kafka's `reenqueue` does: in sequence order for an
    /// idempotent producer, at the head of the queue for a plain one.
    fn requeue(&mut self, batch: Batch) {
        match batch.producer {
            Some(p) => {
                let at = self
                    .retries
                    .iter()
                    .position(|b| b.producer.is_some_and(|q| q.seq > p.seq))
                    .unwrap_or(self.retries.len());
                self.retries.insert(at, batch);
            }
            None => self.retries.push_front(batch),
        }
    }

    /// A new producer epoch for this partition: the unacknowledged batches are
    /// numbered again from 0 in the order they will go.
    fn start_epoch(&mut self) {
        self.epoch += 1;
        self.bump_epoch = false;
        self.unresolved.clear();
        let mut seq = 0;
        for batch in &mut self.retries {
            if let Some(p) = &mut batch.producer {
                p.seq = seq;
                self.unresolved.insert(seq);
                seq += batch.records.len() as u64;
            }
        }
        self.next_seq = seq;
    }
}

fn closed() -> BrokerError {
    BrokerError::Refused("the producer was closed".to_string())
}
