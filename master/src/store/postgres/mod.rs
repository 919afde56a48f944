//! The PostgreSQL engine: one database shared by several masters.
//!
//! [`PostgresStore`] runs its client (`tokio-postgres`, pooled by `deadpool-postgres`) on a
//! runtime of its own ([`bridge`]), so the synchronous [`Store`] trait can be called from any
//! thread or task; every method is one transaction ([`bridge::Tx`]), serializable where it
//! reads before it writes, and retried after a serialization failure. Writes tell the other
//! masters what changed with `pg_notify` inside their transaction, and one listening
//! connection turns what the others wrote into [`StoreEvent`]s and drops the caches ([`listen`]).
//!
//! The same in-memory caches as SQLite's keep every assignment and every deployment until a
//! write changes them: a local write drops them before it returns, another master's once its
//! notification arrives (moments after its commit: a read in between may see the older list).
//!
//! Connections use no TLS (`NoTls`): point the store at a server on a Unix socket or loopback
//! (or one reached over a tunnel you trust), never across a network in the clear.

mod assignments;
mod backups;
mod bridge;
mod coord;
mod deployments;
mod files;
mod gateways;
mod listen;
mod migrations;
mod nodes;
mod store;
#[cfg(test)]
mod tests;
mod users;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use hearth_protocol::NodeId;
use hearth_protocol::messages::state::Assignment;
use tokio_postgres::NoTls;

use super::cached::Cached;
use super::{StoreError, StoreEvent, StoredDeployment};
use bridge::{Bridge, Level};

/// Connections the pool keeps at most.
const POOL_SIZE: usize = 16;
/// Events kept for a lagging subscriber.
const EVENTS_CAPACITY: usize = 1024;

/// What the store and its listening task share.
#[derive(Debug)]
struct Shared {
    /// This store's origin id (its own notifications are ignored).
    origin: String,
    /// Every assignment, as last read.
    assignments: Cached<Vec<(NodeId, Assignment)>>,
    /// Every deployment, as last read.
    deployments: Cached<Vec<StoredDeployment>>,
    /// See [`Store::changes`].
    changes: tokio::sync::watch::Sender<u64>,
    /// See [`Store::subscribe`].
    events: tokio::sync::broadcast::Sender<StoreEvent>,
}

impl Shared {
    /// Another master wrote (or may have): drop the caches and wake the watchers.
    fn invalidate(&self) {
        self.assignments.invalidate();
        self.deployments.invalidate();
        self.changed();
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// PostgreSQL-backed [`Store`] (see the module doc).
#[derive(Debug)]
pub(crate) struct PostgresStore {
    // Dropped first: stops the runtime (and the listener with it), then closes the pool.
    db: Bridge,
    shared: Arc<Shared>,
}

impl PostgresStore {
    /// Connects to the database named by `conn` (a `postgres://…` URL or a `key=value`
    /// conninfo string), migrates it, and starts listening for the other masters' writes.
    pub(crate) fn connect(conn: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = conn.parse().map_err(|e| StoreError::Db {
            engine: "postgres",
            message: format!("cannot read the PostgreSQL connection string: {e}"),
            transient: false,
        })?;
        config.application_name("hearth-master");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A dead peer is noticed in about half a minute, not the kernel's two hours.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(15))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        let target = describe(&config);
        let origin = format!("{:016x}", rand::random::<u64>());
        let pool_config = config.clone();
        let db = Bridge::start(origin.clone(), move || make_pool(pool_config))?;
        let pool = db.pool().clone();
        db.block(async move {
            match pool.get().await {
                Ok(_) => Ok(()),
                Err(e) => Err(unreachable_server(&target, bridge::pool_error(e))),
            }
        })?;
        let pool = db.pool().clone();
        db.block(async move { migrations::migrate(&pool).await })?;
        let shared = Arc::new(Shared {
            origin,
            assignments: Cached::default(),
            deployments: Cached::default(),
            changes: tokio::sync::watch::Sender::new(0),
            events: tokio::sync::broadcast::Sender::new(EVENTS_CAPACITY),
        });
        let (ready, listening) = tokio::sync::oneshot::channel();
        db.handle()
            .spawn(listen::run(config, shared.clone(), ready));
        db.block(async move {
            listening.await.map_err(|_| StoreError::Db {
                engine: "postgres",
                message: "the listening connection stopped before it listened".into(),
                transient: true,
            })?
        })?;
        tracing::info!(origin = %db.origin(), "PostgreSQL store ready");
        Ok(Self { db, shared })
    }

    /// A write of assignments: the cached list is stale once it returns (whatever it returns).
    fn write_assignments<A, R>(&self, args: A, op: bridge::Op<A, R>) -> Result<R, StoreError>
    where
        A: Send + Sync + 'static,
        R: Send + 'static,
    {
        let result = self.db.run(Level::Serial, args, op);
        self.shared.assignments.invalidate();
        self.shared.changed();
        result
    }

    /// A write of deployments: the cached list is stale once it returns (whatever it returns).
    fn write_deployments<A, R>(&self, args: A, op: bridge::Op<A, R>) -> Result<R, StoreError>
    where
        A: Send + Sync + 'static,
        R: Send + 'static,
    {
        let result = self.db.run(Level::Serial, args, op);
        self.shared.deployments.invalidate();
        self.shared.changed();
        result
    }
}

fn make_pool(config: tokio_postgres::Config) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(15)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Db {
            engine: "postgres",
            message: format!("cannot make the connection pool: {e}"),
            transient: false,
        })
}

/// `host:port/database` of a connection config, without its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "{} port {} database {}",
        if hosts.is_empty() {
            "localhost".into()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".into()
        } else {
            ports.join(",")
        },
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres"),
    )
}

fn unreachable_server(target: &str, e: StoreError) -> StoreError {
    let why = match e {
        StoreError::Db { message, .. } => message,
        other => other.to_string(),
    };
    StoreError::Db {
        engine: "postgres",
        message: format!(
            "cannot reach the PostgreSQL server at {target}: {why}. Start one (for a throwaway \
             test server: `eval \"$(scripts/pg-cluster start)\"`), create the database and \
             check the user and password, or give another --store"
        ),
        transient: true,
    }
}
