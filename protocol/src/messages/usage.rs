//! Bandwidth usage and its settlement with receipts signed by the receiving party.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::canonical::Canonical;
use crate::codec::Nonce;
use crate::identity::{IdentityError, NodeId, Signature, SignerId};
use crate::messages::error::ErrorCode;
use crate::messages::state::InstanceId;

/// A gateway's signed statement of the bytes it exchanged with a node's instance in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BandwidthReceipt {
    /// Unique receipt id chosen by the gateway.
    pub receipt: Nonce,
    /// The signing gateway.
    pub gateway: SignerId,
    /// The node credited.
    pub node: NodeId,
    /// The instance that served.
    pub instance: InstanceId,
    /// Window start, Unix milliseconds.
    pub window_start_ms: u64,
    /// Window end, Unix milliseconds (exclusive).
    pub window_end_ms: u64,
    /// Bytes the gateway received from the node.
    pub bytes_from_node: u64,
    /// Bytes the gateway sent to the node.
    pub bytes_to_node: u64,
    /// `gateway` signs [`BandwidthReceipt::signing_bytes`].
    pub signature: Signature,
}

impl BandwidthReceipt {
    /// Domain separation tag.
    pub const DOMAIN: &'static str = "hearth/v1/bandwidth-receipt";

    /// The canonical bytes that `signature` signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        Canonical::new(Self::DOMAIN)
            .key(self.receipt.as_bytes())
            .key(self.gateway.as_bytes())
            .key(self.node.as_bytes())
            .text(self.instance.as_str())
            .u64(self.window_start_ms)
            .u64(self.window_end_ms)
            .u64(self.bytes_from_node)
            .u64(self.bytes_to_node)
            .finish()
    }

    /// Checks the signature against `gateway`.
    pub fn verify(&self) -> Result<(), IdentityError> {
        self.gateway.verify(&self.signing_bytes(), &self.signature)
    }
}

/// Receipts one `usage_report` may carry at most; a master refuses a longer report whole.
pub const MAX_REPORT_RECEIPTS: usize = 1000;

/// `usage_report` (node → master): receipts collected in a window, for crediting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct UsageReport {
    /// Report number, increasing per node; a repeated number is settled once.
    pub report: u64,
    /// The receipts.
    pub receipts: Vec<BandwidthReceipt>,
}

/// `settlement` (master → node): what was credited from a usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Settlement {
    /// The report settled.
    pub report: u64,
    /// Bytes credited in total from accepted receipts.
    pub credited_bytes: u64,
    /// Receipts refused, with the reason.
    #[serde(default)]
    pub rejected: Vec<RejectedReceipt>,
}

/// A receipt the master did not credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RejectedReceipt {
    /// The receipt id.
    pub receipt: Nonce,
    /// Why: `bad_signature`, `unknown_signer`, `not_yours`, `duplicate`, `overlapping` or
    /// `bad_window` (SPEC.md §9.17).
    pub code: ErrorCode,
}
