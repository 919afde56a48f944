//! Serving artifact chunks to peers (SPEC §16.4): `have_request` → `have` (the sidecar's
//! bitmap) or `error not_found`; `fetch_blob` (offset a chunk boundary, `max_len` at most one
//! chunk) → `blob_chunk` frames of at most 512 KiB, then finish. The bytes come from
//! `D/cache` as they are (whole or partial; a peer checks them against the signed manifest).
//! The upload budget (`--upload-budget-mbps`) is a token bucket on the bytes served; a request
//! it cannot cover now, or one beyond [`MAX_STREAMS`] served at once, gets `error busy`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hearth_protocol::frame::MAX_CHUNK;
use hearth_protocol::messages::fetch::{BlobChunk, FetchBlob};
use hearth_protocol::messages::overlay::{Have, HaveRequest};
use hearth_protocol::{Blob, ErrorCode, Message};
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument as _;

use super::store::{read_chunk, read_sidecar};
use crate::overlay::{Incoming, Overlay, OverlayStats, PeerStream};

/// Most artifact streams served at once.
pub const MAX_STREAMS: usize = 8;

/// A token bucket of bytes: `rate` bytes a second, holding at most `burst`.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket for `mbps` Mbit/s, holding two seconds of it (at least 1 MiB).
    pub fn new(mbps: u64) -> Self {
        let rate = mbps as f64 * 125_000.0;
        let burst = (2.0 * rate).max(1_048_576.0);
        Self {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes `n` bytes' worth if the bucket holds them now.
    pub fn take(&mut self, n: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// Serves the artifact requests of `incoming` from `dir` within `budget_mbps` (0: none served,
/// every request answered `not_found`), spending `bucket` (the budget, shared with backups).
pub async fn serve(
    mut incoming: mpsc::Receiver<Incoming>,
    dir: PathBuf,
    overlay: Overlay,
    budget_mbps: u64,
    bucket: Arc<Mutex<Bucket>>,
) {
    OverlayStats::add(&overlay.stats().budget_mbps, budget_mbps);
    let slots = Arc::new(Semaphore::new(MAX_STREAMS));
    while let Some(Incoming {
        from,
        first,
        mut stream,
    }) = incoming.recv().await
    {
        let span = tracing::debug_span!("peer", peer = %from);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = stream
                    .send_error(ErrorCode::Busy, "serving too many streams")
                    .await;
                let _ = stream.finish().await;
            });
            continue;
        };
        let (dir, overlay, bucket) = (dir.clone(), overlay.clone(), bucket.clone());
        tokio::spawn(
            async move {
                let result = match first {
                    _ if budget_mbps == 0 => {
                        stream
                            .send_error(ErrorCode::NotFound, "this node serves no artifact chunks")
                            .await
                    }
                    Message::HaveRequest(r) => answer_have(&mut stream, &dir, r).await,
                    Message::FetchBlob(r) => {
                        answer_fetch(&mut stream, &dir, &overlay, &bucket, r).await
                    }
                    other => {
                        stream
                            .send_error(
                                ErrorCode::UnexpectedMessage,
                                format!("not an artifact request: {}", other.type_tag()),
                            )
                            .await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "artifact stream ended badly");
                }
                let _ = stream.finish().await;
                drop(slot);
            }
            .instrument(span),
        );
    }
}

async fn answer_have(
    stream: &mut PeerStream,
    dir: &std::path::Path,
    r: HaveRequest,
) -> Result<(), crate::overlay::OverlayError> {
    match read_sidecar(dir, &r.sha256) {
        Some(s) if s.have.count() > 0 => {
            let have = Have {
                sha256: r.sha256,
                chunks: Blob(s.have.as_bytes().to_vec()),
            };
            stream.send(&Message::Have(have)).await
        }
        _ => {
            stream
                .send_error(ErrorCode::NotFound, "no chunk of this artifact here")
                .await
        }
    }
}

async fn answer_fetch(
    stream: &mut PeerStream,
    dir: &std::path::Path,
    overlay: &Overlay,
    bucket: &Mutex<Bucket>,
    r: FetchBlob,
) -> Result<(), crate::overlay::OverlayError> {
    let Some(sidecar) = read_sidecar(dir, &r.sha256) else {
        return stream
            .send_error(ErrorCode::NotFound, "no chunk of this artifact here")
            .await;
    };
    if !r.offset.is_multiple_of(sidecar.chunk_size)
        || r.max_len > sidecar.chunk_size
        || r.max_len == 0
    {
        let why = format!(
            "fetch_blob on the overlay takes a chunk: offset a multiple of {} and max_len at most that",
            sidecar.chunk_size
        );
        return stream.send_error(ErrorCode::InvalidMessage, why).await;
    }
    let (d, sha, offset, len) = (dir.to_owned(), r.sha256, r.offset, r.max_len);
    let bytes = tokio::task::spawn_blocking(move || read_chunk(&d, &sha, offset, len))
        .await
        .map_err(std::io::Error::other)?;
    let bytes = match bytes {
        Ok(Some(b)) => b,
        Ok(None) => {
            return stream
                .send_error(ErrorCode::NotFound, "this chunk is not here")
                .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a cached chunk");
            return stream
                .send_error(ErrorCode::NotFound, "this chunk cannot be read")
                .await;
        }
    };
    let granted = bucket
        .lock()
        .map(|mut b| b.take(bytes.len() as u64, Instant::now()))
        .unwrap_or(false);
    if !granted {
        return stream
            .send_error(ErrorCode::Busy, "over this node's upload budget")
            .await;
    }
    OverlayStats::add(&overlay.stats().budget_used, bytes.len() as u64);
    let mut at = r.offset;
    for piece in bytes.chunks(MAX_CHUNK) {
        let chunk = BlobChunk {
            sha256: r.sha256,
            offset: at,
            total_len: sidecar.length,
            data: Blob(piece.to_vec()),
        };
        stream.send(&Message::BlobChunk(chunk)).await?;
        OverlayStats::add(&overlay.stats().artifact_up, piece.len() as u64);
        at += piece.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_holds_two_seconds_and_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(20); // 2.5 MB/s, 5 MB burst
        assert!(b.take(5_000_000, t0));
        assert!(!b.take(1, t0));
        assert!(!b.take(1_000_000, t0 + std::time::Duration::from_millis(100)));
        assert!(b.take(1_000_000, t0 + std::time::Duration::from_millis(500)));
    }
}
