//! Uptime audit: the master sends a fresh nonce at a random time; the node signs it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::canonical::Canonical;
use crate::codec::Hex;
use crate::codec::Nonce;
use crate::identity::{IdentityError, NodeId, SecretKey, Signature};

/// `audit_probe` (master → node): sign this nonce now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct AuditProbe {
    /// Probe number, unique per master.
    pub probe: u64,
    /// 32 random bytes the node cannot predict.
    pub nonce: Nonce,
    /// When the master issued the probe, Unix milliseconds.
    pub issued_at_ms: u64,
}

/// `audit_answer` (node → master): the node's signature over the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct AuditAnswer {
    /// The probe answered.
    pub probe: u64,
    /// The probe's nonce, echoed.
    pub nonce: Nonce,
    /// The probe's issue time, echoed.
    pub issued_at_ms: u64,
    /// The answering node.
    pub node: NodeId,
    /// `node` signs [`AuditAnswer::signing_bytes`].
    pub signature: Signature,
}

impl AuditAnswer {
    /// Domain separation tag.
    pub const DOMAIN: &'static str = "hearth/v1/audit-answer";

    /// The canonical bytes that `signature` signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        Canonical::new(Self::DOMAIN)
            .u64(self.probe)
            .key(self.nonce.as_bytes())
            .u64(self.issued_at_ms)
            .key(self.node.as_bytes())
            .finish()
    }

    /// The answer of the node holding `key` to `probe`, signed.
    pub fn signed(probe: &AuditProbe, key: &SecretKey) -> Self {
        let mut answer = Self {
            probe: probe.probe,
            nonce: probe.nonce,
            issued_at_ms: probe.issued_at_ms,
            node: NodeId::from_key(key.public()),
            signature: Hex([0; 64]),
        };
        answer.signature = key.sign(&answer.signing_bytes());
        answer
    }

    /// Checks the signature against `node`.
    pub fn verify(&self) -> Result<(), IdentityError> {
        self.node.verify(&self.signing_bytes(), &self.signature)
    }
}
