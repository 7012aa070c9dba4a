//! The final durable states, decoded from the disks by the checker's own reader.
//!
//! The verdict must not rest on the systems' account of themselves, so this module does
//! not call their recovery code. It reads what a power loss now would leave of each
//! file ([`Disk::durable_content`]: synced bytes under durable names, ranges whose fsync
//! failed as zeros), splits the log into frames, and applies the row images of each
//! record in order over the base rows. It knows the on-disk shape of the records (a
//! source commit carries `Commit.rows`, a target transaction `rows`) and nothing else:
//! a system that changes its format fails every run here rather than being judged by
//! code it controls.

use faultline_patterns::domain::{EntityKey, RowImage};
use faultline_patterns::history::{RowState, Rows};
use faultline_patterns::systems::source::{SOURCE_BASE, SOURCE_LOG};
use faultline_patterns::systems::target::{TARGET_BASE, TARGET_LOG};
use faultline_sim::disk::frames;
use faultline_sim::Disk;
use serde_json::Value;

/// The source's durable rows: its base, then each durable commit's row images.
pub fn source_rows(disk: &Disk) -> Rows {
    decode(disk, SOURCE_BASE, SOURCE_LOG, |record| {
        record.get("Commit")?.get("rows")
    })
}

/// The target's durable rows: its base, then each durable transaction's row images.
pub fn target_rows(disk: &Disk) -> Rows {
    decode(disk, TARGET_BASE, TARGET_LOG, |record| record.get("rows"))
}

fn decode(disk: &Disk, base: &str, log: &str, rows_of: impl Fn(&Value) -> Option<&Value>) -> Rows {
    let base_bytes = disk.durable_content(base);
    let mut rows: Rows = if base_bytes.is_empty() {
        Rows::new()
    } else {
        let list: Vec<(EntityKey, RowState)> = serde_json::from_slice(&base_bytes)
            .unwrap_or_else(|e| panic!("{base} is not a list of rows: {e}"));
        list.into_iter().collect()
    };
    let content = disk.durable_content(log);
    for (i, frame) in frames(&content).into_iter().enumerate() {
        let record: Value =
            serde_json::from_slice(frame).unwrap_or_else(|e| panic!("{log} record {i} is not JSON: {e}"));
        let Some(images) = rows_of(&record) else {
            continue;
        };
        let images: Vec<RowImage> = serde_json::from_value(images.clone())
            .unwrap_or_else(|e| panic!("{log} record {i} has no row images: {e}"));
        for image in images {
            rows.insert(
                image.key,
                RowState {
                    version: image.version,
                    data: image.data,
                },
            );
        }
    }
    rows
}
