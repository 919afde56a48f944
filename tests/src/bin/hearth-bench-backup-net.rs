//! Benchmark (issue 18), over real overlays on loopback: a replica's home snapshots `--mib` MiB
//! of incompressible data and pushes it to a holder; `--changed-percent` of it is rewritten in
//! `--regions` places and the next snapshot pushed; a third home restores the latest from the
//! holder. Beside them, the same link's own throughput: the holder streams as many raw bytes to
//! the restoring home over an overlay stream, so the restore can be set against it in one run.
//!
//! ```text
//! HEARTH_BENCH_DIR=/tmp cargo run --release -p hearth-tests --bin hearth-bench-backup-net -- \
//!     --mib 1024 --changed-percent 1 --budget-mbps 100000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_backup::{BackupKey, DirStore};
use hearth_node_agent::artifacts::serve::Bucket;
use hearth_node_agent::backup::holder::{self, Copies};
use hearth_node_agent::backup::{push, restore};
use hearth_node_agent::overlay::{Incoming, Overlay, OverlayConfig};
use hearth_protocol::messages::backup::{Holding, Restore};
use hearth_protocol::messages::overlay::{HaveRequest, Overlay as OverlayMessage, OverlayRevision};
use hearth_protocol::{Message, SecretKey, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

struct Home {
    overlay: Overlay,
    copies: Copies,
    artifacts: tokio::sync::mpsc::Receiver<Incoming>,
}

fn home(seed: u8, root: &Path, budget: u64) -> Home {
    let (overlay, artifacts, _replicas) = Overlay::start(OverlayConfig {
        key: SecretKey::from_seed(&[seed; 32]),
        listen: "127.0.0.1:0".parse().unwrap(),
        dir: None,
    })
    .unwrap();
    let copies = Copies::new(root);
    tokio::spawn(holder::serve(
        overlay.take_backups().unwrap(),
        copies.clone(),
        Arc::new(Mutex::new(Bucket::new(budget))),
    ));
    Home {
        overlay,
        copies,
        artifacts,
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

fn noise(x: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            (*x >> 24) as u8
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mib = arg("--mib", 1024);
    let percent = arg("--changed-percent", 1);
    let regions = arg("--regions", 16).max(1);
    let budget = arg("--budget-mbps", 100_000);
    let tmp =
        tempfile::tempdir_in(std::env::var("HEARTH_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let (a, b, mut c) = (
        home(1, &tmp.path().join("a"), budget),
        home(2, &tmp.path().join("b"), budget),
        home(3, &tmp.path().join("c"), budget),
    );
    connect(&[&a, &b, &c]).await;
    let kv: hearth_protocol::messages::state::Name = "kv".parse().unwrap();
    b.copies.set_holds(
        &[Holding {
            deployment: kv.clone(),
            replicas: vec![a.overlay.local(), c.overlay.local()],
        }],
        0,
    );

    let data = tmp.path().join("a/data");
    std::fs::create_dir_all(&data).unwrap();
    let file_mib = 64u64;
    let files = mib.div_ceil(file_mib);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..files {
        std::fs::write(
            data.join(format!("f{i:03}")),
            noise(&mut x, (file_mib << 20) as usize),
        )
        .unwrap();
    }
    let total = files * (file_mib << 20);
    let key = BackupKey::generate();
    let store = Arc::new(DirStore::new(tmp.path().join("a/backups/kv-0/store")));
    let bucket = Arc::new(Mutex::new(Bucket::new(budget)));
    let (tx, _reports) = tokio::sync::mpsc::unbounded_channel();
    let job = |kept| push::Job {
        instance: "kv-0".parse().unwrap(),
        deployment: kv.clone(),
        key: key.clone(),
        data: data.clone(),
        store: store.clone(),
        kept,
        keep: 3,
        holders: vec![b.overlay.local()],
        hook: None,
    };
    let t = Instant::now();
    let first = push::take(job(vec![]), &a.overlay, &bucket, &tx)
        .await
        .unwrap();
    let first_secs = t.elapsed().as_secs_f64();

    // Rewrite `percent` of the bytes in `regions` places spread over the files.
    let changed = total * percent / 100;
    let per_region = (changed / regions).max(1);
    for r in 0..regions {
        let file = data.join(format!("f{:03}", r % files));
        let mut bytes = std::fs::read(&file).unwrap();
        let at = ((r / files + 1) * (file_mib << 20) / (regions / files + 2)) as usize;
        let end = (at + per_region as usize).min(bytes.len());
        let fresh = noise(&mut x, end - at);
        bytes[at..end].copy_from_slice(&fresh);
        std::fs::write(&file, bytes).unwrap();
    }
    let t = Instant::now();
    let second = push::take(job(first.kept.clone()), &a.overlay, &bucket, &tx)
        .await
        .unwrap();
    let second_secs = t.elapsed().as_secs_f64();

    // The link's own throughput, holder → restoring home, on an overlay stream.
    let raw = total;
    let mut b_art = b.artifacts;
    tokio::spawn(async move {
        if let Some(i) = b_art.recv().await {
            let mut io = i.stream.into_io();
            let block = vec![0x5au8; 1 << 20];
            let mut left = raw;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                io.write_all(&block[..n]).await.unwrap();
                left -= n as u64;
            }
            io.shutdown().await.unwrap();
        }
    });
    let mut s = c.overlay.open(b.overlay.local()).await.unwrap();
    s.send(&Message::HaveRequest(HaveRequest {
        sha256: Sha256::digest(b"link"),
    }))
    .await
    .unwrap();
    let t = Instant::now();
    let mut io = s.into_io();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = io.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let link_secs = t.elapsed().as_secs_f64();
    assert_eq!(got, raw);
    let _ = c.artifacts.try_recv();

    let target = tmp.path().join("c/data");
    let r = Restore {
        snapshot: second.report.snapshot,
        seq: 0,
        from: vec![b.overlay.local()],
    };
    let c_store = Arc::new(DirStore::new(tmp.path().join("c/backups/kv-1/store")));
    let t = Instant::now();
    let out = restore::restore(&c.overlay, &c.copies, c_store, &key, &kv, &r, &target)
        .await
        .unwrap();
    let restore_secs = t.elapsed().as_secs_f64();

    let mibf = total as f64 / 1_048_576.0;
    println!("data: {mibf:.0} MiB in {files} files; upload budget {budget} Mbit/s");
    println!(
        "first snapshot pushed: {:.1} s, {} bytes sent ({:.1}% of the data)",
        first_secs,
        first.report.sent_bytes,
        100.0 * first.report.sent_bytes as f64 / total as f64
    );
    println!(
        "after {percent}% changed in {regions} places: {:.2} s, {} bytes sent ({:.2}% of the data; goal <= 3%)",
        second_secs,
        second.report.sent_bytes,
        100.0 * second.report.sent_bytes as f64 / total as f64
    );
    println!(
        "loopback overlay link, holder -> restoring home: {:.2} s for {mibf:.0} MiB ({:.0} MiB/s)",
        link_secs,
        mibf / link_secs
    );
    println!(
        "restore from the holder: {:.2} s ({:.0} MiB/s, {:.0}% of the link; goal >= 80%): {out:?}",
        restore_secs,
        mibf / restore_secs,
        100.0 * link_secs / restore_secs
    );
}
