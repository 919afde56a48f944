//! Replica links over real overlays on loopback (libp2p QUIC, TCP on 127.0.0.1): an instance
//! reaches its peer replica through the address in its `peers.json`, bytes cross both ways
//! with half-close and are counted; a member that is not a listed peer gets `not_yours`, an
//! instance that does not run gets `unknown_instance`; when the peer moves, `peers.json` names
//! the new one and the link works again while the old listener is closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use hearth_node_agent::overlay::replica::ReplicaLinks;
use hearth_node_agent::overlay::replica::peers_file::{self, PeerEntry};
use hearth_node_agent::overlay::{Incoming, Overlay, OverlayConfig, OverlayStats};
use hearth_protocol::messages::overlay::{
    Overlay as OverlayMessage, OverlayRevision, ReplicaOpen, ReplicaPeer,
};
use hearth_protocol::messages::state::InstanceId;
use hearth_protocol::{ErrorCode, Message, NodeId, SecretKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn start(seed: u8) -> (Overlay, Receiver<Incoming>, Receiver<Incoming>) {
    Overlay::start(OverlayConfig {
        key: SecretKey::from_seed(&[seed; 32]),
        listen: "127.0.0.1:0".parse().unwrap(),
        dir: None,
    })
    .unwrap()
}

async fn listen_addr(o: &Overlay) -> libp2p::Multiaddr {
    for _ in 0..200 {
        if let Some(a) = o.shared().listen.first() {
            return a.parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no overlay listen address");
}

fn id(s: &str) -> InstanceId {
    s.parse().unwrap()
}

fn peer(instance: &str, node: NodeId) -> ReplicaPeer {
    ReplicaPeer {
        instance: id(instance),
        node,
    }
}

/// The instance's peer port: answers each connection with `<name>:` and what it read, after the
/// asker half-closes (so half-close crosses the link).
async fn service(name: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_ok() {
                    let mut answer = format!("{name}:").into_bytes();
                    answer.extend_from_slice(&got);
                    let _ = s.write_all(&answer).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    port
}

/// Connects to `addr`, sends `text`, half-closes and reads the answer to its end.
async fn exchange(addr: std::net::SocketAddr, text: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(text.as_bytes()).await?;
    s.shutdown().await?;
    let mut back = String::new();
    s.read_to_string(&mut back).await?;
    Ok(back)
}

async fn peers_json_names(dir: &Path, instance: &str) -> PeerEntry {
    for _ in 0..200 {
        if let Some(e) = peers_file::read(dir)
            .into_iter()
            .find(|e| e.instance.as_str() == instance)
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("peers.json never named {instance}");
}

async fn refusal(from: &Overlay, to: NodeId, open: ReplicaOpen) -> ErrorCode {
    let mut s = from.open(to).await.unwrap();
    s.send(&Message::ReplicaOpen(open)).await.unwrap();
    match timeout(WAIT, s.recv()).await.unwrap().unwrap() {
        Some(Message::Error(e)) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_each_other_and_follow_a_move() {
    let (a, _a_art, a_rep) = start(31);
    let (b, _b_art, b_rep) = start(32);
    let (c, _c_art, c_rep) = start(33);
    let set = OverlayMessage {
        revision: OverlayRevision { epoch: 1, seq: 1 },
        full: true,
        add: vec![a.local(), b.local(), c.local()],
        remove: Vec::new(),
        relays: Vec::new(),
    };
    for (o, others) in [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])] {
        o.apply(&set).unwrap();
        for other in others {
            o.add_addresses(other.local(), vec![listen_addr(other).await]);
        }
    }
    let (ra, rb, rc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let links_a = ReplicaLinks::start(ra.path(), a.clone(), a_rep);
    let links_b = ReplicaLinks::start(rb.path(), b.clone(), b_rep);
    let links_c = ReplicaLinks::start(rc.path(), c.clone(), c_rep);

    // kv-1 on A and kv-2 on B are peers; B runs kv-2.
    links_a.set_desired(&[(id("kv-1"), vec![peer("kv-2", b.local())])]);
    links_b.set_desired(&[(id("kv-2"), vec![peer("kv-1", a.local())])]);
    links_b.set_running(HashMap::from([(id("kv-2"), service("kv-2").await)]));
    let dir_a = ra.path().join("instances").join("kv-1");
    let to_b = peers_json_names(&dir_a, "kv-2").await;
    assert_eq!(to_b.node, b.local());
    assert!(to_b.addr.ip().is_loopback());
    assert_eq!(links_a.addresses(&id("kv-1")), vec![to_b.clone()]);

    let back = timeout(WAIT, exchange(to_b.addr, "hello from kv-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, "kv-2:hello from kv-1");
    assert_eq!(OverlayStats::get(&a.stats().replica_up), 15);
    assert_eq!(OverlayStats::get(&a.stats().replica_down), 20);
    assert_eq!(OverlayStats::get(&b.stats().replica_up), 20);

    // A member that is not a listed peer, naming kv-1 (which runs on A, not on C): not_yours.
    let open = |instance: &str, from: &str| ReplicaOpen {
        instance: id(instance),
        from: id(from),
    };
    assert_eq!(
        refusal(&c, b.local(), open("kv-2", "kv-1")).await,
        ErrorCode::NotYours
    );
    assert_eq!(
        refusal(&a, b.local(), open("kv-2", "web-1")).await,
        ErrorCode::NotYours
    );
    assert_eq!(
        refusal(&a, b.local(), open("kv-9", "kv-1")).await,
        ErrorCode::UnknownInstance
    );
    // Listed and running, but its peer port is closed: connect_failed.
    links_c.set_desired(&[(id("kv-3"), vec![peer("kv-1", a.local())])]);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    links_c.set_running(HashMap::from([(id("kv-3"), closed_port)]));
    assert_eq!(
        refusal(&a, c.local(), open("kv-3", "kv-1")).await,
        ErrorCode::ConnectFailed
    );
    // The refusals hurt nothing: the link still works.
    let back = timeout(WAIT, exchange(to_b.addr, "again"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, "kv-2:again");

    // kv-2 moves: its replacement kv-3 runs on C. A's kv-1 gets a new peer entry, the old
    // listener is closed, and the new address reaches kv-3.
    links_c.set_running(HashMap::from([(id("kv-3"), service("kv-3").await)]));
    links_a.set_desired(&[(id("kv-1"), vec![peer("kv-3", c.local())])]);
    let to_c = peers_json_names(&dir_a, "kv-3").await;
    assert_eq!(to_c.node, c.local());
    assert_eq!(peers_file::read(&dir_a), vec![to_c.clone()]);
    let back = timeout(WAIT, exchange(to_c.addr, "hello kv-3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, "kv-3:hello kv-3");
    let mut closed = false;
    for _ in 0..100 {
        if TcpStream::connect(to_b.addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the moved peer's listener is still open");
}
