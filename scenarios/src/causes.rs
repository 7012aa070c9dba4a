//! Why a cell's violations happened: each violation traced to the fault window hit
//! nearest to it ("72% of the violations followed crash/after-commit-before-publish").
//!
//! A change lost or diverged (`convergence`) was committed at the violation's instant
//! and lost afterwards, so its cause is the first window hit at or after that instant;
//! anything else (`monotonic`, `atomic-actions`, a doubled welcome, ...) was seen at its
//! instant, so its cause is the last window hit at or before it. A violation with no
//! hit on its side counts as [`NO_FAULT`]: the pattern's own behaviour, or a fault that
//! reached no marked window (a partition, a pause). When one fault hits several windows
//! at one instant, the first recorded (a component's window, before the disk's) is
//! taken. An attribution by time, not a proof: read the counterexample's trace to
//! confirm it.

use std::collections::BTreeMap;

use faultline_sim::SimTime;

use crate::invariants::Violation;

/// The cause of a violation with no window hit on its side.
pub const NO_FAULT: &str = "(no window hit)";

/// The window a violation is traced to, given the run's hits in time order.
pub fn cause_of<'a>(violation: &Violation, timeline: &'a [(SimTime, String)]) -> &'a str {
    let at = violation.at;
    let first_from = timeline.partition_point(|(t, _)| *t < at);
    let last_upto = timeline.partition_point(|(t, _)| *t <= at);
    let after = timeline.get(first_from).map(|(_, w)| w.as_str());
    // One fault can hit several windows at one instant (a power loss inside a
    // component's window tears a file too): take the first recorded, the component's.
    let before = last_upto.checked_sub(1).map(|i| {
        let instant = timeline[i].0;
        let first = timeline.partition_point(|(t, _)| *t < instant);
        timeline[first].1.as_str()
    });
    let found = if violation.invariant == "convergence" {
        after.or(before)
    } else {
        before
    };
    found.unwrap_or(NO_FAULT)
}

/// Per invariant, how many of `violations` are traced to each window.
pub type Causes = BTreeMap<String, BTreeMap<String, u64>>;

/// Per invariant, how many of `violations` are traced to each window.
pub fn attribute(violations: &[Violation], timeline: &[(SimTime, String)]) -> Causes {
    let mut causes = Causes::new();
    for v in violations {
        *causes
            .entry(v.invariant.to_string())
            .or_default()
            .entry(cause_of(v, timeline).to_string())
            .or_insert(0) += 1;
    }
    causes
}

/// Adds `more` into `causes`.
pub fn add(causes: &mut Causes, more: &Causes) {
    for (invariant, windows) in more {
        let mine = causes.entry(invariant.clone()).or_default();
        for (window, n) in windows {
            *mine.entry(window.clone()).or_insert(0) += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(invariant: &'static str, at_ms: u64) -> Violation {
        Violation {
            invariant,
            kind: "k",
            key: "customer/1".to_string(),
            at: SimTime::from_millis(at_ms),
            story: String::new(),
            evidence: Vec::new(),
        }
    }

    #[test]
    fn a_lost_change_follows_the_next_hit_and_a_regression_the_last() {
        let timeline = vec![
            (
                SimTime::from_millis(10),
                "power-loss/apply-not-synced".to_string(),
            ),
            (
                SimTime::from_millis(50),
                "crash/after-commit-before-publish".to_string(),
            ),
        ];
        // Committed at 20 ms, lost by the crash at 50 ms.
        assert_eq!(
            cause_of(&violation("convergence", 20), &timeline),
            "crash/after-commit-before-publish"
        );
        // Seen at 30 ms, after the power loss at 10 ms.
        assert_eq!(
            cause_of(&violation("monotonic", 30), &timeline),
            "power-loss/apply-not-synced"
        );
        assert_eq!(cause_of(&violation("atomic-actions", 5), &timeline), NO_FAULT);
        let causes = attribute(
            &[violation("monotonic", 30), violation("monotonic", 60)],
            &timeline,
        );
        assert_eq!(causes["monotonic"]["power-loss/apply-not-synced"], 1);
        assert_eq!(causes["monotonic"]["crash/after-commit-before-publish"], 1);
    }
}
