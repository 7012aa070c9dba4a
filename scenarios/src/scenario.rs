//! Scenarios: the workload's size and pace, the network, the source's durability, and
//! the run's timing (fault window, heal, quiesce).

use std::time::Duration;

use faultline_patterns::domain::{Action, ActionId, ActionRequest};
use faultline_patterns::systems::source::SyncPolicy;
use faultline_sim::{FaultWindow, SimTime};
use serde::{Deserialize, Serialize};

/// What a run does and how long it may take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
    /// Customers both sides hold at the start.
    pub customers: u64,
    /// Business actions the workload runs.
    pub actions: u64,
    /// Actions per simulated second.
    pub actions_per_sec: u64,
    /// Smallest one-way network latency.
    pub latency_min_ms: u64,
    /// Largest one-way network latency.
    pub latency_max_ms: u64,
    /// Faults start no earlier than this.
    pub fault_start_ms: u64,
    /// Faults may last this long after the workload ends; all heal by then.
    pub fault_tail_ms: u64,
    /// After the last fault heals, the integration gets this long to converge.
    pub quiesce_ms: u64,
    /// The run stops early once both sides agreed for this long after the last fault.
    pub settle_ms: u64,
    /// The source's durability.
    pub source_sync: SyncPolicy,
    /// Transactions the source runs at once (its connection pool).
    #[serde(default = "one")]
    pub source_workers: u64,
    /// The share of transactions, in percent, that stay open long after their first
    /// insert (a slow statement, a call out, a user's think time).
    #[serde(default)]
    pub long_transaction_pct: u64,
    /// How long a long transaction stays open at most (at least a tenth of it); the
    /// others stay open up to 2 ms.
    #[serde(default)]
    pub long_transaction_ms: u64,
    /// The share of actions, in percent, that change two customers in one transaction
    /// (half move a contact from one to the other, half merge two), in place of an
    /// update or a delete.
    #[serde(default)]
    pub cross_customer_pct: u64,
    /// The target starts empty and the integration fills it (its bootstrap: a snapshot,
    /// a one-off copy job, or a full copy's first copy); otherwise both sides start with
    /// the same rows.
    #[serde(default)]
    pub bootstrap: bool,
    /// Every commit must be visible at the target within this long (`bounded-staleness`).
    pub staleness_bound_ms: u64,
    /// Only these invariants are checked; `None` checks all.
    pub invariants: Option<Vec<String>>,
    /// An explicit workload (a shrunk counterexample's); `None` draws it from the seed.
    pub schedule: Option<Vec<ScheduledAction>>,
    /// The run's budget in trace events (messages, disk operations, commits, applies):
    /// a run that records more is stopped and reported as a runaway.
    pub trace_events_max: u64,
    /// Disks whose writes and fsyncs take no simulated time. Only to measure what the
    /// I/O timing costs (`faultline bench --instant-io`): crashes then never land
    /// inside an I/O, so verdicts are kinder than production's.
    #[serde(default)]
    pub instant_io: bool,
}

/// One action of an explicit workload, as a suite file writes it:
/// `{ at_ms = 120, id = 7, action = "rename-customer", customer = 3, name = "x" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledAction {
    /// When the action is due.
    pub at_ms: u64,
    /// The action's id.
    pub id: u64,
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
    /// How long its transaction stays open after its first insert.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hold_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn one() -> u64 {
    1
}

impl ScheduledAction {
    /// From a drawn schedule entry.
    pub fn from_request(at: SimTime, request: &ActionRequest) -> Self {
        ScheduledAction {
            at_ms: at.as_millis(),
            id: request.id.0,
            action: request.action.clone(),
            hold_ms: request.hold_ms,
        }
    }

    /// As a schedule entry.
    pub fn to_request(&self) -> (SimTime, ActionRequest) {
        (
            SimTime::from_millis(self.at_ms),
            ActionRequest {
                id: ActionId(self.id),
                action: self.action.clone(),
                hold_ms: self.hold_ms,
            },
        )
    }
}

impl Scenario {
    /// The `standard` scenario: 200 customers, 500 actions at 100 per second on 4
    /// source connections, one transaction in twenty open for 25–250 ms, 1–10 ms
    /// latency, faults until one second after the workload, ten seconds to converge,
    /// every commit visible within five seconds.
    pub fn standard() -> Scenario {
        Scenario {
            name: "standard".to_string(),
            customers: 200,
            actions: 500,
            actions_per_sec: 100,
            latency_min_ms: 1,
            latency_max_ms: 10,
            fault_start_ms: 200,
            fault_tail_ms: 1_000,
            quiesce_ms: 10_000,
            settle_ms: 500,
            source_sync: SyncPolicy::OnCommit,
            source_workers: 4,
            long_transaction_pct: 5,
            long_transaction_ms: 250,
            cross_customer_pct: 4,
            bootstrap: false,
            staleness_bound_ms: 5_000,
            invariants: None,
            schedule: None,
            trace_events_max: faultline_sim::world::TRACE_EVENTS_MAX_DEFAULT,
            instant_io: false,
        }
    }

    /// The built-in scenario called `name`.
    pub fn by_name(name: &str) -> Option<Scenario> {
        (name == "standard").then(Scenario::standard)
    }

    /// Names of the built-in scenarios.
    pub fn names() -> Vec<&'static str> {
        vec!["standard"]
    }

    /// When the workload's last action is due.
    pub fn workload_end(&self) -> SimTime {
        match &self.schedule {
            Some(list) => SimTime::from_millis(list.iter().map(|a| a.at_ms).max().unwrap_or(0)),
            None => SimTime::from_millis(self.actions * 1_000 / self.actions_per_sec.max(1)),
        }
    }

    /// Where faults may happen; everything heals by its end.
    pub fn fault_window(&self) -> FaultWindow {
        FaultWindow {
            start: SimTime::from_millis(self.fault_start_ms),
            end: self.workload_end() + Duration::from_millis(self.fault_tail_ms),
        }
    }

    /// The hard end of a run.
    pub fn deadline(&self) -> SimTime {
        self.fault_window().end + Duration::from_millis(self.quiesce_ms)
    }
}
