//! Close codes of fatal frame errors, seen by a raw QUIC client (SPEC §3.5, §4.2, §10): a fetch
//! stream or an enrolment connection whose frame boundary is lost closes with code 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use hearth_protocol::messages::fetch::FetchBlob;
use hearth_protocol::{DEFAULT_MAX_FRAME, ErrorCode, Message, Sha256};
use hearth_tests::master::MasterProc;
use hearth_tests::node::{TestSession, connect_enrol, enrol_node, expect_fatal};
use hearth_transport::{MessageStream, close};

/// Sends all of a frame but its last byte on `stream`, then finishes it.
async fn send_truncated(stream: &mut MessageStream, message: &Message) {
    let bytes = hearth_protocol::frame::encode(message, DEFAULT_MAX_FRAME).unwrap();
    stream.send_raw(&bytes[..bytes.len() - 1]).await.unwrap();
    stream.finish().unwrap();
}

#[tokio::test]
async fn a_fetch_stream_ending_inside_a_frame_closes_the_connection_with_code_1() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let (_node, key) = enrol_node(&tmp.path().join("n"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let session = TestSession::open(m.quic, m.id, &key).await;
    let (send, recv) = session.conn.open_bi().await.unwrap();
    let mut fetch = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    let request = Message::FetchBlob(FetchBlob {
        sha256: Sha256::digest(b"anything"),
        offset: 0,
        max_len: 1024,
    });
    send_truncated(&mut fetch, &request).await;
    expect_fatal(
        &mut fetch,
        &session.conn,
        ErrorCode::TruncatedFrame,
        close::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn an_enrolment_ending_inside_a_frame_closes_with_code_1() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let (_endpoint, conn) = connect_enrol(m.quic, m.id).await;
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    let request =
        Message::HeartbeatAck(hearth_protocol::messages::session::HeartbeatAck { seq: 1 });
    send_truncated(&mut stream, &request).await;
    expect_fatal(
        &mut stream,
        &conn,
        ErrorCode::TruncatedFrame,
        close::PROTOCOL_ERROR,
    )
    .await;
}
