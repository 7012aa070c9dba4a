//! `referential`: the target never holds a child row (address, contact) whose customer
//! it does not hold, not even between two of its transactions.

use std::collections::{BTreeMap, BTreeSet};

use faultline_patterns::domain::{CustomerId, EntityKey, Table};
use faultline_patterns::history::History;

use super::Violation;

pub(super) const NAME: &str = "referential";

pub(super) fn check(history: &History) -> Vec<Violation> {
    let mut live: BTreeSet<EntityKey> = history
        .initial
        .iter()
        .filter(|(_, r)| r.data.is_some())
        .map(|(k, _)| *k)
        .collect();
    let mut reported: BTreeMap<CustomerId, ()> = BTreeMap::new();
    let mut out = Vec::new();
    for apply in &history.applies {
        let mut customers = BTreeSet::new();
        for row in &apply.rows {
            if row.deleted {
                live.remove(&row.key);
            } else {
                live.insert(row.key);
            }
            customers.insert(row.key.customer);
        }
        // Checked after the whole transaction: inside one, order does not matter.
        for customer in customers {
            let parent = EntityKey::customer(customer);
            if live.contains(&parent) || reported.contains_key(&customer) {
                continue;
            }
            let orphans: Vec<String> = [Table::Address, Table::Contact]
                .into_iter()
                .map(|table| EntityKey { table, customer })
                .filter(|k| live.contains(k))
                .map(|k| k.to_string())
                .collect();
            if !orphans.is_empty() {
                reported.insert(customer, ());
                out.push(Violation {
                    invariant: NAME,
                    kind: "orphan",
                    key: orphans[0].clone(),
                    at: apply.at,
                    story: format!("the target held {} without {parent}", orphans.join(" and ")),
                    evidence: vec![apply.event],
                });
            }
        }
    }
    out
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
    }
}
