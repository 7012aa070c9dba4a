//! Per-host wall clocks: simulated time seen through a skewed, drifting clock.
//!
//! Simulated time is the one true time of a run; a host's wall clock is what a process
//! on that host would read from `SystemTime::now()`. Components that timestamp (for
//! last-writer-wins, say) must read this clock, so that clock-skew faults reach them.

use serde::{Deserialize, Serialize};

use crate::time::SimTime;

/// The fixed instant every run's wall clocks start from: 2024-01-01T00:00:00Z.
/// Fixed so that no run ever reads the real time.
pub const EPOCH_UNIX_SECS: u64 = 1_704_067_200;

/// A wall-clock reading: microseconds since the Unix epoch, as a host believes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WallTime(pub i64);

impl WallTime {
    /// Microseconds since the Unix epoch.
    pub fn as_unix_micros(self) -> i64 {
        self.0
    }
}

/// How one host's clock departs from simulated time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostClock {
    /// Constant offset, positive when the host runs ahead.
    pub skew_us: i64,
    /// Rate error in parts per million: +100 gains 100 µs every simulated second.
    pub drift_ppm: i64,
}

impl HostClock {
    /// What the host reads at simulated instant `at`.
    pub fn read(&self, at: SimTime) -> WallTime {
        let sim_us = i64::try_from(at.as_micros()).unwrap_or(i64::MAX);
        let drift_us = sim_us.saturating_mul(self.drift_ppm) / 1_000_000;
        let epoch_us = (EPOCH_UNIX_SECS * 1_000_000) as i64;
        WallTime(
            epoch_us
                .saturating_add(sim_us)
                .saturating_add(self.skew_us)
                .saturating_add(drift_us),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unskewed_clock_reads_the_epoch_plus_sim_time() {
        let clock = HostClock::default();
        let t = clock.read(SimTime::from_millis(1500));
        assert_eq!(t.0, (EPOCH_UNIX_SECS * 1_000_000) as i64 + 1_500_000);
    }

    #[test]
    fn skew_shifts_and_drift_grows_with_time() {
        let skewed = HostClock {
            skew_us: -250_000,
            drift_ppm: 0,
        };
        let drifting = HostClock {
            skew_us: 0,
            drift_ppm: 1_000,
        };
        let base = HostClock::default();
        let at = SimTime::from_secs(10);
        assert_eq!(skewed.read(at).0 - base.read(at).0, -250_000);
        // 1000 ppm over 10 s = 10 ms ahead.
        assert_eq!(drifting.read(at).0 - base.read(at).0, 10_000);
    }
}
