//! A fresh PostgreSQL database for one end-to-end test, on the server named by
//! `HEARTH_TEST_POSTGRES` (`scripts/pg-cluster start` starts a throwaway one and prints it).
//! Without it the test is skipped with a message saying how to run it, except under `CI=true`,
//! where a missing server fails the test.

use hearth_simulator::live::database::ScratchDatabase;

/// A database made for one test; dropped (with `FORCE`) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// Connection URL of the fresh database.
    pub url: String,
    _db: ScratchDatabase,
}

/// The server's URL, or `None` (after printing how to get one) when the test must be skipped.
///
/// # Panics
/// Under `CI=true` when `HEARTH_TEST_POSTGRES` is unset: CI always runs these tests.
pub fn server_or_skip(test: &str) -> Option<String> {
    match std::env::var("HEARTH_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let how = "set HEARTH_TEST_POSTGRES to a PostgreSQL server's URL, e.g. run \
                       `eval \"$(scripts/pg-cluster start)\"` first";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: no PostgreSQL server under CI=true: {how}"
            );
            eprintln!("skipped {test}: no PostgreSQL server; {how}");
            None
        }
    }
}

impl TestDatabase {
    /// Creates `hearth_e2e_<random>` on the server, or `None` when skipped (see
    /// [`server_or_skip`]).
    ///
    /// # Panics
    /// When the server named cannot be reached or refuses the database.
    pub async fn create(test: &str) -> Option<Self> {
        let admin = server_or_skip(test)?;
        let db = ScratchDatabase::create(&admin, "e2e")
            .await
            .unwrap_or_else(|e| panic!("{test}: HEARTH_TEST_POSTGRES ({admin}): {e}"));
        Some(Self {
            url: db.url().to_owned(),
            _db: db,
        })
    }
}
