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
