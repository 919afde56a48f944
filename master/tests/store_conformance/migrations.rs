//! Migrations: opening a database again changes nothing, several masters may open a fresh
//! shared one at once, and a database written by a newer build is refused.

use hearth_master::store::{StoreError, StoreUrl, open};

use crate::fixtures::{deployment, enrol, token};
use crate::harness::{TestDb, postgres_client};

fn opening_again_migrates_nothing_and_keeps_everything(db: &TestDb) -> anyhow::Result<()> {
    let store = db.open()?;
    let node = enrol(&*store, 1)?;
    store.put_deployment(&deployment("kv"))?;
    let (nodes, mut tokens) = (store.nodes()?, store.tokens()?);
    drop(store);
    let applied = schema_query(db, "SELECT COUNT(*) FROM schema_version")?;
    let version = schema_version(db)?;
    for round in 0..2 {
        let again = db.open()?;
        assert_eq!(again.nodes()?, nodes, "round {round}");
        assert_eq!(again.tokens()?, tokens);
        assert_eq!(again.deployment("kv")?.map(|d| d.version), Some(1 + round));
        again.put_deployment(&deployment("kv"))?;
        assert!(
            again.create_token(&token([round as u8 + 1; 4], b"s", "t", 1))?,
            "writable"
        );
        tokens = again.tokens()?;
        assert!(again.node(&node)?.is_some());
    }
    assert_eq!(schema_version(db)?, version, "the same schema");
    assert_eq!(
        schema_query(db, "SELECT COUNT(*) FROM schema_version")?,
        applied,
        "no migration ran again"
    );
    Ok(())
}

/// Masters starting together on an empty shared database: each migration runs once and every
/// one of them opens.
fn masters_opening_a_fresh_database_together_all_open(db: &TestDb) -> anyhow::Result<()> {
    if db.postgres_conn().is_none() {
        // One master owns an SQLite file.
        return Ok(());
    }
    let url = db.url.clone();
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || open(&url).map(|s| s.shared()))
        })
        .collect();
    for o in openers {
        let opened = o
            .join()
            .map_err(|_| anyhow::anyhow!("an opener panicked"))?;
        assert!(opened?, "opens, shared");
    }
    let store = db.open()?;
    enrol(&*store, 1)?;
    Ok(())
}

fn a_database_from_a_newer_build_is_refused(db: &TestDb) -> anyhow::Result<()> {
    drop(db.open()?);
    let current = schema_version(db)?;
    anyhow::ensure!(current >= 1, "a migrated database has a version");
    set_schema_version(db, current + 1)?;
    match open(&db.url) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (current + 1, current));
        }
        Err(e) => anyhow::bail!("a newer schema gave {e}, not TooNew"),
        Ok(_) => anyhow::bail!("a database of schema {} opened", current + 1),
    }
    Ok(())
}

/// The highest version in `schema_version`.
fn schema_version(db: &TestDb) -> anyhow::Result<i64> {
    schema_query(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
}

/// One integer, read with the engine's own client.
fn schema_query(db: &TestDb, sql: &'static str) -> anyhow::Result<i64> {
    match (&db.url, db.postgres_conn()) {
        (_, Some(conn)) => postgres_client(&conn, |c| async move {
            Ok(c.query_one(sql, &[]).await?.try_get::<_, i64>(0)?)
        }),
        (StoreUrl::Sqlite(path), None) => {
            let c = rusqlite::Connection::open(path)?;
            Ok(c.query_row(sql, [], |r| r.get(0))?)
        }
        (StoreUrl::Postgres(_), None) => anyhow::bail!("unreachable"),
    }
}

/// Records `version` as applied, as a newer build would have.
fn set_schema_version(db: &TestDb, version: i64) -> anyhow::Result<()> {
    match (&db.url, db.postgres_conn()) {
        (_, Some(conn)) => postgres_client(&conn, move |c| async move {
            c.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await?;
            Ok(())
        }),
        (StoreUrl::Sqlite(path), None) => {
            let c = rusqlite::Connection::open(path)?;
            c.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [version],
            )?;
            Ok(())
        }
        (StoreUrl::Postgres(_), None) => anyhow::bail!("unreachable"),
    }
}

crate::engines!(
    store: [],
    db: [
        opening_again_migrates_nothing_and_keeps_everything,
        masters_opening_a_fresh_database_together_all_open,
        a_database_from_a_newer_build_is_refused,
    ],
);
