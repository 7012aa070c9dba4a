//! Full copy: a periodic batch job reads a consistent snapshot of the source and loads it
//! into the target.
//!
//! `full-copy` loads the snapshot into staging and swaps it in atomically: one local
//! transaction holding every changed row and every delete, so readers never see a
//! half-loaded table. `full-copy-inplace` overwrites row by row with no swap: while it
//! runs, readers see part old, part new. Either way the target lags by up to one
//! period, and a change can be missed for good only if the job stops running.

use std::time::Duration;

use faultline_sim::{HostCtx, RpcClient};

use crate::domain::RowImage;
use crate::history::RowState;
use crate::systems::source::{SourceRequest, SourceResponse, SOURCE_API_PORT};
use crate::systems::target::{ApplyRule, EffectTrigger, Target, TargetConfig, WelcomeKey};
use crate::Setup;

/// How the full copy behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FullCopyConfig {
    /// The key the target's welcomes carry (`target.welcome.key`).
    pub welcome_key: WelcomeKey,
    /// Swap a staged copy in atomically (`true`) or overwrite row by row.
    pub atomic_swap: bool,
    /// Time between the ends of two copies.
    pub period_ms: u64,
    /// Time to write one row in place (what makes the half-loaded state visible).
    pub row_write_ms: u64,
    /// How long the snapshot read may take.
    pub snapshot_timeout_ms: u64,
}

/// The images that turn the target's rows into the snapshot's.
fn changes(snapshot: Vec<(crate::domain::EntityKey, RowState)>, target: &Target) -> Vec<RowImage> {
    let mut held = target.rows();
    let mut out = Vec::new();
    for (key, row) in snapshot {
        // A row deleted on both sides is the same unless the source deleted it again
        // since (a contact moved away, written anew and deleted): the staging table
        // holds the source's row as it is now.
        let same = held.remove(&key).is_some_and(|h| {
            h == row || (h.data.is_none() && row.data.is_none() && h.version >= row.version)
        });
        if !same {
            out.push(RowImage {
                key,
                version: row.version,
                data: row.data,
                written_at: None,
            });
        }
    }
    // Rows the source does not have at all (their commit vanished): delete them.
    out.extend(
        held.into_iter()
            .filter(|(_, h)| h.data.is_some())
            .map(|(key, h)| RowImage {
                key,
                version: h.version,
                data: None,
                written_at: None,
            }),
    );
    out
}

/// The target side: the replica and the copy job beside it.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: FullCopyConfig) -> faultline_sim::HostResult {
    let target = setup
        .open_target(
            &ctx,
            TargetConfig {
                effects: EffectTrigger::NewRow,
                ..TargetConfig::new(ApplyRule::Blind, config.welcome_key)
            },
        )
        .await;
    // Each period's copy can change the target for as long as the sides differ: the
    // job never waits on anything it could report as done.
    ctx.report_progress("copy-job", move || {
        Some(format!("copies the source every {} ms", config.period_ms))
    });
    let timeout = Duration::from_millis(config.snapshot_timeout_ms);
    let source: RpcClient<SourceRequest, SourceResponse> =
        RpcClient::new(&ctx, "source", SOURCE_API_PORT, timeout);
    loop {
        faultline_sim::timer::sleep(Duration::from_millis(config.period_ms)).await;
        let Ok(SourceResponse::Snapshot(snapshot)) = source.call(&SourceRequest::Snapshot).await else {
            ctx.record("copy-failed", "snapshot read failed");
            continue;
        };
        let images = changes(snapshot, &target);
        if images.is_empty() {
            continue;
        }
        if config.atomic_swap {
            if let Err(e) = target.apply(&images, None).await {
                ctx.record("copy-failed", format!("swap: {e}"));
            }
            continue;
        }
        for image in images {
            faultline_sim::timer::sleep(Duration::from_millis(config.row_write_ms)).await;
            if let Err(e) = target.apply(&[image], None).await {
                ctx.record("copy-failed", format!("row: {e}"));
                break;
            }
        }
    }
}
