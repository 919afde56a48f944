//! `MessageStream::recv` is raced in `select!` against ticks and outboxes, so a read dropped in
//! the middle of a frame must lose nothing: the next `recv` returns the whole message.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::frame::FrameError;
use hearth_protocol::messages::fetch::BlobChunk;
use hearth_protocol::messages::session::HeartbeatAck;
use hearth_protocol::{Blob, DEFAULT_MAX_FRAME, MasterId, Message, NodeId, SecretKey, Sha256};
use hearth_transport::{
    Admission, Identity, MessageStream, NodeGate, Purpose, SERVER_NAME, StreamError,
    TransportTuning, client_config, client_endpoint, server_endpoint,
};

/// Long enough for loopback to deliver what was written before the read is dropped.
const CANCEL_AFTER: Duration = Duration::from_millis(300);

struct AdmitAll;

impl Admission for AdmitAll {
    fn admits(&self, _node: &NodeId) -> bool {
        true
    }
}

/// A connected pair of streams over real loopback QUIC: (the writer, the reader).
async fn pair() -> (
    MessageStream,
    MessageStream,
    quinn::Endpoint,
    quinn::Endpoint,
) {
    let master_key = SecretKey::generate();
    let identity = Identity::new(&master_key, "hearth-master").unwrap();
    let tuning = TransportTuning::default();
    let gate = NodeGate::new(Arc::new(AdmitAll));
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = server_endpoint(any, &identity, gate, &tuning).unwrap();
    let addr = server.local_addr().unwrap();
    let client = client_endpoint(any).unwrap();
    let node = Identity::new(&SecretKey::generate(), "node").unwrap();
    let pin = MasterId::from_key(master_key.public());
    let config = client_config(Purpose::Session, Some(&node), pin, &tuning).unwrap();
    let connecting = client.connect_with(config, addr, SERVER_NAME).unwrap();
    // The server takes the connection while the client's handshake runs.
    let (conn, incoming) = tokio::join!(connecting, async {
        server.accept().await.unwrap().await.unwrap()
    });
    let (send, recv) = conn.unwrap().open_bi().await.unwrap();
    let mut writer = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    // The peer sees the stream only once something is written on it.
    writer
        .send(&Message::HeartbeatAck(HeartbeatAck { seq: 0 }))
        .await
        .unwrap();
    let (send, recv) = incoming.accept_bi().await.unwrap();
    let mut reader = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    assert_eq!(
        reader.recv().await.unwrap(),
        Some(Message::HeartbeatAck(HeartbeatAck { seq: 0 }))
    );
    (writer, reader, server, client)
}

#[tokio::test]
async fn a_recv_cancelled_mid_frame_loses_nothing() {
    let (mut writer, mut reader, _server, _client) = pair().await;
    let chunk = Message::BlobChunk(BlobChunk {
        sha256: Sha256::digest(b"blob"),
        offset: 0,
        total_len: 20_000,
        data: Blob(vec![42; 20_000]),
    });
    let bytes = hearth_protocol::frame::encode(&chunk, DEFAULT_MAX_FRAME).unwrap();
    // Cut inside the header, then inside the payload (across several packets).
    let cuts = [2, 9_000, bytes.len()];
    let mut from = 0;
    for (i, to) in cuts.into_iter().enumerate() {
        writer.send_raw(&bytes[from..to]).await.unwrap();
        from = to;
        let last = i + 1 == cuts.len();
        let got = tokio::time::timeout(CANCEL_AFTER, reader.recv()).await;
        if last {
            assert_eq!(
                got.expect("the whole frame is there").unwrap(),
                Some(chunk.clone())
            );
        } else {
            assert!(
                got.is_err(),
                "part {i} of the frame was taken for a message: {got:?}"
            );
        }
    }
    // The framing holds for the next message too.
    let ack = Message::HeartbeatAck(HeartbeatAck { seq: 9 });
    writer.send(&ack).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await;
    assert_eq!(next.unwrap().unwrap(), Some(ack));
}

#[tokio::test]
async fn size_limit_and_truncation_are_still_reported() {
    let (mut writer, mut reader, _server, _client) = pair().await;
    writer
        .send_raw(&u32::try_from(DEFAULT_MAX_FRAME + 1).unwrap().to_be_bytes())
        .await
        .unwrap();
    let too_large = |e: &StreamError| {
        matches!(e, StreamError::Frame(FrameError::TooLarge { len, max })
            if *len == DEFAULT_MAX_FRAME as u64 + 1 && *max == DEFAULT_MAX_FRAME)
    };
    let err = bounded(reader.recv()).await.unwrap_err();
    assert!(too_large(&err), "{err}");
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    // Unrecoverable: every later read says so again, without waiting for more bytes.
    let again = bounded(reader.recv()).await.unwrap_err();
    assert!(too_large(&again), "{again}");

    let (mut writer, mut reader, _server, _client) = pair().await;
    let bytes =
        hearth_protocol::frame::encode(&Message::HeartbeatAck(HeartbeatAck { seq: 1 }), 1 << 20)
            .unwrap();
    writer.send_raw(&bytes[..bytes.len() - 1]).await.unwrap();
    writer.finish().unwrap();
    let err = bounded(reader.recv()).await.unwrap_err();
    assert!(
        matches!(err, StreamError::Frame(FrameError::Truncated { expected, got })
            if expected == bytes.len() && got == bytes.len() - 1),
        "{err}"
    );
    assert!(err.to_string().contains("ended inside a frame"), "{err}");
}

/// A read that must not wait: it panics after 5 s.
async fn bounded<T>(read: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the read waited for bytes that will never come")
}
