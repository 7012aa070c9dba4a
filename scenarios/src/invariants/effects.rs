//! `exactly-once-effects`: every customer the source durably created gets its welcome
//! message exactly once: none lost, none doubled, none for a customer that never was.
//! The initial customers were welcomed before the run: a welcome to one of them during
//! the run is a double.
//!
//! A customer created and deleted between two of the target's observations (between
//! two full copies; inside a notification dedup window) is never seen there, so never
//! welcomed. That is a property of state-transfer patterns that needs no fault, not an
//! effect lost: such a customer is *unobserved*, counted on its own
//! ([`unobserved_customers`]), and not held against this invariant.

use std::collections::BTreeMap;

use faultline_patterns::domain::{CustomerId, Table, Version};
use faultline_patterns::history::History;
use faultline_sim::{EventId, SimTime};

use super::Violation;

pub(super) const NAME: &str = "exactly-once-effects";

pub(super) fn check(history: &History) -> Vec<Violation> {
    let durable = history.durable_commits();
    // Customers created during the run, by a durable create: (commit time, commit event).
    let mut created: BTreeMap<CustomerId, (SimTime, EventId)> = BTreeMap::new();
    for (i, c) in history.commits.iter().enumerate() {
        let creates = c
            .rows
            .iter()
            .find(|r| r.key.table == Table::Customer && r.version == Version(1) && !r.is_delete());
        if let (true, Some(row)) = (durable[i], creates) {
            created.insert(row.key.customer, (c.at, c.event));
        }
    }
    let mut effects: BTreeMap<CustomerId, Vec<(SimTime, EventId)>> = BTreeMap::new();
    for e in &history.effects {
        effects.entry(e.customer).or_default().push((e.at, e.event));
    }
    let mut out = Vec::new();
    let violation = |kind, customer: CustomerId, at, story, evidence| Violation {
        invariant: NAME,
        kind,
        key: format!("customer/{}", customer.0),
        at,
        story,
        evidence,
    };
    let unobserved = unobserved_customers(history);
    for (customer, (at, commit_event)) in &created {
        match effects.get(customer).map_or(&[][..], Vec::as_slice) {
            [] if unobserved.contains(customer) => {}
            [] => out.push(violation(
                "lost",
                *customer,
                *at,
                "created at the source, never welcomed".to_string(),
                vec![*commit_event],
            )),
            [_] => {}
            many => out.push(violation(
                "doubled",
                *customer,
                many[1].0,
                format!("welcomed {} times", many.len()),
                std::iter::once(*commit_event)
                    .chain(many.iter().map(|e| e.1))
                    .collect(),
            )),
        }
    }
    for (customer, list) in &effects {
        let initial = history
            .initial
            .get(&faultline_patterns::domain::EntityKey::customer(*customer))
            .is_some_and(|row| row.data.is_some());
        if initial {
            // It was created, and welcomed, before the run: any welcome now is one too many.
            out.push(violation(
                "doubled",
                *customer,
                list[0].0,
                format!(
                    "welcomed {} time(s) during the run, though it existed (and was welcomed) before it",
                    list.len()
                ),
                list.iter().map(|e| e.1).collect(),
            ));
        } else if !created.contains_key(customer) {
            out.push(violation(
                "unexpected",
                *customer,
                list[0].0,
                "welcomed, but the source never durably created the customer".to_string(),
                list.iter().map(|e| e.1).collect(),
            ));
        }
    }
    out
}

/// Customers durably created and durably deleted during the run whose customer row the
/// target never held alive: it could not have welcomed them.
pub fn unobserved_customers(history: &History) -> std::collections::BTreeSet<CustomerId> {
    let durable = history.durable_commits();
    let mut created = std::collections::BTreeSet::new();
    let mut deleted = std::collections::BTreeSet::new();
    for (_, c) in history.commits.iter().enumerate().filter(|(i, _)| durable[*i]) {
        for r in c.rows.iter().filter(|r| r.key.table == Table::Customer) {
            if r.is_delete() {
                deleted.insert(r.key.customer);
            } else if r.version == Version(1) {
                created.insert(r.key.customer);
            }
        }
    }
    let held: std::collections::BTreeSet<CustomerId> = history
        .applies
        .iter()
        .flat_map(|a| a.rows.iter())
        .filter(|r| r.key.table == Table::Customer && !r.deleted)
        .map(|r| r.key.customer)
        .collect();
    created
        .intersection(&deleted)
        .filter(|c| !held.contains(c))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::testing::*;
    use faultline_patterns::domain::{ActionId, EntityKey, RowImage, TxId};
    use faultline_patterns::history::{CommitRecord, EffectRecord};

    fn created(h: &mut History, id: u64) {
        let k = EntityKey::customer(CustomerId(id));
        h.commits.push(CommitRecord {
            tx: TxId(id),
            action: ActionId(id),
            at: SimTime::from_millis(id),
            rows: vec![RowImage {
                key: k,
                version: Version(1),
                data: Some(Default::default()),
                written_at: None,
            }],
            event: EventId(id),
        });
        h.final_source.insert(k, live_row(1, "x"));
    }

    fn welcome(h: &mut History, id: u64, at: u64) {
        h.effects.push(EffectRecord {
            at: SimTime::from_millis(at),
            customer: CustomerId(id),
            event: EventId(100 + at),
        });
    }

    #[test]
    fn one_welcome_per_created_customer_holds() {
        let mut h = History::default();
        created(&mut h, 1);
        welcome(&mut h, 1, 5);
        assert!(check(&h).is_empty());
    }

    #[test]
    fn lost_doubled_and_unexpected_welcomes_fire() {
        let mut h = History::default();
        created(&mut h, 1);
        created(&mut h, 2);
        welcome(&mut h, 2, 5);
        welcome(&mut h, 2, 6);
        welcome(&mut h, 3, 7);
        let kinds: Vec<_> = check(&h).iter().map(|v| (v.kind, v.key.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                ("lost", "customer/1".into()),
                ("doubled", "customer/2".into()),
                ("unexpected", "customer/3".into())
            ]
        );
    }

    #[test]
    fn a_customer_whose_create_vanished_expects_no_welcome() {
        let mut h = History::default();
        created(&mut h, 1);
        h.final_source.clear();
        assert!(check(&h).is_empty());
        welcome(&mut h, 1, 5);
        assert_eq!(check(&h)[0].kind, "unexpected");
    }

    #[test]
    fn a_welcome_to_an_initial_customer_is_a_double() {
        let mut h = History::default();
        let k = EntityKey::customer(CustomerId(7));
        h.initial.insert(k, live_row(3, "x"));
        h.final_source.insert(k, live_row(3, "x"));
        assert!(check(&h).is_empty());
        welcome(&mut h, 7, 5);
        let v = check(&h);
        assert_eq!((v.len(), v[0].kind), (1, "doubled"), "{v:?}");
    }
}
