//! `--shard K/N`, or a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` with `--shards N`
//! (or `FAULTLINE_SHARDS`).

use clap::Args;
use faultline::scenarios::shard::Shard;

#[derive(Args, Clone, Default)]
pub struct ShardArgs {
    /// Run only this slice of the sweep: K/N (1-based), e.g. 2/4.
    #[arg(long)]
    shard: Option<String>,
    /// With JOB_COMPLETION_INDEX set (a Kubernetes Indexed Job) and no --shard, the
    /// number of shards (default: the FAULTLINE_SHARDS variable).
    #[arg(long)]
    shards: Option<u32>,
}

impl ShardArgs {
    /// The shard to run, from the flags or the environment.
    pub fn resolve(&self) -> Result<Shard, String> {
        if let Some(text) = &self.shard {
            return Shard::parse(text);
        }
        let Ok(index) = std::env::var("JOB_COMPLETION_INDEX") else {
            return Ok(Shard::ALL);
        };
        let count = match (self.shards, std::env::var("FAULTLINE_SHARDS")) {
            (Some(n), _) => n,
            (None, Ok(n)) => n
                .trim()
                .parse()
                .map_err(|_| format!("FAULTLINE_SHARDS={n:?} is not a number"))?,
            (None, Err(_)) => return Err(
                "JOB_COMPLETION_INDEX is set: give the number of shards with --shards N or FAULTLINE_SHARDS"
                    .into(),
            ),
        };
        Shard::from_completion_index(&index, count)
    }
}
