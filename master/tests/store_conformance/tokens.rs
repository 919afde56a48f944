//! Enrolment tokens and nodes: create, revoke, every way a redemption fails, the node's
//! administrative state and its liveness.

use hearth_master::store::{
    AdminChange, AdminState, LivenessUpdate, RedeemError, Store, TokenRecord,
};
use hearth_protocol::{Hex, Sha256};

use crate::fixtures::{enrol, facts, node_id, token};

fn a_token_id_already_taken_is_reported_and_the_first_token_kept(
    store: &dyn Store,
) -> anyhow::Result<()> {
    assert!(store.create_token(&token([1, 2, 3, 4], b"first", "alice", 10))?);
    assert!(!store.create_token(&token([1, 2, 3, 4], b"second", "bob", 20))?);
    let mut third = token([1, 2, 3, 5], b"third", "carol", 30);
    third.expires_at_ms = Some(1_000);
    assert!(store.create_token(&third)?);
    let tokens = store.tokens()?;
    assert_eq!(
        tokens,
        vec![third, token([1, 2, 3, 4], b"first", "alice", 10)],
        "newest first, the first of a taken id kept whole"
    );
    Ok(())
}

fn a_token_is_revoked_once_unless_spent(store: &dyn Store) -> anyhow::Result<()> {
    assert_eq!(store.revoke_token(&Hex([9; 4]), 5)?, None, "unknown");
    assert!(store.create_token(&token([1; 4], b"s", "t", 1))?);
    assert_eq!(store.revoke_token(&Hex([1; 4]), 5)?, Some(true));
    assert_eq!(store.revoke_token(&Hex([1; 4]), 9)?, Some(true), "again");
    let revoked = find(store, [1; 4])?;
    assert_eq!(
        revoked.revoked_at_ms,
        Some(5),
        "the first revocation's time is kept"
    );
    assert_eq!(revoked.status(10), "revoked");
    enrol(store, 7)?;
    assert_eq!(
        store.revoke_token(&Hex([7, 0xee, 0, 1]), 5)?,
        Some(false),
        "spent"
    );
    let spent = find(store, [7, 0xee, 0, 1])?;
    assert_eq!(spent.revoked_at_ms, None);
    assert_eq!(spent.status(10), "spent");
    Ok(())
}

fn every_refused_redemption_says_why_and_writes_nothing(store: &dyn Store) -> anyhow::Result<()> {
    let node = node_id(1);
    let f = facts("h1")?;
    let redeem = |id: [u8; 4], secret: &[u8], now: u64| {
        store.redeem_and_enrol(&Hex(id), &Sha256::digest(secret), &node, &f, now)
    };
    assert_eq!(
        redeem([1; 4], b"s", 5)?,
        Err(RedeemError::Invalid),
        "unknown id"
    );
    assert!(store.create_token(&token([1; 4], b"s", "t", 1))?);
    assert_eq!(
        redeem([1; 4], b"wrong", 5)?,
        Err(RedeemError::Invalid),
        "wrong secret"
    );

    let mut expiring = token([2; 4], b"s", "t", 1);
    expiring.expires_at_ms = Some(100);
    assert!(store.create_token(&expiring)?);
    assert_eq!(
        redeem([2; 4], b"s", 100)?,
        Err(RedeemError::Expired),
        "at its expiry"
    );
    assert_eq!(redeem([2; 4], b"s", 101)?, Err(RedeemError::Expired));

    let mut revoked = token([3; 4], b"s", "t", 1);
    revoked.expires_at_ms = Some(100);
    assert!(store.create_token(&revoked)?);
    assert_eq!(store.revoke_token(&Hex([3; 4]), 2)?, Some(true));
    assert_eq!(redeem([3; 4], b"s", 5)?, Err(RedeemError::Revoked));
    assert_eq!(
        redeem([3; 4], b"s", 200)?,
        Err(RedeemError::Revoked),
        "revoked before expired"
    );
    assert!(store.nodes()?.is_empty(), "no refusal enrols");
    assert!(store.node(&node)?.is_none());
    assert!(
        store.tokens()?.iter().all(|t| t.spent_at_ms.is_none()),
        "none spent"
    );

    // Just before its expiry it still works.
    let record = redeem([2; 4], b"s", 99)?.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(record.id, node);
    assert_eq!(redeem([2; 4], b"s", 99)?, Err(RedeemError::Spent), "spent");
    let spent = find(store, [2; 4])?;
    assert_eq!((spent.spent_at_ms, spent.spent_by), (Some(99), Some(node)));

    // A good token for a key already enrolled is refused and stays unspent.
    assert_eq!(
        redeem([1; 4], b"s", 120)?,
        Err(RedeemError::AlreadyEnrolled)
    );
    assert_eq!(find(store, [1; 4])?.spent_at_ms, None);
    assert_eq!(store.nodes()?.len(), 1);
    Ok(())
}

fn an_enrolled_node_is_stored_as_given(store: &dyn Store) -> anyhow::Result<()> {
    assert!(store.create_token(&token([1; 4], b"s", "t", 1))?);
    let node = node_id(1);
    let f = facts("h1")?;
    let record = store
        .redeem_and_enrol(&Hex([1; 4]), &Sha256::digest(b"s"), &node, &f, 42)?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(record.id, node);
    assert_eq!(record.facts, f);
    assert_eq!(record.admin, AdminState::Active);
    assert_eq!(record.enrolled_at_ms, 42);
    assert_eq!(record.token_id, Hex([1; 4]));
    assert_eq!(record.last_seen_ms, None);
    assert_eq!(record.liveness, "pending");
    assert_eq!(store.node(&node)?, Some(record.clone()));
    let second = enrol(store, 2)?;
    let ids: Vec<_> = store.nodes()?.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![second, node], "by enrolment time (2 before 42)");
    assert_eq!(store.node(&node_id(3))?, None);
    Ok(())
}

fn a_revoked_node_stays_revoked(store: &dyn Store) -> anyhow::Result<()> {
    assert_eq!(
        store.set_admin(&node_id(9), AdminState::Draining)?,
        AdminChange::Unknown
    );
    let node = enrol(store, 1)?;
    for state in [
        AdminState::Draining,
        AdminState::Reserve,
        AdminState::Test,
        AdminState::Retired,
        AdminState::Active,
    ] {
        assert_eq!(store.set_admin(&node, state)?, AdminChange::Set);
        assert_eq!(admin(store, &node)?, state);
    }
    assert_eq!(
        store.set_admin(&node, AdminState::Revoked)?,
        AdminChange::Set
    );
    for state in [
        AdminState::Active,
        AdminState::Draining,
        AdminState::Retired,
    ] {
        assert_eq!(store.set_admin(&node, state)?, AdminChange::Revoked);
        assert_eq!(admin(store, &node)?, AdminState::Revoked);
    }
    assert_eq!(
        store.set_admin(&node, AdminState::Revoked)?,
        AdminChange::Set,
        "revoking again is allowed"
    );
    Ok(())
}

fn liveness_is_persisted_and_a_missing_time_keeps_the_last(
    store: &dyn Store,
) -> anyhow::Result<()> {
    let (a, b) = (enrol(store, 1)?, enrol(store, 2)?);
    store.record_liveness(&[])?;
    store.record_liveness(&[
        LivenessUpdate {
            node: a,
            liveness: "up",
            last_seen_ms: Some(1_000),
        },
        LivenessUpdate {
            node: b,
            liveness: "suspect",
            last_seen_ms: Some(900),
        },
        LivenessUpdate {
            node: node_id(9),
            liveness: "up",
            last_seen_ms: Some(1_000),
        },
    ])?;
    store.record_liveness(&[LivenessUpdate {
        node: a,
        liveness: "down",
        last_seen_ms: None,
    }])?;
    let seen = |n| -> anyhow::Result<_> {
        let r = store.node(n)?.ok_or_else(|| anyhow::anyhow!("node gone"))?;
        Ok((r.liveness, r.last_seen_ms))
    };
    assert_eq!(seen(&a)?, ("down".to_owned(), Some(1_000)));
    assert_eq!(seen(&b)?, ("suspect".to_owned(), Some(900)));
    assert_eq!(store.nodes()?.len(), 2, "an unknown node is not created");
    Ok(())
}

fn find(store: &dyn Store, id: [u8; 4]) -> anyhow::Result<TokenRecord> {
    store
        .tokens()?
        .into_iter()
        .find(|t| t.id == Hex(id))
        .ok_or_else(|| anyhow::anyhow!("token {} missing", Hex(id)))
}

fn admin(store: &dyn Store, node: &hearth_protocol::NodeId) -> anyhow::Result<AdminState> {
    Ok(store
        .node(node)?
        .ok_or_else(|| anyhow::anyhow!("node gone"))?
        .admin)
}

crate::engines!(store: [
    a_token_id_already_taken_is_reported_and_the_first_token_kept,
    a_token_is_revoked_once_unless_spent,
    every_refused_redemption_says_why_and_writes_nothing,
    an_enrolled_node_is_stored_as_given,
    a_revoked_node_stays_revoked,
    liveness_is_persisted_and_a_missing_time_keeps_the_last,
]);
