//! Online iterative push: after each commit the source calls the target's REST API, one
//! PUT or DELETE per changed row.
//!
//! Failed calls are retried from an in-memory queue with exponential backoff and given up
//! after a bound. The queue lives in the source process: a crash loses every change not
//! yet pushed, which is the pattern's characteristic failure. `push` applies blindly;
//! `push-versioned` has the target reject images older than what it holds.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use faultline_sim::{serve, HostCtx, RpcClient, RpcMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::domain::RowImage;
use crate::systems::source::Source;
use crate::systems::target::Target;
use crate::{Setup, RPC_TIMEOUT};

/// The port of the target's REST API.
pub const TARGET_API_PORT: u16 = 8081;

/// How the push integration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushConfig {
    /// The target rejects images not newer than what it holds.
    pub version_check: bool,
    /// Attempts per change before giving it up.
    pub attempts_max: u32,
    /// First retry delay; doubles per attempt.
    pub backoff_initial_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// Changes the in-memory queue holds; more are dropped.
    pub queue_max: usize,
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
    let source = Source::recover(&ctx, setup.source, setup.recorder.clone(), &setup.initial);
    let queue: Rc<RefCell<VecDeque<RowImage>>> = Rc::default();
    let wake = Rc::new(Notify::new());
    let sync = source.clone();
    tokio::task::spawn_local(async move { sync.run_sync_loop().await });
    let pusher = tokio::task::spawn_local(push_loop(
        ctx.clone(),
        Rc::clone(&queue),
        Rc::clone(&wake),
        config,
    ));
    source
        .run_workload(Rc::clone(&setup.schedule), |commit| {
            for row in &commit.rows {
                if queue.borrow().len() >= config.queue_max {
                    ctx.record("push-dropped", format!("{row} queue full"));
                    continue;
                }
                queue.borrow_mut().push_back(row.clone());
            }
            wake.notify_one();
        })
        .await;
    pusher.await?;
    Ok(())
}

async fn push_loop(
    ctx: HostCtx,
    queue: Rc<RefCell<VecDeque<RowImage>>>,
    wake: Rc<Notify>,
    config: PushConfig,
) {
    let target: RpcClient<EntityCall, EntityReply> =
        RpcClient::new(&ctx, "target", TARGET_API_PORT, RPC_TIMEOUT);
    loop {
        let Some(row) = queue.borrow().front().cloned() else {
            wake.notified().await;
            continue;
        };
        let call = if row.is_delete() {
            EntityCall::Delete(row.clone())
        } else {
            EntityCall::Put(row.clone())
        };
        let mut backoff_ms = config.backoff_initial_ms;
        for attempt in 1..=config.attempts_max {
            if let Ok(EntityReply::Ok) = target.call(&call).await {
                break;
            }
            if attempt == config.attempts_max {
                ctx.record("push-gave-up", format!("{row} after {attempt} attempts"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(config.backoff_max_ms);
        }
        queue.borrow_mut().pop_front();
    }
}

/// The target side: the REST API applying each entity call.
pub async fn run_target(ctx: HostCtx, setup: Setup, config: PushConfig) -> faultline_sim::HostResult {
    let target_config = crate::systems::target::TargetConfig {
        version_check: config.version_check,
        inbox: false,
    };
    let target = Target::recover(&ctx, target_config, setup.recorder.clone(), &setup.initial);
    serve(ctx, TARGET_API_PORT, move |call: EntityCall| {
        let (EntityCall::Put(row) | EntityCall::Delete(row)) = call;
        let reply = match target.apply(&[row], None) {
            Ok(_) => EntityReply::Ok,
            Err(e) => EntityReply::Failed(e.to_string()),
        };
        async move { reply }
    })
    .await?;
    Ok(())
}
