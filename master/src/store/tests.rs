//! The SQLite store through the `Store` trait.

use hearth_protocol::{Hex, Sha256};

use super::{SqliteStore, Store, TokenRecord};

fn token(id: [u8; 4], secret: &[u8], label: &str) -> TokenRecord {
    TokenRecord {
        id: Hex(id),
        secret_hash: Sha256::digest(secret),
        label: label.into(),
        created_at_ms: 1,
        expires_at_ms: None,
        spent_at_ms: None,
        spent_by: None,
        revoked_at_ms: None,
    }
}

#[test]
fn a_token_id_already_taken_is_reported_and_the_first_token_kept() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("state.db"))?;
    assert!(store.create_token(&token([1, 2, 3, 4], b"first", "alice"))?);
    assert!(!store.create_token(&token([1, 2, 3, 4], b"second", "bob"))?);
    assert!(store.create_token(&token([1, 2, 3, 5], b"third", "carol"))?);
    let tokens = store.tokens()?;
    assert_eq!(tokens.len(), 2);
    let kept = tokens
        .iter()
        .find(|t| t.id == Hex([1, 2, 3, 4]))
        .ok_or_else(|| anyhow::anyhow!("token 01020304 missing"))?;
    assert_eq!(kept.label, "alice");
    assert_eq!(kept.secret_hash, Sha256::digest(b"first"));
    Ok(())
}

#[test]
fn a_gateway_is_registered_once_by_name_and_key() -> anyhow::Result<()> {
    use super::{GatewayRecord, PutGateway};
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("state.db"))?;
    let key = |seed| {
        hearth_protocol::SignerId::from_key(
            hearth_protocol::SecretKey::from_seed(&[seed; 32]).public(),
        )
    };
    let gateway = |name: &str, seed, addr: &str| -> anyhow::Result<GatewayRecord> {
        Ok(GatewayRecord {
            name: name.parse()?,
            key: key(seed),
            tunnel_addr: addr.parse()?,
            overlay_addr: None,
            created_ms: 5,
            last_seen_ms: None,
        })
    };
    let mut changes = store.changes();
    let edge = gateway("edge", 1, "127.0.0.1:7443")?;
    assert_eq!(
        store.put_gateway(&edge)?,
        PutGateway::Created(Default::default())
    );
    assert!(changes.has_changed()?, "a registration wakes the watchers");
    assert_eq!(
        store.put_gateway(&edge)?,
        PutGateway::Unchanged(edge.clone())
    );
    for clash in [
        gateway("edge", 2, "127.0.0.1:7443")?,
        gateway("edge", 1, "127.0.0.1:7444")?,
        gateway("other", 1, "127.0.0.1:7443")?,
    ] {
        assert_eq!(
            store.put_gateway(&clash)?,
            PutGateway::Conflict(edge.clone())
        );
    }
    store.record_gateway_seen(&[("edge".into(), 9), ("gone".into(), 9)])?;
    let listed = store.gateways()?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_seen_ms, Some(9));
    changes.mark_unchanged();
    assert_eq!(store.remove_gateway("edge")?, Some(Default::default()));
    assert!(changes.has_changed()?);
    assert_eq!(store.remove_gateway("edge")?, None);
    assert!(store.gateways()?.is_empty());
    Ok(())
}

/// Enrols a node with seed `seed` in `home`.
fn enrolled(store: &SqliteStore, seed: u8, home: &str) -> anyhow::Result<hearth_protocol::NodeId> {
    use hearth_protocol::{Arch, NodeFacts, Resources};
    let node = hearth_protocol::NodeId::from_key(
        hearth_protocol::SecretKey::from_seed(&[seed; 32]).public(),
    );
    let secret = [seed; 8];
    assert!(store.create_token(&token([seed, 0, 0, 1], &secret, "t"))?);
    let facts = NodeFacts {
        agent: "test".into(),
        arch: Arch::X86_64,
        capacity: Resources::default(),
        country: "BE".parse()?,
        isp: "isp".into(),
        asn: None,
        home: home.parse()?,
        uplink_mbps: 100,
        downlink_mbps: 100,
        cgroups_v2: true,
        labels: Default::default(),
        power_w: None,
    };
    store
        .redeem_and_enrol(
            &Hex([seed, 0, 0, 1]),
            &Sha256::digest(&secret),
            &node,
            &facts,
            1,
        )?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(node)
}

fn deployment(name: &str) -> super::StoredDeployment {
    super::StoredDeployment {
        name: name.into(),
        spec: serde_json::json!({"name": name}),
        rollout: None,
    }
}

#[test]
fn a_backup_key_is_made_once_and_goes_with_its_deployment() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("state.db"))?;
    // No deployment: no key is left behind.
    assert_eq!(store.backup_key("notes", &"11".repeat(32), 1)?, None);
    store.put_deployment(&deployment("notes"))?;
    let first = store.backup_key("notes", &"11".repeat(32), 1)?;
    assert_eq!(first, Some("11".repeat(32)));
    assert_eq!(store.backup_key("notes", &"22".repeat(32), 2)?, first);
    assert_eq!(store.backup("notes")?.key, first);
    assert!(store.remove_deployment("notes")?);
    assert_eq!(store.backup("notes")?, super::BackupRecord::default());
    store.put_deployment(&deployment("notes"))?;
    assert_eq!(
        store.backup_key("notes", &"33".repeat(32), 3)?,
        Some("33".repeat(32)),
        "a new deployment of the same name gets a new key"
    );
    Ok(())
}

#[test]
fn holders_are_set_with_their_nodes_bumped_and_kept_in_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("state.db"))?;
    let (a, b, c, r) = (
        enrolled(&store, 1, "h1")?,
        enrolled(&store, 2, "h2")?,
        enrolled(&store, 3, "h3")?,
        enrolled(&store, 4, "h4")?,
    );
    assert!(
        store
            .set_backup_holders("notes", &[a], &[r], 10)?
            .is_empty(),
        "unknown deployment"
    );
    store.put_deployment(&deployment("notes"))?;
    let bumped = store.set_backup_holders("notes", &[b, a], &[r], 10)?;
    assert_eq!(bumped, [a, b, r].into_iter().collect());
    assert_eq!(store.desired_state(&r)?.revision, 1);
    assert_eq!(store.backup("notes")?.holders, vec![b, a]);
    // The same set again changes nothing.
    assert!(
        store
            .set_backup_holders("notes", &[a, b], &[r], 20)?
            .is_empty()
    );
    // One replaced: the one staying keeps its place, the old and new ones are bumped.
    let bumped = store.set_backup_holders("notes", &[a, c], &[r], 30)?;
    assert_eq!(bumped, [a, b, c, r].into_iter().collect());
    assert_eq!(store.backup("notes")?.holders, vec![a, c]);
    assert_eq!(store.held_by(&c)?, vec!["notes".to_owned()]);
    assert!(store.held_by(&b)?.is_empty());
    assert_eq!(store.backup_holders()?.get("notes"), Some(&vec![a, c]));
    let before = store.desired_state(&c)?.revision;
    assert!(store.remove_deployment("notes")?);
    assert_eq!(
        store.desired_state(&c)?.revision,
        before + 1,
        "a holder learns it is gone"
    );
    assert!(store.backup_holders()?.is_empty());
    Ok(())
}

#[test]
fn snapshots_are_kept_newest_first_with_the_one_to_restore() -> anyhow::Result<()> {
    use super::{BackupAsk, EventRecord, RestoreRequest, SnapshotRecord};
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("state.db"))?;
    let (node, holder) = (enrolled(&store, 1, "h1")?, enrolled(&store, 2, "h2")?);
    let snap = |n: u8| SnapshotRecord {
        deployment: "notes".into(),
        snapshot: Hex([n; 32]),
        instance: "notes-0".parse().unwrap_or_else(|_| unreachable!()),
        node,
        taken_ms: u64::from(n) * 1000,
        bytes: 10,
        stored_bytes: 12,
        sent_bytes: 5,
        held_by: vec![holder],
        received_ms: u64::from(n) * 1000 + 1,
    };
    let event = EventRecord {
        at_ms: 1,
        kind: "snapshot".into(),
        text: "taken".into(),
    };
    assert!(
        !store.put_snapshot(&snap(1), 3, &event)?,
        "unknown deployment"
    );
    store.put_deployment(&deployment("notes"))?;
    assert_eq!(store.ask_backup("gone", &BackupAsk::Now, &[])?, None);
    for n in 1..=3 {
        assert!(store.put_snapshot(&snap(n), 3, &event)?);
    }
    assert_eq!(
        store.ask_backup("notes", &BackupAsk::Restore(Hex([1; 32]), 5), &[node])?,
        Some(1)
    );
    assert_eq!(
        store.ask_backup("notes", &BackupAsk::Now, &[node])?,
        Some(1)
    );
    assert_eq!(
        store.ask_backup("notes", &BackupAsk::Now, &[node])?,
        Some(2)
    );
    for n in 4..=6 {
        assert!(store.put_snapshot(&snap(n), 3, &event)?);
    }
    let ids: Vec<u8> = store
        .snapshots("notes")?
        .iter()
        .map(|s| s.snapshot.0[0])
        .collect();
    assert_eq!(
        ids,
        vec![6, 5, 4, 1],
        "the newest 3, and the one a restore names"
    );
    assert_eq!(store.snapshots("notes")?[0], snap(6));
    let record = store.backup("notes")?;
    assert_eq!(record.now_seq, 2);
    assert_eq!(
        record.restore,
        Some(RestoreRequest {
            seq: 1,
            snapshot: Hex([1; 32]),
            at_ms: 5,
        })
    );
    assert_eq!(store.deployment_events("notes", 100)?.len(), 6);
    assert!(store.remove_deployment("notes")?);
    assert!(store.snapshots("notes")?.is_empty());
    Ok(())
}
