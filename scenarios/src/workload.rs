//! The workload: the initial rows and a schedule of business actions, drawn from the
//! seed's `workload` stream.
//!
//! Actions arrive at a steady rate with jitter. The mix is 20% creates, 35% contact
//! saves, 35% renames and 10% deletes; half of the updates hit a hot tenth of the
//! customers (key skew). Of the actions on existing customers, `cross_customer_pct`
//! percent (drawn from a stream of their own) change two customers instead: half move
//! a contact from one to another, half merge two. The generator tracks which customers exist assuming every
//! action succeeds; when one fails, later actions on that customer are rejected by the
//! source, as they would be in production.

use faultline_patterns::domain::{
    fields, Action, ActionId, ActionRequest, CustomerId, EntityKey, Table, Version,
};
use faultline_patterns::history::{RowState, Rows};
use faultline_sim::{RngStreams, SimRng, SimTime};
use rand::Rng;

use crate::scenario::Scenario;

/// How long a short transaction stays open at most after its first insert.
const SHORT_TRANSACTION_MS: u64 = 2;

/// The rows both sides start with: every customer with its address and contact, at v1.
pub fn initial_rows(customers: u64) -> Rows {
    let mut rows = Rows::new();
    for id in 0..customers {
        let customer = CustomerId(id);
        let row = |table, data| {
            (
                EntityKey { table, customer },
                RowState {
                    version: Version(1),
                    data: Some(data),
                },
            )
        };
        let name = format!("customer-{id}");
        let street = format!("street-{id}");
        let phone = format!("phone-{id}");
        let email = format!("c{id}@example.com");
        rows.extend([
            row(Table::Customer, fields(&[("name", &name)])),
            row(Table::Address, fields(&[("street", &street)])),
            row(Table::Contact, fields(&[("phone", &phone), ("email", &email)])),
        ]);
    }
    rows
}

/// The schedule of actions, each at its instant, in time order: the actions from the
/// seed's `workload` stream, how long each transaction stays open from its own
/// `transactions` stream (so the mix does not depend on the durations).
pub fn schedule(scenario: &Scenario, streams: &RngStreams) -> Vec<(SimTime, ActionRequest)> {
    let rng = &mut streams.stream("workload");
    let durations = &mut streams.stream("transactions");
    let cross = &mut streams.stream("cross-customer");
    let mut existing: Vec<u64> = (0..scenario.customers).collect();
    let mut next_customer = scenario.customers;
    let interval_us = 1_000_000 / scenario.actions_per_sec.max(1);
    let mut out = Vec::with_capacity(scenario.actions as usize);
    for i in 0..scenario.actions {
        let at = SimTime::from_micros(i * interval_us + rng.gen_range(0..interval_us));
        let id = ActionId(i);
        let roll = rng.gen_range(0..100);
        let action = if roll < 20 || existing.is_empty() {
            let customer = next_customer;
            next_customer += 1;
            existing.push(customer);
            Action::CreateCustomer {
                customer: CustomerId(customer),
                name: format!("name-{i}"),
                street: format!("street-{i}"),
                phone: format!("phone-{i}"),
                email: format!("c{customer}@example.com"),
            }
        } else if let Some(action) = cross_customer(scenario, &mut existing, rng, cross) {
            action
        } else {
            let pick = pick_customer(&existing, rng);
            let customer = CustomerId(existing[pick]);
            match roll {
                20..=54 => Action::SaveContact {
                    customer,
                    phone: format!("phone-{i}"),
                    street: format!("street-{i}"),
                },
                55..=89 => Action::RenameCustomer {
                    customer,
                    name: format!("name-{i}"),
                },
                _ => {
                    existing.swap_remove(pick);
                    Action::DeleteCustomer { customer }
                }
            }
        };
        let hold_ms = if durations.gen_range(0..100) < scenario.long_transaction_pct {
            durations.gen_range(scenario.long_transaction_ms / 10..=scenario.long_transaction_ms)
        } else {
            durations.gen_range(0..=SHORT_TRANSACTION_MS)
        };
        out.push((at, ActionRequest { id, action, hold_ms }));
    }
    out
}

/// With `cross_customer_pct` percent, an action over two existing customers: the first
/// picked as any action's customer, the second uniformly among the others.
fn cross_customer(
    scenario: &Scenario,
    existing: &mut Vec<u64>,
    rng: &mut SimRng,
    cross: &mut SimRng,
) -> Option<Action> {
    let roll = cross.gen_range(0..100);
    if roll >= scenario.cross_customer_pct || existing.len() < 2 {
        return None;
    }
    let first = pick_customer(existing, rng);
    let second = (first + cross.gen_range(1..existing.len())) % existing.len();
    let (a, b) = (CustomerId(existing[first]), CustomerId(existing[second]));
    Some(if roll % 2 == 0 {
        Action::MoveContact { from: b, to: a }
    } else {
        existing.swap_remove(second);
        Action::MergeCustomers { into: a, from: b }
    })
}

/// Half the picks go to the first tenth of the existing customers.
fn pick_customer(existing: &[u64], rng: &mut SimRng) -> usize {
    let hot = (existing.len() / 10).max(1);
    if rng.gen_bool(0.5) {
        rng.gen_range(0..hot)
    } else {
        rng.gen_range(0..existing.len())
    }
}
