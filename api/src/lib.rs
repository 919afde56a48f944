//! The operator API of `hearth-master`, as types: what each route accepts and answers, the
//! errors it gives (one [`ApiError`] variant per stable code), and the OpenAPI document
//! generated from them ([`openapi::document`], checked in as `api/openapi.json`).
//!
//! No HTTP server, database or runtime here: the master maps these types to axum responses, the
//! `hearth` CLI sends and reads them with an HTTP client.

mod error;
pub mod openapi;
mod schema;
mod types;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use schema::{
    DeploymentName, NodeIdText, Nullable, Sha256Text, SnapshotIdText, TokenIdText, UnixMs,
};
pub use types::*;
