//! Framed protocol messages over a QUIC bidirectional stream.

use hearth_protocol::frame::{self, FrameError, HEADER_LEN};
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

/// One bidirectional stream carrying framed messages.
#[derive(Debug)]
pub struct MessageStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    max_frame: usize,
}

impl MessageStream {
    /// Wraps a stream; frames over `max_frame` bytes are refused both ways.
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream, max_frame: usize) -> Self {
        Self {
            send,
            recv,
            max_frame,
        }
    }

    /// The next message; `Ok(None)` when the peer finished the stream between frames.
    pub async fn recv(&mut self) -> Result<Option<Message>, StreamError> {
        let mut header = [0u8; HEADER_LEN];
        if !read_full(&mut self.recv, &mut header, 0).await? {
            return Ok(None);
        }
        let len = frame::payload_len(header, self.max_frame)?;
        let mut payload = vec![0u8; len];
        if !read_full(&mut self.recv, &mut payload, HEADER_LEN).await? && len > 0 {
            return Err(FrameError::Truncated {
                expected: HEADER_LEN + len,
                got: HEADER_LEN,
            }
            .into());
        }
        Ok(Some(frame::decode_payload(&payload)?))
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

/// Fills `buf`. Returns false if the stream ended before the first byte; an end after some
/// bytes is a truncated frame (`already` counts bytes of this frame read before `buf`).
async fn read_full(
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
    already: usize,
) -> Result<bool, StreamError> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match recv.read(rest).await? {
            Some(n) => filled += n,
            None if filled == 0 => return Ok(false),
            None => {
                return Err(FrameError::Truncated {
                    expected: already + buf.len(),
                    got: already + filled,
                }
                .into());
            }
        }
    }
    Ok(true)
}
