//! Change data capture: a connector tails the source's commit log and publishes one event
//! per changed *row*, the way Debezium reads a database's log.
//!
//! The connector runs on its own host. It reads committed transactions from a log
//! position through the source's replication API, publishes their row events, and saves
//! its position on its own disk only after a whole batch is published; after a crash it
//! re-reads from the saved position and publishes those events again. Each event
//! carries its transaction id, its index and the transaction's event count (Debezium's
//! transaction metadata). `cdc-row` applies events one by one, so one business action
//! reaches the target in pieces; `cdc-tx` buffers a transaction's events and applies
//! them together.

use std::time::Duration;

use faultline_sim::{HostCtx, LogPos, RpcClient};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::consumer::{run_consumers, ConsumerConfig, Handled, Handler};
use crate::domain::{RowImage, TxId};
use crate::outbox::partition_of;
use crate::systems::broker::{BrokerRecord, Producer};
use crate::systems::source::{SourceRequest, SourceResponse, SOURCE_API_PORT};
use crate::systems::target::{ApplyRule, Target};
use crate::{Setup, RPC_TIMEOUT};

/// The topic row events go to.
pub const TOPIC: &str = "customer-cdc";
/// Where the connector keeps its log position.
const POSITION_FILE: &str = "connector.pos";

/// How the target applies row events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdcApply {
    /// Each row event in its own local transaction.
    RowByRow,
    /// A transaction's row events buffered and applied together.
    Transaction,
}

/// How the CDC integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdcConfig {
    /// How the target applies.
    pub apply: CdcApply,
    /// How often the connector reads the log.
    pub connector_poll_ms: u64,
    /// How the target consumes.
    pub consumer: ConsumerConfig,
}

/// One changed row, with its transaction's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowEvent {
    /// The source transaction.
    pub tx: TxId,
    /// This event's place in the transaction, from 0.
    pub index: u32,
    /// How many events the transaction has.
    pub count: u32,
    /// The row image.
    pub row: RowImage,
}

/// The connector: tail the log, publish row events, save the position.
pub async fn run_connector(ctx: HostCtx, config: CdcConfig, bugs: BugSet) -> faultline_sim::HostResult {
    let source: RpcClient<SourceRequest, SourceResponse> =
        RpcClient::new(&ctx, "source", SOURCE_API_PORT, RPC_TIMEOUT);
    let producer = Producer::new(&ctx, RPC_TIMEOUT, false);
    let saved = ctx.disk().read_all(POSITION_FILE);
    let mut position = LogPos(
        std::str::from_utf8(&saved)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    loop {
        tokio::time::sleep(Duration::from_millis(config.connector_poll_ms)).await;
        let Ok(SourceResponse::Log { commits, next }) =
            source.call(&SourceRequest::ReadLog { from: position }).await
        else {
            continue;
        };
        let save_first = bugs.has(Bug::CdcPositionBeforePublish);
        if save_first
            && next != position
            && ctx
                .disk()
                .replace(POSITION_FILE, next.0.to_string().as_bytes())
                .is_ok()
        {
            // Planted: the position moves on before the events are out.
            position = next;
        }
        let mut published_all = true;
        'commits: for commit in &commits {
            let count = commit.rows.len() as u32;
            for (index, row) in commit.rows.iter().enumerate() {
                let event = RowEvent {
                    tx: commit.tx,
                    index: index as u32,
                    count,
                    row: row.clone(),
                };
                let payload = serde_json::to_string(&event).expect("row events serialise");
                let partition = partition_of(row.key.customer, config.consumer.partitions);
                if producer
                    .publish(TOPIC, partition, row.key.to_string(), payload, 0)
                    .await
                    .is_err()
                {
                    published_all = false;
                    break 'commits;
                }
            }
        }
        if published_all && next != position {
            match ctx.disk().replace(POSITION_FILE, next.0.to_string().as_bytes()) {
                Ok(()) => position = next,
                Err(e) => {
                    ctx.record("connector-position-failed", e.to_string());
                }
            }
        }
    }
}

/// Applies row events, one by one or a transaction at a time.
struct ApplyEvents {
    target: Target,
    apply: CdcApply,
    pending: Option<(TxId, u32, Vec<RowImage>)>,
}

impl Handler for ApplyEvents {
    async fn handle(&mut self, record: &BrokerRecord) -> Result<Handled, ()> {
        let event: RowEvent = serde_json::from_str(&record.payload).expect("payloads are row events");
        if self.apply == CdcApply::RowByRow {
            return self
                .target
                .apply(&[event.row], None)
                .await
                .map(|_| Handled::Done)
                .map_err(|_| ());
        }
        if event.index == 0 {
            // A transaction starts (again, after a connector re-read): drop any partial one.
            self.pending = Some((event.tx, event.count, Vec::new()));
        }
        let Some((tx, count, rows)) = self.pending.as_mut() else {
            // The middle of a transaction whose start we never saw: it will come again
            // whole when the connector re-reads; skip the fragment.
            return Ok(Handled::Done);
        };
        if *tx != event.tx || rows.len() as u32 != event.index {
            self.pending = None;
            return Ok(Handled::Done);
        }
        rows.push(event.row);
        if rows.len() as u32 == *count {
            let (_, _, rows) = self.pending.take().expect("pending transaction");
            return self
                .target
                .apply(&rows, None)
                .await
                .map(|_| Handled::Done)
                .map_err(|_| ());
        }
        Ok(Handled::Buffered)
    }

    async fn flush(&mut self) -> Result<bool, ()> {
        Ok(self.pending.is_some())
    }

    fn reset(&mut self) {
        self.pending = None;
    }
}

/// The target side: one consumer per partition.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: CdcConfig) -> faultline_sim::HostResult {
    let target = setup.open_target(&ctx, ApplyRule::Blind, false);
    run_consumers(&ctx, TOPIC, config.consumer.with_bugs(setup.bugs), |_| {
        ApplyEvents {
            target: target.clone(),
            apply: config.apply,
            pending: None,
        }
    })
    .await;
    Ok(())
}
