//! Named random streams.
//!
//! Every consumer of randomness draws from its own ChaCha stream, derived from the run
//! seed and the stream's name. ChaCha has a 64-bit stream id beside its key: the key
//! comes from the seed, the stream id from a stable hash of the name, so adding a new
//! consumer never shifts the draws of an existing one.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::trace::fnv1a64;

/// The one number that fixes a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seed(pub u64);

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The random generator every simulated component uses.
pub type SimRng = ChaCha8Rng;

/// Derives independent named streams from one seed.
#[derive(Clone, Copy, Debug)]
pub struct RngStreams {
    seed: Seed,
}

impl RngStreams {
    /// Streams for the run fixed by `seed`.
    pub fn new(seed: Seed) -> Self {
        RngStreams { seed }
    }

    /// The run seed the streams derive from.
    pub fn seed(&self) -> Seed {
        self.seed
    }

    /// The stream called `name`. Calling it twice gives two generators that draw the same
    /// numbers; distinct names give unrelated numbers.
    pub fn stream(&self, name: &str) -> SimRng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed.0);
        rng.set_stream(fnv1a64(name.as_bytes()));
        rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn draws(rng: &mut SimRng) -> Vec<u64> {
        (0..8).map(|_| rng.gen()).collect()
    }

    #[test]
    fn same_seed_and_name_give_the_same_draws() {
        let streams = RngStreams::new(Seed(7));
        assert_eq!(
            draws(&mut streams.stream("disk/a")),
            draws(&mut streams.stream("disk/a"))
        );
    }

    #[test]
    fn adding_a_stream_never_shifts_another_streams_draws() {
        let streams = RngStreams::new(Seed(7));
        let alone = draws(&mut streams.stream("rpc/source"));
        let mut other = streams.stream("rpc/target");
        let _ = draws(&mut other);
        let beside = draws(&mut streams.stream("rpc/source"));
        assert_eq!(alone, beside);
        assert_ne!(alone, draws(&mut streams.stream("rpc/target")));
    }

    #[test]
    fn different_seeds_give_different_draws() {
        let a = draws(&mut RngStreams::new(Seed(1)).stream("x"));
        let b = draws(&mut RngStreams::new(Seed(2)).stream("x"));
        assert_ne!(a, b);
    }
}
