//! What the master's own start-up reconciliation needs to know of the log beyond the books:
//! whether any policy entry was written, and each gateway's last registration entry.

use std::collections::BTreeMap;

use hearth_ledger::{Body, Entry};
use hearth_protocol::SignerId;

/// Facts gathered from the entries, in log order.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    policy_seen: bool,
    gateways: BTreeMap<SignerId, (String, bool)>,
}

impl Facts {
    /// Takes one entry into account.
    pub(crate) fn observe(&mut self, entry: &Entry) {
        match &entry.body {
            Body::Policy(_) => self.policy_seen = true,
            Body::Gateway(g) => {
                self.gateways.insert(g.key, (g.name.clone(), g.registered));
            }
            _ => {}
        }
    }

    /// Whether a policy entry was written.
    pub(crate) fn policy_seen(&self) -> bool {
        self.policy_seen
    }

    /// Whether the gateway's last entry registers it.
    pub(crate) fn gateway_registered(&self, key: &SignerId) -> bool {
        self.gateways.get(key).is_some_and(|(_, r)| *r)
    }

    /// The gateways registered by the log, with their names.
    pub(crate) fn registered_gateways(&self) -> Vec<(SignerId, String)> {
        self.gateways
            .iter()
            .filter(|(_, (_, r))| *r)
            .map(|(k, (n, _))| (*k, n.clone()))
            .collect()
    }
}
