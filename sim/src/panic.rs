//! Panics inside a run, caught at the run boundary with their message and location.
//!
//! A run's code (a pattern's task, a system, the world, a checker) can panic. Left alone,
//! the panic would unwind through the sweep's worker thread and take every other run of
//! the sweep down with it. [`capture`] runs a closure with a process-wide panic hook
//! active on this thread: the first panic's message and `file:line:column` are kept
//! (the default hook would only print them) and the closure's unwind is caught.
//!
//! Panics inside spawned tasks count too. tokio catches a task's panic; under
//! `--cfg tokio_unstable` turmoil configures each host's `LocalSet` to shut down on an
//! unhandled panic, which re-panics with a generic message. The hook keeps the first,
//! informative panic, so the report names the task's own message and location. A panic
//! that tokio swallowed without re-panicking is still seen: [`take_unreported`] returns
//! it, and the world asks after every step.
//!
//! The hook stays silent for captured panics (the report lists them) and hands every
//! other panic (a failing test, a CLI bug) to the hook that was there before.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// Why a run was stopped from inside: the payload [`panic_on_budget`] unwinds with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// What was counted (e.g. `trace events`).
    pub what: &'static str,
    /// The limit that was passed.
    pub limit: u64,
}

/// A panic caught on the way out of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaughtPanic {
    /// The panic's message.
    pub message: String,
    /// Where it was raised, `file:line:column`, when known.
    pub location: Option<String>,
    /// Set when the panic was a budget stopping a runaway run.
    pub budget: Option<BudgetExceeded>,
}

impl std::fmt::Display for CaughtPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(at) = &self.location {
            write!(f, " (at {at})")?;
        }
        Ok(())
    }
}

thread_local! {
    /// How many [`capture`] calls are active on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The first panic seen while capturing, not yet claimed.
    static FIRST: RefCell<Option<CaughtPanic>> = const { RefCell::new(None) };
}

fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if DEPTH.with(Cell::get) == 0 {
                previous(info);
                return;
            }
            let budget = info.payload().downcast_ref::<BudgetExceeded>().cloned();
            let caught = CaughtPanic {
                message: payload_message(info.payload()),
                // A budget fires wherever the last event happened to be recorded: the
                // trace's tail says what ran away, a location would mislead.
                location: info
                    .location()
                    .filter(|_| budget.is_none())
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
                budget,
            };
            // The first panic is the cause; later ones (a LocalSet shutting down on the
            // task's panic, a drop during the unwind) are consequences.
            FIRST.with(|first| {
                first.borrow_mut().get_or_insert(caught);
            });
        }));
    });
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(b) = payload.downcast_ref::<BudgetExceeded>() {
        format!("runaway run: more than {} {} (the run's budget)", b.limit, b.what)
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Runs `f`, catching a panic in it (or in anything it steps) as a [`CaughtPanic`].
/// Captures nest: an inner capture claims the panic it caught.
pub fn capture<R>(f: impl FnOnce() -> R) -> Result<R, CaughtPanic> {
    install_hook();
    if DEPTH.with(Cell::get) == 0 {
        // A panic a runtime swallowed in an earlier, finished run is not this run's.
        take_unreported();
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    match result {
        Ok(value) => Ok(value),
        Err(payload) => Err(take_unreported().unwrap_or_else(|| CaughtPanic {
            message: payload_message(payload.as_ref()),
            location: None,
            budget: payload.downcast_ref::<BudgetExceeded>().cloned(),
        })),
    }
}

/// A panic seen while capturing that did not unwind out of the capture (a task's panic
/// that tokio caught and kept), if any; claiming it clears it.
pub fn take_unreported() -> Option<CaughtPanic> {
    FIRST.with(|first| first.borrow_mut().take())
}

/// Stops the run from inside: unwinds with a [`BudgetExceeded`] payload, unless the
/// thread is already unwinding (a second panic there would abort the process).
pub fn panic_on_budget(what: &'static str, limit: u64) {
    if !std::thread::panicking() {
        panic::panic_any(BudgetExceeded { what, limit });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_with_its_message_and_location() {
        let caught = capture(|| -> u32 { panic!("bad apply of {}", 7) }).unwrap_err();
        assert_eq!(caught.message, "bad apply of 7");
        let location = caught.location.expect("the hook saw the location");
        assert!(location.starts_with("sim/src/panic.rs:"), "{location}");
        assert_eq!(caught.budget, None);
        assert_eq!(take_unreported(), None, "the capture claimed it");
    }

    #[test]
    fn the_first_panic_is_the_cause() {
        let caught = capture(|| {
            let _ = capture(|| panic!("first"));
            // The inner capture claimed "first"; a second one is this capture's own.
            panic!("second")
        })
        .unwrap_err();
        assert_eq!(caught.message, "second");
    }

    #[test]
    fn a_budget_names_what_ran_away() {
        let caught = capture(|| panic_on_budget("trace events", 10)).unwrap_err();
        assert_eq!(
            caught.budget,
            Some(BudgetExceeded {
                what: "trace events",
                limit: 10
            })
        );
        assert!(
            caught.message.contains("more than 10 trace events"),
            "{}",
            caught.message
        );
    }

    #[test]
    fn a_panic_swallowed_inside_the_capture_is_still_seen() {
        let swallowed = capture(|| {
            let inner = std::panic::catch_unwind(|| panic!("kept by a runtime"));
            assert!(inner.is_err());
            take_unreported()
        })
        .expect("nothing unwound out");
        assert_eq!(
            swallowed.map(|p| p.message),
            Some("kept by a runtime".to_string())
        );
    }

    #[test]
    fn nothing_is_caught_when_nothing_panics() {
        assert_eq!(capture(|| 5), Ok(5));
        assert_eq!(take_unreported(), None);
    }
}
