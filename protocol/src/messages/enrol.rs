//! Enrolment: a node presents a one-time token and its key, and the master registers it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::canonical::Canonical;
use crate::codec::Hex;
use crate::facts::NodeFacts;
use crate::identity::{MasterId, NodeId, Signature};

/// `enrol_request` (node → master, on an enrolment connection): the first and only request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct EnrolRequest {
    /// The token's identifier (public part), as printed in the token.
    pub token_id: Hex<4>,
    /// The token's secret; the master stores only the SHA-256 of its text form.
    pub token_secret: Hex<16>,
    /// The node's identity: its key signs `proof` (enrolment has no client certificate).
    pub node: NodeId,
    /// The master the node believes it talks to (the pin carried in the token).
    pub master: MasterId,
    /// What the node is.
    pub facts: NodeFacts,
    /// `node` signs [`EnrolRequest::signing_bytes`], binding the token to this key and master.
    pub proof: Signature,
}

impl EnrolRequest {
    /// Domain separation tag of the proof.
    pub const DOMAIN: &'static str = "hearth/v1/enrol";

    /// The canonical bytes that `proof` signs: token id, node key, master key.
    pub fn signing_bytes(&self) -> Vec<u8> {
        Canonical::new(Self::DOMAIN)
            .text(&self.token_id.to_string())
            .key(self.node.as_bytes())
            .key(self.master.as_bytes())
            .finish()
    }
}

/// `enrol_accepted` (master → node): the node is registered and may open sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct EnrolAccepted {
    /// The node's identity as registered.
    pub node: NodeId,
    /// The master's identity (equal to the pin).
    pub master: MasterId,
    /// Interval the node should heartbeat at, in milliseconds.
    pub heartbeat_interval_ms: u64,
}
