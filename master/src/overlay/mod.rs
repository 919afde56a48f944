//! The master's side of the node overlay (SPEC §16): who is a member and which relays to use
//! ([`membership`]), pushed to every live session as it changes; what each node can serve
//! ([`holdings`]) and the `providers` answer built from it.
//!
//! Members are the enrolled nodes that are neither revoked nor retired; relays are the
//! registered gateways that have an overlay address. [`refresh`] recomputes both after each
//! change (enrolment, revocation, retirement, gateway registered or removed) and sends the
//! delta; refreshes run one at a time, so deltas reach every session in order.

pub mod holdings;
pub mod membership;
pub mod peers;
pub mod ration;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hearth_protocol::messages::overlay::{Overlay, OverlayRevision, RelayRef};
use hearth_protocol::{Message, NodeId};

use crate::context::Context;
use crate::fleet::Fleet;
use crate::store::{GatewayRecord, Store, StoreError};

pub use holdings::HoldingsMap;
pub use membership::Membership;

/// The overlay state of a running master.
#[derive(Debug)]
pub struct OverlayState {
    /// The member set and its deltas.
    pub membership: Membership,
    /// What live sessions can serve.
    pub holdings: HoldingsMap,
    /// Which chunks the master sent into the overlay lately.
    pub ration: std::sync::Mutex<ration::Ration>,
    /// The origin of [`OverlayState::now_ms`].
    started: std::time::Instant,
    /// Held by [`refresh`] from reading the set to queuing its delta.
    refreshing: tokio::sync::Mutex<()>,
}

impl OverlayState {
    /// The state at the master's start, with a new random epoch.
    pub fn load(store: &dyn Store, fleet: &Fleet) -> Result<Self, StoreError> {
        // Within 2^53, so that JSON readers that use doubles keep it exact.
        let epoch = rand::random::<u64>() & ((1 << 53) - 1);
        Ok(Self {
            membership: Membership::new(epoch, fleet.members(), relays(&store.gateways()?)),
            holdings: HoldingsMap::default(),
            ration: Default::default(),
            started: std::time::Instant::now(),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Milliseconds since the master started (monotonic), the rationing clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The `overlay` messages a new session starts with, given the set its `hello` names.
    pub fn catch_up(&self, held: Option<OverlayRevision>) -> Vec<Overlay> {
        self.membership.catch_up(held)
    }
}

/// The relays among `gateways`: those with an overlay address.
pub fn relays(gateways: &[GatewayRecord]) -> Vec<RelayRef> {
    gateways
        .iter()
        .filter_map(|g| {
            let addr = quic_multiaddr(g.overlay_addr?).parse().ok()?;
            Some(RelayRef { relay: g.key, addr })
        })
        .collect()
}

/// `/ip4|ip6/A/udp/P/quic-v1`.
pub fn quic_multiaddr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("/ip4/{}/udp/{}/quic-v1", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("/ip6/{}/udp/{}/quic-v1", a.ip(), a.port()),
    }
}

/// Recomputes the member set and relays; if they changed, queues the delta on every live
/// session. A store failure is logged (the next refresh catches up).
pub async fn refresh(ctx: &Context) {
    let _one_at_a_time = ctx.overlay.refreshing.lock().await;
    let store = ctx.store.clone();
    let gateways = match tokio::task::spawn_blocking(move || store.gateways()).await {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the gateways for the overlay's relays");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "overlay refresh failed");
            return;
        }
    };
    let members: BTreeSet<NodeId> = ctx.fleet.members();
    let Some(delta) = ctx.overlay.membership.update(members, relays(&gateways)) else {
        return;
    };
    for gone in &delta.remove {
        ctx.overlay.holdings.forget(gone);
    }
    tracing::info!(
        seq = delta.revision.seq,
        added = delta.add.len(),
        removed = delta.remove.len(),
        relays = delta.relays.len(),
        "overlay membership changed"
    );
    for node in ctx.fleet.members() {
        ctx.fleet.push(&node, Message::Overlay(delta.clone()));
    }
}
