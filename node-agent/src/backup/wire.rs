//! What the backup streams share (SPEC §17.6, §17.7): the module's error, sealed objects as a
//! `backup_object` frame followed by their raw bytes, and spending the upload budget.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearth_backup::{BackupError, ChunkId, ObjectKind as StoreKind};
use hearth_protocol::messages::backup::{BackupObject, MAX_OBJECT_BYTES, ObjectId, ObjectKind};
use hearth_protocol::{ErrorCode, Hex, Message};

use crate::artifacts::serve::Bucket;
use crate::overlay::{OverlayError, PeerStream};

/// How long a peer may take to answer one frame of a backup stream.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes spent from the budget at a time (a large manifest is paced, not refused).
const SPEND_STEP: u64 = 256 << 10;

/// Why a backup transfer or a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupNetError {
    /// The overlay stream failed (no link, a cut, a bad frame).
    #[error("overlay: {0}")]
    Overlay(#[from] OverlayError),
    /// The peer refused with this code.
    #[error("{peer_code}: {message}")]
    Refused {
        /// The peer's error code.
        peer_code: ErrorCode,
        /// Its sentence.
        message: String,
    },
    /// The peer sent something the protocol does not allow here.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The peer took longer than [`ANSWER_TIMEOUT`].
    #[error("no answer in {}s", ANSWER_TIMEOUT.as_secs())]
    Timeout,
    /// The local store, or a check of a sealed object, failed.
    #[error(transparent)]
    Store(#[from] BackupError),
    /// The snapshot hook failed or could not run.
    #[error("snapshot_command: {0}")]
    Hook(String),
    /// A blocking task was cancelled (the agent is stopping).
    #[error("cancelled")]
    Cancelled,
}

impl BackupNetError {
    /// Whether another attempt (later, or from another holder) may succeed. A snapshot that
    /// fails its authentication never will.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::Store(BackupError::Tampered { .. } | BackupError::BadKey)
        )
    }
}

/// The wire id of a store id, and back.
pub fn wire_id(id: &ChunkId) -> ObjectId {
    Hex(id.0)
}

/// The store id of a wire id.
pub fn store_id(id: &ObjectId) -> ChunkId {
    ChunkId(*id.as_bytes())
}

/// The store's kind of a wire kind.
pub fn store_kind(kind: ObjectKind) -> StoreKind {
    match kind {
        ObjectKind::Chunk => StoreKind::Chunk,
        ObjectKind::Snapshot => StoreKind::Snapshot,
    }
}

/// Waits until the budget allows `n` more bytes, spent in steps.
pub async fn spend(bucket: &Mutex<Bucket>, n: u64) {
    let mut left = n;
    while left > 0 {
        let step = left.min(SPEND_STEP);
        let granted = bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(step, Instant::now());
        if granted {
            left -= step;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends one object: its frame, then its bytes, paced by `bucket`.
pub async fn send_object(
    stream: &mut PeerStream,
    kind: ObjectKind,
    id: ObjectId,
    bytes: &[u8],
    bucket: &Mutex<Bucket>,
) -> Result<(), BackupNetError> {
    spend(bucket, bytes.len() as u64).await;
    stream
        .send(&Message::BackupObject(BackupObject {
            kind,
            id,
            len: bytes.len() as u64,
        }))
        .await?;
    stream.send_raw(bytes).await?;
    Ok(())
}

/// The next message within [`ANSWER_TIMEOUT`]; an `error` becomes [`BackupNetError::Refused`]
/// and the end of the stream [`BackupNetError::Unexpected`].
pub async fn answer(stream: &mut PeerStream) -> Result<Message, BackupNetError> {
    match tokio::time::timeout(ANSWER_TIMEOUT, stream.recv()).await {
        Err(_) => Err(BackupNetError::Timeout),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(None)) => Err(BackupNetError::Unexpected("the stream ended".into())),
        Ok(Ok(Some(Message::Error(e)))) => Err(BackupNetError::Refused {
            peer_code: e.code,
            message: e.message,
        }),
        Ok(Ok(Some(m))) => Ok(m),
    }
}

/// Reads the bytes announced by a `backup_object` frame, which must be of `kind` (and `id`
/// when given) and at most [`MAX_OBJECT_BYTES`].
pub async fn object_body(
    stream: &mut PeerStream,
    head: &BackupObject,
    kind: ObjectKind,
    id: Option<&ObjectId>,
) -> Result<Vec<u8>, BackupNetError> {
    if head.kind != kind || id.is_some_and(|id| *id != head.id) {
        return Err(BackupNetError::Unexpected(format!(
            "{:?} {} where {kind:?} {} was asked for",
            head.kind,
            head.id,
            id.map(ToString::to_string).unwrap_or_default()
        )));
    }
    if head.len > MAX_OBJECT_BYTES {
        return Err(BackupNetError::Unexpected(format!(
            "an object of {} bytes (at most {MAX_OBJECT_BYTES})",
            head.len
        )));
    }
    let len = usize::try_from(head.len)
        .map_err(|_| BackupNetError::Unexpected("object too large".into()))?;
    match tokio::time::timeout(ANSWER_TIMEOUT, stream.recv_raw(len)).await {
        Err(_) => Err(BackupNetError::Timeout),
        Ok(r) => Ok(r?),
    }
}
