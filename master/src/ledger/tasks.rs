//! What the master appends on its own: at start, a `policy` entry when the configured policy
//! is not the one in force, and `node`/`gateway` entries for what the store has and the ledger
//! lacks (or has with another class); while running, a checkpoint every interval when the log
//! grew, and every minute the statements of months that closed.

use std::sync::Arc;
use std::time::Duration;

use hearth_core::node::AdminState;
use hearth_ledger::entry::{GatewayEntry, NodeEntry};
use hearth_ledger::{Body, NodeClass, Policy};

use super::{Ledger, LedgerError};
use crate::store::GatewayRecord;
use crate::store::{NodeRecord, Store};

/// The ledger class of an admin state (design §3).
pub fn class_of(admin: AdminState) -> NodeClass {
    match admin {
        AdminState::Active | AdminState::Draining => NodeClass::Serving,
        AdminState::Reserve => NodeClass::Reserve,
        AdminState::Test => NodeClass::Test,
        AdminState::Retired | AdminState::Revoked => NodeClass::Gone,
    }
}

/// The node entry of a stored node.
pub fn node_entry(record: &NodeRecord) -> NodeEntry {
    NodeEntry {
        node: record.id,
        class: class_of(record.admin),
        country: record.facts.country,
        power_w: record.facts.power_w,
    }
}

/// Appends a node entry if the ledger does not have the node in this class yet.
pub async fn record_node(ledger: &Ledger, record: &NodeRecord) -> Result<(), LedgerError> {
    let entry = node_entry(record);
    if ledger.books().class(&entry.node) == Some(entry.class) {
        return Ok(());
    }
    ledger.append(vec![Body::Node(entry)]).await.map(|_| ())
}

/// Appends a gateway entry if the ledger's registration of `key` differs.
pub async fn record_gateway(
    ledger: &Ledger,
    key: hearth_protocol::SignerId,
    name: &str,
    registered: bool,
) -> Result<(), LedgerError> {
    if ledger.facts().gateway_registered(&key) == registered {
        return Ok(());
    }
    let body = Body::Gateway(GatewayEntry {
        key,
        name: name.to_owned(),
        registered,
    });
    ledger.append(vec![body]).await.map(|_| ())
}

/// At start: the policy, then every node and gateway the ledger lacks or has otherwise.
pub async fn reconcile(
    ledger: &Ledger,
    policy: &Policy,
    store: &Arc<dyn Store>,
) -> Result<usize, String> {
    let mut bodies = Vec::new();
    {
        let books = ledger.books();
        if !ledger.facts().policy_seen() || books.policy() != policy {
            bodies.push(Body::Policy(policy.clone()));
        }
    }
    let nodes = store.nodes().map_err(|e| e.to_string())?;
    let gateways: Vec<GatewayRecord> = store.gateways().map_err(|e| e.to_string())?;
    {
        let books = ledger.books();
        let facts = ledger.facts();
        for n in &nodes {
            let entry = node_entry(n);
            if books.class(&entry.node) != Some(entry.class) {
                bodies.push(Body::Node(entry));
            }
        }
        let stored: std::collections::BTreeSet<_> = gateways.iter().map(|g| g.key).collect();
        for g in &gateways {
            if !facts.gateway_registered(&g.key) {
                bodies.push(Body::Gateway(GatewayEntry {
                    key: g.key,
                    name: g.name.to_string(),
                    registered: true,
                }));
            }
        }
        for (key, name) in facts.registered_gateways() {
            if !stored.contains(&key) {
                bodies.push(Body::Gateway(GatewayEntry {
                    key,
                    name,
                    registered: false,
                }));
            }
        }
    }
    let n = bodies.len();
    ledger.append(bodies).await.map_err(|e| e.to_string())?;
    Ok(n)
}

/// Signs a checkpoint every `interval` when the log grew, until `stop`.
pub async fn checkpoint_loop(
    ledger: Arc<Ledger>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let l = ledger.clone();
        match tokio::task::spawn_blocking(move || l.sign_checkpoint()).await {
            Ok(Ok(Some(size))) => tracing::debug!(size, "ledger checkpoint signed"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not sign a ledger checkpoint"),
            Err(e) => tracing::error!(error = %e, "the checkpoint signer panicked"),
        }
    }
}

/// How often the month close runs.
const MONTH_CLOSE_EVERY: Duration = Duration::from_secs(60);

/// At start and every minute: appends the statements of months that closed, until `stop`.
pub async fn month_loop(ledger: Arc<Ledger>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(MONTH_CLOSE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = close_months(&ledger).await {
            tracing::error!(error = %e, "could not append the statements of a closed month");
        }
    }
}

/// Appends `books.due_statements(now)`; returns how many.
pub async fn close_months(ledger: &Ledger) -> Result<usize, LedgerError> {
    let due = ledger.books().due_statements(crate::clock::now_ms());
    let n = due.len();
    if n > 0 {
        ledger.append(due).await?;
        tracing::info!(
            statements = n,
            "ledger: statements of a closed month appended"
        );
    }
    Ok(n)
}
