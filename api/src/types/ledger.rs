//! The credits ledger (SPEC.md §15): `GET /v1/ledger/checkpoint` (text), `/checkpoints`,
//! `/entries` (NDJSON), `/proof/inclusion`, `/proof/consistency`, `POST /v1/ledger/cosignatures`
//! (text), the witness registry (`/v1/ledger/witnesses`), a node's entries with proofs
//! (`/v1/ledger/nodes/{id}`), and the monthly statements (`GET /v1/credits`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{NodeIdText, UnixMs};

/// Most entries one `GET /v1/ledger/entries` returns (and its default `limit`).
pub const MAX_ENTRIES_PER_READ: u64 = 10_000;

/// A checkpoint as `GET /v1/ledger/checkpoints` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointView {
    /// The tree size it signs.
    pub size: u64,
    /// The signed note: checkpoint text, a blank line, the master's signature line and every
    /// co-signature line received for it.
    pub note: String,
}

/// Answer of `GET /v1/ledger/proof/inclusion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofView {
    /// The entry's index.
    pub seq: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The entry's leaf hash, SHA-256(0x00 ‖ line), hex.
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub leaf_hash: String,
    /// Base64 of the audit path's 32-byte hashes concatenated, RFC 9162 order.
    pub path: String,
}

/// Answer of `GET /v1/ledger/proof/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProofView {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// Base64 of the consistency path's 32-byte hashes concatenated, RFC 9162 order.
    pub path: String,
}

/// A registered witness (body of `POST /v1/ledger/witnesses`, item of its `GET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WitnessSpec {
    /// Its name: the key name of its signature lines (1–128 characters, no spaces or `+`).
    #[schemars(length(min = 1, max = 128), regex(pattern = "^[^\\s+]+$"))]
    pub name: String,
    /// Its C2SP verifier key `name+keyid+base64(0x01 ‖ Ed25519 public key)` (`hearth ledger
    /// witness init` prints it); its name must be `name`.
    pub vkey: String,
}

/// One entry of a node, with its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeLedgerEntry {
    /// The entry's index.
    pub seq: u64,
    /// The entry line exactly as stored (the leaf's bytes).
    pub line: String,
    /// Base64 of its audit path at the answer's `size`.
    pub path: String,
}

/// Answer of `GET /v1/ledger/nodes/{id}`: the node's node, score, receipt and statement entries
/// of the month, each with its inclusion proof in the tree of the latest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeLedger {
    /// The latest checkpoint (signed note, with co-signatures); the proofs are at its size.
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// The entries, oldest first.
    pub entries: Vec<NodeLedgerEntry>,
}

/// Answer of `GET /v1/credits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditsView {
    /// The month, `YYYY-MM`.
    #[schemars(regex(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$"))]
    pub month: String,
    /// False: the month closed and these are its logged statement entries (final). True: the
    /// month is open (or not closed yet): computed now from the entries so far.
    pub provisional: bool,
    /// When it was answered, Unix ms.
    #[schemars(with = "UnixMs")]
    pub at_ms: u64,
    /// The ledger's size when computed.
    pub size: u64,
    /// The statements, by node id (only the node's with `node=`).
    #[schemars(with = "Vec<StatementSchema>")]
    pub statements: Vec<serde_json::Value>,
}

/// A node's monthly statement (the ledger's `Statement`, SPEC.md §15.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Statement")]
pub struct StatementSchema {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The node.
    #[schemars(with = "NodeIdText")]
    pub node: String,
    /// Its class at the month's end: `serving`, `reserve`, `test` or `gone`.
    pub class: String,
    /// Its country (absent: the ledger has no node entry for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Windows of the month in which the master probed anyone.
    pub fleet_windows: u32,
    /// Of those, windows in which this node was probed.
    pub node_windows: u32,
    /// Probes passed in the month.
    pub probes_passed: u64,
    /// Probes failed in the month.
    pub probes_failed: u64,
    /// Uptime, ppm.
    pub uptime_ppm: u32,
    /// Receipts credited whose window ended in the month.
    pub receipts: u64,
    /// Bytes of those receipts.
    pub bytes_served: u64,
    /// Fibre credit, cents.
    pub fibre_credit_cents: u64,
    /// Bandwidth credit, cents.
    pub bandwidth_credit_cents: u64,
    /// Total credit, cents.
    pub credits_cents: u64,
    /// Power draw used for the estimate, watts.
    pub power_w: u32,
    /// Estimated energy used while up, Wh.
    pub energy_wh: u64,
}
