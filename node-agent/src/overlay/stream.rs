//! Overlay streams: framed messages (SPEC §3) over a libp2p stream, then raw bytes; and the
//! accept loop that reads each incoming stream's first frame and hands it to its consumer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::StreamExt as _;
use hearth_protocol::frame::{self, FrameError, HEADER_LEN};
use hearth_protocol::{DEFAULT_MAX_FRAME, ErrorCode, ErrorMessage, Message};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt as _};
use tracing::Instrument as _;

use super::{FIRST_FRAME_TIMEOUT, Incoming, OverlayError, admission};

/// Most bytes read from the stream at once.
const READ_CHUNK: usize = 64 * 1024;
/// Incoming streams whose first frame is being read at once; more wait.
const ACCEPTING: usize = 256;

/// One `/hearth/overlay/1` stream: frames first, then (for replica links) raw bytes.
pub struct PeerStream {
    io: Compat<libp2p::Stream>,
    buf: Vec<u8>,
    max_frame: usize,
    eof: bool,
}

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerStream")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl PeerStream {
    /// Wraps a libp2p stream; frames over [`DEFAULT_MAX_FRAME`] are refused both ways.
    pub fn new(stream: libp2p::Stream) -> Self {
        Self {
            io: stream.compat(),
            buf: Vec::new(),
            max_frame: DEFAULT_MAX_FRAME,
            eof: false,
        }
    }

    /// The next message; `Ok(None)` when the peer finished the stream between frames.
    /// Cancel-safe: bytes read stay in the stream.
    pub async fn recv(&mut self) -> Result<Option<Message>, OverlayError> {
        loop {
            if let Some(header) = self
                .buf
                .get(..HEADER_LEN)
                .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
            {
                let len = frame::payload_len(header, self.max_frame)?;
                if let Some(payload) = self.buf.get(HEADER_LEN..HEADER_LEN + len) {
                    let message = frame::decode_payload(payload);
                    self.buf.drain(..HEADER_LEN + len);
                    return Ok(Some(message?));
                }
            }
            if self.eof {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated {
                        expected: HEADER_LEN,
                        got: self.buf.len(),
                    }
                    .into())
                };
            }
            let mut chunk = vec![0u8; READ_CHUNK];
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                self.eof = true;
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, m: &Message) -> Result<(), OverlayError> {
        let bytes = frame::encode(m, self.max_frame)?;
        self.io.write_all(&bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends raw bytes between frames (a `backup_object`'s body).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), OverlayError> {
        self.io.write_all(bytes).await?;
        Ok(())
    }

    /// Reads exactly `len` raw bytes between frames (bytes already buffered first). Not
    /// cancel-safe: use it only outside a `select!`.
    pub async fn recv_raw(&mut self, len: usize) -> Result<Vec<u8>, OverlayError> {
        let mut out = Vec::with_capacity(len);
        let from_buf = self.buf.len().min(len);
        out.extend(self.buf.drain(..from_buf));
        if out.len() < len {
            let start = out.len();
            out.resize(len, 0);
            if let Some(rest) = out.get_mut(start..) {
                self.io.read_exact(rest).await?;
            }
        }
        Ok(out)
    }

    /// Sends an `error` with this code and sentence.
    pub async fn send_error(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), OverlayError> {
        self.send(&Message::Error(ErrorMessage {
            code,
            message: message.into(),
            fatal: false,
        }))
        .await
    }

    /// Finishes the sending side (the peer reads end of stream).
    pub async fn finish(&mut self) -> Result<(), OverlayError> {
        self.io.shutdown().await?;
        Ok(())
    }

    /// The raw byte stream after the framed part (bytes already buffered come first).
    pub fn into_io(self) -> impl AsyncRead + AsyncWrite + Unpin + Send {
        RawIo {
            buffered: self.buf,
            pos: 0,
            io: self.io,
        }
    }
}

/// The stream after its frames: buffered bytes first, then the stream.
struct RawIo {
    buffered: Vec<u8>,
    pos: usize,
    io: Compat<libp2p::Stream>,
}

impl AsyncRead for RawIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.buffered.get(this.pos..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(out.remaining());
            out.put_slice(rest.get(..n).unwrap_or_default());
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, out)
    }
}

impl AsyncWrite for RawIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Reads the first frame of every incoming stream (bounded in time and size) and hands the
/// stream to the artifact or replica consumer; anything else gets `error unexpected_message`.
pub(super) async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    artifacts: mpsc::Sender<Incoming>,
    replicas: mpsc::Sender<Incoming>,
    backups: mpsc::Sender<Incoming>,
) {
    let permits = Arc::new(Semaphore::new(ACCEPTING));
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(from) = admission::node_of(&peer) else {
            tracing::debug!(%peer, "stream from a peer that is not a node dropped");
            continue;
        };
        let (artifacts, replicas, backups) = (artifacts.clone(), replicas.clone(), backups.clone());
        let span = tracing::debug_span!("overlay_in", peer = %from);
        tokio::spawn(
            async move {
                let _permit = permit;
                let mut stream = PeerStream::new(stream);
                let first = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, stream.recv()).await {
                    Err(_) => {
                        tracing::debug!(peer = %from, "no first frame in time");
                        return;
                    }
                    Ok(Ok(None)) => return,
                    Ok(Err(e)) => {
                        let code = match &e {
                            OverlayError::Frame(f) => f.code(),
                            _ => ErrorCode::InvalidMessage,
                        };
                        let _ = stream.send_error(code, e.to_string()).await;
                        let _ = stream.finish().await;
                        return;
                    }
                    Ok(Ok(Some(m))) => m,
                };
                let to = match &first {
                    Message::HaveRequest(_) | Message::FetchBlob(_) => &artifacts,
                    Message::ReplicaOpen(_) => &replicas,
                    Message::BackupOffer(_) | Message::BackupGet(_) => &backups,
                    other => {
                        let what = other.type_tag();
                        let _ = stream
                            .send_error(
                                ErrorCode::UnexpectedMessage,
                                format!(
                                    "`{what}` does not open an overlay stream (have_request, \
                                 fetch_blob, replica_open, backup_offer or backup_get do)"
                                ),
                            )
                            .await;
                        let _ = stream.finish().await;
                        return;
                    }
                };
                match to.try_send(Incoming {
                    from,
                    first,
                    stream,
                }) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(mut i))
                    | Err(mpsc::error::TrySendError::Closed(mut i)) => {
                        let _ = i
                            .stream
                            .send_error(ErrorCode::Busy, "too many overlay requests queued; retry")
                            .await;
                        let _ = i.stream.finish().await;
                    }
                }
            }
            .instrument(span),
        );
    }
}
