//! Backups: `GET|POST /v1/deployments/{name}/backups`, `POST /v1/deployments/{name}/restore`
//! and `GET /v1/deployments/{name}/where`.

use hearth_protocol::messages::backup::ObjectId;
use hearth_protocol::messages::state::InstanceId;
use hearth_protocol::{CountryCode, NodeId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{NodeIdText, Nullable, SnapshotIdText, UnixMs};

/// A node and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodePlace {
    /// The node.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// Its home.
    pub home: String,
    /// Its ISP.
    pub isp: String,
    /// Its country.
    pub country: CountryCode,
}

/// One stored snapshot of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotView {
    /// Its id.
    #[schemars(with = "SnapshotIdText")]
    pub id: ObjectId,
    /// When its node took it (the node's clock).
    #[schemars(with = "UnixMs")]
    pub taken_ms: u64,
    /// The replica whose data it is.
    pub instance: InstanceId,
    /// The node that took it.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// Bytes of the files it holds.
    pub bytes: u64,
    /// Sealed bytes of all its objects.
    pub stored_bytes: u64,
    /// Sealed bytes sent to the holders for it (what they lacked), summed over holders.
    pub sent_bytes: u64,
    /// The homes that confirmed it durable.
    pub held_by: Vec<NodePlace>,
}

/// `GET /v1/deployments/{name}/backups`: the deployment's backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BackupsView {
    /// The deployment.
    pub deployment: String,
    /// Seconds between snapshots (the recipe's `[data] backup`).
    pub every_s: u64,
    /// Snapshots each copy keeps.
    pub keep: u32,
    /// Homes that keep a copy, as asked.
    pub copies: u32,
    /// The homes chosen to keep the copies.
    pub holders: Vec<NodePlace>,
    /// The stored snapshots, newest first.
    pub snapshots: Vec<SnapshotView>,
}

/// `POST /v1/deployments/{name}/backups`: a snapshot asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BackupRequested {
    /// The deployment.
    pub deployment: String,
    /// The request's number (`BackupPlan.now` in its replicas' assignments).
    pub now: u64,
}

/// Body of `POST /v1/deployments/{name}/restore`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    /// The snapshot to restore; absent: the newest one a home holds.
    #[serde(default)]
    #[schemars(with = "Option<SnapshotIdText>")]
    pub snapshot: Option<ObjectId>,
}

/// `POST /v1/deployments/{name}/restore`: a restore asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestoreRequested {
    /// The deployment.
    pub deployment: String,
    /// The snapshot its replicas restore.
    #[schemars(with = "SnapshotIdText")]
    pub snapshot: ObjectId,
    /// The request's number (`Restore.seq`).
    pub seq: u64,
}

/// A replica in `GET /v1/deployments/{name}/where`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaPlace {
    /// The instance.
    pub instance: InstanceId,
    /// Its node.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// The node's home.
    pub home: String,
    /// Its ISP.
    pub isp: String,
    /// Its country.
    pub country: CountryCode,
    /// The replica's state, as in the deployment view (`running`, `pending`, `lost`…).
    pub state: String,
}

/// A backup copy (a holder) in `GET /v1/deployments/{name}/where`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CopyPlace {
    /// The holder.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// Its home.
    pub home: String,
    /// Its ISP.
    pub isp: String,
    /// Its country.
    pub country: CountryCode,
    /// Stored snapshots it confirmed holding.
    pub snapshots: u64,
    /// The newest of them.
    #[schemars(with = "Nullable<SnapshotIdText>")]
    pub latest_snapshot: Option<ObjectId>,
    /// When that one was taken.
    #[schemars(with = "Nullable<UnixMs>")]
    pub latest_ms: Option<u64>,
}

/// `GET /v1/deployments/{name}/where`: where a deployment's data lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WhereView {
    /// The deployment.
    pub deployment: String,
    /// Every replica.
    pub replicas: Vec<ReplicaPlace>,
    /// Every backup copy (empty when the recipe does not back up).
    pub copies: Vec<CopyPlace>,
    /// The countries it may be in (empty: any).
    pub countries_allowed: Vec<CountryCode>,
}
