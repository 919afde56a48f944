//! Framing on QUIC streams: a 4-byte big-endian length, then that many bytes of JSON envelope.
//!
//! Sans-IO: [`FrameDecoder`] is fed bytes as they arrive and yields messages; the length is
//! checked against the limit before anything is buffered for the frame, so a peer cannot make
//! the receiver allocate more than `4 + max_frame` bytes plus what the caller pushed at once.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::messages::error::ErrorCode;
use crate::messages::{Envelope, Message};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Default and recommended maximum frame payload, 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// Largest `data` a `blob_chunk` carries, so that a chunk frame stays under the default limit.
pub const MAX_CHUNK: usize = 512 * 1024;
/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// A frame that could not be decoded. Each has a distinct [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header declares more bytes than the limit. The stream cannot be resynchronised.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    /// The input ended inside a frame.
    #[error("stream ended inside a frame: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    /// The payload is not a JSON object with `v`, `type` and `body`.
    #[error("frame is not a JSON envelope: {0}")]
    InvalidJson(String),
    /// The envelope's version is not one this side speaks.
    #[error("protocol version {got} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { got: u64 },
    /// The envelope's `type` is not a message of this version.
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    /// The body does not match the fields of its message type.
    #[error("invalid `{tag}` message: {reason}")]
    InvalidMessage { tag: String, reason: String },
}

impl FrameError {
    /// The stable protocol error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::Truncated { .. } => ErrorCode::TruncatedFrame,
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::UnknownType(_) => ErrorCode::UnknownMessageType,
            Self::InvalidMessage { .. } => ErrorCode::InvalidMessage,
        }
    }

    /// Whether the stream can go on after this error (the frame boundary is still known).
    pub fn is_recoverable(&self) -> bool {
        !matches!(self, Self::TooLarge { .. } | Self::Truncated { .. })
    }
}

/// Encodes a message as one frame at [`PROTOCOL_VERSION`].
pub fn encode(message: &Message, max_frame: usize) -> Result<Vec<u8>, FrameError> {
    let envelope = Envelope {
        v: PROTOCOL_VERSION,
        message: message.clone(),
    };
    encode_envelope(&envelope, max_frame)
}

/// Encodes an envelope as one frame, refusing payloads over `max_frame`.
pub fn encode_envelope(envelope: &Envelope, max_frame: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut out, envelope).map_err(|e| FrameError::InvalidMessage {
        tag: envelope.message.type_tag().to_owned(),
        reason: e.to_string(),
    })?;
    let len = out.len() - HEADER_LEN;
    let header =
        u32::try_from(len)
            .ok()
            .filter(|_| len <= max_frame)
            .ok_or(FrameError::TooLarge {
                len: len as u64,
                max: max_frame,
            })?;
    out.splice(..HEADER_LEN, header.to_be_bytes());
    Ok(out)
}

/// Reads a frame header, checking the declared length against the limit.
pub fn payload_len(header: [u8; HEADER_LEN], max_frame: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    usize::try_from(len)
        .ok()
        .filter(|len| *len <= max_frame)
        .ok_or(FrameError::TooLarge {
            len: u64::from(len),
            max: max_frame,
        })
}

/// Decodes one frame payload (without its header).
pub fn decode_payload(payload: &[u8]) -> Result<Message, FrameError> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        v: u64,
        #[serde(rename = "type", borrow)]
        tag: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        body: &'a RawValue,
    }
    let raw: Raw<'_> =
        serde_json::from_slice(payload).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
    if raw.v != u64::from(PROTOCOL_VERSION) {
        return Err(FrameError::UnsupportedVersion { got: raw.v });
    }
    match Message::from_tagged_body(&raw.tag, raw.body.get()) {
        None => Err(FrameError::UnknownType(raw.tag.chars().take(64).collect())),
        Some(Err(e)) => Err(FrameError::InvalidMessage {
            tag: raw.tag.into_owned(),
            reason: e.to_string(),
        }),
        Some(Ok(message)) => Ok(message),
    }
}

/// Decodes the first frame of a complete buffer, returning it and the bytes it used.
pub fn decode(buf: &[u8], max_frame: usize) -> Result<(Message, usize), FrameError> {
    let header: [u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated {
            expected: HEADER_LEN,
            got: buf.len(),
        })?;
    let len = payload_len(header, max_frame)?;
    let payload = buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(FrameError::Truncated {
            expected: HEADER_LEN + len,
            got: buf.len(),
        })?;
    decode_payload(payload).map(|m| (m, HEADER_LEN + len))
}

/// Incremental decoder for a byte stream.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder refusing frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. After an
    /// unrecoverable error the decoder stays failed and yields nothing more.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if self.failed {
            return Ok(None);
        }
        let Some(header) = self
            .buf
            .get(..HEADER_LEN)
            .and_then(|h| <[u8; 4]>::try_from(h).ok())
        else {
            return Ok(None);
        };
        let len = match payload_len(header, self.max_frame) {
            Ok(len) => len,
            Err(e) => {
                self.fail();
                return Err(e);
            }
        };
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let result = self
            .buf
            .get(HEADER_LEN..HEADER_LEN + len)
            .map(decode_payload);
        self.buf.drain(..HEADER_LEN + len);
        result.transpose()
    }

    /// Call at end of stream: an error if a frame was cut off.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.failed || self.buf.is_empty() {
            return Ok(());
        }
        let expected = self
            .buf
            .get(..HEADER_LEN)
            .and_then(|h| <[u8; 4]>::try_from(h).ok())
            .map_or(HEADER_LEN, |h| HEADER_LEN + u32::from_be_bytes(h) as usize);
        Err(FrameError::Truncated {
            expected,
            got: self.buf.len(),
        })
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn fail(&mut self) {
        self.failed = true;
        self.buf = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::session::HeartbeatAck;

    fn ack(seq: u64) -> Message {
        Message::HeartbeatAck(HeartbeatAck { seq })
    }

    #[test]
    fn decoder_yields_frames_split_at_every_byte() {
        let mut bytes = encode(&ack(1), DEFAULT_MAX_FRAME).unwrap_or_default();
        bytes.extend(encode(&ack(2), DEFAULT_MAX_FRAME).unwrap_or_default());
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for b in &bytes {
            dec.push(std::slice::from_ref(b));
            while let Ok(Some(m)) = dec.next_message() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![ack(1), ack(2)]);
        assert_eq!(dec.finish(), Ok(()));
    }

    #[test]
    fn oversized_header_fails_before_buffering_and_poisons() {
        let mut dec = FrameDecoder::new(16);
        dec.push(&1000u32.to_be_bytes());
        assert_eq!(
            dec.next_message(),
            Err(FrameError::TooLarge { len: 1000, max: 16 })
        );
        dec.push(&[0; 100]);
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.next_message(), Ok(None));
    }

    #[test]
    fn encode_refuses_frames_over_the_limit() {
        assert!(matches!(
            encode(&ack(1), 10),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn recoverable_errors_consume_the_frame() {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let bad = br#"{"v":1,"type":"nope","body":{}}"#;
        dec.push(&(bad.len() as u32).to_be_bytes());
        dec.push(bad);
        dec.push(&encode(&ack(3), DEFAULT_MAX_FRAME).unwrap_or_default());
        assert_eq!(
            dec.next_message(),
            Err(FrameError::UnknownType("nope".into()))
        );
        assert_eq!(dec.next_message(), Ok(Some(ack(3))));
    }

    #[test]
    fn truncated_stream_is_reported_at_finish() {
        let bytes = encode(&ack(1), DEFAULT_MAX_FRAME).unwrap_or_default();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.push(&bytes[..bytes.len() - 1]);
        assert_eq!(dec.next_message(), Ok(None));
        assert!(matches!(dec.finish(), Err(FrameError::Truncated { .. })));
    }
}
