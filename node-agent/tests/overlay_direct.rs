//! Two overlays on loopback: a member opens a stream to another over a direct QUIC link and
//! the first frame is dispatched by kind; a non-member is refused before any dial.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::Duration;

use hearth_node_agent::overlay::{Overlay, OverlayConfig, OverlayError};
use hearth_protocol::messages::overlay::{HaveRequest, Overlay as OverlayMessage, OverlayRevision};
use hearth_protocol::{Blob, ErrorCode, Message, NodeId, SecretKey, Sha256};
use tokio::time::timeout;

fn start(
    seed: u8,
) -> (
    Overlay,
    tokio::sync::mpsc::Receiver<hearth_node_agent::overlay::Incoming>,
    tokio::sync::mpsc::Receiver<hearth_node_agent::overlay::Incoming>,
) {
    Overlay::start(OverlayConfig {
        key: SecretKey::from_seed(&[seed; 32]),
        listen: "127.0.0.1:0".parse().expect("addr"),
        dir: None,
    })
    .expect("start")
}

fn members(nodes: &[NodeId]) -> OverlayMessage {
    OverlayMessage {
        revision: OverlayRevision { epoch: 1, seq: 1 },
        full: true,
        add: nodes.to_vec(),
        remove: Vec::new(),
        relays: Vec::new(),
    }
}

async fn listen_addr(o: &Overlay) -> libp2p::Multiaddr {
    for _ in 0..100 {
        if let Some(a) = o.shared().listen.first() {
            return a.parse().expect("multiaddr");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no listen address");
}

#[tokio::test]
async fn a_member_opens_a_stream_and_the_first_frame_is_dispatched() {
    let (a, _a_art, _a_rep) = start(1);
    let (b, mut b_art, _b_rep) = start(2);
    let set = members(&[a.local(), b.local()]);
    a.apply(&set).expect("apply");
    b.apply(&set).expect("apply");
    a.add_addresses(b.local(), vec![listen_addr(&b).await]);

    let mut s = a.open(b.local()).await.expect("open");
    let sha = Sha256::digest(b"x");
    s.send(&Message::HaveRequest(HaveRequest { sha256: sha }))
        .await
        .expect("send");
    let mut incoming = timeout(Duration::from_secs(10), b_art.recv())
        .await
        .expect("in time")
        .expect("incoming");
    assert_eq!(incoming.from, a.local());
    assert!(matches!(incoming.first, Message::HaveRequest(_)));
    incoming
        .stream
        .send(&Message::Have(hearth_protocol::messages::overlay::Have {
            sha256: sha,
            chunks: Blob(vec![1]),
        }))
        .await
        .expect("answer");
    incoming.stream.finish().await.expect("finish");
    let got = timeout(Duration::from_secs(10), s.recv())
        .await
        .expect("in time")
        .expect("recv");
    assert!(matches!(got, Some(Message::Have(_))), "{got:?}");
    assert_eq!(
        a.link(&b.local()),
        Some(hearth_node_agent::overlay::LinkKind::Direct)
    );

    // Anything else as a first frame: `error unexpected_message`.
    let mut s = a.open(b.local()).await.expect("open");
    s.send(&Message::Holdings(
        hearth_protocol::messages::overlay::Holdings {
            complete: Vec::new(),
            partial: Vec::new(),
        },
    ))
    .await
    .expect("send");
    let got = timeout(Duration::from_secs(10), s.recv())
        .await
        .expect("in time")
        .expect("recv");
    assert!(
        matches!(&got, Some(Message::Error(e)) if e.code == ErrorCode::UnexpectedMessage),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_non_member_is_refused_and_a_removed_member_is_cut_off() {
    let (a, _a_art, _a_rep) = start(3);
    let (b, _b_art, _b_rep) = start(4);
    let stranger = NodeId::from_key(SecretKey::from_seed(&[5; 32]).public());
    a.apply(&members(&[a.local(), b.local()])).expect("apply");
    b.apply(&members(&[a.local(), b.local()])).expect("apply");
    assert!(matches!(
        a.open(stranger).await,
        Err(OverlayError::NotMember(_))
    ));

    a.add_addresses(b.local(), vec![listen_addr(&b).await]);
    a.open(b.local()).await.expect("open");
    // B drops A from its set: the link closes.
    b.apply(&OverlayMessage {
        revision: OverlayRevision { epoch: 1, seq: 2 },
        full: false,
        add: Vec::new(),
        remove: vec![a.local()],
        relays: Vec::new(),
    })
    .expect("delta");
    let mut closed = false;
    for _ in 0..100 {
        if b.link(&a.local()).is_none() && a.link(&b.local()).is_none() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the removed member's link was not closed");
    let _ = BTreeSet::<NodeId>::new();
}
