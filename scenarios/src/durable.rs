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
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A source log record, as far as the checker reads it: a commit's row images (other
/// records, and a commit's other fields, are skipped unread).
#[derive(Deserialize)]
struct SourceRecord {
    #[serde(rename = "Commit")]
    commit: Option<RowImages>,
}

#[derive(Deserialize)]
struct RowImages {
    rows: Vec<RowImage>,
}

/// A target log record, as far as the checker reads it: a transaction's row images.
#[derive(Deserialize)]
struct TargetRecord {
    rows: Option<Vec<RowImage>>,
}

/// The source's durable rows: its base, then each durable commit's row images.
pub fn source_rows(disk: &Disk) -> Rows {
    decode(disk, SOURCE_BASE, SOURCE_LOG, |record: SourceRecord| {
        record.commit.map(|c| c.rows)
    })
}

/// The target's durable rows: its base, then each durable transaction's row images.
pub fn target_rows(disk: &Disk) -> Rows {
    decode(disk, TARGET_BASE, TARGET_LOG, |record: TargetRecord| record.rows)
}

fn decode<R: DeserializeOwned>(
    disk: &Disk,
    base: &str,
    log: &str,
    rows_of: impl Fn(R) -> Option<Vec<RowImage>>,
) -> Rows {
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
        let record: R = serde_json::from_slice(frame)
            .unwrap_or_else(|e| panic!("{log} record {i} is not a record this reader knows: {e}"));
        let Some(images) = rows_of(record) else {
            continue;
        };
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
