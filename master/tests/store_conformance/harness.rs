//! Runs each test body once per engine: SQLite on a file in a temporary directory, PostgreSQL on
//! a database of its own, created on the server `HEARTH_TEST_POSTGRES` names and dropped
//! afterwards (also when the test fails: the drop runs while the panic unwinds).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hearth_master::store::{Store, StoreUrl, open};

/// The environment variable naming the PostgreSQL server of the tests.
pub(crate) const POSTGRES_ENV: &str = "HEARTH_TEST_POSTGRES";

/// What a PostgreSQL test says when there is no server.
const NO_SERVER: &str = "no PostgreSQL (HEARTH_TEST_POSTGRES is unset); run \
     eval \"$(scripts/pg-cluster start)\" then cargo test -p hearth-master --test store_conformance";

/// The two engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// Embedded, one master.
    Sqlite,
    /// Shared by several masters.
    Postgres,
}

/// One test's database, on one engine: open it as many times as there are masters.
pub(crate) struct TestDb {
    /// Its engine.
    pub(crate) engine: Engine,
    /// Where it is.
    pub(crate) url: StoreUrl,
    /// For PostgreSQL: the server's URL (`HEARTH_TEST_POSTGRES`) and the database's name, to
    /// drop it.
    postgres: Option<(String, String)>,
    /// For SQLite: the directory holding the file.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A store on this database (one more master).
    pub(crate) fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(open(&self.url)?)
    }

    /// The connection string of this test's own database (PostgreSQL only).
    pub(crate) fn postgres_conn(&self) -> Option<String> {
        match &self.url {
            StoreUrl::Postgres(conn) => Some(conn.clone()),
            StoreUrl::Sqlite(_) => None,
        }
    }

    /// A fresh database on `engine`, or `None` when PostgreSQL is not there (outside CI).
    fn create(engine: Engine) -> anyhow::Result<Option<Self>> {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir()?;
                Ok(Some(Self {
                    engine,
                    url: StoreUrl::Sqlite(dir.path().join("state.db")),
                    postgres: None,
                    _dir: Some(dir),
                }))
            }
            Engine::Postgres => {
                let Some(server) = postgres_server() else {
                    return Ok(None);
                };
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let name = format!(
                    "hearth_test_{}_{}_{:08x}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                );
                admin(&server, &format!("CREATE DATABASE {name}"))?;
                Ok(Some(Self {
                    engine,
                    url: StoreUrl::Postgres(with_database(&server, &name)),
                    postgres: Some((server, name)),
                    _dir: None,
                }))
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres {
            // FORCE: a store of the test may still hold connections (its pool, its listener).
            if let Err(e) = admin(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ) {
                let _ = writeln!(
                    std::io::stderr(),
                    "could not drop test database {name}: {e:#}"
                );
            }
        }
    }
}

/// The server's URL, or `None` (after saying so once) when it is not set; in CI (`CI=true`)
/// its absence is a failure.
fn postgres_server() -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{NO_SERVER} (CI=true: CI always runs the PostgreSQL tests)"
            );
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                // Straight to stderr: the test harness would hide a passing test's `eprintln!`.
                let _ = writeln!(std::io::stderr(), "skipped: {NO_SERVER}");
            }
            None
        }
    }
}

/// `server` with its database replaced by `name` (a URL's path, or a key-value `dbname`).
pub(crate) fn with_database(server: &str, name: &str) -> String {
    let Some((scheme, rest)) = server.split_once("://") else {
        // Key-value form: a later key wins.
        return format!("{server} dbname={name}");
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// Runs one statement on `conn` with a connection of its own.
pub(crate) fn admin(conn: &str, sql: &str) -> anyhow::Result<()> {
    let sql = sql.to_owned();
    postgres_client(conn, move |client| async move {
        client.batch_execute(&sql).await?;
        Ok(())
    })
}

/// Runs `f` with a plain tokio-postgres client on `conn` (the engine's own client, to write
/// what the store would not, such as a newer schema version).
pub(crate) fn postgres_client<T, F, Fut>(conn: &str, f: F) -> anyhow::Result<T>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let connect = tokio_postgres::connect(conn, tokio_postgres::NoTls);
        let (client, connection) =
            tokio::time::timeout(std::time::Duration::from_secs(10), connect).await??;
        let driver = tokio::spawn(connection);
        let out = f(client).await;
        // The client is dropped by now, so the connection ends.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), driver).await;
        out
    })
}

/// Runs a body taking the database (to open several stores on it) on `engine`.
pub(crate) fn run_db(engine: Engine, body: fn(&TestDb) -> anyhow::Result<()>) {
    let db = match TestDb::create(engine) {
        Ok(Some(db)) => db,
        Ok(None) => return,
        Err(e) => panic!("could not create the {engine:?} test database: {e:#}"),
    };
    if let Err(e) = body(&db) {
        panic!("{e:#}");
    }
}

/// Runs a body taking one store on `engine`.
pub(crate) fn run_store(engine: Engine, body: fn(&dyn Store) -> anyhow::Result<()>) {
    let db = match TestDb::create(engine) {
        Ok(Some(db)) => db,
        Ok(None) => return,
        Err(e) => panic!("could not create the {engine:?} test database: {e:#}"),
    };
    let store = match db.open() {
        Ok(s) => s,
        Err(e) => panic!("could not open the {engine:?} store: {e:#}"),
    };
    let result = body(&*store);
    // The store goes before its database.
    drop(store);
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

/// Generates `sqlite::NAME` and `postgres::NAME` tests for each body: `store: [...]` takes
/// `&dyn Store`, `db: [...]` takes `&TestDb`.
#[macro_export]
macro_rules! engines {
    (store: [$($s:ident),* $(,)?] $(, db: [$($d:ident),* $(,)?])? $(,)?) => {
        $crate::engines!(@engine sqlite, Sqlite, [$($s),*], [$($($d),*)?]);
        $crate::engines!(@engine postgres, Postgres, [$($s),*], [$($($d),*)?]);
    };
    (@engine $module:ident, $engine:ident, [$($s:ident),*], [$($d:ident),*]) => {
        mod $module {
            $(
                #[test]
                fn $s() {
                    $crate::harness::run_store($crate::harness::Engine::$engine, super::$s);
                }
            )*
            $(
                #[test]
                fn $d() {
                    $crate::harness::run_db($crate::harness::Engine::$engine, super::$d);
                }
            )*
        }
    };
}

#[test]
fn a_server_url_gets_the_test_database() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:54320/postgres", "t1"),
        "postgres://postgres@127.0.0.1:54320/t1"
    );
    assert_eq!(
        with_database("postgresql://u:p@h?sslmode=disable", "t1"),
        "postgresql://u:p@h/t1?sslmode=disable"
    );
    assert_eq!(
        with_database("host=/tmp user=postgres", "t1"),
        "host=/tmp user=postgres dbname=t1"
    );
}
