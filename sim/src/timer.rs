//! The timers host code waits on, known to the world.
//!
//! The world crosses an idle stretch in one step only when it knows that nothing can
//! happen inside it: no message on the network and no timer due. tokio does not tell
//! when a runtime's next timer is due, so host code sleeps through [`sleep`] and
//! [`timeout`], which register each deadline with the world for as long as the wait
//! lasts. `clippy.toml` forbids `tokio::time`'s own, so a wait the world cannot see does
//! not compile in this workspace.
//!
//! A registered deadline is never later than the instant tokio fires the timer (tokio
//! rounds deadlines up to its millisecond wheel), so the world stops short of every
//! timer, never past one.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::time::SimTime;

pub use tokio::time::error::Elapsed;

/// The deadlines of the timers pending in one world, with how many are due at each.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    due: RefCell<BTreeMap<SimTime, u32>>,
}

impl Timers {
    /// The earliest pending deadline (one already passed means a task is about to run).
    pub(crate) fn next_due(&self) -> Option<SimTime> {
        self.due.borrow().keys().next().copied()
    }

    fn add(&self, at: SimTime) {
        *self.due.borrow_mut().entry(at).or_default() += 1;
    }

    fn remove(&self, at: SimTime) {
        let mut due = self.due.borrow_mut();
        if let Some(count) = due.get_mut(&at) {
            *count -= 1;
            if *count == 0 {
                due.remove(&at);
            }
        }
    }
}

thread_local! {
    /// The timers of the world being stepped on this thread.
    static CURRENT: RefCell<Option<Rc<Timers>>> = const { RefCell::new(None) };
}

/// Makes `timers` the ones host code registers with until the guard drops (the world
/// installs its own while it steps).
pub(crate) fn install(timers: Rc<Timers>) -> Installed {
    let previous = CURRENT.with(|current| current.replace(Some(timers)));
    Installed { previous }
}

/// Restores the previously installed timers when dropped.
pub(crate) struct Installed {
    previous: Option<Rc<Timers>>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// A registered deadline, withdrawn when the wait ends or is dropped.
struct Due {
    registered: Option<(Rc<Timers>, SimTime)>,
}

impl Due {
    /// Registers `now + after` with the world stepping this thread, if any (outside a
    /// world, as in a plain tokio test, there is nothing to tell).
    fn register(after: Duration) -> Due {
        let registered = CURRENT.with(|current| {
            current.borrow().as_ref().map(|timers| {
                let at = SimTime::now() + after;
                timers.add(at);
                (Rc::clone(timers), at)
            })
        });
        Due { registered }
    }
}

impl Drop for Due {
    fn drop(&mut self) {
        if let Some((timers, at)) = self.registered.take() {
            timers.remove(at);
        }
    }
}

/// Waits for `duration` of simulated time (`tokio::time::sleep`, known to the world).
#[allow(clippy::disallowed_methods)]
pub async fn sleep(duration: Duration) {
    let _due = Due::register(duration);
    tokio::time::sleep(duration).await;
}

/// Runs `future` for at most `duration` of simulated time (`tokio::time::timeout`,
/// known to the world).
#[allow(clippy::disallowed_methods)]
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let _due = Due::register(duration);
    tokio::time::timeout(duration, future).await
}
