//! The Kafka cluster's controller (KRaft's active controller): it knows which brokers
//! are alive, and owns every partition's leader, leader epoch and in-sync replica set.
//!
//! Brokers heartbeat every [`HEARTBEAT_MS`]; one silent for [`SESSION_TIMEOUT_MS`]
//! (`broker.session.timeout.ms`) is fenced, and so is a broker's earlier process life
//! when it registers again after a restart. Fencing a broker takes it out of every ISR
//! it is in unless it is the last member; a partition it led gets the first remaining
//! ISR member as leader under a new epoch (a clean election). When the fenced broker
//! was the last ISR member the partition has no leader until that broker comes back,
//! or, with `unclean.leader.election.enable`, the first live replica out of sync takes
//! over with whatever its log holds. ISR changes come from the leader
//! (`AlterPartition`), checked against the partition's epoch.
//!
//! A broker asked to stop (a rolling restart's SIGTERM) says so in its heartbeats
//! (KRaft's `WantShutDown`): a controlled shutdown. The controller moves the leadership
//! of every partition it leads to another in-sync replica and takes it out of every ISR
//! it is not the last member of, as KRaft's `ReplicationControlManager` does, so that
//! the broker's stop costs the clients a leader change instead of a session's wait; a
//! broker shutting down is not elected and not taken back into an ISR.
//!
//! Which brokers may join an ISR is part of the image (KRaft's broker registrations:
//! fenced, in controlled shutdown), so a leader proposes only those (Kafka's
//! `Partition.isReplicaIsrEligible`, KIP-841); an `AlterPartition` naming any other is
//! refused unchanged (`INELIGIBLE_REPLICA`).
//!
//! Every heartbeat's answer carries the whole metadata image, which is how brokers learn
//! their roles (KRaft brokers replay the metadata log; the image is what it yields).
//!
//! The controller quorum is one host here and outside the fault profiles: Raft's own
//! failover is not what this testbed studies. Its links to the brokers fail with theirs
//! (a paused or powered-off broker stops heartbeating).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{serve, HostCtx, RpcMessage};
use serde::{Deserialize, Serialize};

/// The controller's host.
pub const CONTROLLER: &str = "controller";
/// The port the controller listens on.
pub const CONTROLLER_PORT: u16 = 9093;
/// `broker.heartbeat.interval.ms` (2000 in Kafka; compressed 20× like the session).
pub const HEARTBEAT_MS: u64 = 100;
/// `broker.session.timeout.ms` (9000 in Kafka, compressed 20× to this simulation's
/// seconds-long runs).
pub const SESSION_TIMEOUT_MS: u64 = 450;

/// One partition as the controller decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The brokers holding a replica, in preference order.
    pub replicas: Vec<u32>,
    /// The leader, if one can serve.
    pub leader: Option<u32>,
    /// Bumped at every change of leader.
    pub leader_epoch: u64,
    /// Bumped at every change of leader or ISR (`AlterPartition` is checked against it).
    pub partition_epoch: u64,
    /// The in-sync replicas.
    pub isr: Vec<u32>,
}

/// The metadata image: every partition by topic and number.
pub type Image = BTreeMap<(String, u32), PartitionState>;

/// The image on the wire (a JSON object's keys are strings, not pairs).
mod image_as_list {
    use super::{Image, PartitionState};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(image: &Image, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<(&(String, u32), &PartitionState)> = image.iter().collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Image, D::Error> {
        let list: Vec<((String, u32), PartitionState)> = Vec::deserialize(d)?;
        Ok(list.into_iter().collect())
    }
}

/// A request to the controller.
#[allow(missing_docs)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// A broker's heartbeat; its first from a process life registers that life.
    /// `known` is the image version the broker holds: an unchanged image is not sent.
    Heartbeat {
        broker: u32,
        incarnation: u32,
        known: u64,
        /// The broker was asked to stop: a controlled shutdown.
        shutting_down: bool,
    },
    /// Creates a partition unless it exists (auto.create.topics.enable).
    Create { topic: String, partition: u32 },
    /// The leader asks for a new ISR.
    AlterPartition {
        broker: u32,
        topic: String,
        partition: u32,
        partition_epoch: u64,
        isr: Vec<u32>,
    },
}

/// The controller's answer.
#[allow(missing_docs)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerResponse {
    Image {
        version: u64,
        #[serde(with = "image_as_list")]
        image: Image,
        /// The brokers that may lead or join an ISR: registered, unfenced, not in a
        /// controlled shutdown.
        eligible: Vec<u32>,
    },
    /// The broker holds the current image.
    Unchanged,
    /// An `AlterPartition` refused: from a broker that is not the leader at that
    /// epoch, or naming a replica that may not join the ISR (`INELIGIBLE_REPLICA`).
    Stale {
        version: u64,
        #[serde(with = "image_as_list")]
        image: Image,
        eligible: Vec<u32>,
    },
}

impl RpcMessage for ControllerRequest {
    fn label(&self) -> String {
        match self {
            ControllerRequest::Heartbeat {
                broker,
                shutting_down: true,
                ..
            } => format!("heartbeat broker-{broker} shutting down"),
            ControllerRequest::Heartbeat { broker, .. } => format!("heartbeat broker-{broker}"),
            ControllerRequest::Create { topic, partition } => format!("create {topic}/{partition}"),
            ControllerRequest::AlterPartition {
                topic,
                partition,
                isr,
                ..
            } => format!("alter-partition {topic}/{partition} isr={}", isr_text(isr)),
        }
    }
}

impl RpcMessage for ControllerResponse {
    fn label(&self) -> String {
        match self {
            ControllerResponse::Image { version, .. } => format!("image v{version}"),
            ControllerResponse::Unchanged => "unchanged".to_string(),
            ControllerResponse::Stale { version, .. } => format!("stale, image v{version}"),
        }
    }
}

/// A partition's replicas in preference order, the first its preferred leader: Kafka's
/// round-robin assignment, starting at broker (partition + the topic's offset).
pub fn replicas(topic: &str, partition: u32, brokers: u32) -> Vec<u32> {
    let offset = faultline_sim::trace::fnv1a64(topic.as_bytes()) as u32;
    (0..brokers)
        .map(|i| (offset.wrapping_add(partition).wrapping_add(i)) % brokers + 1)
        .collect()
}

/// `[1,2,3]` as `1,2,3`.
pub fn isr_text(isr: &[u32]) -> String {
    isr.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

struct Registration {
    incarnation: u32,
    last_heartbeat_ms: u64,
    fenced: bool,
    /// This process life is in a controlled shutdown.
    shutting_down: bool,
}

struct Controller {
    ctx: HostCtx,
    brokers: u32,
    unclean_election: bool,
    registrations: BTreeMap<u32, Registration>,
    image: Image,
    /// Bumped at every change of the image.
    version: u64,
}

impl Controller {
    fn live(&self, broker: u32) -> bool {
        self.registrations.get(&broker).is_some_and(|r| !r.fenced)
    }

    /// Live and not shutting down: may lead or join an ISR.
    fn eligible(&self, broker: u32) -> bool {
        self.registrations
            .get(&broker)
            .is_some_and(|r| !r.fenced && !r.shutting_down)
    }

    fn heartbeat(&mut self, broker: u32, incarnation: u32, shutting_down: bool) {
        let now = self.ctx.now().as_millis();
        let restarted = self
            .registrations
            .get(&broker)
            .is_some_and(|r| r.incarnation != incarnation && !r.fenced);
        if restarted {
            // The earlier process life is gone: what it led must move now, not after
            // its session would have expired.
            self.fence(broker, "restarted");
        }
        let registration = self.registrations.entry(broker).or_insert(Registration {
            incarnation,
            last_heartbeat_ms: now,
            fenced: true,
            shutting_down: false,
        });
        registration.incarnation = incarnation;
        registration.last_heartbeat_ms = now;
        if registration.fenced {
            registration.fenced = false;
            registration.shutting_down = false;
            self.version += 1;
            self.ctx.record("broker-registered", format!("broker-{broker}"));
            self.elect_where_leaderless();
        }
        let registration = self.registrations.get_mut(&broker).expect("registered above");
        if shutting_down && !registration.shutting_down {
            registration.shutting_down = true;
            self.controlled_shutdown(broker);
        }
    }

    /// Moves a stopping broker's leaderships to other in-sync replicas and takes it out
    /// of the ISRs (where it is not the last member; a partition it alone leads keeps
    /// it until it goes).
    fn controlled_shutdown(&mut self, broker: u32) {
        self.version += 1;
        self.ctx
            .record("broker-shutting-down", format!("broker-{broker}"));
        let keys: Vec<(String, u32)> = self.image.keys().cloned().collect();
        for key in keys {
            let part = &self.image[&key];
            let successor = part
                .isr
                .iter()
                .copied()
                .find(|&b| b != broker && self.eligible(b));
            let leads = part.leader == Some(broker);
            if !part.isr.contains(&broker) || (leads && successor.is_none()) || part.isr.len() == 1 {
                continue;
            }
            let part = self.image.get_mut(&key).expect("listed");
            part.isr.retain(|&b| b != broker);
            if leads {
                part.leader = successor;
                part.leader_epoch += 1;
                self.ctx.record(
                    "leader-elected",
                    format!(
                        "{}/{} broker-{} epoch={} isr={} (controlled shutdown of broker-{broker})",
                        key.0,
                        key.1,
                        successor.expect("checked above"),
                        part.leader_epoch,
                        isr_text(&part.isr)
                    ),
                );
            }
            part.partition_epoch += 1;
            self.version += 1;
        }
    }

    /// Fences every broker whose session expired.
    fn expire_sessions(&mut self) {
        let now = self.ctx.now().as_millis();
        let expired: Vec<u32> = self
            .registrations
            .iter()
            .filter(|(_, r)| !r.fenced && r.last_heartbeat_ms + SESSION_TIMEOUT_MS <= now)
            .map(|(&b, _)| b)
            .collect();
        for broker in expired {
            self.fence(broker, "session expired");
        }
    }

    fn fence(&mut self, broker: u32, why: &str) {
        if let Some(r) = self.registrations.get_mut(&broker) {
            r.fenced = true;
        }
        // Brokers learn from the image that it may no longer join an ISR.
        self.version += 1;
        self.ctx
            .record("broker-fenced", format!("broker-{broker}: {why}"));
        let keys: Vec<(String, u32)> = self.image.keys().cloned().collect();
        for key in keys {
            let part = self.image.get_mut(&key).expect("listed");
            let mut changed = false;
            if part.isr.contains(&broker) && part.isr.len() > 1 {
                part.isr.retain(|&b| b != broker);
                changed = true;
            }
            if part.leader == Some(broker) {
                part.leader = None;
                part.leader_epoch += 1;
                changed = true;
            }
            if changed {
                part.partition_epoch += 1;
                self.version += 1;
            }
        }
        self.elect_where_leaderless();
    }

    /// Gives every leaderless partition a leader: the first live ISR member, or with
    /// unclean election the first live replica.
    fn elect_where_leaderless(&mut self) {
        let keys: Vec<(String, u32)> = self.image.keys().cloned().collect();
        for key in keys {
            let part = &self.image[&key];
            if part.leader.is_some() {
                continue;
            }
            let clean = part.isr.iter().copied().find(|&b| self.eligible(b));
            let unclean = || {
                self.unclean_election
                    .then(|| part.replicas.iter().copied().find(|&b| self.eligible(b)))
                    .flatten()
            };
            let (leader, how) = match clean {
                Some(b) => (b, "clean"),
                None => match unclean() {
                    Some(b) => (b, "unclean"),
                    None => continue,
                },
            };
            let part = self.image.get_mut(&key).expect("listed");
            if how == "unclean" {
                part.isr = vec![leader];
            }
            part.leader = Some(leader);
            part.leader_epoch += 1;
            part.partition_epoch += 1;
            self.version += 1;
            self.ctx.record(
                "leader-elected",
                format!(
                    "{}/{} broker-{leader} epoch={} isr={} ({how})",
                    key.0,
                    key.1,
                    part.leader_epoch,
                    isr_text(&part.isr)
                ),
            );
        }
    }

    fn create(&mut self, topic: String, partition: u32) {
        let key = (topic, partition);
        if self.image.contains_key(&key) {
            return;
        }
        let replicas = replicas(&key.0, partition, self.brokers);
        let isr: Vec<u32> = replicas.iter().copied().filter(|&b| self.live(b)).collect();
        let leader = isr.first().copied();
        let isr = if isr.is_empty() { replicas.clone() } else { isr };
        self.ctx.record(
            "partition-created",
            format!(
                "{}/{} replicas={} leader={}",
                key.0,
                key.1,
                isr_text(&replicas),
                leader.map_or("none".to_string(), |b| format!("broker-{b}"))
            ),
        );
        self.version += 1;
        self.image.insert(
            key,
            PartitionState {
                replicas,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
                isr,
            },
        );
    }

    fn image_response(&self) -> ControllerResponse {
        ControllerResponse::Image {
            version: self.version,
            image: self.image.clone(),
            eligible: self.eligible_brokers(),
        }
    }

    fn eligible_brokers(&self) -> Vec<u32> {
        (1..=self.brokers).filter(|&b| self.eligible(b)).collect()
    }

    fn alter_partition(
        &mut self,
        broker: u32,
        key: (String, u32),
        partition_epoch: u64,
        isr: Vec<u32>,
    ) -> bool {
        // KRaft refuses the whole change (`INELIGIBLE_REPLICA`) rather than applying
        // what of it is allowed; the leader learns why from the image it is answered.
        let allowed = !isr.is_empty() && isr.iter().all(|&b| b == broker || self.eligible(b));
        let Some(part) = self.image.get_mut(&key) else {
            return false;
        };
        if part.leader != Some(broker) || part.partition_epoch != partition_epoch || !allowed {
            return false;
        }
        part.isr = isr;
        part.partition_epoch += 1;
        self.version += 1;
        self.ctx.record(
            "isr-changed",
            format!(
                "{}/{} isr={} by broker-{broker}",
                key.0,
                key.1,
                isr_text(&part.isr)
            ),
        );
        true
    }
}

/// Runs the controller for a cluster of `brokers` brokers (`broker-1`..) that was up
/// before the run, with `topics` (name, partitions) created, as an operator (or the
/// deployment's tooling) creates them; the offsets topic always exists. Other topics
/// are created at first use (`auto.create.topics.enable`).
pub async fn run_controller(
    ctx: HostCtx,
    brokers: u32,
    unclean_election: bool,
    topics: Vec<(String, u32)>,
) -> faultline_sim::HostResult {
    // Metadata alone changes nothing the systems hold: the brokers and consumers report
    // the records it moves.
    ctx.report_progress("controller", || None);
    // The cluster was up before the integration started: every broker registered (its
    // first process life), every topic led by its preferred replica with all in sync.
    let registrations = (1..=brokers)
        .map(|b| {
            let registration = Registration {
                incarnation: 0,
                last_heartbeat_ms: 0,
                fenced: false,
                shutting_down: false,
            };
            (b, registration)
        })
        .collect();
    let mut c = Controller {
        ctx: ctx.clone(),
        brokers,
        unclean_election,
        registrations,
        image: Image::new(),
        version: 1,
    };
    c.create(crate::systems::broker::OFFSETS_TOPIC.to_string(), 0);
    for (topic, partitions) in topics {
        for partition in 0..partitions {
            c.create(topic.clone(), partition);
        }
    }
    let controller = Rc::new(RefCell::new(c));
    let expiring = Rc::clone(&controller);
    tokio::task::spawn_local(async move {
        loop {
            faultline_sim::timer::sleep(Duration::from_millis(HEARTBEAT_MS)).await;
            expiring.borrow_mut().expire_sessions();
        }
    });
    serve(ctx, CONTROLLER_PORT, move |request: ControllerRequest| {
        let controller = Rc::clone(&controller);
        async move {
            let mut c = controller.borrow_mut();
            match request {
                ControllerRequest::Heartbeat {
                    broker,
                    incarnation,
                    known,
                    shutting_down,
                } => {
                    c.heartbeat(broker, incarnation, shutting_down);
                    if known == c.version {
                        ControllerResponse::Unchanged
                    } else {
                        c.image_response()
                    }
                }
                ControllerRequest::Create { topic, partition } => {
                    c.create(topic, partition);
                    c.image_response()
                }
                ControllerRequest::AlterPartition {
                    broker,
                    topic,
                    partition,
                    partition_epoch,
                    isr,
                } => {
                    if c.alter_partition(broker, (topic, partition), partition_epoch, isr) {
                        c.image_response()
                    } else {
                        ControllerResponse::Stale {
                            version: c.version,
                            image: c.image.clone(),
                            eligible: c.eligible_brokers(),
                        }
                    }
                }
            }
        }
    })
    .await?;
    Ok(())
}
