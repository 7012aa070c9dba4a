//! Online iterative push: after each commit the source calls the target's REST API, one
//! PUT or DELETE per changed row, from an in-memory [`RetryQueue`].
//!
//! A crash of the source loses every change not yet pushed: the pattern's characteristic
//! failure. `push` applies blindly; `push-versioned` has the target reject images older
//! than what it holds, which stops stale overwrites but not lost changes.

use faultline_sim::{serve, HostCtx, RpcClient, RpcMessage};
use serde::{Deserialize, Serialize};

use crate::domain::RowImage;
use crate::retry_queue::{RetryPolicy, RetryQueue};
use crate::systems::target::{defect_rejects, ApplyRule, TargetConfig, WelcomeKey};
use crate::{Setup, RPC_TIMEOUT};

/// The port of the target's REST API.
pub const TARGET_API_PORT: u16 = 8081;

/// How the push integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushConfig {
    /// The key the target's welcomes carry (`target.welcome.key`).
    pub welcome_key: WelcomeKey,
    /// Which images the target takes.
    pub rule: ApplyRule,
    /// How the source retries.
    pub retry: RetryPolicy,
}

/// A REST call to the target: PUT or DELETE of one entity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum EntityCall {
    /// Create or replace the entity with this image.
    Put(RowImage),
    /// Delete the entity (the image is the tombstone).
    Delete(RowImage),
}

impl RpcMessage for EntityCall {
    fn label(&self) -> String {
        match self {
            EntityCall::Put(r) => format!("PUT {r}"),
            EntityCall::Delete(r) => format!("DELETE {r}"),
        }
    }
}

/// The target's answer: 2xx, or 5xx with a reason.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum EntityReply {
    /// Accepted (applied or skipped as stale).
    Ok,
    /// The target failed to store it.
    Failed(String),
}

impl RpcMessage for EntityReply {
    fn label(&self) -> String {
        match self {
            EntityReply::Ok => "200".to_string(),
            EntityReply::Failed(e) => format!("500 {e}"),
        }
    }
}

/// The source side: run the workload and push every committed row.
pub async fn run_source(ctx: HostCtx, setup: Setup, config: PushConfig) -> faultline_sim::HostResult {
    let source = setup.open_source(&ctx).await;
    setup.serve_source_api(&ctx, &source, false);
    let queue: RetryQueue<RowImage> =
        RetryQueue::new(&ctx, config.retry, setup.bugs, |row| row.key.customer.0);
    let target: RpcClient<EntityCall, EntityReply> =
        RpcClient::new(&ctx, "target", TARGET_API_PORT, RPC_TIMEOUT);
    let pushing = queue.spawn(move |row: RowImage| {
        let target = target.clone();
        async move {
            let call = if row.is_delete() {
                EntityCall::Delete(row)
            } else {
                EntityCall::Put(row)
            };
            matches!(target.call(&call).await, Ok(EntityReply::Ok))
        }
    });
    source
        .run_workload(setup.schedule.clone(), None, move |commit| {
            commit.rows.iter().for_each(|r| queue.push(r.clone()))
        })
        .await;
    pushing.await?;
    Ok(())
}

/// The target side: the REST API applying each entity call.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: PushConfig) -> faultline_sim::HostResult {
    let target = setup
        .open_target(&ctx, TargetConfig::new(config.rule, config.welcome_key))
        .await;
    let host = ctx.clone();
    serve(ctx, TARGET_API_PORT, move |call: EntityCall| {
        let (EntityCall::Put(row) | EntityCall::Delete(row)) = call;
        let target = target.clone();
        let rejected = defect_rejects(&host, &row.key.to_string());
        async move {
            if rejected {
                return EntityReply::Failed("the handler failed on this row (a deployed defect)".to_string());
            }
            match target.apply(&[row], None).await {
                Ok(_) => EntityReply::Ok,
                Err(e) => EntityReply::Failed(e.to_string()),
            }
        }
    })
    .await?;
    Ok(())
}
