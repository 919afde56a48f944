//! Ledger entries: what the log records, one leaf each (SPEC.md §15.2).
//!
//! A leaf's bytes are the entry's JSON exactly as the master wrote it on one line (serde_json's
//! compact output of [`Entry`], fields in declaration order). Verifiers hash the bytes they read,
//! never a re-serialisation, so a changed byte anywhere changes the leaf. Every entry names its
//! index (`seq`) and the leaf hash of the entry before it (`prev`), so a removed, inserted or
//! reordered entry is pinpointed even before the tree is recomputed.

use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{CountryCode, Hex, NodeId, Nonce, Signature, SignerId};
use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// The entry format's version (`v`).
pub const ENTRY_VERSION: u16 = 1;
/// An entry line longer than this is malformed (a receipt entry is about 700 bytes).
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// An RFC 6962 hash (SHA-256): leaf hashes, tree heads.
pub type Hash = Hex<32>;

/// One ledger entry (a leaf of the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Entry format version, [`ENTRY_VERSION`].
    pub v: u16,
    /// Its index in the log, from 0.
    pub seq: u64,
    /// When the master appended it, Unix ms.
    pub at_ms: u64,
    /// Leaf hash of entry `seq - 1` (all zeros for entry 0).
    pub prev: Hash,
    /// What it records.
    pub body: Body,
}

/// What an entry records (externally tagged: `{"probe":{...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// The credits formula and scoring rules in force from this entry on.
    Policy(Policy),
    /// A gateway registered or removed: only receipts signed by a gateway registered at the
    /// receipt's window end are credited.
    Gateway(GatewayEntry),
    /// A node enrolled, or changed class or declared power.
    Node(NodeEntry),
    /// The final outcome of one uptime probe (after any re-sends).
    Probe(ProbeEntry),
    /// A bandwidth receipt a node settled and the master credited.
    Receipt(ReceiptEntry),
    /// A node's scoring window closed: its counts, its online score and standing.
    Score(ScoreEntry),
    /// A node's monthly statement, written when the month closed.
    Statement(crate::statement::Statement),
}

impl Body {
    /// The entry kind's name (the JSON tag).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Policy(_) => "policy",
            Self::Gateway(_) => "gateway",
            Self::Node(_) => "node",
            Self::Probe(_) => "probe",
            Self::Receipt(_) => "receipt",
            Self::Score(_) => "score",
            Self::Statement(_) => "statement",
        }
    }

    /// The node the entry is about, if any.
    pub fn node(&self) -> Option<&NodeId> {
        match self {
            Self::Node(n) => Some(&n.node),
            Self::Probe(p) => Some(&p.node),
            Self::Receipt(r) => Some(&r.receipt.node),
            Self::Score(s) => Some(&s.node),
            Self::Statement(s) => Some(&s.node),
            Self::Policy(_) | Self::Gateway(_) => None,
        }
    }
}

/// A gateway's registration changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    /// The gateway's key.
    pub key: SignerId,
    /// Its registered name.
    pub name: String,
    /// True: registered from now on; false: removed from now on.
    pub registered: bool,
}

/// How a node is scored and credited: its admin state, grouped (SPEC.md §15.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeClass {
    /// Active or draining: scored, may be suspended, credited.
    Serving,
    /// In reserve: scored apart, never suspended, credited.
    Reserve,
    /// Under test: scored apart, never suspended, not credited.
    Test,
    /// Retired or revoked: not probed, not credited.
    Gone,
}

impl NodeClass {
    /// Text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serving => "serving",
            Self::Reserve => "reserve",
            Self::Test => "test",
            Self::Gone => "gone",
        }
    }
}

/// A node's record in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// The node.
    pub node: NodeId,
    /// Its class from now on.
    pub class: NodeClass,
    /// Its country (for the sustainability report's grouping).
    pub country: CountryCode,
    /// Declared power draw, watts (`None`: the policy's default is used).
    pub power_w: Option<u32>,
}

/// One probe's final outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeEntry {
    /// The node probed.
    pub node: NodeId,
    /// The probe number (the `audit_probe.probe` sent, identical in every re-send).
    pub probe: u64,
    /// The probe's nonce (identical in every re-send).
    pub nonce: Nonce,
    /// When the probe was first issued, Unix ms: the instant it tests.
    pub issued_at_ms: u64,
    /// How many times it was sent (1 + re-sends after timeouts).
    pub attempts: u32,
    /// How it ended.
    pub outcome: ProbeOutcome,
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeOutcome {
    /// The node answered with its signature (checkable by anyone: it is the node's
    /// `audit_answer` signature over the §6 audit-answer bytes of this probe).
    Passed {
        /// From the last send to the answer, µs.
        rtt_us: u64,
        /// The node's signature.
        signature: Signature,
    },
    /// No valid answer to any attempt.
    Failed {
        /// Why, as a sentence.
        reason: String,
    },
}

impl ProbeEntry {
    /// Whether the probe passed.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, ProbeOutcome::Passed { .. })
    }

    /// Checks a passed probe's signature under the node's key (a failed probe carries none).
    pub fn verify(&self) -> Result<(), hearth_protocol::IdentityError> {
        match &self.outcome {
            ProbeOutcome::Passed { signature, .. } => {
                let answer = hearth_protocol::messages::audit::AuditAnswer {
                    probe: self.probe,
                    nonce: self.nonce,
                    issued_at_ms: self.issued_at_ms,
                    node: self.node,
                    signature: *signature,
                };
                answer.verify()
            }
            ProbeOutcome::Failed { .. } => Ok(()),
        }
    }
}

/// A credited receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptEntry {
    /// The `usage_report` that carried it.
    pub report: u64,
    /// The receipt, exactly as the gateway signed it.
    pub receipt: BandwidthReceipt,
}

/// A node's standing from its online score (SPEC.md §15.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// At or above the warning threshold (or not yet enough probes to judge).
    Good,
    /// Below the warning threshold.
    Warned,
    /// Below the suspension threshold: no new placements.
    Suspended,
}

impl Standing {
    /// Text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Warned => "warned",
            Self::Suspended => "suspended",
        }
    }
}

/// A closed scoring window of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreEntry {
    /// The node.
    pub node: NodeId,
    /// Its class during the window.
    pub class: NodeClass,
    /// The window's start, Unix ms (a multiple of the policy's `window_ms`).
    pub window_start_ms: u64,
    /// Probes of the window that passed.
    pub passed: u32,
    /// Probes of the window that failed.
    pub failed: u32,
    /// The online score after this window: the mean of the per-window pass shares over the
    /// last `score_windows` windows that had probes, parts per million.
    pub score_ppm: u32,
    /// The standing that score gives.
    pub standing: Standing,
}

/// The leaf hash of an entry line (RFC 6962: SHA-256 of 0x00 ‖ bytes).
pub fn leaf_hash(line: &[u8]) -> Hash {
    Hex(tlog_tiles::record_hash(line).0)
}

/// Why an entry line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Longer than [`MAX_ENTRY_BYTES`].
    #[error("entry is {0} bytes, more than the {MAX_ENTRY_BYTES}-byte limit")]
    TooLong(usize),
    /// Not an entry.
    #[error("not a ledger entry: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Another format version.
    #[error(
        "entry format version {0} is not supported (this verifier reads version {ENTRY_VERSION})"
    )]
    Version(u16),
}

impl Entry {
    /// The entry's line (no newline): the leaf's bytes.
    pub fn to_line(&self) -> Vec<u8> {
        // Serialising these types cannot fail: no maps with non-string keys, no foreign types.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an entry line (the leaf's bytes, no newline).
    pub fn parse(line: &[u8]) -> Result<Self, EntryError> {
        if line.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLong(line.len()));
        }
        let entry: Self = serde_json::from_slice(line)?;
        if entry.v != ENTRY_VERSION {
            return Err(EntryError::Version(entry.v));
        }
        Ok(entry)
    }
}
