//! A fresh PostgreSQL database for one end-to-end test, on the server named by
//! `HEARTH_TEST_POSTGRES` (`scripts/pg-cluster start` starts a throwaway one and prints it).
//! Without it the test is skipped with a message saying how to run it, except under `CI=true`,
//! where a missing server fails the test.

/// A database made for one test; dropped (with `FORCE`) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// Connection URL of the fresh database.
    pub url: String,
    admin: String,
    name: String,
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

fn with_database(url: &str, db: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path(&format!("/{db}"));
            u.to_string()
        }
        // A key-value conninfo string: a later `dbname` wins.
        Err(_) => format!("{url} dbname={db}"),
    }
}

impl TestDatabase {
    /// Creates `hearth_e2e_<random>` on the server, or `None` when skipped (see
    /// [`server_or_skip`]).
    pub async fn create(test: &str) -> Option<Self> {
        let admin = server_or_skip(test)?;
        let name = format!("hearth_e2e_{:016x}", rand::random::<u64>());
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach HEARTH_TEST_POSTGRES ({admin}): {e}"));
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        drop(client);
        let _ = driver.await;
        Some(Self {
            url: with_database(&admin, &name),
            admin,
            name,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped from async tests too: do it on a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    let driver = tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    drop(client);
                    let _ = driver.await;
                }
            });
        })
        .join();
    }
}
