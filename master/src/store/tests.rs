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
