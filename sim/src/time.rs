//! Simulated time as a type.
//!
//! All instants inside a run are offsets from the start of the simulation, never wall
//! clock readings. Microsecond resolution is finer than any tick the world uses, and a
//! `u64` of microseconds spans half a million years of simulated time.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An instant in simulated time: the offset from the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SimTime(u64);

impl SimTime {
    /// The start of every run.
    pub const ZERO: SimTime = SimTime(0);
    /// Later than any run can reach; useful as "never".
    pub const MAX: SimTime = SimTime(u64::MAX);

    /// An instant `ms` milliseconds after the start.
    pub const fn from_millis(ms: u64) -> Self {
        SimTime(ms * 1_000)
    }

    /// An instant `us` microseconds after the start.
    pub const fn from_micros(us: u64) -> Self {
        SimTime(us)
    }

    /// An instant `secs` seconds after the start.
    pub const fn from_secs(secs: u64) -> Self {
        SimTime(secs * 1_000_000)
    }

    /// Converts an elapsed duration (as turmoil reports it) into an instant.
    pub fn from_duration(elapsed: Duration) -> Self {
        SimTime(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
    }

    /// Whole milliseconds since the start (rounded down).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// Microseconds since the start.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The offset from the start as a [`Duration`].
    pub const fn as_duration(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// The time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: SimTime) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// The instant as seen by the currently executing simulated host.
    ///
    /// Panics outside a running host: only a bug calls it from elsewhere.
    pub fn now() -> Self {
        Self::from_duration(turmoil::sim_elapsed().expect("SimTime::now called outside a simulated host"))
    }
}

impl Add<Duration> for SimTime {
    type Output = SimTime;
    fn add(self, rhs: Duration) -> SimTime {
        SimTime(
            self.0
                .saturating_add(u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Duration> for SimTime {
    type Output = SimTime;
    fn sub(self, rhs: Duration) -> SimTime {
        SimTime(
            self.0
                .saturating_sub(u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 / 1_000;
        let frac_us = self.0 % 1_000;
        if frac_us == 0 {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{ms}.{frac_us:03}ms")
        }
    }
}

/// Serialises a [`SimTime`] as whole milliseconds, for hand-written files (fault plans,
/// suites) where microseconds would only add noise.
pub mod millis {
    use super::SimTime;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the instant as integer milliseconds.
    pub fn serialize<S: Serializer>(t: &SimTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.as_millis())
    }

    /// Reads integer milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SimTime, D::Error> {
        u64::deserialize(d).map(SimTime::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_milliseconds_and_fraction() {
        assert_eq!(SimTime::from_millis(1500).to_string(), "1500ms");
        assert_eq!(SimTime::from_micros(1_500_250).to_string(), "1500.250ms");
    }

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(SimTime::ZERO - Duration::from_secs(1), SimTime::ZERO);
        assert_eq!(SimTime::MAX + Duration::from_secs(1), SimTime::MAX);
        assert_eq!(
            SimTime::from_millis(5).saturating_since(SimTime::from_millis(7)),
            Duration::ZERO
        );
    }
}
