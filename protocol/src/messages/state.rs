//! Desired state (master → node) and what the node reports back about each instance.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::codec::{Sha256, label_name};
use crate::facts::Resources;

label_name!(
    /// An instance: one replica of a deployment on one node. Unique fleet-wide.
    InstanceId,
    "instance id",
    63
);
label_name!(
    /// A deployment, a recipe name or a port name.
    Name,
    "name",
    63
);

/// `desired_state` (master → node): everything the node should run, replacing any earlier one.
///
/// Level-triggered: the node converges to the latest revision whatever it missed. A node ignores
/// a revision lower than or equal to one it has already applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DesiredState {
    /// Strictly increasing per node.
    pub revision: u64,
    /// The full set of instances the node must run; any other instance must be stopped.
    pub instances: Vec<Assignment>,
    /// The gateways the node keeps a gateway link to (SPEC §14): named when one of its
    /// instances has a published port. Absent: none (close any link).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<crate::messages::tunnel::GatewayRef>,
    /// Deployments whose backup copies this node keeps (SPEC §17.4). Absent: none (the copies
    /// it holds are deleted after a grace period).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<crate::messages::backup::Holding>,
    /// Every master address the node may connect to, the current one included (all the
    /// cooperative's masters share one key, the one the node pinned). The node stores a changed
    /// list and, when a session is lost, tries them in turn (SPEC §8.6). Absent: keep the list
    /// it has. A node ignores a list of more than 16 addresses or naming one twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<crate::messages::tunnel::Addr>,
}

/// One instance the node must run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Assignment {
    /// The instance.
    pub instance: InstanceId,
    /// The deployment it belongs to.
    pub deployment: Name,
    /// Fencing generation: a node runs an instance only at the highest generation it was given,
    /// and the master ignores reports with an older one.
    pub generation: u64,
    /// The recipe to run, named by version and hash; the node verifies it against signed metadata.
    pub recipe: RecipeRef,
    /// Instance parameters (non-secret; secrets are generated on the node).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Ports assigned to the instance by name.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// Resources reserved for the instance.
    pub resources: Resources,
    /// When set, the node stops the instance if it has not heard from the master for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Port names published through the gateways: the only ports a tunnel may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed: Vec<Name>,
    /// The other replicas of the deployment, when its recipe asks for its peers (`[peers]`):
    /// the instance may reach each one's peer port over the overlay (SPEC §16.5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<crate::messages::overlay::ReplicaPeer>,
    /// When the recipe backs up its persistent data: the deployment's key, the schedule, the
    /// homes that keep the copies, and a snapshot to restore first (SPEC §17.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::messages::backup::BackupPlan>,
}

/// A recipe named by the master; the node only runs it after verifying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RecipeRef {
    /// Recipe name.
    pub name: Name,
    /// Recipe version.
    pub version: String,
    /// SHA-256 of the recipe document as listed in the signed targets metadata.
    pub sha256: Sha256,
}

/// `desired_state_ack` (node → master): the node has accepted this revision and is converging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DesiredStateAck {
    /// The accepted revision.
    pub revision: u64,
}

/// Lifecycle state of an instance on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Accepted, waiting for the recipe and artifacts.
    Fetching,
    /// Verified; the latest snapshot of its data is being restored before it starts.
    Restoring,
    /// Verified, the process is being started.
    Starting,
    /// The process runs.
    Running,
    /// The process exited and will be restarted after a backoff.
    Restarting,
    /// Being stopped (signal sent, waiting for exit).
    Stopping,
    /// Stopped on purpose.
    Stopped,
    /// Cannot run: verification failed, or it keeps crashing. See the status message.
    Failed,
}

/// Result of the recipe's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not checked yet, or the recipe has no check.
    Unknown,
    /// The last check passed.
    Healthy,
    /// The last checks failed.
    Unhealthy,
}

/// An instance's state as carried in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct InstanceReport {
    /// The instance.
    pub instance: InstanceId,
    /// The generation it runs at.
    pub generation: u64,
    /// Lifecycle state.
    pub state: InstanceState,
    /// Health.
    pub health: Health,
}

/// `instance_status` (node → master): a change of an instance, with its connection info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct InstanceStatus {
    /// State, generation and health.
    #[serde(flatten)]
    pub report: InstanceReport,
    /// Where the instance can be reached.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Parameters published back (including secrets generated on the node).
    #[serde(default)]
    pub published: BTreeMap<String, String>,
    /// Human-readable detail, e.g. why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A network endpoint of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Endpoint {
    /// Port name from the recipe.
    pub name: Name,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address as seen from the node.
    pub host: String,
    /// Port number.
    pub port: u16,
}
