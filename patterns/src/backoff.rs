//! Exponential backoff: the wait between attempts of every retry loop in the systems (the
//! retry queue, the producer, the notification client). A first wait that doubles per
//! attempt up to a ceiling, so a retry loop never spins.

use std::time::Duration;

/// The waits of one retried operation.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    next_ms: u64,
    max_ms: u64,
}

impl Backoff {
    /// Waits of `initial_ms`, doubling up to `max_ms`.
    pub fn new(initial_ms: u64, max_ms: u64) -> Self {
        Backoff {
            next_ms: initial_ms,
            max_ms,
        }
    }

    /// The wait the next [`Backoff::wait`] will take.
    pub fn next_delay(&self) -> Duration {
        Duration::from_millis(self.next_ms)
    }

    /// Waits, and doubles the next wait up to the ceiling.
    pub async fn wait(&mut self) {
        faultline_sim::timer::sleep(self.next_delay()).await;
        self.advance();
    }

    /// Doubles the next wait up to the ceiling, for a caller that schedules the wait
    /// itself.
    pub fn advance(&mut self) {
        self.next_ms = (self.next_ms * 2).min(self.max_ms);
    }
}
