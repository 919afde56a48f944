//! `hearth-node`: the agent a volunteer runs on a home server.
//!
//! It enrols once with a one-time token that also pins the master's key ([`enrol`]), keeps its
//! identity and enrolment in a data directory ([`state`]), detects what the machine offers
//! ([`facts`]), and keeps one outbound QUIC session to the master with heartbeats and jittered
//! reconnects ([`link`]). The reconciliation core ([`reconcile`]) decides what runs; its driver
//! ([`supervisor`]) fetches, verifies, starts and watches instances in their partitions. The
//! [`gateway`] links carry public traffic from the cooperative's gateways to the instances'
//! exposed ports, and the bandwidth receipts the gateways sign.

pub mod artifacts;
pub mod backup;
pub mod cgroup;
pub mod credits;
pub mod enrol;
pub mod facts;
pub mod fetcher;
pub mod gateway;
pub mod health;
pub mod link;
pub mod overlay;
pub mod partition;
pub mod process;
pub mod state;
pub mod supervisor;
pub mod trust;
pub mod users;

pub use hearth_core::reconcile;

/// Wall-clock time in Unix milliseconds, the `now` the reconciliation core takes.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
