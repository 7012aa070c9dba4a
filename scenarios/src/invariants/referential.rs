//! `referential`: the target never holds a child row (address, contact) whose customer
//! it does not hold, not even between two of its transactions.

use std::collections::{BTreeMap, BTreeSet};

use faultline_patterns::domain::{CustomerId, EntityKey, Table};
use faultline_patterns::history::History;

use super::Violation;

pub(super) const NAME: &str = "referential";

/// A stretch in which readers saw a customer's children without the customer: from
/// the apply that left them orphaned to the apply that put the customer back or took
/// the children away (`None`: not by the end of the run).
pub(crate) struct Orphaning {
    /// The customer.
    pub customer: CustomerId,
    /// The apply (by position) after which the children were orphans.
    pub opened: usize,
    /// The orphaned rows then.
    pub orphans: Vec<EntityKey>,
    /// The apply that ended it.
    pub closed: Option<usize>,
}

/// Every orphaning, in the order they began. Judged after each whole transaction:
/// inside one, order does not matter.
pub(crate) fn orphanings(history: &History) -> Vec<Orphaning> {
    let mut live: BTreeSet<EntityKey> = history
        .target_initial
        .iter()
        .filter(|(_, r)| r.data.is_some())
        .map(|(k, _)| *k)
        .collect();
    let mut out: Vec<Orphaning> = Vec::new();
    // Customers orphaned now -> their stretch's position in `out`.
    let mut open: BTreeMap<CustomerId, usize> = BTreeMap::new();
    for (apply_index, apply) in history.applies.iter().enumerate() {
        let mut customers = BTreeSet::new();
        for row in &apply.rows {
            if row.deleted {
                live.remove(&row.key);
            } else {
                live.insert(row.key);
            }
            customers.insert(row.key.customer);
        }
        for customer in customers {
            let orphans: Vec<EntityKey> = if live.contains(&EntityKey::customer(customer)) {
                Vec::new()
            } else {
                [Table::Address, Table::Contact]
                    .into_iter()
                    .map(|table| EntityKey { table, customer })
                    .filter(|k| live.contains(k))
                    .collect()
            };
            match (orphans.is_empty(), open.get(&customer)) {
                (false, None) => {
                    open.insert(customer, out.len());
                    out.push(Orphaning {
                        customer,
                        opened: apply_index,
                        orphans,
                        closed: None,
                    });
                }
                (true, Some(&i)) => {
                    out[i].closed = Some(apply_index);
                    open.remove(&customer);
                }
                _ => {}
            }
        }
    }
    out
}

pub(super) fn check(history: &History) -> Vec<Violation> {
    // One violation per customer: its first orphaning.
    let mut reported: BTreeSet<CustomerId> = BTreeSet::new();
    orphanings(history)
        .into_iter()
        .filter(|o| reported.insert(o.customer))
        .map(|o| {
            let apply = &history.applies[o.opened];
            let orphans: Vec<String> = o.orphans.iter().map(|k| k.to_string()).collect();
            Violation {
                invariant: NAME,
                kind: "orphan",
                key: orphans[0].clone(),
                at: apply.at,
                story: format!(
                    "the target held {} without {}",
                    orphans.join(" and "),
                    EntityKey::customer(o.customer)
                ),
                evidence: vec![apply.event],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;

    #[test]
    fn children_with_their_customer_are_fine_and_a_deleted_parent_with_live_children_is_not() {
        let mut h = History::default();
        let (c, a) = (key(Table::Customer, 1), key(Table::Address, 1));
        apply(&mut h, 10, c, 1);
        apply(&mut h, 11, a, 1);
        assert!(check(&h).is_empty());
        h.applies.push(faultline_patterns::history::ApplyRecord {
            at: faultline_sim::SimTime::from_millis(20),
            rows: vec![faultline_patterns::history::RowVersion {
                key: c,
                version: faultline_patterns::domain::Version(2),
                deleted: true,
            }],
            event: faultline_sim::EventId(20),
            recovery: false,
        });
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key, "address/1");
    }

    #[test]
    fn a_child_arriving_before_its_customer_is_an_orphan() {
        let mut h = History::default();
        apply(&mut h, 10, key(Table::Contact, 2), 1);
        apply(&mut h, 11, key(Table::Customer, 2), 1);
        assert_eq!(check(&h).len(), 1);
        // Orphaned from the first apply until the customer arrived in the second.
        let o = orphanings(&h);
        assert_eq!((o.len(), o[0].opened, o[0].closed), (1, 0, Some(1)));
    }
}
