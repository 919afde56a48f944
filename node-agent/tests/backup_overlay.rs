//! Backup transfers between real overlays on loopback (SPEC §17.6, §17.7): a replica's node
//! pushes a snapshot to a holder, which keeps only sealed bytes; a second snapshot after a small
//! change sends little; a third home restores it whole; a peer the master did not name is
//! refused; a tampered copy is refused at restore and nothing is left in place.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_backup::{BackupKey, DirStore};
use hearth_node_agent::artifacts::serve::Bucket;
use hearth_node_agent::backup::holder::{self, Copies};
use hearth_node_agent::backup::push::{self, Job};
use hearth_node_agent::backup::restore::{self, Outcome};
use hearth_node_agent::backup::wire::BackupNetError;
use hearth_node_agent::overlay::{Overlay, OverlayConfig};
use hearth_protocol::messages::backup::{Holding, Restore};
use hearth_protocol::messages::overlay::{Overlay as OverlayMessage, OverlayRevision};
use hearth_protocol::{ErrorCode, NodeId, SecretKey};

const MARKER: &[u8] = b"plaintext-marker-of-the-members-register";

struct Home {
    overlay: Overlay,
    copies: Copies,
    dir: tempfile::TempDir,
}

async fn home(seed: u8) -> Home {
    let dir = tempfile::tempdir().unwrap();
    let (overlay, _artifacts, _replicas) = Overlay::start(OverlayConfig {
        key: SecretKey::from_seed(&[seed; 32]),
        listen: "127.0.0.1:0".parse().unwrap(),
        dir: None,
    })
    .unwrap();
    let copies = Copies::new(dir.path());
    let bucket = Arc::new(Mutex::new(Bucket::new(1_000)));
    tokio::spawn(holder::serve(
        overlay.take_backups().unwrap(),
        copies.clone(),
        bucket,
    ));
    Home {
        overlay,
        copies,
        dir,
    }
}

async fn connect(homes: &[&Home]) {
    let set = OverlayMessage {
        revision: OverlayRevision { epoch: 1, seq: 1 },
        full: true,
        add: homes.iter().map(|h| h.overlay.local()).collect(),
        remove: Vec::new(),
        relays: Vec::new(),
    };
    for h in homes {
        h.overlay.apply(&set).unwrap();
    }
    for h in homes {
        let addr = loop {
            if let Some(a) = h.overlay.shared().listen.first() {
                break a.parse::<libp2p::Multiaddr>().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for other in homes {
            other
                .overlay
                .add_addresses(h.overlay.local(), vec![addr.clone()]);
        }
    }
}

fn write_data(dir: &Path, version: u8) {
    std::fs::create_dir_all(dir.join("objects")).unwrap();
    for i in 0..8u32 {
        // Incompressible: xorshift64.
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(i + 1);
        let body: Vec<u8> = (0..262_144)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join(format!("objects/o{i}")), body).unwrap();
    }
    let mut register = MARKER.repeat(50);
    register.push(version);
    std::fs::write(dir.join("register"), register).unwrap();
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn job(
    src: &Home,
    key: &BackupKey,
    data: &Path,
    holders: Vec<NodeId>,
    kept: Vec<hearth_protocol::Hex<32>>,
) -> Job {
    Job {
        instance: "kv-0".parse().unwrap(),
        deployment: "kv".parse().unwrap(),
        key: key.clone(),
        data: data.to_owned(),
        store: Arc::new(DirStore::new(src.dir.path().join("backups/kv-0/store"))),
        kept,
        keep: 3,
        holders,
        hook: None,
    }
}

#[tokio::test]
async fn a_snapshot_goes_to_a_holder_sealed_and_comes_back_whole_elsewhere() {
    let (a, b, c) = (home(1).await, home(2).await, home(3).await);
    connect(&[&a, &b, &c]).await;
    let key = BackupKey::generate();
    let kv: hearth_protocol::messages::state::Name = "kv".parse().unwrap();
    // b keeps the copies of kv for a and c (the replicas' nodes).
    b.copies.set_holds(
        &[Holding {
            deployment: kv.clone(),
            replicas: vec![a.overlay.local(), c.overlay.local()],
        }],
        0,
    );
    let data = a.dir.path().join("data");
    write_data(&data, 1);
    let bucket = Arc::new(Mutex::new(Bucket::new(1_000)));
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let first = push::take(
        job(&a, &key, &data, vec![b.overlay.local()], vec![]),
        &a.overlay,
        &bucket,
        &tx,
    )
    .await
    .unwrap();
    assert_eq!(first.report.held_by, vec![b.overlay.local()]);
    assert!(first.report.sent_bytes > 1_000_000, "{:?}", first.report);
    assert!(reports.try_recv().is_ok(), "the report went to the master");

    // The holder's files hold no plaintext.
    let kept = files(&b.dir.path().join("backup-copies"));
    assert!(kept.len() > 8, "{kept:?}");
    for f in &kept {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext in {f:?}"
        );
    }

    // A small change: the second snapshot sends a small part of the first.
    write_data(&data, 2);
    let second = push::take(
        job(&a, &key, &data, vec![b.overlay.local()], first.kept.clone()),
        &a.overlay,
        &bucket,
        &tx,
    )
    .await
    .unwrap();
    assert!(
        second.report.sent_bytes * 20 < first.report.sent_bytes,
        "{:?} after {:?}",
        second.report,
        first.report
    );
    assert_eq!(second.kept.len(), 2);

    // c restores the latest from b into a new data directory.
    let target = c.dir.path().join("data");
    let r = Restore {
        snapshot: second.report.snapshot,
        seq: 0,
        from: vec![b.overlay.local()],
    };
    let store = Arc::new(DirStore::new(c.dir.path().join("backups/kv-1/store")));
    let out = restore::restore(&c.overlay, &c.copies, store.clone(), &key, &kv, &r, &target)
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Restored { files: 9, .. }), "{out:?}");
    for rel in ["register", "objects/o0", "objects/o7"] {
        assert_eq!(
            std::fs::read(target.join(rel)).unwrap(),
            std::fs::read(data.join(rel)).unwrap(),
            "{rel}"
        );
    }
    // seq 0 into a directory that holds data: kept as it is.
    let again = restore::restore(&c.overlay, &c.copies, store, &key, &kv, &r, &target)
        .await
        .unwrap();
    assert_eq!(again, Outcome::Kept);

    // A home the master did not name for kv is refused.
    let stranger = home(4).await;
    connect(&[&a, &b, &c, &stranger]).await;
    let refused = restore::restore(
        &stranger.overlay,
        &stranger.copies,
        Arc::new(DirStore::new(stranger.dir.path().join("store"))),
        &key,
        &kv,
        &r,
        &stranger.dir.path().join("data"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            refused,
            BackupNetError::Refused {
                peer_code: ErrorCode::NotYours,
                ..
            }
        ),
        "{refused:?}"
    );

    // Every chunk b keeps tampered with: the restore is refused for good, nothing left behind.
    for f in files(&b.dir.path().join("backup-copies/kv/chunks")) {
        let mut bytes = std::fs::read(&f).unwrap();
        if let Some(x) = bytes.last_mut() {
            *x ^= 1;
        }
        std::fs::write(&f, bytes).unwrap();
    }
    let fresh = c.dir.path().join("data2");
    let err = restore::restore(
        &c.overlay,
        &c.copies,
        Arc::new(DirStore::new(c.dir.path().join("backups/kv-2/store"))),
        &key,
        &kv,
        &r,
        &fresh,
    )
    .await
    .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(!fresh.exists(), "a refused restore left {fresh:?}");
    assert!(!c.dir.path().join(".data.restoring").exists());
}
