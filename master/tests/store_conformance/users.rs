//! Users: put, list, look up by credential and remove; a taken name or credential writes
//! nothing; an enrolment token naming a volunteer makes or joins that volunteer in the
//! enrolment's transaction, and leaves a user of another role (or a taken credential) alone;
//! a row that no longer parses is `Corrupt`.

use std::collections::BTreeSet;

use hearth_api::{DEFAULT_USER_LIFETIME_DAYS, UserName, UserRole};
use hearth_master::store::{PutUser, RedeemError, Store, StoreError, StoreUrl, UserRecord};
use hearth_protocol::{Hex, NodeId, Sha256};

use crate::fixtures::{facts, node_id, token};
use crate::harness::{TestDb, postgres_client};

/// A day in ms.
const DAY_MS: u64 = 86_400_000;

fn name(n: &str) -> anyhow::Result<UserName> {
    Ok(n.parse()?)
}

/// A user with an issued credential `u` + 16 hex made of `seed`.
fn user(n: &str, role: UserRole, seed: u8) -> anyhow::Result<UserRecord> {
    Ok(UserRecord {
        name: name(n)?,
        role,
        nodes: BTreeSet::new(),
        credential: format!("u{}", Hex([seed; 8])),
        secret_hash: Sha256::digest(&[seed; 32]),
        created_at_ms: 10,
        expires_at_ms: Some(10 + DAY_MS),
    })
}

/// Creates token `id` (secret `[id[0]; 8]`) naming `volunteer` and enrols node `seed` with it
/// at `now`.
fn enrol_for(
    store: &dyn Store,
    id: [u8; 4],
    volunteer: &str,
    seed: u8,
    now: u64,
) -> anyhow::Result<NodeId> {
    let secret = [id[0]; 8];
    let mut t = token(id, &secret, "volunteer", 1);
    t.volunteer = Some(name(volunteer)?);
    anyhow::ensure!(store.create_token(&t)?, "token id taken");
    let node = node_id(seed);
    store
        .redeem_and_enrol(
            &Hex(id),
            &Sha256::digest(&secret),
            &node,
            &facts(&format!("h{seed}"))?,
            now,
        )?
        .map_err(|e| anyhow::anyhow!("enrolling node {seed}: {e}"))?;
    Ok(node)
}

fn users_are_put_listed_found_and_removed(store: &dyn Store) -> anyhow::Result<()> {
    assert!(store.users()?.is_empty());
    let zoe = user("zoe", UserRole::Operator, 1)?;
    let ana = user("ana", UserRole::Auditor, 2)?;
    let mut bob = user("bob", UserRole::Volunteer, 3)?;
    bob.nodes = BTreeSet::from([node_id(1), node_id(2)]);
    bob.expires_at_ms = None;
    for u in [&zoe, &ana, &bob] {
        assert_eq!(store.put_user(u)?, PutUser::Created, "{}", u.name);
    }
    assert_eq!(
        store.users()?,
        vec![ana.clone(), bob.clone(), zoe.clone()],
        "by name, stored as given"
    );
    assert_eq!(
        store.user_by_credential(&zoe.credential)?,
        Some(zoe.clone())
    );
    assert_eq!(
        store.user_by_credential(&bob.credential)?,
        Some(bob.clone())
    );
    assert_eq!(
        store.user_by_credential(&format!("u{}", Hex([9u8; 8])))?,
        None
    );
    assert_eq!(store.user_by_credential("")?, None);

    assert!(store.remove_user(&ana.name)?);
    assert!(!store.remove_user(&ana.name)?, "already gone");
    assert!(!store.remove_user(&name("nobody")?)?);
    assert_eq!(store.users()?, vec![bob, zoe]);
    assert_eq!(store.user_by_credential(&ana.credential)?, None);
    // The name and the credential are free again.
    assert_eq!(store.put_user(&ana)?, PutUser::Created);
    Ok(())
}

fn a_taken_name_or_credential_writes_nothing(store: &dyn Store) -> anyhow::Result<()> {
    let ana = user("ana", UserRole::Auditor, 1)?;
    assert_eq!(store.put_user(&ana)?, PutUser::Created);
    let same_name = user("ana", UserRole::Operator, 2)?;
    assert_eq!(store.put_user(&same_name)?, PutUser::NameTaken);
    let mut same_credential = user("bob", UserRole::Operator, 3)?;
    same_credential.credential = ana.credential.clone();
    assert_eq!(store.put_user(&same_credential)?, PutUser::CredentialTaken);
    assert_eq!(
        store.put_user(&ana)?,
        PutUser::NameTaken,
        "the same user again: the name is checked first"
    );
    assert_eq!(store.users()?, vec![ana.clone()], "nothing written");
    assert_eq!(store.user_by_credential(&same_name.credential)?, None);
    assert_eq!(store.user_by_credential(&ana.credential)?, Some(ana));
    Ok(())
}

fn a_volunteer_token_makes_then_joins_the_volunteer(store: &dyn Store) -> anyhow::Result<()> {
    let first = enrol_for(store, [1, 2, 3, 4], "vic", 1, 1_000)?;
    let tokens = store.tokens()?;
    assert_eq!(
        tokens.first().and_then(|t| t.volunteer.clone()),
        Some(name("vic")?),
        "the token keeps its volunteer"
    );
    let made = UserRecord {
        name: name("vic")?,
        role: UserRole::Volunteer,
        nodes: BTreeSet::from([first]),
        credential: "t01020304".into(),
        secret_hash: Sha256::digest(&[1; 8]),
        created_at_ms: 1_000,
        expires_at_ms: Some(1_000 + DEFAULT_USER_LIFETIME_DAYS * DAY_MS),
    };
    assert_eq!(store.users()?, vec![made.clone()]);
    assert_eq!(store.user_by_credential("t01020304")?, Some(made.clone()));
    assert!(store.node(&first)?.is_some(), "the node is enrolled");

    let second = enrol_for(store, [5, 6, 7, 8], "vic", 2, 2_000)?;
    let joined = UserRecord {
        nodes: BTreeSet::from([first, second]),
        ..made
    };
    assert_eq!(
        store.users()?,
        vec![joined.clone()],
        "the second node joins; the first token stays the credential"
    );
    assert_eq!(store.user_by_credential("t05060708")?, None);
    assert_eq!(store.user_by_credential("t01020304")?, Some(joined));
    assert_eq!(store.nodes()?.len(), 2);
    Ok(())
}

fn a_token_naming_another_role_leaves_the_user_alone(store: &dyn Store) -> anyhow::Result<()> {
    let aud = user("aud", UserRole::Auditor, 1)?;
    let op = user("op", UserRole::Operator, 2)?;
    assert_eq!(store.put_user(&aud)?, PutUser::Created);
    assert_eq!(store.put_user(&op)?, PutUser::Created);
    let a = enrol_for(store, [1; 4], "aud", 1, 1_000)?;
    let b = enrol_for(store, [2; 4], "op", 2, 1_000)?;
    assert_eq!(store.users()?, vec![aud, op], "unchanged");
    assert!(
        store.node(&a)?.is_some() && store.node(&b)?.is_some(),
        "still enrolled"
    );
    assert_eq!(store.user_by_credential("t01010101")?, None);
    Ok(())
}

fn a_taken_token_credential_enrols_without_a_volunteer(store: &dyn Store) -> anyhow::Result<()> {
    let mut holder = user("holder", UserRole::Operator, 1)?;
    holder.credential = "t05050505".into();
    assert_eq!(store.put_user(&holder)?, PutUser::Created);
    let node = enrol_for(store, [5; 4], "newcomer", 5, 1_000)?;
    assert!(store.node(&node)?.is_some(), "the enrolment is not failed");
    assert_eq!(store.users()?, vec![holder], "no volunteer made");
    Ok(())
}

fn a_refused_redemption_makes_no_volunteer(store: &dyn Store) -> anyhow::Result<()> {
    let mut t = token([3; 4], b"secret", "volunteer", 1);
    t.volunteer = Some(name("vic")?);
    assert!(store.create_token(&t)?);
    let refused = store.redeem_and_enrol(
        &Hex([3; 4]),
        &Sha256::digest(b"wrong"),
        &node_id(1),
        &facts("h1")?,
        5,
    )?;
    assert_eq!(refused, Err(RedeemError::Invalid));
    assert!(store.users()?.is_empty());
    Ok(())
}

fn a_row_that_no_longer_parses_is_corrupt(db: &TestDb) -> anyhow::Result<()> {
    let store = db.open()?;
    assert_eq!(
        store.put_user(&user("ana", UserRole::Auditor, 1)?)?,
        PutUser::Created
    );
    for bad in [
        "UPDATE users SET role = 'root'",
        "UPDATE users SET role = 'auditor', nodes = '[\"not a node\"]'",
        "UPDATE users SET nodes = '[]', secret_hash = 'xyz'",
    ] {
        execute(db, bad)?;
        match store.users() {
            Err(StoreError::Corrupt(_)) => {}
            other => anyhow::bail!("after {bad}: {other:?}, not Corrupt"),
        }
        match store.user_by_credential(&format!("u{}", Hex([1u8; 8]))) {
            Err(StoreError::Corrupt(_)) => {}
            other => anyhow::bail!("after {bad}: {other:?}, not Corrupt"),
        }
    }
    Ok(())
}

/// Runs `sql` with the engine's own client, behind the store's back.
fn execute(db: &TestDb, sql: &'static str) -> anyhow::Result<()> {
    match (&db.url, db.postgres_conn()) {
        (_, Some(conn)) => postgres_client(&conn, |c| async move {
            c.batch_execute(sql).await?;
            Ok(())
        }),
        (StoreUrl::Sqlite(path), None) => {
            rusqlite::Connection::open(path)?.execute_batch(sql)?;
            Ok(())
        }
        (StoreUrl::Postgres(_), None) => anyhow::bail!("unreachable"),
    }
}

crate::engines!(
    store: [
        users_are_put_listed_found_and_removed,
        a_taken_name_or_credential_writes_nothing,
        a_volunteer_token_makes_then_joins_the_volunteer,
        a_token_naming_another_role_leaves_the_user_alone,
        a_taken_token_credential_enrols_without_a_volunteer,
        a_refused_redemption_makes_no_volunteer,
    ],
    db: [a_row_that_no_longer_parses_is_corrupt],
);
