//! The target's database as a second consumer instance uses it: over the network.
//!
//! The first instance of the target's service runs on the database's host (`target`)
//! and applies in process; further instances (`target-2`, ...) are processes of the
//! same service on other hosts, sharing its partitions through the consumer group, and
//! send each apply to the database as one request ([`serve_database`]). The apply is
//! the same local transaction either way (rows, inbox entry and stored welcomes), so
//! an inbox keeps its promise when two instances handle one message at once during a
//! rebalance: the second apply finds the first's entry. What the network adds is a
//! commit whose answer is lost: the instance retries an apply that happened.
//!
//! Welcomes an apply does not store (no inbox) are sent by the instance that handled
//! the message, after the commit, so a crash of that instance loses them; stored
//! welcomes are dispatched by the database host's dispatcher, as an outbox is.

use std::time::Duration;

use faultline_sim::{serve, HostCtx, RpcClient, RpcMessage};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, BugSet};
use crate::domain::RowImage;
use crate::systems::notifier::Welcomer;
use crate::systems::target::{
    send_welcome_after_commit, AfterCommitWelcome, Applied, Target, INBOX_DUPLICATE,
};
use crate::RPC_TIMEOUT;

/// The port the target's database listens on.
pub const TARGET_DB_PORT: u16 = 5433;
/// How long an instance waits for the database's answer to an apply (a statement
/// timeout): a commit's fsync and the wait for the writer are inside it.
pub const DATABASE_TIMEOUT: Duration = Duration::from_millis(1_000);

/// A request to the target's database.
#[allow(missing_docs)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TargetDbRequest {
    /// [`Target::apply_leaving_welcomes`].
    Apply {
        images: Vec<RowImage>,
        message: Option<String>,
    },
    /// [`Target::apply_snapshot`].
    ApplySnapshot { images: Vec<RowImage> },
    /// [`Target::inbox_contains`].
    InboxHolds { id: String },
}

/// The database's answer.
#[allow(missing_docs)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TargetDbResponse {
    Applied {
        applied: Applied,
        welcomes: Vec<AfterCommitWelcome>,
    },
    Snapshot {
        applied: usize,
    },
    InboxHolds(bool),
    /// The local transaction failed (a disk error): nothing was committed.
    Failed,
}

impl RpcMessage for TargetDbRequest {
    fn label(&self) -> String {
        match self {
            TargetDbRequest::Apply { images, message } => {
                let keys: Vec<String> = images.iter().map(|i| i.key.to_string()).collect();
                match message {
                    Some(id) => format!("apply {id} {}", keys.join(",")),
                    None => format!("apply {}", keys.join(",")),
                }
            }
            TargetDbRequest::ApplySnapshot { images } => format!("apply-snapshot n={}", images.len()),
            TargetDbRequest::InboxHolds { id } => format!("inbox? {id}"),
        }
    }
}

impl RpcMessage for TargetDbResponse {
    fn label(&self) -> String {
        match self {
            TargetDbResponse::Applied { applied, .. } => format!("{applied:?}"),
            TargetDbResponse::Snapshot { applied } => format!("snapshot applied={applied}"),
            TargetDbResponse::InboxHolds(holds) => format!("inbox holds={holds}"),
            TargetDbResponse::Failed => "failed".to_string(),
        }
    }
}

/// Serves the target's database to the other instances until the host stops.
pub async fn serve_database(ctx: HostCtx, target: Target) -> faultline_sim::HostResult {
    serve(ctx, TARGET_DB_PORT, move |request: TargetDbRequest| {
        let target = target.clone();
        async move {
            match request {
                TargetDbRequest::Apply { images, message } => {
                    match target.apply_leaving_welcomes(&images, message.as_deref()).await {
                        Ok((applied, welcomes)) => TargetDbResponse::Applied { applied, welcomes },
                        Err(_) => TargetDbResponse::Failed,
                    }
                }
                TargetDbRequest::ApplySnapshot { images } => match target.apply_snapshot(&images).await {
                    Ok(applied) => TargetDbResponse::Snapshot { applied },
                    Err(_) => TargetDbResponse::Failed,
                },
                TargetDbRequest::InboxHolds { id } => {
                    TargetDbResponse::InboxHolds(target.inbox_contains(&id))
                }
            }
        }
    })
    .await?;
    Ok(())
}

/// The target as a handler reaches it: in process on the database's host, or over the
/// network from another instance. Clones share it.
#[derive(Clone)]
pub enum TargetHandle {
    /// The first instance, beside the database.
    Local(Target),
    /// A further instance.
    Remote(RemoteTarget),
}

/// A further instance's connection to the target's database.
#[derive(Clone)]
pub struct RemoteTarget {
    ctx: HostCtx,
    database: RpcClient<TargetDbRequest, TargetDbResponse>,
    welcomer: Welcomer,
}

impl TargetHandle {
    /// The database on `target`'s host, from this instance, with the run's planted bugs.
    pub fn remote(ctx: &HostCtx, bugs: BugSet) -> TargetHandle {
        let welcomer = Welcomer::new(ctx, RPC_TIMEOUT);
        TargetHandle::Remote(RemoteTarget {
            ctx: ctx.clone(),
            database: RpcClient::new(ctx, crate::hosts::TARGET, TARGET_DB_PORT, DATABASE_TIMEOUT),
            welcomer: if bugs.has(Bug::WelcomeKeyPerAttempt) {
                welcomer.with_key_per_attempt()
            } else {
                welcomer
            },
        })
    }

    /// [`Target::apply`]: `Err` when the apply failed or its answer did not come (it may
    /// have committed).
    pub async fn apply(&self, images: &[RowImage], message: Option<&str>) -> Result<Applied, ()> {
        match self {
            TargetHandle::Local(target) => target.apply(images, message).await.map_err(|_| ()),
            TargetHandle::Remote(remote) => {
                let request = TargetDbRequest::Apply {
                    images: images.to_vec(),
                    message: message.map(str::to_string),
                };
                match remote.database.call(&request).await {
                    Ok(TargetDbResponse::Applied { applied, welcomes }) => {
                        for welcome in welcomes {
                            send_welcome_after_commit(
                                &remote.ctx,
                                &remote.welcomer,
                                welcome.customer,
                                welcome.key,
                            );
                        }
                        Ok(applied)
                    }
                    _ => Err(()),
                }
            }
        }
    }

    /// [`Target::apply_snapshot`].
    pub async fn apply_snapshot(&self, images: &[RowImage]) -> Result<usize, ()> {
        match self {
            TargetHandle::Local(target) => target.apply_snapshot(images).await.map_err(|_| ()),
            TargetHandle::Remote(remote) => {
                let request = TargetDbRequest::ApplySnapshot {
                    images: images.to_vec(),
                };
                match remote.database.call(&request).await {
                    Ok(TargetDbResponse::Snapshot { applied }) => Ok(applied),
                    _ => Err(()),
                }
            }
        }
    }

    /// [`Target::inbox_contains`]: `Err` when the database did not answer.
    pub async fn inbox_contains(&self, id: &str) -> Result<bool, ()> {
        match self {
            TargetHandle::Local(target) => Ok(target.inbox_contains(id)),
            TargetHandle::Remote(remote) => {
                let request = TargetDbRequest::InboxHolds { id: id.to_string() };
                match remote.database.call(&request).await {
                    Ok(TargetDbResponse::InboxHolds(holds)) => Ok(holds),
                    _ => Err(()),
                }
            }
        }
    }

    /// Records, on the handler's host, that a copy of an applied message was dropped
    /// before its apply.
    pub fn note_duplicate(&self, what: &str) {
        match self {
            TargetHandle::Local(target) => target.note_duplicate(what),
            TargetHandle::Remote(remote) => {
                remote.ctx.record(INBOX_DUPLICATE, what.to_string());
            }
        }
    }
}
