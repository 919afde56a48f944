//! Backups of persistent data (SPEC §17): what the master tells a replica's node and a copy's
//! holder, what a node reports after a snapshot, and the messages of the transfer streams
//! between homes on the overlay.
//!
//! A snapshot is a set of sealed objects (chunks and one manifest, SPEC §17.2), each named by a
//! keyed hash of its plaintext ([`ObjectId`]). The key is the deployment's: the master gives it
//! only to the nodes that run the deployment's replicas, never to the homes that keep the
//! copies, which store bytes they cannot read. On the wire an object is a
//! [`BackupObject`] frame followed by exactly `len` raw bytes on the same stream.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::codec::Hex;
use crate::identity::NodeId;
use crate::messages::state::{InstanceId, Name};

/// An object's id: HMAC-SHA-256 of its plaintext under the deployment's id key, as hex.
pub type ObjectId = Hex<32>;

/// Most object ids one `backup_offer`, `backup_want` or `backup_fetch` may list.
pub const MAX_OBJECTS_PER_FRAME: usize = 4_096;

/// Largest object a transfer stream carries: a chunk (at most 256 KiB of plaintext, sealed) or
/// a manifest (at most 64 MiB sealed).
pub const MAX_OBJECT_BYTES: u64 = 64 << 20;

/// Most snapshots a copy keeps (`keep` in a recipe is at most this).
pub const MAX_KEEP: u32 = 366;

/// The deployment's backup key (32 bytes, hex). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(transparent)]
pub struct BackupSecret(pub Hex<32>);

impl std::fmt::Debug for BackupSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupSecret(…)")
    }
}

/// `Assignment.backup`: what a replica's node does for its deployment's backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackupPlan {
    /// The deployment's key: seals and opens every object.
    pub key: BackupSecret,
    /// Seconds between snapshots of the instance's data directory.
    pub every_s: u64,
    /// Snapshots each copy keeps (the newest).
    pub keep: u32,
    /// Raised by the operator (`hearth backup now`): a value above the last one the node acted
    /// on asks for a snapshot now.
    #[serde(default)]
    pub now: u64,
    /// The homes that keep the copies, chosen by the master: each snapshot goes to every one.
    #[serde(default)]
    pub holders: Vec<NodeId>,
    /// A snapshot to restore before the instance starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
}

/// `BackupPlan.restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Restore {
    /// The snapshot.
    pub snapshot: ObjectId,
    /// 0: restore only into an instance whose data directory is new (a replica placed in a new
    /// home). Above 0: the operator's restore request number (`hearth backup restore`): a value
    /// above the last one the node restored replaces the data, the instance stopped meanwhile.
    #[serde(default)]
    pub seq: u64,
    /// Homes that reported holding it, best first.
    pub from: Vec<NodeId>,
}

/// `DesiredState.holds`: a deployment whose copies this node keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Holding {
    /// The deployment.
    pub deployment: Name,
    /// The nodes that run its replicas: the only ones that may send or read its objects.
    pub replicas: Vec<NodeId>,
}

/// `snapshot_report` (node → master, control stream): a snapshot was taken and is durable on
/// the holders named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SnapshotReport {
    /// The instance whose data it is.
    pub instance: InstanceId,
    /// Its deployment.
    pub deployment: Name,
    /// The snapshot (its manifest's id).
    pub snapshot: ObjectId,
    /// When it was taken, Unix ms.
    pub taken_ms: u64,
    /// Bytes of the files it holds.
    pub bytes: u64,
    /// Sealed bytes of all its objects.
    pub stored_bytes: u64,
    /// Sealed bytes sent to holders for it (objects they lacked), summed over holders.
    pub sent_bytes: u64,
    /// Holders that confirmed it durable (`backup_stored`).
    pub held_by: Vec<NodeId>,
}

/// `backup_offer` (overlay, replica node → holder; opens a push stream, and may repeat): the
/// objects of a snapshot, at most [`MAX_OBJECTS_PER_FRAME`] per frame. The holder answers each
/// with `backup_want`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackupOffer {
    /// The deployment.
    pub deployment: Name,
    /// The snapshot the objects belong to.
    pub snapshot: ObjectId,
    /// Chunk ids (the manifest is sent as a `snapshot` object before `backup_commit`).
    pub objects: Vec<ObjectId>,
}

/// `backup_want` (holder → replica node): the offered objects the holder lacks, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackupWant {
    /// Ids from the offer.
    pub objects: Vec<ObjectId>,
}

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A chunk of a file.
    Chunk,
    /// A snapshot's manifest.
    Snapshot,
}

/// `backup_object` (either way): followed on the stream by exactly `len` raw bytes, the sealed
/// object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackupObject {
    /// Chunk or manifest.
    pub kind: ObjectKind,
    /// Its id.
    pub id: ObjectId,
    /// Sealed bytes that follow (at most [`MAX_OBJECT_BYTES`]).
    pub len: u64,
}

/// `backup_commit` (replica node → holder, after the objects and the manifest): make the
/// snapshot durable and keep only these snapshots of the deployment. Answered `backup_stored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackupCommit {
    /// The snapshot: its manifest and every offered object must be held.
    pub snapshot: ObjectId,
    /// Snapshots to keep (this one included); the holder deletes the others and every object
    /// no kept snapshot names.
    pub keep: Vec<ObjectId>,
}

/// `backup_stored` (holder → replica node): the snapshot is on the holder's disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackupStored {
    /// The snapshot.
    pub snapshot: ObjectId,
    /// Sealed bytes the holder keeps for the deployment, all snapshots together.
    pub held_bytes: u64,
}

/// `backup_get` (overlay, replica node → holder; opens a read stream): the snapshot's manifest,
/// answered by one `backup_object` of kind `snapshot` (or `error not_found`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackupGet {
    /// The deployment.
    pub deployment: Name,
    /// The snapshot.
    pub snapshot: ObjectId,
}

/// `backup_fetch` (replica node → holder, on a read stream, repeatable): these chunks, answered
/// by one `backup_object` each, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackupFetch {
    /// Chunk ids, at most [`MAX_OBJECTS_PER_FRAME`].
    pub objects: Vec<ObjectId>,
}
