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
//! timer, never past one. Deadlines are kept per host too: a host with no message, no
//! woken task and no timer due in a step is not ticked in it (turmoil catches it up
//! before its next tick).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::time::SimTime;

pub use tokio::time::error::Elapsed;

/// The deadlines of the timers pending in one world, with how many are due at each, per
/// host (turmoil's address of the host that set them; `None` outside a host).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// A world has a handful of hosts, and `due_by` asks about one of them for every
    /// host on every step: a short list of per-host maps answers with one comparison
    /// of addresses per host and a look at the first deadline. The earliest deadline of
    /// all is the least of the hosts' first ones (asked only when the world is idle), so
    /// no map over all hosts is kept beside them: a timer is one insert and one removal.
    by_host: RefCell<Vec<HostTimers>>,
}

/// One host's pending deadlines (`None`: set outside any host), with how many are due at
/// each.
type HostTimers = (Option<IpAddr>, BTreeMap<SimTime, u32>);

impl Timers {
    /// The earliest pending deadline (one already passed means a task is about to run).
    pub(crate) fn next_due(&self) -> Option<SimTime> {
        self.by_host
            .borrow()
            .iter()
            .filter_map(|(_, due)| due.keys().next().copied())
            .min()
    }

    /// Whether a timer of host `host` is due by `at` (or passed, its task not yet run).
    pub(crate) fn due_by(&self, host: IpAddr, at: SimTime) -> bool {
        self.by_host
            .borrow()
            .iter()
            .find(|(h, _)| *h == Some(host))
            .and_then(|(_, due)| due.keys().next())
            .is_some_and(|&first| first <= at)
    }

    fn add(&self, host: Option<IpAddr>, at: SimTime) {
        let mut by_host = self.by_host.borrow_mut();
        let at_host = match by_host.iter().position(|(h, _)| *h == host) {
            Some(i) => i,
            None => {
                by_host.push((host, BTreeMap::new()));
                by_host.len() - 1
            }
        };
        add_one(&mut by_host[at_host].1, at);
    }

    fn remove(&self, host: Option<IpAddr>, at: SimTime) {
        if let Some((_, due)) = self.by_host.borrow_mut().iter_mut().find(|(h, _)| *h == host) {
            remove_one(due, at);
        }
    }
}

fn add_one<K: Ord>(counts: &mut BTreeMap<K, u32>, key: K) {
    *counts.entry(key).or_default() += 1;
}

fn remove_one<K: Ord>(counts: &mut BTreeMap<K, u32>, key: K) {
    if let Some(count) = counts.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&key);
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
    registered: Option<(Rc<Timers>, Option<IpAddr>, SimTime)>,
}

impl Due {
    /// Registers `now + after` with the world stepping this thread, if any (outside a
    /// world, as in a plain tokio test, there is nothing to tell), under the host
    /// whose task waits.
    fn register(after: Duration) -> Due {
        let registered = CURRENT.with(|current| {
            current.borrow().as_ref().map(|timers| {
                let at = SimTime::now() + after;
                let host = turmoil::current_host();
                timers.add(host, at);
                (Rc::clone(timers), host, at)
            })
        });
        Due { registered }
    }
}

impl Drop for Due {
    fn drop(&mut self) {
        if let Some((timers, host, at)) = self.registered.take() {
            timers.remove(host, at);
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
