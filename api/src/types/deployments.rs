//! Deployments: `POST /v1/deployments`, `GET /v1/deployments[/{name}]`,
//! `DELETE /v1/deployments/{name}`, `POST /v1/deployments/{name}/update`.

use std::collections::{BTreeMap, BTreeSet};

use hearth_protocol::messages::state::{Endpoint, Health, InstanceId, Name, RecipeRef};
use hearth_protocol::{CountryCode, NodeId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{DeploymentName, NodeIdText, Nullable, UnixMs};

/// Longest deployment name: its replicas are instances `<name>-<k>`, and an instance id is a
/// DNS label of at most 63 characters, which leaves 7 for `-<k>`.
pub const MAX_DEPLOYMENT_NAME: usize = 56;

/// Most replicas one deployment may ask for.
pub const MAX_REPLICAS: u32 = 1000;

/// A deployment as the operator asks for it: body of `POST /v1/deployments`, its answer, and
/// `spec` of a `DeploymentView`. Unknown fields are rejected (400 `bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// The deployment's name (a DNS label); requests are idempotent by name. Its replicas are
    /// instances named `<name>-<k>`, so the name is at most 56 characters (longer gets 400
    /// `bad_request`).
    #[schemars(with = "DeploymentName")]
    pub name: Name,
    /// The recipe to run. Its blob must be stored, parse as a recipe and be this `name` and
    /// `version` (409 `recipe_missing`).
    pub recipe: RecipeRef,
    /// Replicas wanted, each in a distinct home; over 1000 gets 400 `bad_request`. 0 keeps the
    /// deployment with no instances.
    #[schemars(range(max = 1000))]
    pub replicas: u32,
    /// Spread beyond distinct homes, preferred in this order whatever the order given:
    /// `country` (replicas in distinct countries), then `isp` (replicas with distinct ISPs).
    /// `home` is accepted and changes nothing (homes are always distinct). Any other value gets
    /// 400 `bad_request`. Duplicates are accepted and dropped; stored sorted. Absent: none.
    #[serde(default)]
    #[schemars(with = "Vec<Spread>")]
    pub spread: BTreeSet<String>,
    /// Countries replicas may be placed in (the nodes' `facts.country`). Absent or empty:
    /// anywhere. Duplicates are dropped; stored sorted.
    #[serde(default)]
    #[schemars(with = "Vec<CountryCode>")]
    pub countries: BTreeSet<CountryCode>,
    /// Instance parameters by name, given to every replica; absent means none.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Labels a node must carry, all with exactly these values (its `facts.labels`), to
    /// receive a replica. Absent: none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Public host names the cooperative's gateways route to the replicas (HTTP by `Host`,
    /// HTTPS by SNI). A host name belongs to one deployment at most (409 `host_taken`).
    /// Absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<hearth_core::ingress::HostRoute>,
    /// Public TCP ports the gateways route to the replicas. A public port belongs to one
    /// deployment at most (409 `port_taken`). Absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<hearth_core::ingress::TcpRoute>,
}

/// A spread dimension of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// Distinct homes (always).
    Home,
    /// Distinct ISPs within a country.
    Isp,
    /// Distinct countries.
    Country,
}

/// Body of `POST /v1/deployments/{name}/update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The recipe to roll onto.
    pub recipe: RecipeRef,
    /// Seconds one replica gets to become ready (default 120).
    #[serde(default)]
    #[schemars(range(min = 1, max = 86_400))]
    pub deadline_s: Option<u64>,
}

/// A deployment as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentView {
    /// The deployment's name.
    pub name: Name,
    /// The spec as stored.
    pub spec: DeploymentSpec,
    /// The last rolling update, `null` if the recipe never changed.
    #[schemars(with = "Nullable<Rollout>")]
    pub rollout: Option<Rollout>,
    /// The deployment's instances, ordered by instance id. A replica shows `state: pending`,
    /// `health: unknown` and no endpoints until its node reports its current generation.
    pub replicas: Vec<DeploymentReplica>,
    /// The `detail` of each condition, for humans (the wording may change); `[]` when all is
    /// well.
    pub notes: Vec<String>,
    /// Constraints not met now, oldest first; each lasts as long as its state.
    pub conditions: Vec<Condition>,
    /// Replicas that really serve (`serving`).
    pub running: u64,
    /// `spec.replicas`.
    pub wanted: u64,
    /// Distinct homes, countries and ISPs (per country) of the serving replicas.
    pub spread: SpreadCount,
    /// The make-before-break move under way, or `null`.
    #[schemars(with = "Nullable<Move>")]
    pub moving: Option<Move>,
    /// The last 10 events, oldest first (`GET /v1/deployments/{name}` only; `[]` in listings).
    pub events: Vec<Event>,
    /// The deployment's version (the SHA-256 of its stored spec), also its `ETag`: send it as
    /// `If-Match` to change the deployment only if nobody changed it since (412
    /// `version_mismatch` otherwise).
    #[schemars(with = "crate::schema::Sha256Text")]
    pub version: String,
}

/// One replica of a deployment: what its node last reported, judged with the node's liveness.
/// On a node that is not up the report is not believed: `state` is `unknown` (node `suspect`,
/// `returning` or never connected) or `lost` (node `down`, `retired`, `revoked`), `health` is
/// `unknown` and `detail` says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentReplica {
    /// The instance.
    pub instance: InstanceId,
    /// The node the replica is placed on.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// The instance's current generation (one more each time it is re-placed or updated).
    #[schemars(range(min = 1))]
    pub generation: u64,
    /// The recipe the replica is assigned, as `NAME@VERSION`.
    pub recipe: String,
    /// The reported instance state, or `pending` (no report yet), `unknown` or `lost`.
    pub state: String,
    /// Its health.
    pub health: Health,
    /// Node up, and the replica reports running (and healthy when the recipe has a check) at
    /// its current generation.
    pub serving: bool,
    /// Where the replica can be reached, with the port numbers its node chose; `[]` otherwise.
    pub endpoints: Vec<Endpoint>,
    /// The node's home.
    #[serde(default)]
    pub home: Option<String>,
    /// The node's ISP.
    #[serde(default)]
    pub isp: Option<String>,
    /// The node's country.
    #[serde(default)]
    pub country: Option<String>,
    /// Why the replica is not serving, when known.
    #[serde(default)]
    pub detail: Option<String>,
    /// In a move under way, the new copy (`incoming`) or the one it replaces (`leaving`).
    #[serde(default)]
    pub role: Option<Role>,
}

/// A replica's part in a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The new copy.
    Incoming,
    /// The copy it replaces.
    Leaving,
}

/// A constraint not met now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Condition {
    /// `replicas`, `countries`, `isps`, `drain`, `recipe` or `backups`.
    #[schemars(with = "ConditionKind")]
    pub kind: String,
    /// For humans.
    pub detail: String,
    /// When it began.
    #[schemars(with = "UnixMs")]
    pub since_ms: u64,
}

/// Kinds of condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// Not every replica is placed.
    Replicas,
    /// Country spread not met.
    Countries,
    /// ISP spread not met.
    Isps,
    /// A drain cannot move its replicas.
    Drain,
    /// The recipe cannot be used.
    Recipe,
    /// Fewer homes keep the backup copies than the recipe asks.
    Backups,
}

/// Distinct places of the serving replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SpreadCount {
    /// Distinct homes.
    #[serde(default)]
    pub homes: u64,
    /// Distinct countries.
    #[serde(default)]
    pub countries: u64,
    /// Distinct ISPs (per country).
    #[serde(default)]
    pub isps: u64,
}

/// A make-before-break move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Move {
    /// The replica being replaced.
    pub from: InstanceId,
    /// Its node.
    #[schemars(with = "NodeIdText")]
    pub from_node: NodeId,
    /// The new copy.
    pub to: InstanceId,
    /// Its node.
    #[schemars(with = "NodeIdText")]
    pub to_node: NodeId,
    /// `drain` or `spread`.
    pub reason: MoveReason,
    /// When it began.
    #[schemars(with = "UnixMs")]
    pub started_ms: u64,
}

/// Why a replica moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// Its node drains.
    Drain,
    /// The move restores a degraded spread.
    Spread,
}

/// Something that happened to a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// When.
    #[schemars(with = "UnixMs")]
    pub at_ms: u64,
    /// `placed`, `lost`, `re-placed`, `removed`, `moving`, `moved`, `move abandoned`,
    /// `degraded`, `restored`.
    pub kind: String,
    /// For humans.
    pub text: String,
}

/// A rolling update: the record the master stores with the deployment (`hearth-core`).
pub use hearth_core::rollout::{Rollout, RolloutState, Step};
