//! The fault plan: an explicit, ordered list of timed fault events.
//!
//! A plan is data, not code: it can be written by hand in a scenario file, generated from
//! a profile, printed, diffed and shrunk. The world applies each event at its instant.
//! [`FaultPlan::validate`] rejects plans that cannot be applied (an unknown host, a
//! restart of a host that is up, an event past the deadline) with a message naming the
//! event, so that no plan ever panics the world.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::disk::DiskFaultKind;
use crate::time::{millis, SimTime};

/// Rates of the message faults the RPC layer injects while a window is on.
/// Each rate is a probability per call, in `0.0..=1.0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageFaultRates {
    /// The request never reaches the server; the caller times out.
    #[serde(default)]
    pub loss: f64,
    /// The server's handler runs, but its response is lost; the caller times out.
    #[serde(default)]
    pub lost_response: f64,
    /// The request is handled a second time (an intermediary's retry), a little later,
    /// before the caller's call completes.
    #[serde(default)]
    pub duplicate: f64,
    /// The request is held back before sending, reordering it against later calls.
    #[serde(default)]
    pub delay: f64,
    /// The longest delay a delayed request gets.
    #[serde(default)]
    pub delay_max_ms: u64,
}

impl fmt::Display for MessageFaultRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss={} lost_response={} duplicate={} delay={} (max {}ms)",
            self.loss, self.lost_response, self.duplicate, self.delay, self.delay_max_ms
        )
    }
}

impl MessageFaultRates {
    /// Whether any rate is non-zero.
    pub fn any(&self) -> bool {
        self.loss > 0.0 || self.lost_response > 0.0 || self.duplicate > 0.0 || self.delay > 0.0
    }

    fn check(&self) -> Result<(), String> {
        for (name, rate) in [
            ("loss", self.loss),
            ("lost_response", self.lost_response),
            ("duplicate", self.duplicate),
            ("delay", self.delay),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!(
                    "{name} = {rate} is not a probability: use a value from 0.0 to 1.0"
                ));
            }
        }
        Ok(())
    }
}

/// One kind of fault, with its targets. Fields are host names (`a`, `b`, `from`, `to`,
/// `host`) or the values named in the variant's description.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// Cut the link between two hosts both ways: in-flight data is lost, open
    /// connections never recover.
    Partition { a: String, b: String },
    /// Cut only the direction `from` → `to`.
    PartitionOneway { from: String, to: String },
    /// Undo partitions between two hosts (both directions).
    Heal { a: String, b: String },
    /// Park every message between two hosts until released.
    Hold { a: String, b: String },
    /// Deliver what a hold parked and let traffic flow again.
    Release { a: String, b: String },
    /// Ask the host's process to stop (SIGTERM before a deploy's restart): its
    /// software's shutdown hooks run ([`crate::HostCtx::stop_requested`]: a consumer
    /// leaves its group); the plan's next `crash` ends the process.
    Stop { host: String },
    /// Kill the host's process: memory and tasks are lost, peers see the connections
    /// close, written data survives in the OS.
    Crash { host: String },
    /// Cut the host's power: no goodbye to peers (their connections hang), and the
    /// disk loses or tears what was not synced.
    PowerLoss { host: String },
    /// Start a crashed or powered-off host again: its start function runs anew.
    Restart { host: String },
    /// Stall the host: its links are held both ways, so it neither hears nor is heard,
    /// while its own timers run on (a long GC pause or a VM freeze, seen from outside).
    Pause { host: String },
    /// End a pause: parked messages are delivered.
    Resume { host: String },
    /// Switch a disk fault on for a host.
    DiskFault { host: String, kind: DiskFaultKind },
    /// Switch a disk fault off again.
    DiskHeal { host: String, kind: DiskFaultKind },
    /// Deploy a defect to the host's software: from now on the inputs its code finds
    /// poison fail on every attempt (a handler bug that no retry fixes), until a fix is
    /// deployed. Which inputs is the software's choice, made from the input alone.
    Defect { host: String },
    /// Deploy the fix: the defect's inputs are handled again.
    DefectFixed { host: String },
    /// An operator reclaims the host's disk by keeping only its last `keep_ms` of data
    /// (on a Kafka broker: a dynamic `log.retention.ms` set with `kafka-configs` when its
    /// disk fills), until lifted: whatever a lagging reader had not read yet is gone.
    Purge { host: String, keep_ms: u64 },
    /// Lift the purge: the host keeps its data as configured again.
    PurgeLifted { host: String },
    /// Set a host's clock offset and drift (zero both to heal).
    ClockSkew {
        host: String,
        skew_ms: i64,
        #[serde(default)]
        drift_ppm: i64,
    },
    /// Set the message-fault rates of every RPC call from now on (all zero to heal).
    MessageFaults {
        #[serde(flatten)]
        rates: MessageFaultRates,
    },
    /// Set the message-fault rates of the calls `from` makes to `to` (request and
    /// response), over what [`Fault::MessageFaults`] sets for every call: one bad link,
    /// a congested route or a failing NIC (all zero to heal).
    LinkMessageFaults {
        from: String,
        to: String,
        #[serde(flatten)]
        rates: MessageFaultRates,
    },
}

/// A fault kind a plan can name, with what it does.
#[derive(Clone, Copy, Debug)]
pub struct FaultKindInfo {
    /// The kebab-case name, as plans write it.
    pub name: &'static str,
    /// What it does, in a line.
    pub description: &'static str,
}

/// Every fault kind, in the order plans and `faultline list` show them.
pub const FAULT_KINDS: &[FaultKindInfo] = &[
    kind("partition", "cut the link between two hosts both ways; in-flight data is lost"),
    kind("partition-oneway", "cut one direction of a link"),
    kind("heal", "undo the partitions between two hosts"),
    kind("hold", "park every message between two hosts (a stalled route)"),
    kind("release", "deliver what a hold parked and let traffic flow"),
    kind("stop", "ask a process to stop (SIGTERM): its shutdown hooks run, a consumer leaves its group"),
    kind("crash", "kill a process: memory lost, written data kept by the OS"),
    kind("power-loss", "cut a host's power: unsynced writes lost or torn, peers get no goodbye"),
    kind("restart", "start a crashed or powered-off host again"),
    kind("pause", "stall a host (a long GC pause, a VM freeze): its links are held, its timers run on"),
    kind("resume", "end a pause: parked messages are delivered"),
    kind("disk-fault", "switch on a disk fault: write errors, sync errors or a full disk"),
    kind("disk-heal", "switch a disk fault off"),
    kind("defect", "deploy a handler defect: the inputs it finds poison fail on every attempt"),
    kind("defect-fixed", "deploy the fix"),
    kind("purge", "an operator cuts a broker's retention to reclaim its disk: what a lagging reader had not read is deleted"),
    kind("purge-lifted", "retention back as configured"),
    kind("clock-skew", "set a host's clock offset and drift"),
    kind("message-faults", "lose, duplicate and delay requests and responses of every call"),
    kind("link-message-faults", "the same on one directed link (a congested route, a failing NIC)"),
];

const fn kind(name: &'static str, description: &'static str) -> FaultKindInfo {
    FaultKindInfo { name, description }
}

impl Fault {
    /// The kebab-case name of the fault kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::PartitionOneway { .. } => "partition-oneway",
            Fault::Heal { .. } => "heal",
            Fault::Hold { .. } => "hold",
            Fault::Release { .. } => "release",
            Fault::Stop { .. } => "stop",
            Fault::Crash { .. } => "crash",
            Fault::PowerLoss { .. } => "power-loss",
            Fault::Restart { .. } => "restart",
            Fault::Pause { .. } => "pause",
            Fault::Resume { .. } => "resume",
            Fault::DiskFault { .. } => "disk-fault",
            Fault::DiskHeal { .. } => "disk-heal",
            Fault::Defect { .. } => "defect",
            Fault::DefectFixed { .. } => "defect-fixed",
            Fault::Purge { .. } => "purge",
            Fault::PurgeLifted { .. } => "purge-lifted",
            Fault::ClockSkew { .. } => "clock-skew",
            Fault::MessageFaults { .. } => "message-faults",
            Fault::LinkMessageFaults { .. } => "link-message-faults",
        }
    }

    /// Every host the fault names.
    pub fn hosts(&self) -> Vec<&str> {
        match self {
            Fault::Partition { a, b }
            | Fault::Heal { a, b }
            | Fault::Hold { a, b }
            | Fault::Release { a, b } => {
                vec![a, b]
            }
            Fault::PartitionOneway { from, to } | Fault::LinkMessageFaults { from, to, .. } => vec![from, to],
            Fault::Stop { host }
            | Fault::Crash { host }
            | Fault::PowerLoss { host }
            | Fault::Restart { host }
            | Fault::Pause { host }
            | Fault::Resume { host }
            | Fault::DiskFault { host, .. }
            | Fault::DiskHeal { host, .. }
            | Fault::Defect { host }
            | Fault::DefectFixed { host }
            | Fault::Purge { host, .. }
            | Fault::PurgeLifted { host }
            | Fault::ClockSkew { host, .. } => vec![host],
            Fault::MessageFaults { .. } => vec![],
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { a, b } => write!(f, "partition {a} <-> {b}"),
            Fault::PartitionOneway { from, to } => write!(f, "partition {from} -> {to}"),
            Fault::Heal { a, b } => write!(f, "heal {a} <-> {b}"),
            Fault::Hold { a, b } => write!(f, "hold {a} <-> {b}"),
            Fault::Release { a, b } => write!(f, "release {a} <-> {b}"),
            Fault::Stop { host } => write!(f, "stop {host}"),
            Fault::Crash { host } => write!(f, "crash {host}"),
            Fault::PowerLoss { host } => write!(f, "power-loss {host}"),
            Fault::Restart { host } => write!(f, "restart {host}"),
            Fault::Pause { host } => write!(f, "pause {host}"),
            Fault::Resume { host } => write!(f, "resume {host}"),
            Fault::DiskFault { host, kind } => write!(f, "disk {} on {host}", kind.name()),
            Fault::DiskHeal { host, kind } => write!(f, "disk {} off {host}", kind.name()),
            Fault::Defect { host } => write!(f, "defect deployed to {host}"),
            Fault::DefectFixed { host } => write!(f, "defect fixed on {host}"),
            Fault::Purge { host, keep_ms } => write!(f, "purge {host} keeping {keep_ms}ms"),
            Fault::PurgeLifted { host } => write!(f, "purge lifted on {host}"),
            Fault::ClockSkew {
                host,
                skew_ms,
                drift_ppm,
            } => {
                write!(f, "clock {host} skew={skew_ms}ms drift={drift_ppm}ppm")
            }
            Fault::MessageFaults { rates } if !rates.any() => write!(f, "message faults off"),
            Fault::MessageFaults { rates } => write!(f, "message faults {rates}"),
            Fault::LinkMessageFaults { from, to, rates } if !rates.any() => {
                write!(f, "message faults off {from} -> {to}")
            }
            Fault::LinkMessageFaults { from, to, rates } => {
                write!(f, "message faults {from} -> {to} {rates}")
            }
        }
    }
}

/// A fault at an instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// When the world applies it.
    #[serde(rename = "at_ms", with = "millis")]
    pub at: SimTime,
    /// What it does.
    #[serde(flatten)]
    pub fault: Fault,
}

/// Why a plan cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fault event #{index} ({at}, {fault}): {problem}")]
pub struct PlanError {
    /// Position of the offending event in the plan, from 1 (as a person counts).
    pub index: usize,
    /// Its instant.
    pub at: SimTime,
    /// The event as printed.
    pub fault: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

/// An ordered list of fault events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Events in time order; events at the same instant apply in list order.
    #[serde(default)]
    pub events: Vec<FaultEvent>,
}

/// What a host or link is left with after some prefix of a plan.
#[derive(Debug, Default)]
struct PlanState {
    down: BTreeSet<String>,
    paused: BTreeSet<String>,
    partitioned: BTreeSet<(String, String)>,
    held: BTreeSet<(String, String)>,
    disk_faults: BTreeSet<(String, DiskFaultKind)>,
    purged: BTreeSet<String>,
    defective: BTreeSet<String>,
    skewed: BTreeMap<String, (i64, i64)>,
    message_faults: bool,
    link_message_faults: BTreeSet<(String, String)>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl PlanState {
    /// Applies one event, or says why it cannot apply.
    fn apply(&mut self, fault: &Fault) -> Result<(), String> {
        match fault {
            Fault::Partition { a, b } => {
                self.partitioned.insert((a.clone(), b.clone()));
                self.partitioned.insert((b.clone(), a.clone()));
            }
            Fault::PartitionOneway { from, to } => {
                self.partitioned.insert((from.clone(), to.clone()));
            }
            Fault::Heal { a, b } => {
                self.partitioned.remove(&(a.clone(), b.clone()));
                self.partitioned.remove(&(b.clone(), a.clone()));
            }
            Fault::Hold { a, b } => {
                self.held.insert(pair(a, b));
            }
            Fault::Release { a, b } => {
                self.held.remove(&pair(a, b));
            }
            Fault::Stop { host } => {
                if self.down.contains(host) {
                    return Err(format!(
                        "host {host:?} is down: only a running host can be asked to stop"
                    ));
                }
            }
            Fault::Crash { host } | Fault::PowerLoss { host } => {
                if !self.down.insert(host.clone()) {
                    return Err(format!("host {host:?} is already down: restart it first"));
                }
            }
            Fault::Restart { host } => {
                if !self.down.remove(host) {
                    return Err(format!(
                        "host {host:?} is running: only a crashed or powered-off host can restart"
                    ));
                }
            }
            Fault::Pause { host } => {
                if !self.paused.insert(host.clone()) {
                    return Err(format!("host {host:?} is already paused: resume it first"));
                }
            }
            Fault::Resume { host } => {
                if !self.paused.remove(host) {
                    return Err(format!("host {host:?} is not paused"));
                }
            }
            Fault::DiskFault { host, kind } => {
                self.disk_faults.insert((host.clone(), *kind));
            }
            Fault::DiskHeal { host, kind } => {
                self.disk_faults.remove(&(host.clone(), *kind));
            }
            Fault::Defect { host } => {
                self.defective.insert(host.clone());
            }
            Fault::DefectFixed { host } => {
                self.defective.remove(host);
            }
            Fault::Purge { host, keep_ms } => {
                if *keep_ms == 0 {
                    return Err("a purge keeps at least 1 ms of data: set keep_ms".to_string());
                }
                self.purged.insert(host.clone());
            }
            Fault::PurgeLifted { host } => {
                if !self.purged.remove(host) {
                    return Err(format!("host {host:?} is not purged"));
                }
            }
            Fault::ClockSkew {
                host,
                skew_ms,
                drift_ppm,
            } => {
                if *skew_ms == 0 && *drift_ppm == 0 {
                    self.skewed.remove(host);
                } else {
                    self.skewed.insert(host.clone(), (*skew_ms, *drift_ppm));
                }
            }
            Fault::MessageFaults { rates } => {
                rates.check()?;
                self.message_faults = rates.any();
            }
            Fault::LinkMessageFaults { from, to, rates } => {
                rates.check()?;
                let link = (from.clone(), to.clone());
                if rates.any() {
                    self.link_message_faults.insert(link);
                } else {
                    self.link_message_faults.remove(&link);
                }
            }
        }
        Ok(())
    }

    fn still_open(&self) -> Vec<String> {
        let mut open = Vec::new();
        open.extend(self.down.iter().map(|h| format!("{h} is down")));
        open.extend(self.paused.iter().map(|h| format!("{h} is paused")));
        open.extend(
            self.partitioned
                .iter()
                .map(|(a, b)| format!("{a} -> {b} is partitioned")),
        );
        open.extend(self.held.iter().map(|(a, b)| format!("{a} <-> {b} is held")));
        open.extend(
            self.disk_faults
                .iter()
                .map(|(h, k)| format!("{h} has disk fault {}", k.name())),
        );
        open.extend(self.defective.iter().map(|h| format!("{h} runs a defect")));
        open.extend(self.purged.iter().map(|h| format!("{h} is purged")));
        open.extend(self.skewed.keys().map(|h| format!("{h} has a skewed clock")));
        if self.message_faults {
            open.push("message faults are on".to_string());
        }
        open.extend(
            self.link_message_faults
                .iter()
                .map(|(a, b)| format!("message faults are on {a} -> {b}")),
        );
        open
    }
}

impl FaultPlan {
    /// A plan from events in any order: they are sorted by instant, keeping the given
    /// order among events at the same instant.
    pub fn from_events(mut events: Vec<FaultEvent>) -> Self {
        events.sort_by_key(|e| e.at);
        FaultPlan { events }
    }

    /// Whether the plan has no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The instant of the last event (`ZERO` for an empty plan).
    pub fn last_event_at(&self) -> SimTime {
        self.events.last().map_or(SimTime::ZERO, |e| e.at)
    }

    /// Checks that the plan can be applied to a world with these hosts, ending at
    /// `deadline`.
    pub fn validate(&self, hosts: &[&str], deadline: SimTime) -> Result<(), PlanError> {
        let known: BTreeSet<&str> = hosts.iter().copied().collect();
        let mut state = PlanState::default();
        let mut previous = SimTime::ZERO;
        for (i, event) in self.events.iter().enumerate() {
            let error = |problem: String| PlanError {
                index: i + 1,
                at: event.at,
                fault: event.fault.to_string(),
                problem,
            };
            if event.at < previous {
                return Err(error(format!(
                    "it comes after an event at {previous}: list events in time order"
                )));
            }
            if event.at > deadline {
                return Err(error(format!(
                    "it is after the run's deadline ({deadline}): move it earlier"
                )));
            }
            for host in event.fault.hosts() {
                if !known.contains(host) {
                    let valid: Vec<_> = known.iter().copied().collect();
                    return Err(error(format!(
                        "unknown host {host:?}; hosts are: {}",
                        valid.join(", ")
                    )));
                }
            }
            if let [a, b] = event.fault.hosts()[..] {
                if a == b {
                    return Err(error("a link needs two different hosts".to_string()));
                }
            }
            state.apply(&event.fault).map_err(error)?;
            previous = event.at;
        }
        Ok(())
    }

    /// What the plan leaves broken after its last event (empty when everything heals).
    /// Assumes the plan is valid.
    pub fn unhealed(&self) -> Vec<String> {
        let mut state = PlanState::default();
        for event in &self.events {
            let _ = state.apply(&event.fault);
        }
        state.still_open()
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.events.is_empty() {
            return writeln!(f, "(no faults)");
        }
        for event in &self.events {
            writeln!(f, "{:>10}  {}", event.at.to_string(), event.fault)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_fault_kind_is_listed_once() {
        let names: Vec<&str> = FAULT_KINDS.iter().map(|k| k.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        let host = || "h".to_string();
        let every = [
            Fault::Partition { a: host(), b: host() },
            Fault::PartitionOneway {
                from: host(),
                to: host(),
            },
            Fault::Heal { a: host(), b: host() },
            Fault::Hold { a: host(), b: host() },
            Fault::Release { a: host(), b: host() },
            Fault::Stop { host: host() },
            Fault::Crash { host: host() },
            Fault::PowerLoss { host: host() },
            Fault::Restart { host: host() },
            Fault::Pause { host: host() },
            Fault::Resume { host: host() },
            Fault::DiskFault {
                host: host(),
                kind: DiskFaultKind::Full,
            },
            Fault::DiskHeal {
                host: host(),
                kind: DiskFaultKind::Full,
            },
            Fault::Defect { host: host() },
            Fault::DefectFixed { host: host() },
            Fault::Purge {
                host: host(),
                keep_ms: 1,
            },
            Fault::PurgeLifted { host: host() },
            Fault::ClockSkew {
                host: host(),
                skew_ms: 1,
                drift_ppm: 0,
            },
            Fault::MessageFaults {
                rates: MessageFaultRates::default(),
            },
            Fault::LinkMessageFaults {
                from: host(),
                to: host(),
                rates: MessageFaultRates::default(),
            },
        ];
        assert_eq!(every.iter().map(Fault::kind_name).collect::<Vec<_>>(), names);
    }

    use super::*;

    fn ev(at_ms: u64, fault: Fault) -> FaultEvent {
        FaultEvent {
            at: SimTime::from_millis(at_ms),
            fault,
        }
    }

    fn crash(h: &str) -> Fault {
        Fault::Crash { host: h.into() }
    }

    fn restart(h: &str) -> Fault {
        Fault::Restart { host: h.into() }
    }

    const HOSTS: &[&str] = &["a", "b"];

    #[test]
    fn a_restart_of_a_running_host_is_rejected() {
        let plan = FaultPlan::from_events(vec![ev(10, restart("a"))]);
        let err = plan.validate(HOSTS, SimTime::from_secs(1)).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(
            err.to_string()
                .contains("only a crashed or powered-off host can restart"),
            "{err}"
        );
    }

    #[test]
    fn unknown_hosts_are_rejected_with_the_valid_names() {
        let plan = FaultPlan::from_events(vec![ev(10, crash("nope"))]);
        let err = plan.validate(HOSTS, SimTime::from_secs(1)).unwrap_err();
        assert!(
            err.to_string().contains("unknown host \"nope\"; hosts are: a, b"),
            "{err}"
        );
    }

    #[test]
    fn events_after_the_deadline_or_out_of_order_are_rejected() {
        let late = FaultPlan::from_events(vec![ev(2000, crash("a"))]);
        assert!(late
            .validate(HOSTS, SimTime::from_secs(1))
            .unwrap_err()
            .problem
            .contains("deadline"));
        let unordered = FaultPlan {
            events: vec![ev(20, crash("a")), ev(10, restart("a"))],
        };
        assert!(unordered
            .validate(HOSTS, SimTime::from_secs(1))
            .unwrap_err()
            .problem
            .contains("time order"));
    }

    #[test]
    fn bad_rates_and_self_links_are_rejected() {
        let rates = MessageFaultRates {
            loss: 1.5,
            ..Default::default()
        };
        let plan = FaultPlan::from_events(vec![ev(1, Fault::MessageFaults { rates })]);
        assert!(plan
            .validate(HOSTS, SimTime::from_secs(1))
            .unwrap_err()
            .problem
            .contains("probability"));
        let plan = FaultPlan::from_events(vec![ev(
            1,
            Fault::Partition {
                a: "a".into(),
                b: "a".into(),
            },
        )]);
        assert!(plan.validate(HOSTS, SimTime::from_secs(1)).is_err());
    }

    #[test]
    fn unhealed_lists_what_is_left_broken() {
        let plan = FaultPlan::from_events(vec![
            ev(1, crash("a")),
            ev(
                2,
                Fault::Partition {
                    a: "a".into(),
                    b: "b".into(),
                },
            ),
            ev(3, restart("a")),
        ]);
        assert_eq!(
            plan.unhealed(),
            vec!["a -> b is partitioned", "b -> a is partitioned"]
        );
    }

    #[test]
    fn plans_round_trip_through_toml_and_json() {
        let plan = FaultPlan::from_events(vec![
            ev(
                100,
                Fault::PartitionOneway {
                    from: "a".into(),
                    to: "b".into(),
                },
            ),
            ev(
                150,
                Fault::DiskFault {
                    host: "a".into(),
                    kind: DiskFaultKind::SyncError,
                },
            ),
            ev(
                200,
                Fault::MessageFaults {
                    rates: MessageFaultRates {
                        loss: 0.1,
                        delay_max_ms: 20,
                        ..Default::default()
                    },
                },
            ),
            ev(
                300,
                Fault::ClockSkew {
                    host: "b".into(),
                    skew_ms: -40,
                    drift_ppm: 0,
                },
            ),
        ]);
        let toml_text = toml::to_string(&plan).unwrap();
        assert!(toml_text.contains("fault = \"partition-oneway\""), "{toml_text}");
        assert_eq!(toml::from_str::<FaultPlan>(&toml_text).unwrap(), plan);
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<FaultPlan>(&json).unwrap(), plan);
    }

    #[test]
    fn display_prints_one_line_per_event() {
        let plan = FaultPlan::from_events(vec![ev(5, crash("a")), ev(9, restart("a"))]);
        assert_eq!(plan.to_string(), "       5ms  crash a\n       9ms  restart a\n");
    }
}
