//! Smoke tests of the engine on a real server: set `HEARTH_TEST_POSTGRES` to a server's URL
//! (`eval "$(scripts/pg-cluster start)"`); without it they pass without running. Each test
//! makes a database of its own. The full behaviour, against both engines, is the conformance
//! suite's (`master/tests/store_conformance`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use hearth_protocol::messages::state::{Assignment, RecipeRef};
use hearth_protocol::{Arch, Hex, NodeFacts, NodeId, Resources, SecretKey, Sha256};

use super::super::{AssignmentOp, LivenessUpdate, Store, StoreError, StoreEvent, TokenRecord};
use super::PostgresStore;

/// A fresh database on the test server, dropped with the value.
struct Db {
    server: String,
    name: String,
    conn: String,
}

impl Db {
    fn new() -> Option<Self> {
        let server = std::env::var("HEARTH_TEST_POSTGRES").ok()?;
        let name = format!("hearth_smoke_{:016x}", rand::random::<u64>());
        admin(&server, &format!("CREATE DATABASE {name}"));
        let (base, _) = server.rsplit_once('/').expect("a postgres:// URL");
        let conn = format!("{base}/{name}");
        Some(Self { server, name, conn })
    }

    fn sql(&self, sql: &str) {
        admin(&self.conn, sql);
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn admin(conn: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
        drop(client);
        let _ = driver.await;
    });
}

fn node(seed: u32) -> NodeId {
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&seed.to_le_bytes());
    NodeId::from_key(SecretKey::from_seed(&key).public())
}

fn enrol(store: &dyn Store, seed: u32) -> NodeId {
    let id = node(seed);
    let b = seed.to_le_bytes();
    let token = TokenRecord {
        id: Hex(b),
        secret_hash: Sha256::digest(&b),
        label: "t".into(),
        created_at_ms: 1,
        expires_at_ms: None,
        spent_at_ms: None,
        spent_by: None,
        revoked_at_ms: None,
        volunteer: None,
    };
    assert!(store.create_token(&token).unwrap());
    let facts = NodeFacts {
        agent: "test".into(),
        arch: Arch::X86_64,
        capacity: Resources::default(),
        country: "BE".parse().unwrap(),
        isp: "isp".into(),
        asn: None,
        home: format!("h{seed}").parse().unwrap(),
        uplink_mbps: 100,
        downlink_mbps: 100,
        cgroups_v2: true,
        labels: Default::default(),
        power_w: None,
    };
    store
        .redeem_and_enrol(&Hex(b), &Sha256::digest(&b), &id, &facts, 1)
        .unwrap()
        .unwrap();
    id
}

fn assignment(instance: &str) -> Assignment {
    Assignment {
        instance: instance.parse().unwrap(),
        deployment: "kv".parse().unwrap(),
        generation: 0,
        recipe: RecipeRef {
            name: "kv".parse().unwrap(),
            version: "1.0.0".into(),
            sha256: Sha256::digest(b"recipe"),
        },
        params: Default::default(),
        ports: Default::default(),
        resources: Resources::default(),
        lease_ms: None,
        exposed: Vec::new(),
        peers: Vec::new(),
        backup: None,
    }
}

#[test]
fn batches_generations_fences_and_revisions() {
    let Some(db) = Db::new() else { return };
    let store = PostgresStore::connect(&db.conn).unwrap();
    let (a, b) = (enrol(&store, 1), enrol(&store, 2));
    let unknown = node(99);
    let place = |n, i: &str| AssignmentOp::Place {
        node: n,
        spec: Box::new(assignment(i)),
    };
    let touched = store
        .apply_assignments(
            &[
                place(a, "kv-0"),
                place(b, "kv-0"),
                place(unknown, "kv-1"),
                place(a, "kv-2"),
                AssignmentOp::Remove("kv-2".parse().unwrap()),
                place(b, "kv-2"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(touched, [a, b].into_iter().collect());
    let all = store.assignments().unwrap();
    let gens: Vec<(String, u64, NodeId)> = all
        .iter()
        .map(|(n, s)| (s.instance.to_string(), s.generation, *n))
        .collect();
    assert_eq!(
        gens,
        vec![("kv-0".into(), 2, b), ("kv-2".into(), 2, b)],
        "re-placed and retired generations count"
    );
    // One-by-one counts: a bumped by kv-0 twice and kv-2 twice, b by kv-0 and kv-2.
    assert_eq!(store.desired_state(&a).unwrap().revision, 4);
    assert_eq!(store.desired_state(&b).unwrap().revision, 2);
    assert_eq!(store.desired_state(&unknown).unwrap().revision, 0);

    let fence = store
        .take_lease("scheduler", "m1", 60_000)
        .unwrap()
        .unwrap();
    assert_eq!(fence.epoch, 1);
    assert_eq!(store.take_lease("scheduler", "m2", 60_000).unwrap(), None);
    store.release_lease(&fence).unwrap();
    let taken = store
        .take_lease("scheduler", "m2", 60_000)
        .unwrap()
        .unwrap();
    assert_eq!(taken.epoch, 2);
    let stale = store.apply_assignments(&[place(a, "kv-3")], Some(&fence));
    assert!(matches!(stale, Err(StoreError::Fenced(1))), "{stale:?}");
    assert_eq!(store.assignments().unwrap().len(), 2, "nothing written");
    store
        .apply_assignments(&[place(a, "kv-3")], Some(&taken))
        .unwrap();
    assert_eq!(store.assignments().unwrap().len(), 3);

    // 10,000 liveness updates and heard times are one statement each.
    let many: Vec<LivenessUpdate> = (0..10_000)
        .map(|i| LivenessUpdate {
            node: if i % 2 == 0 { a } else { b },
            liveness: if i == 9_999 { "down" } else { "up" },
            last_seen_ms: (i < 9_000).then_some(i),
        })
        .collect();
    let started = Instant::now();
    store.record_liveness(&many).unwrap();
    let heard: Vec<(NodeId, u64)> = (0..10_000u32).map(|i| (node(i), u64::from(i))).collect();
    store.publish_heard("m1", &heard).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let pass: Vec<AssignmentOp> = (0..3_000)
        .map(|i| place(if i % 2 == 0 { a } else { b }, &format!("bulk-{i}")))
        .collect();
    let started = Instant::now();
    store.apply_assignments(&pass, Some(&taken)).unwrap();
    assert_eq!(store.assignments().unwrap().len(), 3_003);
    eprintln!("3,000 placements in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let b_rec = store.node(&b).unwrap().unwrap();
    assert_eq!(
        (b_rec.liveness.as_str(), b_rec.last_seen_ms),
        ("down", Some(8_999))
    );
    assert_eq!(store.heard_since(9_997).unwrap().len(), 2);
}

#[test]
fn another_master_hears_writes_and_its_caches_follow() {
    let Some(db) = Db::new() else { return };
    let (one, two) = std::thread::scope(|s| {
        // Two masters starting together migrate once.
        let one = s.spawn(|| PostgresStore::connect(&db.conn).unwrap());
        let two = s.spawn(|| PostgresStore::connect(&db.conn).unwrap());
        (one.join().unwrap(), two.join().unwrap())
    });
    let a = enrol(&one, 1);
    let mut events = two.subscribe();
    let changes = two.changes();
    assert!(two.assignments().unwrap().is_empty());
    one.put_assignment(&a, &assignment("kv-0"))
        .unwrap()
        .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(&StoreEvent::Data)
        || !seen.iter().any(|e| matches!(e, StoreEvent::Revisions(_)))
    {
        assert!(Instant::now() < deadline, "heard only {seen:?}");
        match events.try_recv() {
            Ok(e) => seen.push(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert!(seen.contains(&StoreEvent::Revisions(vec![a])), "{seen:?}");
    assert!(changes.has_changed().unwrap());
    assert_eq!(two.assignments().unwrap().len(), 1, "the cache was dropped");
    // Its own writes are not echoed back.
    let mut mine = one.subscribe();
    one.bump_revisions(&[a]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(mine.try_recv().is_err());
}

#[test]
fn works_when_called_from_inside_a_runtime() {
    let Some(db) = Db::new() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Opened, used and dropped on a thread that drives a runtime (as the master's tasks do).
    rt.block_on(async {
        let store = PostgresStore::connect(&db.conn).unwrap();
        let a = enrol(&store, 1);
        assert_eq!(store.nodes().unwrap().len(), 1);
        assert!(
            store
                .put_assignment(&a, &assignment("kv-0"))
                .unwrap()
                .is_some()
        );
        drop(store);
    });
}

#[test]
fn a_newer_schema_and_a_missing_server_are_refused_clearly() {
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/none").unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot reach the PostgreSQL server at 127.0.0.1 port 1"),
        "{err}"
    );
    let Some(db) = Db::new() else { return };
    drop(PostgresStore::connect(&db.conn).unwrap());
    db.sql("INSERT INTO schema_version (version) VALUES (99)");
    let err = PostgresStore::connect(&db.conn).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

#[test]
fn a_lost_listening_connection_comes_back_and_says_resync() {
    let Some(db) = Db::new() else { return };
    let store = PostgresStore::connect(&db.conn).unwrap();
    let mut events = store.subscribe();
    let changes = store.changes();
    // The server ends every connection of the database (a restart, a failover).
    db.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no resync");
        match events.try_recv() {
            Ok(StoreEvent::Resync) => break,
            Ok(other) => panic!("{other:?}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(
        changes.has_changed().unwrap(),
        "caches dropped, watchers woken"
    );
    // The pool replaces its dead connections.
    let mut ok = false;
    for _ in 0..3 {
        ok = store.nodes().is_ok();
        if ok {
            break;
        }
    }
    assert!(ok);
}
