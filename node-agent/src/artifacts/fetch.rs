//! The driver of the chunk planner: asks the master for providers and peers for their `have`,
//! fetches the chunks the planner names (from a peer over an overlay stream, or from the master
//! on its own session stream), checks each against the signed manifest before it is written,
//! and hashes the whole file at the end against the recipe's SHA-256.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_core::chunks::{Action, Config, Event, Plan, Source};
use hearth_protocol::messages::fetch::FetchBlob;
use hearth_protocol::messages::overlay::HaveRequest;
use hearth_protocol::{ErrorCode, Message, NodeId, Sha256};
use hearth_recipes::repo::chunks::ChunkManifest;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::Artifacts;
use super::store::{Partial, StoreError};
use crate::fetcher::{FetchError, Fetcher};
use crate::overlay::{Overlay, OverlayStats};

/// How long a `have_request` may take.
pub const HAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one chunk may take.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the planner is ticked.
const TICK: Duration = Duration::from_millis(200);

/// How a request ended.
enum Outcome {
    Providers(Vec<NodeId>),
    Have(NodeId, Option<Vec<u8>>),
    Chunk(Source, usize, Got),
}

enum Got {
    Bytes(Vec<u8>),
    Bad,
    Busy,
    Failed(String),
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> Self {
        FetchError::Io(std::io::Error::other(e.to_string()))
    }
}

/// Fetches artifact `sha256` (described by `manifest`) into the cache; returns the whole file.
pub async fn fetch(
    ctx: &Artifacts,
    fetcher: &Fetcher,
    sha256: &Sha256,
    manifest: &ChunkManifest,
) -> Result<PathBuf, FetchError> {
    let whole = ctx.dir.join(sha256.to_string());
    if whole.exists() {
        return Ok(whole);
    }
    let manifest = Arc::new(manifest.clone());
    let (dir, sha, m) = (ctx.dir.clone(), *sha256, manifest.clone());
    let mut partial = tokio::task::spawn_blocking(move || Partial::open(&dir, &sha, &m))
        .await
        .map_err(std::io::Error::other)??;
    let local = ctx.overlay.local();
    let digest = Sha256::digest(&[local.as_bytes().as_slice(), sha256.0.as_slice()].concat());
    let seed = digest
        .0
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes);
    let mut plan = Plan::new(Config::default(), partial.held().clone(), seed);
    let started = Instant::now();
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut events = vec![Event::Tick];
    let mut tick = tokio::time::interval(TICK);
    let (mut from_peers, mut from_master) = (0u32, 0u32);
    loop {
        for event in events.drain(..) {
            let now = started.elapsed().as_millis() as u64;
            for action in plan.step(now, event) {
                match action {
                    Action::Done => {
                        let path = finish(partial, sha256).await?;
                        ctx.changed.notify_one();
                        tracing::info!(%sha256, from_peers, from_master, "artifact fetched by chunks");
                        return Ok(path);
                    }
                    Action::GiveUp => {
                        return Err(FetchError::Transfer {
                            sha256: *sha256,
                            reason: "the master failed three times in a row".into(),
                        });
                    }
                    Action::AskProviders => {
                        let (f, sha) = (fetcher.clone(), *sha256);
                        tasks.spawn(async move {
                            let peers = match f.providers(&sha).await {
                                Ok(p) => p,
                                Err(e) => {
                                    tracing::debug!(error = %e, "providers_request failed");
                                    Vec::new()
                                }
                            };
                            Outcome::Providers(peers.into_iter().filter(|p| *p != local).collect())
                        });
                    }
                    Action::AskHave(peer) => {
                        let (o, sha) = (ctx.overlay.clone(), *sha256);
                        let span = tracing::debug_span!("peer", %peer);
                        tasks.spawn(
                            async move { Outcome::Have(peer, have(&o, peer, sha).await) }
                                .instrument(span),
                        );
                    }
                    Action::Fetch { source, index } => {
                        let Some((offset, len)) = manifest.range(index) else {
                            continue;
                        };
                        match source {
                            Source::Peer(_) => from_peers += 1,
                            Source::Master => from_master += 1,
                        }
                        let (o, f, sha, m) = (
                            ctx.overlay.clone(),
                            fetcher.clone(),
                            *sha256,
                            manifest.clone(),
                        );
                        tasks.spawn(async move {
                            let got = tokio::time::timeout(
                                CHUNK_TIMEOUT,
                                chunk(&o, &f, source, sha, offset, len),
                            )
                            .await
                            .unwrap_or_else(|_| Err(Got::Failed("timed out".into())));
                            let got = match got {
                                Ok(bytes) if m.check(index, &bytes) => Got::Bytes(bytes),
                                Ok(_) => Got::Bad,
                                Err(g) => g,
                            };
                            Outcome::Chunk(source, index, got)
                        });
                    }
                }
            }
        }
        tokio::select! {
            Some(done) = tasks.join_next() => {
                let Ok(outcome) = done else { continue };
                if let Outcome::Chunk(Source::Master, index, Got::Bad) = &outcome {
                    tracing::warn!(%sha256, index, "chunk from the master refused: it does not match the signed manifest");
                    return Err(FetchError::ChunkMismatch { sha256: *sha256, index: *index });
                }
                events.push(match outcome {
                    Outcome::Providers(p) => Event::Providers(p),
                    Outcome::Have(peer, Some(chunks)) => Event::Have { peer, chunks },
                    Outcome::Have(peer, None) => Event::HaveFailed { peer },
                    Outcome::Chunk(source, index, Got::Bytes(bytes)) => {
                        partial.write(index, &bytes)?;
                        if let Source::Peer(_) = source {
                            OverlayStats::add(&ctx.overlay.stats().artifact_down, bytes.len() as u64);
                        }
                        ctx.changed.notify_one();
                        Event::ChunkOk { source, index }
                    }
                    Outcome::Chunk(source, index, Got::Bad) => {
                        tracing::warn!(%sha256, index, ?source, "chunk refused: it does not match the signed manifest");
                        OverlayStats::add(&ctx.overlay.stats().chunks_refused, 1);
                        Event::ChunkBad { source, index }
                    }
                    Outcome::Chunk(Source::Peer(peer), index, Got::Busy) => Event::ChunkBusy { peer, index },
                    Outcome::Chunk(Source::Master, index, Got::Busy) => Event::MasterBusy { index },
                    Outcome::Chunk(source, index, Got::Failed(reason)) => {
                        tracing::debug!(%sha256, index, ?source, %reason, "chunk request failed");
                        Event::ChunkFailed { source, index }
                    }
                });
            }
            _ = tick.tick() => events.push(Event::Tick),
        }
    }
}

/// Hashes the whole part file; makes it the cached file if it matches.
async fn finish(partial: Partial, sha256: &Sha256) -> Result<PathBuf, FetchError> {
    let expected = *sha256;
    tokio::task::spawn_blocking(move || {
        let got = crate::fetcher::hash_file(partial.part_path())?;
        if got != expected {
            partial.discard();
            return Err(FetchError::HashMismatch { expected, got });
        }
        Ok(partial.finish()?)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A peer's `have` bitmap, or `None`.
async fn have(overlay: &Overlay, peer: NodeId, sha256: Sha256) -> Option<Vec<u8>> {
    let ask = async {
        let mut s = overlay.open(peer).await.ok()?;
        s.send(&Message::HaveRequest(HaveRequest { sha256 }))
            .await
            .ok()?;
        let _ = s.finish().await;
        match s.recv().await.ok()? {
            Some(Message::Have(h)) if h.sha256 == sha256 => Some(h.chunks.0),
            _ => None,
        }
    };
    tokio::time::timeout(HAVE_TIMEOUT, ask).await.ok().flatten()
}

/// One chunk's bytes, unchecked.
async fn chunk(
    overlay: &Overlay,
    fetcher: &Fetcher,
    source: Source,
    sha256: Sha256,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, Got> {
    let peer = match source {
        Source::Master => {
            return fetcher
                .range(&sha256, offset, len)
                .await
                .map_err(|e| match e {
                    FetchError::Busy { .. } => Got::Busy,
                    e => Got::Failed(e.to_string()),
                });
        }
        Source::Peer(p) => p,
    };
    let failed = |e: &dyn std::fmt::Display| Got::Failed(e.to_string());
    let mut s = overlay.open(peer).await.map_err(|e| failed(&e))?;
    let request = FetchBlob {
        sha256,
        offset,
        max_len: len,
    };
    s.send(&Message::FetchBlob(request))
        .await
        .map_err(|e| failed(&e))?;
    let _ = s.finish().await;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    while (out.len() as u64) < len {
        match s.recv().await.map_err(|e| failed(&e))? {
            Some(Message::BlobChunk(c))
                if c.sha256 == sha256 && c.offset == offset + out.len() as u64 =>
            {
                if c.data.0.is_empty() || out.len() as u64 + c.data.0.len() as u64 > len {
                    return Err(Got::Bad);
                }
                out.extend_from_slice(&c.data.0);
            }
            Some(Message::Error(e)) if e.code == ErrorCode::Busy => return Err(Got::Busy),
            Some(Message::Error(e)) => return Err(Got::Failed(e.message)),
            Some(other) => return Err(Got::Failed(format!("unexpected {}", other.type_tag()))),
            None => return Err(Got::Failed("stream ended early".into())),
        }
    }
    Ok(out)
}
