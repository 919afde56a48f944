//! Session opening and heartbeats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::facts::Resources;
use crate::identity::{MasterId, NodeId};
use crate::messages::state::InstanceReport;

/// `hello` (node → master): first message of a session, offering a range of protocol versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Hello {
    /// Lowest protocol version the node speaks.
    pub min_version: u16,
    /// Highest protocol version the node speaks.
    pub max_version: u16,
    /// The node's identity; must equal the key of the TLS client certificate.
    pub node: NodeId,
    /// Agent software name and version.
    pub agent: String,
    /// Revision of the last desired state the node applied (0 when none).
    pub applied_revision: u64,
    /// The overlay member set the node holds (SPEC §16), if any: the master sends `overlay`
    /// only when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<crate::messages::overlay::OverlayRevision>,
}

/// `welcome` (master → node): the session is open at the chosen version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Welcome {
    /// The version both sides now speak: the highest in both ranges.
    pub version: u16,
    /// The master's identity.
    pub master: MasterId,
    /// Interval the node should heartbeat at, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// The master's clock, Unix milliseconds, for the node's information only.
    pub server_time_ms: u64,
}

/// `heartbeat` (node → master): liveness plus a summary of what the node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Heartbeat {
    /// Increases by one with each heartbeat of a session, starting at 1.
    pub seq: u64,
    /// Resources in use on the node, all instances included.
    pub used: Resources,
    /// Revision of the desired state the node has converged to.
    pub applied_revision: u64,
    /// Every instance the node runs or is starting.
    pub instances: Vec<InstanceReport>,
    /// Cumulative counters since the agent started.
    pub counters: Counters,
    /// Asks the master for a `heartbeat_ack`. Off by default: the QUIC acknowledgement of the
    /// packet already tells the node that the master is alive, and an application answer would
    /// cost two more packets per heartbeat (SPEC.md §8.4).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ack: bool,
}

/// Cumulative counters since the agent started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Counters {
    /// Bytes received by instances.
    pub bytes_in: u64,
    /// Bytes sent by instances.
    pub bytes_out: u64,
    /// Instance process restarts.
    pub restarts: u64,
    /// Sessions opened (reconnects).
    pub sessions: u64,
}

/// `heartbeat_ack` (master → node): the heartbeat with this sequence number was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct HeartbeatAck {
    /// The acknowledged sequence number.
    pub seq: u64,
}
