//! Captures `tracing` events from host code into the run's trace, stamped with sim time.
//!
//! Components log with the ordinary `tracing` macros; while a world runs, this layer
//! appends each event to the trace with the simulated instant and the host it ran on
//! (turmoil opens a `node` span named after the host around every host's tick). The
//! trace handle lives in a thread-local: a run is single-threaded, and parallel runs on
//! other threads each see their own. turmoil's own events are left out: they are
//! internals, not observable steps of the system under test.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::Attributes;
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::time::SimTime;
use crate::trace::Trace;

thread_local! {
    static CURRENT: RefCell<Option<Trace>> = const { RefCell::new(None) };
}

/// Keeps the capture installed on this thread until dropped.
pub(crate) struct CaptureGuard {
    _dispatch: tracing::dispatcher::DefaultGuard,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

/// Routes `tracing` events on this thread into `trace` until the guard drops.
pub(crate) fn install(trace: Trace) -> CaptureGuard {
    CURRENT.with(|c| *c.borrow_mut() = Some(trace));
    let subscriber = tracing_subscriber::registry().with(TraceCapture);
    CaptureGuard {
        _dispatch: tracing::subscriber::set_default(subscriber),
    }
}

/// The layer; public so that a caller with its own subscriber can stack it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceCapture;

/// The host a `node` span belongs to.
struct HostName(Arc<str>);

struct NameVisitor(Option<String>);

impl Visit for NameVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "name" {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "name" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

struct DetailVisitor(String);

impl Visit for DetailVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}

impl<S> Layer<S> for TraceCapture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "node" {
            return;
        }
        let mut visitor = NameVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(name), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(HostName(Arc::from(name)));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target().starts_with("turmoil") {
            return;
        }
        let Some(trace) = CURRENT.with(|c| c.borrow().clone()) else {
            return;
        };
        let host = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope
                    .from_root()
                    .find_map(|span| span.extensions().get::<HostName>().map(|h| Arc::clone(&h.0)))
            })
            .unwrap_or_else(|| Arc::from(crate::world::WORLD_HOST));
        let at = turmoil::sim_elapsed()
            .map(SimTime::from_duration)
            .unwrap_or_default();
        let mut detail = DetailVisitor(String::new());
        event.record(&mut detail);
        let target: &'static str = event.metadata().target();
        trace.record(at, &host, target, detail.0);
    }
}
