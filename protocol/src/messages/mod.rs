//! Every message of protocol version 1, as one enum dispatched by its `type` tag.

pub mod audit;
pub mod backup;
pub mod enrol;
pub mod error;
pub mod fetch;
pub mod overlay;
pub mod session;
pub mod standing;
pub mod state;
pub mod tunnel;
pub mod usage;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use audit::{AuditAnswer, AuditProbe};
use backup::{
    BackupCommit, BackupFetch, BackupGet, BackupObject, BackupOffer, BackupStored, BackupWant,
    SnapshotReport,
};
use enrol::{EnrolAccepted, EnrolRequest};
use error::ErrorMessage;
use fetch::{BlobChunk, FetchBlob, FetchMetadata, Metadata};
use overlay::{Have, HaveRequest, Holdings, Overlay, Providers, ProvidersRequest, ReplicaOpen};
use session::{Heartbeat, HeartbeatAck, Hello, Welcome};
use standing::Standing;
use state::{DesiredState, DesiredStateAck, InstanceStatus};
use tunnel::{Drain, ReceiptAck, TunnelOpen, TunnelReady};
use usage::{BandwidthReceipt, Settlement, UsageReport};

/// A protocol message. On the wire: `{"v": 1, "type": "<tag>", "body": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum Message {
    /// Node → master: enrol with a one-time token.
    EnrolRequest(Box<EnrolRequest>),
    /// Master → node: enrolment done.
    EnrolAccepted(EnrolAccepted),
    /// Node → master: open a session.
    Hello(Hello),
    /// Master → node: session open.
    Welcome(Welcome),
    /// Node → master: liveness and instance summary.
    Heartbeat(Heartbeat),
    /// Master → node: heartbeat recorded.
    HeartbeatAck(HeartbeatAck),
    /// Master → node: the whole desired state.
    DesiredState(DesiredState),
    /// Node → master: desired state accepted.
    DesiredStateAck(DesiredStateAck),
    /// Node → master: an instance changed.
    InstanceStatus(InstanceStatus),
    /// Master → node: sign this nonce.
    AuditProbe(AuditProbe),
    /// Node → master: signed nonce.
    AuditAnswer(AuditAnswer),
    /// Node → master: fetch a repository metadata file.
    FetchMetadata(FetchMetadata),
    /// Master → node: a repository metadata file.
    Metadata(Metadata),
    /// Node → master: fetch a range of a blob.
    FetchBlob(FetchBlob),
    /// Master → node: part of a blob.
    BlobChunk(BlobChunk),
    /// Node → master: bandwidth receipts for crediting.
    UsageReport(UsageReport),
    /// Master → node: what was credited.
    Settlement(Settlement),
    /// Gateway → node (gateway link): open a tunnel to an instance's port.
    TunnelOpen(TunnelOpen),
    /// Node → gateway (gateway link): the tunnel is connected.
    TunnelReady(TunnelReady),
    /// Node → gateway (gateway link): the instances that take no new tunnels.
    Drain(Drain),
    /// Gateway → node (gateway link): a signed bandwidth receipt to keep.
    Receipt(BandwidthReceipt),
    /// Node → gateway (gateway link): receipt verified and stored.
    ReceiptAck(ReceiptAck),
    /// Either way: an error with a stable code.
    Error(ErrorMessage),
    /// Master → node: the node's uptime standing and online score.
    Standing(Standing),
    /// Master → node: the overlay's member set (full or a delta) and its relays.
    Overlay(Overlay),
    /// Node → master: the artifacts the node can serve to peers.
    Holdings(Holdings),
    /// Node → master (own stream): who may hold this artifact?
    ProvidersRequest(ProvidersRequest),
    /// Master → node: candidate peers for an artifact.
    Providers(Providers),
    /// Peer → peer (overlay stream): which chunks of an artifact do you hold?
    HaveRequest(HaveRequest),
    /// Peer → peer (overlay stream): the chunks held.
    Have(Have),
    /// Peer → peer (overlay stream): connect to a replica's peer port.
    ReplicaOpen(ReplicaOpen),
    /// Node → master: a snapshot was taken and is durable on its holders (SPEC §17.5).
    SnapshotReport(SnapshotReport),
    /// Overlay: a snapshot's objects offered to a holder (SPEC §17.6).
    BackupOffer(BackupOffer),
    /// Overlay: the offered objects the holder lacks.
    BackupWant(BackupWant),
    /// Overlay: one sealed object, its bytes following the frame.
    BackupObject(BackupObject),
    /// Overlay: keep the snapshot (and these others only).
    BackupCommit(BackupCommit),
    /// Overlay: the snapshot is durable on the holder.
    BackupStored(BackupStored),
    /// Overlay: a snapshot's manifest asked of a holder (SPEC §17.7).
    BackupGet(BackupGet),
    /// Overlay: chunks asked of a holder.
    BackupFetch(BackupFetch),
}

/// Lists each variant with its wire tag once, and derives from that list the tag table, the
/// tag of a value, and decoding of a body by tag.
macro_rules! tags {
    ($($variant:ident => $tag:literal),* $(,)?) => {
        impl Message {
            /// Every `type` tag of this protocol version.
            pub const TYPES: &'static [&'static str] = &[$($tag),*];

            /// This message's `type` tag.
            pub fn type_tag(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $tag,)*
                }
            }

            /// Decodes a body of the message type `tag`: `None` when the tag is unknown.
            pub(crate) fn from_tagged_body(tag: &str, body: &str) -> Option<serde_json::Result<Self>> {
                match tag {
                    $($tag => Some(serde_json::from_str(body).map(Self::$variant)),)*
                    _ => None,
                }
            }
        }
    };
}

tags! {
    EnrolRequest => "enrol_request",
    EnrolAccepted => "enrol_accepted",
    Hello => "hello",
    Welcome => "welcome",
    Heartbeat => "heartbeat",
    HeartbeatAck => "heartbeat_ack",
    DesiredState => "desired_state",
    DesiredStateAck => "desired_state_ack",
    InstanceStatus => "instance_status",
    AuditProbe => "audit_probe",
    AuditAnswer => "audit_answer",
    FetchMetadata => "fetch_metadata",
    Metadata => "metadata",
    FetchBlob => "fetch_blob",
    BlobChunk => "blob_chunk",
    UsageReport => "usage_report",
    Settlement => "settlement",
    TunnelOpen => "tunnel_open",
    TunnelReady => "tunnel_ready",
    Drain => "drain",
    Receipt => "receipt",
    ReceiptAck => "receipt_ack",
    Error => "error",
    Standing => "standing",
    Overlay => "overlay",
    Holdings => "holdings",
    ProvidersRequest => "providers_request",
    Providers => "providers",
    HaveRequest => "have_request",
    Have => "have",
    ReplicaOpen => "replica_open",
    SnapshotReport => "snapshot_report",
    BackupOffer => "backup_offer",
    BackupWant => "backup_want",
    BackupObject => "backup_object",
    BackupCommit => "backup_commit",
    BackupStored => "backup_stored",
    BackupGet => "backup_get",
    BackupFetch => "backup_fetch",
}

impl Message {
    /// An `error` message.
    pub fn error(code: error::ErrorCode, message: impl Into<String>, fatal: bool) -> Self {
        Self::Error(ErrorMessage {
            code,
            message: message.into(),
            fatal,
        })
    }
}

/// The JSON object a frame carries: the protocol version and the tagged message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Protocol version of this frame.
    pub v: u16,
    /// The message.
    #[serde(flatten)]
    pub message: Message,
}
