//! Hearth's master: the cooperative's control plane.
//!
//! It enrols volunteers' nodes with one-time tokens, holds their QUIC sessions (mutual TLS, the
//! node's certificate key is its identity), tracks their liveness with a sans-IO state machine
//! ([`liveness`]), keeps durable state behind the [`store::Store`] trait (SQLite by default), and
//! answers operators over an HTTP/JSON API ([`api`]) used by the `hearth` CLI (crate `hearth-cli`).

pub mod access;
pub mod api;
pub mod audit;
pub mod audit_api;
pub mod backup_api;
pub mod backups;
pub mod blobs;
pub mod clock;
pub mod cluster;
pub mod context;
pub mod data_dir;
pub mod deploy_api;
pub mod deploy_view;
pub mod durable;
pub mod enrol;
pub mod fetch;
pub mod fleet;
pub mod gateway_api;
pub mod http;
pub mod ingress_check;
pub mod json_body;
pub mod ledger;
pub mod ledger_api;
pub mod members_api;
pub mod metrics;
pub mod overlay;
pub mod ratelimit;
pub mod recipe_api;
pub mod repository;
pub mod request_check;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod session;
pub mod settlement;
pub mod shared_files;
pub mod store;
pub mod ui;
pub mod uptime;
pub mod users_api;
pub mod workload_api;

pub use hearth_core::{liveness, placement, rollout};
