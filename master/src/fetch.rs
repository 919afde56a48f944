//! Serving fetch streams: `fetch_blob` → `blob_chunk`s, `fetch_metadata` → `metadata`, and
//! `providers_request` → `providers` (SPEC §16.4), each on its own stream.
//!
//! A request that cannot be decoded is answered with a non-fatal `error` when the frame
//! boundary is still known; when it is lost (`frame_too_large`, `truncated_frame`) the answer
//! is fatal and the connection is closed with code 1 (SPEC §4.2).

use std::io::{Read as _, Seek as _, SeekFrom};

use hearth_protocol::frame::MAX_CHUNK;
use hearth_protocol::messages::fetch::{BlobChunk, FetchBlob, Metadata};
use hearth_protocol::messages::overlay::Providers;
use hearth_protocol::{Blob, ErrorCode, Message, NodeId};
use hearth_transport::{MessageStream, StreamError};

use crate::context::Context;
use crate::overlay::ration::{Request, Verdict};

/// Answers one fetch stream of `conn`.
pub async fn serve_fetch(
    ctx: &Context,
    conn: &quinn::Connection,
    node: NodeId,
    mut stream: MessageStream,
) {
    let reply = match stream.recv().await {
        Ok(Some(Message::ProvidersRequest(req))) => Some(Message::Providers(Providers {
            peers: ctx.overlay.holdings.providers(&req.sha256, &node),
            sha256: req.sha256,
        })),
        Ok(Some(Message::FetchBlob(req))) => send_blob(ctx, node, &mut stream, &req).await.err(),
        Ok(Some(Message::FetchMetadata(m))) => Some(metadata_reply(ctx, m.file)),
        Ok(Some(other)) => Some(Message::error(
            ErrorCode::UnexpectedMessage,
            format!(
                "a fetch stream takes fetch_blob, fetch_metadata or providers_request, not {}",
                other.type_tag()
            ),
            false,
        )),
        Ok(None) => return,
        Err(StreamError::Frame(e)) if !e.is_recoverable() => {
            ctx.metrics.frame_error(e.code().as_str());
            crate::session::close_fatally(conn, &mut stream, e.code(), &e.to_string()).await;
            return;
        }
        Err(StreamError::Frame(e)) => {
            ctx.metrics.frame_error(e.code().as_str());
            Some(Message::error(e.code(), e.to_string(), false))
        }
        Err(_) => return,
    };
    if let Some(reply) = reply {
        let _ = stream.send(&reply).await;
    }
    let _ = stream.finish();
}

/// The `busy` answer to a chunk request that a peer can serve (SPEC §16.4, [`ration`]), or
/// `None` to serve it.
///
/// [`ration`]: crate::overlay::ration
fn ration(ctx: &Context, node: NodeId, req: &FetchBlob, total: u64) -> Option<Message> {
    let holdings = &ctx.overlay.holdings;
    let request = Request {
        asker: node,
        sha256: req.sha256,
        offset: req.offset,
        // A chunk's range: inside the blob and less than all of it (a whole or resumed
        // download asks past the end).
        ranged: req.max_len < total && req.offset.saturating_add(req.max_len) <= total,
        asker_in_overlay: holdings.reported(&node),
    };
    if !request.ranged || !request.asker_in_overlay {
        return None;
    }
    let whole = holdings.whole_holder(&req.sha256, &node);
    let now = ctx.overlay.now_ms();
    let verdict = ctx
        .overlay
        .ration
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .decide(now, request, whole, |n| holdings.reported(n));
    match verdict {
        Verdict::Serve => None,
        Verdict::Busy { peer, retry_ms } => {
            ctx.metrics.chunks_rationed.inc();
            Some(Message::error(
                ErrorCode::Busy,
                format!(
                    "peer {peer} can serve blob {} at offset {}: fetch it from the overlay, or ask \
                     the master again in {retry_ms} ms",
                    req.sha256, req.offset
                ),
                false,
            ))
        }
    }
}

/// The answer to `fetch_metadata` for `file`: its bytes, or a non-fatal `not_found`.
pub fn metadata_reply(ctx: &Context, file: String) -> Message {
    match ctx.repository.get(&file) {
        Ok(Some(data)) => Message::Metadata(Metadata {
            file,
            data: Blob(data),
        }),
        Ok(None) => Message::error(
            ErrorCode::NotFound,
            format!("no signed repository metadata `{file}` is published"),
            false,
        ),
        Err(e) => Message::error(ErrorCode::Internal, e.to_string(), false),
    }
}

async fn send_blob(
    ctx: &Context,
    node: NodeId,
    stream: &mut MessageStream,
    req: &FetchBlob,
) -> Result<(), Message> {
    if ctx.blobs.size(&req.sha256).is_none() && ctx.store.shared() {
        // Uploaded through another master and not copied here yet: copy it now (rare, and on
        // the multi-threaded session runtime, so blocking this worker is allowed).
        tokio::task::block_in_place(|| crate::shared_files::ensure_blob(ctx, &req.sha256));
    }
    let path = ctx.blobs.path(&req.sha256);
    let not_found = || {
        Message::error(
            ErrorCode::NotFound,
            format!("no blob {}", req.sha256),
            false,
        )
    };
    let mut file = std::fs::File::open(&path).map_err(|_| not_found())?;
    let total = file.metadata().map_err(|_| not_found())?.len();
    let end = total.min(req.offset.saturating_add(req.max_len));
    if let Some(busy) = ration(ctx, node, req, total) {
        return Err(busy);
    }
    let mut offset = req.offset.min(total);
    file.seek(SeekFrom::Start(offset))
        .map_err(|_| not_found())?;
    loop {
        let want = usize::try_from((end - offset).min(MAX_CHUNK as u64)).unwrap_or(MAX_CHUNK);
        let mut data = vec![0u8; want];
        file.read_exact(&mut data).map_err(|e| {
            Message::error(ErrorCode::Internal, format!("reading blob: {e}"), false)
        })?;
        let chunk = BlobChunk {
            sha256: req.sha256,
            offset,
            total_len: total,
            data: Blob(data),
        };
        if stream.send(&Message::BlobChunk(chunk)).await.is_err() {
            return Ok(()); // the node went away
        }
        ctx.metrics.blob_bytes_sent.inc_by(want as u64);
        offset += want as u64;
        if offset >= end {
            return Ok(());
        }
    }
}
