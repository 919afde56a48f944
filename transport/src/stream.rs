//! Framed protocol messages over a QUIC bidirectional stream.

use hearth_protocol::frame::{self, FrameDecoder, FrameError};
use hearth_protocol::{Envelope, Message};

/// Why a message could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The peer's frame is invalid.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Reading failed (connection lost, stream reset).
    #[error("read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// Writing failed.
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream was already finished.
    #[error("stream closed")]
    Closed,
}

/// Most bytes taken from QUIC per read. What the decoder holds stays under one frame plus this.
const READ_CHUNK: usize = 64 * 1024;

/// One bidirectional stream carrying framed messages.
///
/// The bytes of a frame being read live in the stream (its [`FrameDecoder`]), not in the
/// future of [`recv`](Self::recv), so a `recv` dropped midway (raced in `select!` against a
/// tick or an outbox) loses nothing: the next call goes on where it stopped.
#[derive(Debug)]
pub struct MessageStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    max_frame: usize,
    decoder: FrameDecoder,
    /// The unrecoverable frame error met, returned again by every later `recv`.
    broken: Option<FrameError>,
}

impl MessageStream {
    /// Wraps a stream; frames over `max_frame` bytes are refused both ways.
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream, max_frame: usize) -> Self {
        Self {
            send,
            recv,
            max_frame,
            decoder: FrameDecoder::new(max_frame),
            broken: None,
        }
    }

    /// The next message; `Ok(None)` when the peer finished the stream between frames.
    ///
    /// Cancel-safe: dropping the future before it completes loses no byte of the stream.
    pub async fn recv(&mut self) -> Result<Option<Message>, StreamError> {
        loop {
            if let Some(e) = &self.broken {
                return Err(e.clone().into());
            }
            match self.decoder.next_message() {
                Ok(Some(message)) => return Ok(Some(message)),
                Ok(None) => {}
                Err(e) => {
                    if !e.is_recoverable() {
                        self.broken = Some(e.clone());
                    }
                    return Err(e.into());
                }
            }
            // `read_chunk` is cancel-safe: a dropped read consumes nothing.
            match self.recv.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.decoder.push(&chunk.bytes),
                None => {
                    return match self.decoder.finish() {
                        Ok(()) => Ok(None),
                        Err(e) => {
                            self.broken = Some(e.clone());
                            Err(e.into())
                        }
                    };
                }
            }
        }
    }

    /// Sends one message at protocol version 1.
    pub async fn send(&mut self, message: &Message) -> Result<(), StreamError> {
        let bytes = frame::encode(message, self.max_frame)?;
        self.send.write_all(&bytes).await?;
        Ok(())
    }

    /// Sends an envelope as is (a hello at the node's lowest version, tests of old peers).
    pub async fn send_envelope(&mut self, envelope: &Envelope) -> Result<(), StreamError> {
        let bytes = frame::encode_envelope(envelope, self.max_frame)?;
        self.send.write_all(&bytes).await?;
        Ok(())
    }

    /// Sends raw bytes (for tests of malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// Sends this stream's data before that of lower-priority streams (default 0). The control
    /// stream outranks bulk fetches, so acks and desired states never queue behind a blob.
    pub fn set_priority(&self, priority: i32) {
        let _ = self.send.set_priority(priority);
    }

    /// Finishes the sending side.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        self.send.finish().map_err(|_| StreamError::Closed)
    }
}
