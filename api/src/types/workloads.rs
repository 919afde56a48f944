//! Explicit workloads: `PUT /v1/blobs/{sha256}`, `POST /v1/instances`, `GET /v1/instances`,
//! `DELETE /v1/instances/{id}`, and the recipe repository's listings.

use std::collections::BTreeMap;

use hearth_protocol::messages::state::{Assignment, Endpoint, Health, InstanceId, Name, RecipeRef};
use hearth_protocol::{NodeId, Resources, Sha256};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{NodeIdText, Nullable, Sha256Text};

/// Largest blob accepted by `PUT /v1/blobs/{sha256}`, in bytes (512 MiB).
pub const MAX_BLOB: u64 = 512 * 1024 * 1024;

/// Answer of `PUT /v1/blobs/{sha256}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoredBlob {
    /// The blob's SHA-256.
    #[schemars(with = "Sha256Text")]
    pub sha256: Sha256,
    /// Size of the uploaded body in bytes.
    #[schemars(range(max = 536_870_912))]
    pub size: u64,
    /// `true` if the blob was stored now (201), `false` if it was already there (200).
    pub created: bool,
}

/// Body of `POST /v1/instances`. Unknown top-level fields are rejected (400 `bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceInstance {
    /// Instance id (unique fleet-wide).
    pub instance: InstanceId,
    /// The node to run the instance on; it must be enrolled (404 `unknown_node`).
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// The deployment the instance belongs to.
    pub deployment: Name,
    /// The recipe to run; its blob must be stored (409 `recipe_missing`).
    pub recipe: RecipeRef,
    /// Instance parameters by name (non-secret; secret parameters are generated on the node and
    /// published back). Absent: none.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Port numbers by the recipe's port names. Every port the recipe declares needs one, or
    /// the node reports the instance `failed`. Absent: none.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Resources reserved for the instance. Absent: all zero.
    #[serde(default)]
    pub resources: Resources,
    /// When set, the node stops the instance if it has not heard from the master for this many
    /// milliseconds. Absent or `null`: no lease.
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

/// Answer of `POST /v1/instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlacedInstance {
    /// The node it was placed on.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// The stored assignment, with its generation.
    pub assignment: Assignment,
}

/// Answer of `DELETE /v1/instances/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemovedInstance {
    /// The removed instance.
    pub removed: InstanceId,
    /// The node it was on.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
}

/// `pending`: the node has not reported this generation of the instance yet (shown by the
/// master). The others are reported by the node: `fetching`: accepted, waiting for the recipe
/// and artifacts; `starting`: verified, the process is being started; `running`: the process
/// runs; `restarting`: the process exited and will be restarted after a backoff; `stopping`:
/// being stopped; `stopped`: stopped on purpose; `failed`: cannot run (see `message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// No report of this generation yet.
    Pending,
    /// Waiting for the recipe and artifacts.
    Fetching,
    /// Being started.
    Starting,
    /// Runs.
    Running,
    /// Exited, restarting after a backoff.
    Restarting,
    /// Being stopped.
    Stopping,
    /// Stopped on purpose.
    Stopped,
    /// Cannot run.
    Failed,
}

/// A placed instance with what its node last reported (item of `GET /v1/instances`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceView {
    /// The instance.
    pub instance: InstanceId,
    /// Its deployment.
    pub deployment: Name,
    /// The node the instance is placed on.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// The instance's current generation.
    #[schemars(range(min = 1))]
    pub generation: u64,
    /// Its recipe.
    pub recipe: RecipeRef,
    /// Its state.
    #[schemars(with = "InstanceState")]
    pub state: String,
    /// Its health.
    pub health: Health,
    /// Where the instance can be reached, as its node reports them while it runs; `[]`
    /// otherwise.
    pub endpoints: Vec<Endpoint>,
    /// Parameters the node published back, including secrets it generated (e.g. an admin
    /// password); `{}` until reported. Treat this answer as secret.
    pub published: BTreeMap<String, String>,
    /// Human-readable detail from the node (e.g. why it failed); `null` if none.
    #[schemars(with = "Nullable<String>")]
    pub message: Option<String>,
}

/// A recipe version the published signed targets list (item of `GET /v1/recipes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListedRecipe {
    /// Recipe name.
    #[schemars(extend("examples" = ["static-site"]))]
    pub name: String,
    /// Recipe version.
    #[schemars(extend("examples" = ["1.0.0"]))]
    pub version: String,
    /// SHA-256 of the recipe document.
    #[schemars(with = "Sha256Text")]
    pub sha256: Sha256,
    /// Length of the recipe document in bytes.
    pub length: u64,
}
