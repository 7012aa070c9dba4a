//! Filling an empty target (a `bootstrap` scenario): how each pattern's real
//! counterpart gets the rows that existed before the integration started.
//!
//! - A full copy needs nothing: its first copy is the bootstrap.
//! - A CDC connector takes an initial snapshot and hands over to streaming (Debezium's
//!   `snapshot.mode=initial`; `cdc.rs`).
//! - Every other pattern only carries changes, so a team runs a one-off copy job
//!   beside it: [`initial_copy`] reads a consistent snapshot of the source and writes
//!   it into the live target in batches while the integration already delivers new
//!   changes. It inserts only rows the target does not hold (`INSERT … ON CONFLICT DO
//!   NOTHING`), so a change or delete the integration applied first is not overwritten
//!   by the snapshot's older image; the other way round, a message older than the
//!   snapshot that arrives after the copy wrote the row puts an older version back on a
//!   blind target until the newer message follows. The job's progress lives in its
//!   process: a crash of the target's host starts it again from a new snapshot, until
//!   its last batch commits with the target's "bootstrapped" mark.

use std::time::Duration;

use faultline_sim::{HostCtx, RpcClient};

use crate::backoff::Backoff;
use crate::domain::RowImage;
use crate::systems::source::{SourceRequest, SourceResponse, SOURCE_API_PORT};
use crate::systems::target::Target;

/// How a pattern fills an empty target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// The pattern copies everything anyway (a full copy).
    FirstCopy,
    /// The connector snapshots the source, then streams from the snapshot's position.
    Snapshot,
    /// A one-off copy job at the target, beside the running integration.
    InitialCopy,
}

/// Rows the copy job writes per local transaction.
pub const COPY_BATCH_ROWS: usize = 30;
/// How long the job takes to write one row (a bulk upsert's throughput).
pub const COPY_ROW_MS: u64 = 1;
/// How long the snapshot read may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(500);

/// The one-off copy job: from a consistent snapshot of the source, every live row
/// written into `target` in batches of [`COPY_BATCH_ROWS`]; a failed read or write
/// starts the job again from a new snapshot after a backoff. Returns once the target
/// holds the mark of a finished copy.
pub async fn initial_copy(ctx: HostCtx, target: Target) {
    let source: RpcClient<SourceRequest, SourceResponse> =
        RpcClient::new(&ctx, crate::hosts::SOURCE, SOURCE_API_PORT, SNAPSHOT_TIMEOUT);
    let mut backoff = Backoff::new(50, 1_000);
    while !target.is_bootstrapped() {
        let Ok(SourceResponse::SnapshotAt { rows, .. }) =
            source.call(&SourceRequest::SnapshotAt { slot: None }).await
        else {
            ctx.record("bootstrap-failed", "snapshot read failed");
            backoff.wait().await;
            continue;
        };
        // Live rows, each with its writer's stamp (a last-writer-wins target compares it).
        let rows: Vec<RowImage> = rows.into_iter().filter(|r| !r.is_delete()).collect();
        ctx.record("bootstrap-copy", format!("rows={}", rows.len()));
        // An empty source still ends the job, with a mark and no rows.
        let batches: Vec<&[RowImage]> = if rows.is_empty() {
            vec![&[]]
        } else {
            rows.chunks(COPY_BATCH_ROWS).collect()
        };
        let count = batches.len();
        for (i, batch) in batches.into_iter().enumerate() {
            faultline_sim::timer::sleep(Duration::from_millis(COPY_ROW_MS * batch.len() as u64)).await;
            if let Err(e) = target.load(batch, i + 1 == count).await {
                ctx.record("bootstrap-failed", format!("batch {i}: {e}"));
                backoff.wait().await;
                break;
            }
        }
    }
}
