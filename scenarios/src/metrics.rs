//! Metrics reported beside the invariants: not pass/fail, but what a reviewer weighs.

use std::collections::BTreeMap;

use faultline_patterns::domain::{EntityKey, Version};
use faultline_patterns::history::{Failure, History};
use faultline_sim::SimTime;
use serde::Serialize;

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
    /// When both sides last became equal, if they are at the end.
    pub converged_at_ms: Option<u64>,
    /// When the run ended.
    pub end_ms: u64,
}

/// Computes the metrics of a finished run.
pub fn compute(history: &History) -> Metrics {
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

    let mut applies: BTreeMap<EntityKey, Vec<(SimTime, Version)>> = BTreeMap::new();
    for a in &history.applies {
        for r in &a.rows {
            applies.entry(r.key).or_default().push((a.at, r.version));
        }
    }
    let mut delays_ms: Vec<u64> = Vec::new();
    let durable = history.durable_commits();
    for (c, _) in history.commits.iter().zip(&durable).filter(|(_, d)| **d) {
        for r in &c.rows {
            let visible = applies
                .get(&r.key)
                .and_then(|list| list.iter().find(|(at, v)| *at >= c.at && *v >= r.version));
            match visible {
                Some((at, _)) => delays_ms.push(at.saturating_since(c.at).as_millis() as u64),
                None => m.never_visible += 1,
            }
        }
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
    m.converged_at_ms = history.converged_at.map(SimTime::as_millis);
    m.end_ms = history.end.as_millis();
    m
}
