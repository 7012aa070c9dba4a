//! Fault coverage ("sometimes"): a modest chaos sweep reaches every operation window the
//! testbed claims to test, as FoundationDB's code probes and Antithesis's "sometimes"
//! assertions demand. A window never reached is a hole: no verdict says anything about
//! it.

use std::collections::BTreeMap;

use crate::run_seed;
use faultline::patterns::windows::EXPECTED;
use faultline::sim::Profile;

#[test]
fn every_expected_window_is_reached_in_chaos_seeds_0_to_50() {
    // The variants whose components open the windows: after-commit queues (push,
    // queue-after-commit), the table relay (outbox), Connect-style positions
    // (outbox-logtail, cdc-tx), consumers and effects (all but push).
    let variants = [
        "push",
        "queue-after-commit",
        "outbox",
        "outbox-inbox",
        "outbox-logtail",
        "cdc-tx",
    ];
    let mut reached: BTreeMap<String, u64> = BTreeMap::new();
    for pattern in variants {
        for seed in 0..50 {
            for (window, n) in run_seed(pattern, Profile::Chaos, seed).coverage {
                *reached.entry(window).or_insert(0) += n;
            }
        }
    }
    let missing: Vec<&str> = EXPECTED
        .iter()
        .copied()
        .filter(|w| !reached.contains_key(*w))
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}; reached: {reached:#?}"
    );
}
