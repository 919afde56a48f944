//! `hearth-gateway`: what the public talks to. It runs on a machine of the cooperative's with a
//! public address and carries each request to a healthy replica through the gateway link that
//! the replica's node opened, outbound, from behind its home router (SPEC §14).
//!
//! - [`table`]: the routing table read from the master (`GET /v1/gateway/routes`), indexed by
//!   host name and public TCP port.
//! - [`tunnel`]: the QUIC endpoint nodes dial; one [`tunnel::Links`] entry per connected node;
//!   opening a tunnel stream to an instance's port.
//! - [`meter`]: byte counters per node, instance and deployment, counted here (never taken
//!   from a node).

pub mod backend;
pub mod balance;
pub mod http;
pub mod limits;
pub mod pages;
pub mod pool;
pub mod proxy;
pub mod table;
pub mod tls;
pub mod tunnel;
