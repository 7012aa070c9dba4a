//! An outbox delivered by webhook: a pattern written outside faultline, over its public
//! API, run by the same commands (`compare`, `run`, `repro`, `shrink`, `merge`).
//!
//! The source commits each action's rows together with an outbox message (faultline's
//! source keeps the outbox table when [`Pattern::source_outbox`] says so). A relay on the
//! source host polls the unsent messages and POSTs them, in commit order and up to
//! [`BATCH_MAX`] per call, to the target's webhook endpoint; after the 2xx it marks them
//! sent. A failed or timed-out call is retried with a doubling wait. The target applies
//! each message's rows in one local transaction.
//!
//! Two variants:
//!
//! - `outbox-webhook` — the receiver is idempotent, as webhook consumers are told to be
//!   (Stripe's and GitHub's delivery docs): it keeps the ids of delivered messages in an
//!   inbox, in the apply's own transaction, and its welcome goes out keyed by the message.
//! - `outbox-webhook-naive` — the receiver applies every delivery. A crash between the
//!   call and the mark, or a retry after a lost response, delivers again: a redelivered
//!   "customer created" welcomes again, and a late original can land over newer rows.
//!
//! Everything here is faultline's public API: [`Setup`] opens the source and the target,
//! [`Source::outbox_unsent`] and [`Source::mark_sent`] are the outbox table, the world's
//! RPC ([`RpcClient`], [`serve`]) is the network with its faults, and
//! [`faultline::patterns::Variant::register`] makes the pattern a preset.

use std::time::Duration;

use faultline::patterns::backoff::Backoff;
use faultline::patterns::systems::source::{OutboxMessage, Source};
use faultline::patterns::systems::target::TargetConfig;
use faultline::patterns::variants::Pattern;
use faultline::patterns::{hosts, windows, Setup, Variant, RPC_TIMEOUT};
use faultline::sim::{serve, HostCtx, HostResult, RpcClient, RpcMessage, World, WorldError};
use serde::{Deserialize, Serialize};

/// The port of the target's webhook endpoint.
pub const WEBHOOK_PORT: u16 = 8443;
/// How often the relay looks for unsent messages.
pub const POLL_MS: u64 = 20;
/// Messages one call carries at most.
pub const BATCH_MAX: usize = 32;

/// One webhook call: outbox messages in commit order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivery {
    /// The messages.
    pub messages: Vec<OutboxMessage>,
}

impl RpcMessage for Delivery {
    fn label(&self) -> String {
        let ids: Vec<&str> = self.messages.iter().map(|m| m.id.as_str()).collect();
        format!("POST /webhook n={} {}", ids.len(), ids.join(" "))
    }
}

/// The receiver's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DeliveryReply {
    /// 2xx: every message is applied (or was already).
    Accepted,
    /// 5xx: storing failed; the sender tries again.
    Failed(String),
}

impl RpcMessage for DeliveryReply {
    fn label(&self) -> String {
        match self {
            DeliveryReply::Accepted => "204".to_string(),
            DeliveryReply::Failed(e) => format!("500 {e}"),
        }
    }
}

/// The pattern; `idempotent` is whether the receiver keeps an inbox.
pub struct OutboxWebhook {
    /// The receiver keeps the ids of delivered messages and skips repeats.
    pub idempotent: bool,
}

impl Pattern for OutboxWebhook {
    fn source_outbox(&self) -> bool {
        true
    }

    fn install(&self, world: &mut World, setup: &Setup) -> Result<(), WorldError> {
        let source_setup = setup.clone();
        world.host(hosts::SOURCE, move |ctx| run_source(ctx, source_setup.clone()))?;
        let target_setup = setup.clone();
        let idempotent = self.idempotent;
        world.host(hosts::TARGET, move |ctx| {
            run_target(ctx, target_setup.clone(), idempotent)
        })?;
        Ok(())
    }
}

/// The idempotent receiver.
pub static OUTBOX_WEBHOOK: OutboxWebhook = OutboxWebhook { idempotent: true };
/// The receiver that applies every delivery.
pub static OUTBOX_WEBHOOK_NAIVE: OutboxWebhook = OutboxWebhook { idempotent: false };

/// Registers both variants; returns them, idempotent first.
pub fn register() -> [&'static Variant; 2] {
    let register = |name, description, pattern: &'static OutboxWebhook| {
        Variant::register(name, description, pattern).expect("the names are free and plain")
    };
    [
        register(
            "outbox-webhook",
            "rows and outbox message commit together; a relay POSTs unsent messages in order to the target's webhook and marks them sent; the receiver keeps an inbox (idempotent)",
            &OUTBOX_WEBHOOK,
        ),
        register(
            "outbox-webhook-naive",
            "outbox-webhook whose receiver applies every delivery (no inbox)",
            &OUTBOX_WEBHOOK_NAIVE,
        ),
    ]
}

/// The source host: the workload, and the relay beside it.
async fn run_source(ctx: HostCtx, setup: Setup) -> HostResult {
    let source = setup.open_source(&ctx).await;
    let relay = tokio::task::spawn_local(relay(ctx.clone(), source.clone()));
    source.run_workload(setup.schedule.clone(), None, |_| {}).await;
    relay.await?;
    Ok(())
}

/// Polls the outbox table and delivers what is unsent, oldest first, one call at a
/// time; marks a call's messages sent after its 2xx.
async fn relay(ctx: HostCtx, source: Source) {
    let target: RpcClient<Delivery, DeliveryReply> =
        RpcClient::new(&ctx, hosts::TARGET, WEBHOOK_PORT, RPC_TIMEOUT);
    let retry = || Backoff::new(50, 1_000);
    let mut backoff = retry();
    loop {
        faultline::sim::timer::sleep(Duration::from_millis(POLL_MS)).await;
        let messages = source.outbox_unsent(BATCH_MAX);
        if messages.is_empty() {
            continue;
        }
        let delivery = Delivery { messages };
        if !matches!(target.call(&delivery).await, Ok(DeliveryReply::Accepted)) {
            backoff.wait().await;
            continue;
        }
        backoff = retry();
        // A crash from here to the mark delivers these again after the restart.
        let _unmarked = ctx.window(windows::AFTER_PUBLISH_BEFORE_MARK_SENT);
        let delivered: Vec<_> = delivery.messages.iter().map(|m| m.tx).collect();
        if let Err(e) = source.mark_sent(&delivered).await {
            ctx.record("relay-mark-failed", format!("{} messages {e}", delivered.len()));
        }
    }
}

/// The target host: the webhook endpoint, applying each message in one local
/// transaction (with the inbox entry when idempotent).
async fn run_target(ctx: HostCtx, setup: Setup, idempotent: bool) -> HostResult {
    let receiver = TargetConfig {
        inbox: idempotent,
        ..TargetConfig::default()
    };
    let target = setup.open_target(&ctx, receiver).await;
    serve(ctx, WEBHOOK_PORT, move |delivery: Delivery| {
        let target = target.clone();
        async move {
            for message in &delivery.messages {
                if let Err(e) = target.apply(&message.rows, Some(&message.id)).await {
                    return DeliveryReply::Failed(e.to_string());
                }
            }
            DeliveryReply::Accepted
        }
    })
    .await?;
    Ok(())
}
