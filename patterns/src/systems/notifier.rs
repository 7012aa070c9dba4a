//! The notification service: an external provider (an email or messaging API) that the
//! target's handlers call to welcome a new customer. It is the side effect the
//! `exactly-once-effects` invariant counts, observed where it happens: at the receiver.
//!
//! Like most such APIs (Stripe's `Idempotency-Key`, email providers' message ids) it
//! honours an idempotency key: a second request with a key it has seen performs
//! nothing and answers as the first did. A request without a key is performed every
//! time it arrives, so a retry after a lost response welcomes twice. The service is a
//! managed dependency outside the system under test: fault profiles do not crash or
//! partition it, but calls to it meet the network's message faults like any other.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use faultline_sim::progress::Work;
use faultline_sim::{serve, HostCtx, RpcClient, RpcMessage};
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::domain::CustomerId;
use crate::history::Recorder;
use crate::retry_queue::{RetryPolicy, DEFAULT_RETRY};

/// The port the notification service listens on.
pub const NOTIFIER_PORT: u16 = 8025;
/// The trace event kind of a welcome performed.
pub const WELCOME: &str = "welcome";

/// How a welcome is retried: as the retry queue's default (8 attempts, 20 ms doubling
/// to 500 ms).
const SEND_RETRY: RetryPolicy = DEFAULT_RETRY;

/// "Welcome this customer", with the caller's idempotency key when it has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelcomeRequest {
    /// Who.
    pub customer: CustomerId,
    /// Requests with the same key are performed once.
    pub key: Option<String>,
}

impl RpcMessage for WelcomeRequest {
    fn label(&self) -> String {
        match &self.key {
            Some(key) => format!("welcome customer/{} key={key}", self.customer.0),
            None => format!("welcome customer/{}", self.customer.0),
        }
    }
}

/// The service's answer: sent (now or before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelcomeSent;

impl RpcMessage for WelcomeSent {
    fn label(&self) -> String {
        "202".to_string()
    }
}

/// Runs the notification service; every welcome it performs goes into the history.
pub async fn run_notifier(ctx: HostCtx, recorder: Recorder) -> faultline_sim::HostResult {
    // It only answers the welcomes sent to it: their senders report them until
    // acknowledged.
    ctx.report_progress("notifier", || None);
    let seen: Rc<RefCell<BTreeSet<String>>> = Rc::default();
    let handler_ctx = ctx.clone();
    serve(ctx, NOTIFIER_PORT, move |request: WelcomeRequest| {
        let ctx = handler_ctx.clone();
        let seen = Rc::clone(&seen);
        let recorder = recorder.clone();
        async move {
            let repeat = request
                .key
                .as_ref()
                .is_some_and(|key| !seen.borrow_mut().insert(key.clone()));
            if repeat {
                ctx.record("welcome-repeat", request.label());
            } else {
                let event = ctx.record(WELCOME, format!("customer/{}", request.customer.0));
                recorder.effect(request.customer, ctx.now(), event);
            }
            WelcomeSent
        }
    })
    .await?;
    Ok(())
}

/// A client of the notification service that retries each welcome with backoff.
#[derive(Clone)]
pub struct Welcomer {
    rpc: RpcClient<WelcomeRequest, WelcomeSent>,
    ctx: HostCtx,
    /// Planted: a fresh idempotency key per attempt, made inside the retry loop.
    key_per_attempt: bool,
    /// Welcomes being sent (attempts and backoffs), reported as pending work.
    sending: Work,
}

impl Welcomer {
    /// A client on this host; each call gives up after `timeout`.
    pub fn new(ctx: &HostCtx, timeout: Duration) -> Self {
        let sending = Work::default();
        ctx.report_progress("welcomes", sending.probe("welcome(s) not yet acknowledged"));
        Welcomer {
            rpc: RpcClient::new(ctx, crate::hosts::NOTIFIER, NOTIFIER_PORT, timeout),
            ctx: ctx.clone(),
            key_per_attempt: false,
            sending,
        }
    }

    /// The planted `welcome-key-per-attempt`: each attempt carries its own key, so the
    /// service cannot tell a retry from a new welcome.
    pub fn with_key_per_attempt(self) -> Self {
        Welcomer {
            key_per_attempt: true,
            ..self
        }
    }

    /// Welcomes `customer`, retrying until acknowledged or out of attempts; answers
    /// whether it was acknowledged. A call that timed out may still have been performed.
    pub async fn welcome(&self, customer: CustomerId, key: Option<String>) -> bool {
        let _sending = self.sending.start();
        let mut request = WelcomeRequest {
            customer,
            key: key.clone(),
        };
        let mut backoff = Backoff::new(SEND_RETRY.backoff_initial_ms, SEND_RETRY.backoff_max_ms);
        for attempt in 1..=SEND_RETRY.attempts_max {
            if let (true, Some(key)) = (self.key_per_attempt, &key) {
                request.key = Some(format!("{key}#try{attempt}"));
            }
            if self.rpc.call(&request).await.is_ok() {
                return true;
            }
            if attempt == SEND_RETRY.attempts_max {
                break;
            }
            backoff.wait().await;
        }
        self.ctx.record(
            "gave-up",
            format!("{} after {} attempts", request.label(), SEND_RETRY.attempts_max),
        );
        false
    }
}
