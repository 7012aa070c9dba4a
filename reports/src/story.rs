//! The story of one run, for a person at a terminal: the seed first, the fault plan,
//! the numbers, each violation with the trace events that explain it, the command that
//! replays it, and the trace hash last.

use std::fmt::Write as _;

use faultline_scenarios::runner::RunFailure;
use faultline_scenarios::Outcome;
use faultline_sim::Ended;

/// Trace events a failed run's story shows before the failure.
pub const FAILURE_TAIL_EVENTS: usize = 40;

/// Renders one run's story (without the leading `seed=` line, which the caller prints
/// before the run starts).
pub fn render(outcome: &Outcome) -> String {
    let mut out = String::new();
    let m = &outcome.metrics;
    let _ = writeln!(out, "\nfault plan:\n{}", outcome.plan);
    if !outcome.bugs.is_empty() {
        let _ = writeln!(out, "planted bugs: {}\n", outcome.bugs.join(", "));
    }
    let _ = writeln!(
        out,
        "actions: {} scheduled, {} committed, {} rejected, {} failed at the source, {} failed by the integration",
        m.actions, m.actions_committed, m.actions_rejected, m.actions_failed_source, m.actions_failed_integration
    );
    let _ = writeln!(
        out,
        "target: {} applies, {} side effects; staleness p50 {} ms, p99 {} ms, max {} ms; {} row versions never visible",
        m.applies, m.effects, m.staleness_p50_ms, m.staleness_p99_ms, m.staleness_max_ms, m.never_visible
    );
    let _ = writeln!(
        out,
        "traffic: {} calls ({:.1} per action), {} duplicates injected, {} absorbed by an inbox",
        m.calls, m.calls_per_action, m.duplicates_injected, m.duplicates_absorbed
    );
    if let Some(bytes) = m.source_log_retained_max_bytes {
        let _ = writeln!(
            out,
            "source log: its replication slots held back up to {bytes} bytes"
        );
    }
    for failure in &m.component_failures {
        let _ = writeln!(out, "FAILED: {failure}");
    }
    if !outcome.kafka_anomalies.is_empty() {
        let seen: Vec<String> = outcome
            .kafka_anomalies
            .iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        let _ = writeln!(
            out,
            "kafka: {} (as the clients saw it; stories name the customers' own)",
            seen.join(", ")
        );
    }
    if !outcome.unobserved.is_empty() {
        let _ = writeln!(
            out,
            "unobserved: {} customer(s) created and deleted between two observations of the target, never welcomed: {}",
            outcome.unobserved.len(),
            outcome.unobserved.join(", ")
        );
    }
    let ended = match outcome.ended {
        Ended::Idle => format!(
            "nothing could change any more from {} ms, judged as at its deadline, {} ms",
            outcome.stopped_at_ms, m.end_ms
        ),
        Ended::Settled | Ended::Deadline => format!("run ended at {} ms", m.end_ms),
    };
    let _ = match m.converged_at_ms {
        Some(at) => writeln!(out, "converged at {at} ms; {ended}"),
        None => writeln!(out, "never converged; {ended}"),
    };
    if outcome.violations.is_empty() {
        let _ = writeln!(out, "\nverdict: PASS - every invariant held");
    } else {
        let _ = writeln!(out, "\nverdict: FAIL - {} violation(s)", outcome.violations.len());
        for v in &outcome.violations {
            let _ = writeln!(
                out,
                "\n  {} / {} on {} at {}\n    {}",
                v.invariant, v.kind, v.key, v.at, v.story
            );
            for e in v
                .evidence
                .iter()
                .filter_map(|id| outcome.trace.get(id.0 as usize))
            {
                let _ = writeln!(
                    out,
                    "    evidence #{}: {} {} {} {}",
                    e.id.0, e.at, e.host, e.kind, e.detail
                );
            }
        }
    }
    if let Some(first) = outcome.violations.first() {
        lineage(&mut out, outcome, first);
    }
    let _ = writeln!(
        out,
        "\nrepro: {}\ntrace_hash={}",
        outcome.repro, outcome.trace_hash
    );
    out
}

/// The journey of the first violation's row, as the reports' counterexamples tell it.
fn lineage(out: &mut String, outcome: &Outcome, first: &faultline_scenarios::Violation) {
    let failure = faultline_scenarios::compare::FirstFailure::of(outcome.seed, first);
    let story = faultline_scenarios::compare::counterexample("-", outcome, &failure);
    let steps = faultline_scenarios::lineage::lineage(&story.events, &first.key);
    let _ = writeln!(out, "\nlineage of {} (the first violation's row):", first.key);
    for step in steps {
        let _ = writeln!(
            out,
            "  {:>9.1} ms  {:<8} {:<32} {}",
            step.at_us as f64 / 1_000.0,
            step.host,
            step.stage,
            faultline_scenarios::lineage::shortened(&step.detail, 100)
        );
    }
}

/// Renders a run that failed instead of giving a verdict: what failed, where and when,
/// the last trace events before it, and the command that replays it.
pub fn render_failure(failure: &RunFailure) -> String {
    let mut out = String::new();
    if !failure.bugs.is_empty() {
        let _ = writeln!(out, "planted bugs: {}", failure.bugs.join(", "));
    }
    let _ = writeln!(out, "\nverdict: RUN FAILED ({}) - {failure}", failure.kind.name());
    let skip = failure.trace.len().saturating_sub(FAILURE_TAIL_EVENTS);
    if !failure.trace.is_empty() {
        let _ = writeln!(
            out,
            "\nthe last {} of {} trace events before it:",
            failure.trace.len() - skip,
            failure.trace.len()
        );
    }
    for e in &failure.trace[skip..] {
        let _ = writeln!(out, "  #{} {} {} {} {}", e.id.0, e.at, e.host, e.kind, e.detail);
    }
    let _ = writeln!(out, "\nrepro: {}", failure.repro);
    if let Some(hash) = failure.trace_hash {
        let _ = writeln!(out, "trace_hash={hash}");
    }
    out
}
