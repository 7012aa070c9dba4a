//! Sharding: a deterministic slice of a sweep, so that a large sweep spreads over many
//! machines (a CI matrix, a Kubernetes Indexed Job) and merges back into one report.
//!
//! Shard `K/N` (1-based) takes every run whose position in the sweep's spec order is
//! `K-1` modulo `N`: shards are disjoint, together cover everything, and interleave so
//! that each gets a fair share of every cell.

use std::fmt;

/// One slice of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which slice, from 1.
    pub index: u32,
    /// How many slices.
    pub count: u32,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Parses `K/N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let hint = "write the shard as K/N with 1 <= K <= N, e.g. 2/4";
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| format!("--shard {text:?}: {hint}"))?;
        let (index, count) = match (k.trim().parse::<u32>(), n.trim().parse::<u32>()) {
            (Ok(k), Ok(n)) => (k, n),
            _ => return Err(format!("--shard {text:?}: {hint}")),
        };
        if count == 0 || index == 0 || index > count {
            return Err(format!("--shard {text:?} is out of range: {hint}"));
        }
        Ok(Shard { index, count })
    }

    /// The shard a Kubernetes Indexed Job's pod runs: `JOB_COMPLETION_INDEX` is 0-based.
    pub fn from_completion_index(completion_index: &str, count: u32) -> Result<Shard, String> {
        let index: u32 = completion_index
            .trim()
            .parse()
            .map_err(|_| format!("JOB_COMPLETION_INDEX={completion_index:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "JOB_COMPLETION_INDEX={index} does not fit {count} shards (it counts from 0)"
            ));
        }
        Ok(Shard {
            index: index + 1,
            count,
        })
    }

    /// Whether the run at `position` in spec order belongs to this shard.
    pub fn owns(self, position: usize) -> bool {
        position % self.count as usize == (self.index - 1) as usize
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_everything() {
        let count = 4;
        for position in 0..100 {
            let owners = (1..=count)
                .filter(|k| Shard { index: *k, count }.owns(position))
                .count();
            assert_eq!(owners, 1, "position {position}");
        }
    }

    #[test]
    fn parsing_and_the_kubernetes_index() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "x", "1-4"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Shard::from_completion_index("0", 3),
            Ok(Shard { index: 1, count: 3 })
        );
        assert!(Shard::from_completion_index("3", 3).is_err());
    }
}
