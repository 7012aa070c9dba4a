//! What a run's components still have to do: how the world knows a run can no longer
//! progress and ends it before its deadline.
//!
//! A run that lost data never converges, and used to step heartbeats and empty long
//! polls until its deadline. Nothing in the world can tell a heartbeat from work, so
//! the components say it themselves: each registers, on its host, a probe that answers
//! what work it still holds (records not yet acknowledged, rows not yet relayed, a
//! consumer behind its partition's end, an item waiting out a backoff), or nothing.
//!
//! The world ends a run early ([`crate::World::run_until`], [`Ended::Idle`]) only when
//! all of these hold at a step boundary:
//! - every fault of the plan has been applied and the caller's quiet instant passed;
//! - nothing is in motion: no message in flight or arrived and not taken, no task woken
//!   (turmoil's `Sim::is_idle`), so only timers could make anything happen;
//! - every host that is up has registered probes in its current process life (a host
//!   that says nothing is taken to be busy: being left out never ends a run early), and
//!   none reports pending work.
//!
//! Probes read state only: no time, no randomness, no trace event. State does not change
//! inside an idle stretch, so the answer is the same whether the world steps every tick
//! or crosses the stretch in one step, and runs stay identical across both modes. They
//! hold their components weakly: a probe that kept a dead process life's component
//! alive would keep its connections open, and change the run. A world that is not to
//! end runs early keeps no probe at all.
//!
//! A wrong "nothing pending" would change a verdict; the scenarios crate's test runs
//! sweeps both ways (ending early and running to the deadline) and compares their
//! verdicts.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// A probe: `Some(what)` while its component holds work that can still change what the
/// run's systems hold, `None` when it has none.
pub type Probe = Box<dyn Fn() -> Option<String>>;

/// A count of operations in progress (sends being retried, batches being handled);
/// clones share it.
#[derive(Clone, Debug, Default)]
pub struct Work(Rc<Cell<usize>>);

impl Work {
    /// One operation starts; it counts until the guard drops.
    pub fn start(&self) -> WorkGuard {
        self.0.set(self.0.get() + 1);
        WorkGuard(Rc::clone(&self.0))
    }

    /// Operations in progress.
    pub fn count(&self) -> usize {
        self.0.get()
    }

    /// A probe answering `N what` while any operation is in progress (holding the
    /// count weakly: it says nothing once its component is gone).
    pub fn probe(&self, what: &'static str) -> impl Fn() -> Option<String> + 'static {
        let count = Rc::downgrade(&self.0);
        move || {
            let n = count.upgrade().map_or(0, |n| n.get());
            (n > 0).then(|| format!("{n} {what}"))
        }
    }
}

/// An operation of a [`Work`] in progress.
#[derive(Debug)]
pub struct WorkGuard(Rc<Cell<usize>>);

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ended {
    /// The caller's settled predicate held (the systems agreed, and stayed so).
    Settled,
    /// Nothing could change any more: every fault applied, nothing in motion, and no
    /// component with pending work.
    Idle,
    /// The deadline came first.
    Deadline,
}

/// One host's probes, from one process life.
struct HostProbes {
    incarnation: u32,
    probes: Vec<(&'static str, Probe)>,
}

/// The probes of every host; a restart's first registration replaces the dead life's.
#[derive(Default)]
pub(crate) struct Probes {
    hosts: RefCell<BTreeMap<Arc<str>, HostProbes>>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts = self.hosts.borrow();
        f.debug_map()
            .entries(hosts.iter().map(|(host, life)| {
                let components: Vec<&str> = life.probes.iter().map(|(c, _)| *c).collect();
                (host, (life.incarnation, components))
            }))
            .finish()
    }
}

impl Probes {
    pub(crate) fn register(&self, host: &Arc<str>, incarnation: u32, component: &'static str, probe: Probe) {
        let mut hosts = self.hosts.borrow_mut();
        let entry = hosts.entry(Arc::clone(host)).or_insert_with(|| HostProbes {
            incarnation,
            probes: Vec::new(),
        });
        if entry.incarnation != incarnation {
            entry.incarnation = incarnation;
            entry.probes.clear();
        }
        entry.probes.push((component, probe));
    }

    /// The first pending work among `hosts` (each with its current incarnation), in
    /// host order then registration order, as `host component: what`; `None` when
    /// every host reported and none has any.
    pub(crate) fn pending<'a>(&self, hosts: impl Iterator<Item = (&'a str, u32)>) -> Option<String> {
        let registered = self.hosts.borrow();
        for (host, incarnation) in hosts {
            let Some(life) = registered.get(host).filter(|l| l.incarnation == incarnation) else {
                return Some(format!("{host}: no progress reported by this process life"));
            };
            for (component, probe) in &life.probes {
                if let Some(what) = probe() {
                    return Some(format!("{host} {component}: {what}"));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_that_reports_nothing_is_busy_and_a_restart_replaces_the_old_probes() {
        let probes = Probes::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        assert_eq!(
            probes.pending([("a", 0)].into_iter()).as_deref(),
            Some("a: no progress reported by this process life")
        );
        let queued = Rc::new(Cell::new(2));
        let seen = Rc::clone(&queued);
        probes.register(
            &a,
            0,
            "queue",
            Box::new(move || (seen.get() > 0).then(|| format!("{} queued", seen.get()))),
        );
        probes.register(&b, 0, "idle", Box::new(|| None));
        assert_eq!(
            probes.pending([("a", 0), ("b", 0)].into_iter()).as_deref(),
            Some("a queue: 2 queued")
        );
        queued.set(0);
        assert_eq!(probes.pending([("a", 0), ("b", 0)].into_iter()), None);
        // The host restarted: its old life's probes say nothing for the new one.
        assert!(probes.pending([("a", 1), ("b", 0)].into_iter()).is_some());
        probes.register(&a, 1, "idle", Box::new(|| None));
        assert_eq!(probes.pending([("a", 1), ("b", 0)].into_iter()), None);
    }

    #[test]
    fn work_is_pending_while_a_guard_lives() {
        let work = Work::default();
        let probe = work.probe("sends in progress");
        let first = work.start();
        let second = work.start();
        assert_eq!(probe().as_deref(), Some("2 sends in progress"));
        drop(first);
        drop(second);
        assert_eq!(probe(), None);
        let _third = work.start();
        drop(work);
        // The component is gone with its process: the probe says nothing.
        assert!(probe().is_some());
    }
}
