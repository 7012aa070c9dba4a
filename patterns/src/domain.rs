//! The customer-master domain: keyed, versioned rows and the business actions that
//! change them.
//!
//! Every customer has one address row and one contact row, keyed by the customer's id,
//! so a child always names its parent. Each committed change of a row bumps that row's
//! version at the source; a delete is a change too (a tombstone with the next version).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use faultline_sim::WallTime;
use serde::{Deserialize, Serialize};

/// The tables of the customer master.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Table {
    /// The customer itself: name.
    Customer,
    /// The customer's postal address: street.
    Address,
    /// The customer's contact details: phone and email.
    Contact,
}

impl Table {
    /// The table's name as it appears in keys.
    pub fn name(self) -> &'static str {
        match self {
            Table::Customer => "customer",
            Table::Address => "address",
            Table::Contact => "contact",
        }
    }
}

/// A customer's id; also the id of its address and contact rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(pub u64);

/// The stable key of one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityKey {
    /// Which table.
    pub table: Table,
    /// Which customer the row belongs to (or is).
    pub customer: CustomerId,
}

impl EntityKey {
    /// The customer row of `customer`.
    pub fn customer(customer: CustomerId) -> Self {
        EntityKey {
            table: Table::Customer,
            customer,
        }
    }

    /// Whether this row is a child (address, contact) that needs its customer.
    pub fn is_child(&self) -> bool {
        self.table != Table::Customer
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.table.name(), self.customer.0)
    }
}

impl std::str::FromStr for EntityKey {
    type Err = String;

    /// Reads a key as [`EntityKey`]'s `Display` writes it (`contact/7`).
    fn from_str(text: &str) -> Result<Self, String> {
        let (table, id) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a row key (table/id)"))?;
        let table = [Table::Customer, Table::Address, Table::Contact]
            .into_iter()
            .find(|t| t.name() == table)
            .ok_or_else(|| format!("{table:?} is not a table"))?;
        let customer = id.parse().map_err(|_| format!("{id:?} is not a customer id"))?;
        Ok(EntityKey {
            table,
            customer: CustomerId(customer),
        })
    }
}

/// A row's version at the source: 1 on create, +1 on every committed change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version of a delete by key alone (a sink's `DELETE` on a Kafka tombstone,
    /// which carries no version): the target removes the live row at whatever version
    /// it holds (see the target's apply).
    pub const ANY: Version = Version(u64::MAX);
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Version::ANY {
            return f.write_str("v(any)");
        }
        write!(f, "v{}", self.0)
    }
}

/// A row's fields, by name.
pub type Fields = BTreeMap<String, String>;

/// A row as of one version: its fields, or `None` when that version deleted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowImage {
    /// Which row.
    pub key: EntityKey,
    /// The version this image is.
    pub version: Version,
    /// The fields, or `None` for a delete. Shared, as [`RowState::data`] is.
    ///
    /// [`RowState::data`]: crate::history::RowState::data
    pub data: Option<Arc<Fields>>,
    /// The writer's wall clock at the commit, when the integration resolves conflicts by
    /// it (last writer wins).
    #[serde(default, skip_serializing_if = "faultline_sim::omit::none")]
    pub written_at: Option<WallTime>,
}

impl RowImage {
    /// An image without a wall-clock stamp.
    pub fn new(key: EntityKey, version: Version, data: Option<Arc<Fields>>) -> Self {
        RowImage {
            key,
            version,
            data,
            written_at: None,
        }
    }

    /// Whether this image deletes the row.
    pub fn is_delete(&self) -> bool {
        self.data.is_none()
    }
}

impl fmt::Display for RowImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_delete() {
            write!(f, "{} {} deleted", self.key, self.version)
        } else {
            write!(f, "{} {}", self.key, self.version)
        }
    }
}

/// Identifies one business action of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionId(pub u64);

/// Identifies one committed source transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TxId(pub u64);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// A business action: one source transaction touching one or more rows, of one
/// customer or (a move, a merge) of two.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Customer, address and contact in one transaction.
    CreateCustomer {
        /// New customer's id.
        customer: CustomerId,
        /// Customer name.
        name: String,
        /// Address street.
        street: String,
        /// Contact phone.
        phone: String,
        /// Contact email.
        email: String,
    },
    /// Phone and address changed together, as from one "save" button.
    SaveContact {
        /// Whose contact info.
        customer: CustomerId,
        /// New phone.
        phone: String,
        /// New street.
        street: String,
    },
    /// A new name for the customer.
    RenameCustomer {
        /// Who.
        customer: CustomerId,
        /// New name.
        name: String,
    },
    /// The customer and its children go.
    DeleteCustomer {
        /// Who.
        customer: CustomerId,
    },
    /// A contact person moves from one customer to another (changes company): the
    /// other's contact row takes the details and the first's contact row goes, in one
    /// transaction across two customers.
    MoveContact {
        /// Whose contact moves.
        from: CustomerId,
        /// Who takes it.
        to: CustomerId,
    },
    /// Two records of one real customer are merged: the survivor is renamed and the
    /// duplicate goes with its address and contact, in one transaction across two
    /// customers.
    MergeCustomers {
        /// The survivor.
        into: CustomerId,
        /// The duplicate.
        from: CustomerId,
    },
}

impl Action {
    /// The customer the action is about: the one whose rows it writes first (the
    /// receiving customer of a move, the survivor of a merge).
    pub fn customer(&self) -> CustomerId {
        self.customers()[0]
    }

    /// Every customer whose rows the action writes, the one it is about first.
    pub fn customers(&self) -> Vec<CustomerId> {
        match self {
            Action::CreateCustomer { customer, .. }
            | Action::SaveContact { customer, .. }
            | Action::RenameCustomer { customer, .. }
            | Action::DeleteCustomer { customer } => vec![*customer],
            Action::MoveContact { from, to } => vec![*to, *from],
            Action::MergeCustomers { into, from } => vec![*into, *from],
        }
    }

    /// The action's kind as a kebab-case name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Action::CreateCustomer { .. } => "create-customer",
            Action::SaveContact { .. } => "save-contact",
            Action::RenameCustomer { .. } => "rename-customer",
            Action::DeleteCustomer { .. } => "delete-customer",
            Action::MoveContact { .. } => "move-contact",
            Action::MergeCustomers { .. } => "merge-customers",
        }
    }
}

/// A workload action with its identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// The action's id.
    pub id: ActionId,
    /// What it does.
    pub action: Action,
    /// How long the transaction stays open after its first insert (further statements,
    /// application work) before it commits: meanwhile later transactions can take later
    /// ids and commit first.
    #[serde(default, skip_serializing_if = "faultline_sim::omit::zero")]
    pub hold_ms: u64,
}

/// Builds a field map from pairs, shared as images and rows hold it.
pub fn fields(pairs: &[(&str, &str)]) -> Arc<Fields> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}
