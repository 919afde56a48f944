//! The request and answer bodies of the operator API, one module per group of routes.

mod backups;
mod deployments;
mod gateways;
mod ledger;
mod nodes;
mod tokens;
mod users;
mod workloads;

pub use backups::*;
pub use deployments::*;
pub use gateways::*;
pub use ledger::*;
pub use nodes::*;
pub use tokens::*;
pub use users::*;
pub use workloads::*;
