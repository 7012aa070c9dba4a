//! One async lock per key, created on first use: row locks per customer at the source,
//! one batch in flight per partition at a producer. Locks are granted in request order
//! (tokio's mutex is fair), so waiters keep the order they asked in.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use tokio::sync::Mutex;

/// Locks by key. Clones share them.
#[derive(Clone)]
pub struct KeyedLocks<K>(Rc<RefCell<BTreeMap<K, Rc<Mutex<()>>>>>);

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks(Rc::default())
    }
}

impl<K: Ord> KeyedLocks<K> {
    /// The lock of `key`.
    pub fn of(&self, key: K) -> Rc<Mutex<()>> {
        Rc::clone(self.0.borrow_mut().entry(key).or_default())
    }
}
