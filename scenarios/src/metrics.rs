//! Metrics reported beside the invariants: not pass/fail, but what a reviewer weighs.

use faultline_patterns::history::{Failure, History};
use faultline_sim::SimTime;
use serde::Serialize;

use crate::visibility::durable_commit_visibility;

/// Numbers that describe one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Actions the workload scheduled.
    pub actions: u64,
    /// Actions that committed.
    pub actions_committed: u64,
    /// Actions refused by business rules (not a fault).
    pub actions_rejected: u64,
    /// Actions that failed because the source was down or its storage failed.
    pub actions_failed_source: u64,
    /// Actions that failed because of the integration.
    pub actions_failed_integration: u64,
    /// Share of non-rejected actions that did not fail because of the integration.
    pub availability: f64,
    /// Target applies (local transactions).
    pub applies: u64,
    /// Side effects performed.
    pub effects: u64,
    /// Commit-to-visible delay, median.
    pub staleness_p50_ms: u64,
    /// Commit-to-visible delay, 99th percentile.
    pub staleness_p99_ms: u64,
    /// Commit-to-visible delay, worst.
    pub staleness_max_ms: u64,
    /// Committed row versions the target never showed (nor anything newer).
    pub never_visible: u64,
    /// Customers created and deleted at the source between two of the target's
    /// observations: never held there, so never welcomed (not an effect lost).
    pub unobserved_customers: u64,
    /// When both sides last became equal, if they are at the end.
    pub converged_at_ms: Option<u64>,
    /// When the run ended.
    pub end_ms: u64,
    /// Calls and messages the integration sent (RPCs, produces, fetches, offset commits).
    pub calls: u64,
    /// Calls per scheduled action.
    pub calls_per_action: f64,
    /// Deliveries the target recognised as repeats (inbox hits).
    pub duplicates_absorbed: u64,
    /// Requests the world delivered twice on purpose (message faults).
    pub duplicates_injected: u64,
    /// From the last fault to agreement (`None` without faults, or without agreement).
    pub recovery_ms: Option<u64>,
    /// Commit-to-visible delays counted per bucket of [`STALENESS_BUCKETS_MS`].
    pub staleness_histogram: Vec<u64>,
    /// How much went wrong: lost changes, applies per change, fracture windows.
    pub magnitudes: crate::magnitudes::RunMagnitudes,
    /// The most log the source's replication slots held back at once, in bytes (`None`
    /// when no reader streams the source's log).
    pub source_log_retained_max_bytes: Option<u64>,
    /// Components that stopped on an error (`host at N ms: error`): the loud failures.
    pub component_failures: Vec<String>,
}

/// Upper bounds (inclusive) of the staleness histogram's buckets; the last is open.
pub const STALENESS_BUCKETS_MS: [u64; 14] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    u64::MAX,
];

/// The bucket a delay falls in.
pub fn staleness_bucket(delay_ms: u64) -> usize {
    STALENESS_BUCKETS_MS
        .iter()
        .position(|bound| delay_ms <= *bound)
        .expect("the last bucket is open")
}

/// The smallest bucket bound at or above the `pct` percentile of a histogram.
pub fn histogram_percentile_ms(histogram: &[u64], pct: u64) -> Option<u64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (total * pct).div_ceil(100).max(1);
    let mut seen = 0;
    for (i, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(STALENESS_BUCKETS_MS[i]);
        }
    }
    None
}

/// What the trace counted, for the metrics that are about traffic.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceCounts {
    /// RPC requests sent.
    pub calls: u64,
    /// Inbox hits at the target.
    pub duplicates_absorbed: u64,
    /// Requests duplicated by the world.
    pub duplicates_injected: u64,
}

/// Computes the metrics of a finished run.
pub fn compute(history: &History, counts: TraceCounts) -> Metrics {
    let mut m = Metrics {
        actions: history.actions_scheduled,
        ..Metrics::default()
    };
    for o in &history.outcomes {
        match &o.result {
            Ok(_) => m.actions_committed += 1,
            Err(Failure::Rejected(_)) => m.actions_rejected += 1,
            Err(Failure::SourceDown | Failure::Storage(_)) => m.actions_failed_source += 1,
            Err(Failure::Integration(_)) => m.actions_failed_integration += 1,
        }
    }
    // Actions with no outcome never ran: the source was down when they were due (or
    // crashed while running them).
    let ended = history.outcomes.len() as u64;
    m.actions_failed_source += m.actions.saturating_sub(ended);
    let attempted = m.actions - m.actions_rejected;
    m.availability = if attempted == 0 {
        1.0
    } else {
        1.0 - m.actions_failed_integration as f64 / attempted as f64
    };
    m.applies = history.applies.len() as u64;
    m.effects = history.effects.len() as u64;
    m.unobserved_customers = crate::invariants::unobserved_customers(history).len() as u64;

    let mut delays_ms: Vec<u64> = Vec::new();
    for vis in durable_commit_visibility(history) {
        let committed = history.commits[vis.commit].at;
        for at in vis.rows_visible_at {
            match at {
                Some(at) => delays_ms.push(at.saturating_since(committed).as_millis() as u64),
                None => m.never_visible += 1,
            }
        }
    }
    m.staleness_histogram = vec![0; STALENESS_BUCKETS_MS.len()];
    for d in &delays_ms {
        m.staleness_histogram[staleness_bucket(*d)] += 1;
    }
    delays_ms.sort_unstable();
    let pct = |p: usize| {
        delays_ms
            .get((delays_ms.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    m.staleness_p50_ms = pct(50);
    m.staleness_p99_ms = pct(99);
    m.staleness_max_ms = delays_ms.last().copied().unwrap_or(0);
    let converged_at = crate::agreement::agreed_since(history).ok();
    m.converged_at_ms = converged_at.map(SimTime::as_millis);
    m.end_ms = history.end.as_millis();
    m.calls = counts.calls;
    m.calls_per_action = if m.actions == 0 {
        0.0
    } else {
        counts.calls as f64 / m.actions as f64
    };
    m.duplicates_absorbed = counts.duplicates_absorbed;
    m.duplicates_injected = counts.duplicates_injected;
    m.magnitudes = crate::magnitudes::of_run(history);
    m.source_log_retained_max_bytes = history.source_log_retained_max;
    m.component_failures = history
        .component_failures
        .iter()
        .map(|f| format!("{} at {} ms: {}", f.host, f.at.as_millis(), f.error))
        .collect();
    // Without faults there is nothing to recover from.
    m.recovery_ms = converged_at
        .filter(|_| history.last_fault_at > SimTime::ZERO)
        .map(|at| at.saturating_since(history.last_fault_at).as_millis() as u64);
    m
}
