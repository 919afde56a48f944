//! The bridge from the synchronous [`super::super::Store`] trait to the asynchronous client.
//!
//! The store owns a small tokio runtime on a thread of its own (`store-postgres`). A call hands
//! its operation to that runtime and waits for the answer on a `std::sync::mpsc` channel, so it
//! works the same from a plain thread, a `spawn_blocking` thread, or directly from a task of the
//! master's own runtime (where `Runtime::block_on` would panic): the caller's thread only blocks,
//! it never drives a runtime. Dropping the bridge stops the runtime on its own thread and joins
//! it.
//!
//! Every operation is one transaction ([`Tx`]) on a pooled connection (deadpool, with its
//! per-connection statement cache). Serialization failures and deadlocks (SQLSTATE 40001,
//! 40P01), after which PostgreSQL has rolled everything back, are retried a few times with a
//! short backoff; the notifications a write collected ([`Notes`]) are sent with `pg_notify`
//! inside the transaction, so other masters hear of it only once it committed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Object, Pool, PoolError};
use hearth_protocol::NodeId;
use hearth_protocol::messages::state::InstanceId;
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::super::{FileKind, StoreError};
use super::listen::{self, CHANNEL};

/// Attempts of one operation that keeps meeting serialization failures: 16 API clients writing
/// deployments at once through one master met more than 8 in a row (`hearth-bench-api`).
const ATTEMPTS: u32 = 32;
/// Longest wait between two attempts, ms (each wait is drawn at random below its cap, so that
/// transactions that conflicted do not meet again at the same moment).
const MAX_BACKOFF_MS: u64 = 200;

/// The future an operation returns, borrowing its transaction and arguments.
pub(super) type TxFuture<'t, R> = Pin<Box<dyn Future<Output = Result<R, StoreError>> + Send + 't>>;

/// An operation: a function of the open transaction and its (owned, `'static`) arguments. A
/// plain function (no captures), so that it can be run again after a serialization failure.
pub(super) type Op<A, R> = for<'t, 'c> fn(&'t Tx<'c>, &'t A) -> TxFuture<'t, R>;

/// How an operation's transaction is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    /// A consistent read-only snapshot (`REPEATABLE READ READ ONLY`).
    Read,
    /// Blind writes whose statements are atomic on their own (`READ COMMITTED`): upserts of
    /// soft state no other write reads to decide.
    Blind,
    /// Read-then-write (`SERIALIZABLE`): as if every such write ran alone, as in SQLite.
    Serial,
}

/// The database error as a [`StoreError`], with its SQLSTATE in the message.
pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    let code = e.code().cloned();
    let conflict = matches!(
        code,
        Some(SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED)
    );
    // A lost or closed connection, an admin shutdown, a server starting or stopping.
    let lost = e.is_closed()
        || code.as_ref().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || c.starts_with("57P")
        })
        || (code.is_none() && e.as_db_error().is_none());
    let message = match (&code, e.as_db_error()) {
        (Some(code), Some(db)) => format!("{} (SQLSTATE {})", db.message(), code.code()),
        (Some(code), None) => format!("{e} (SQLSTATE {})", code.code()),
        _ => e.to_string(),
    };
    StoreError::Db {
        engine: "postgres",
        message,
        transient: conflict || lost,
    }
}

/// A pool error (timeout, connection refused, closed pool) as a [`StoreError`].
pub(super) fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg(e),
        other => StoreError::Db {
            engine: "postgres",
            message: format!("no database connection: {other}"),
            transient: !matches!(other, PoolError::Closed | PoolError::NoRuntimeSpecified),
        },
    }
}

/// A value the database holds that does not parse.
pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// An unsigned number or time as the signed BIGINT PostgreSQL stores (saturating).
pub(super) fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored BIGINT as an unsigned value (a negative one, never written, reads as 0).
pub(super) fn unms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Whether PostgreSQL rolled the transaction back for a conflict (worth running again).
fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Db { message, .. }
        if message.ends_with("(SQLSTATE 40001)") || message.ends_with("(SQLSTATE 40P01)"))
}

/// What a write tells the other masters once it commits.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// Nodes whose desired-state revision was bumped.
    pub(super) revisions: Vec<NodeId>,
    /// Nodes enrolled or whose administrative state was set.
    pub(super) nodes: Vec<NodeId>,
    /// Deployments, assignments, gateways or backups changed.
    pub(super) data: bool,
    /// Instances with a new published report.
    pub(super) reports: Vec<InstanceId>,
    /// Shared files stored or replaced.
    pub(super) files: Vec<(FileKind, String)>,
}

/// One open transaction: the client's, with the notes it collects.
pub(super) struct Tx<'c> {
    txn: deadpool_postgres::Transaction<'c>,
    notes: Mutex<Notes>,
}

impl Tx<'_> {
    /// Rows of `sql` (prepared once per connection).
    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let stmt = self.txn.prepare_cached(sql).await.map_err(pg)?;
        self.txn.query(&stmt, params).await.map_err(pg)
    }

    /// The row of `sql`, if any.
    pub(super) async fn opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let stmt = self.txn.prepare_cached(sql).await.map_err(pg)?;
        self.txn.query_opt(&stmt, params).await.map_err(pg)
    }

    /// Runs `sql`; the number of rows it changed.
    pub(super) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let stmt = self.txn.prepare_cached(sql).await.map_err(pg)?;
        self.txn.execute(&stmt, params).await.map_err(pg)
    }

    /// Tells the other masters that these nodes' revisions were bumped.
    pub(super) fn note_revisions(&self, nodes: impl IntoIterator<Item = NodeId>) {
        self.notes().revisions.extend(nodes);
    }

    /// Tells the other masters that these nodes were enrolled or their admin state set.
    pub(super) fn note_nodes(&self, nodes: impl IntoIterator<Item = NodeId>) {
        self.notes().nodes.extend(nodes);
    }

    /// Tells the other masters that data they cache changed.
    pub(super) fn note_data(&self) {
        self.notes().data = true;
    }

    /// Tells the other masters that these instances have new reports.
    pub(super) fn note_reports(&self, instances: impl IntoIterator<Item = InstanceId>) {
        self.notes().reports.extend(instances);
    }

    /// Tells the other masters that these shared files were stored.
    pub(super) fn note_files(&self, files: impl IntoIterator<Item = (FileKind, String)>) {
        self.notes().files.extend(files);
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, Notes> {
        // Notes are only appended to under the lock: a panic cannot leave them torn.
        self.notes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the notes (delivered on commit only) and commits.
    async fn commit(self, origin: &str) -> Result<(), StoreError> {
        let notes = std::mem::take(&mut *self.notes());
        let payloads = listen::payloads(origin, &notes);
        if !payloads.is_empty() {
            let sql = format!("SELECT pg_notify('{CHANNEL}', p) FROM unnest($1::text[]) AS p");
            self.query(&sql, &[&payloads]).await?;
        }
        self.txn.commit().await.map_err(pg)
    }
}

/// The store's runtime, its pool and its origin id.
#[derive(Debug)]
pub(super) struct Bridge {
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// This store's random id, in every notification it sends.
    origin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bridge {
    /// Starts the runtime thread; `pool` is made on it (deadpool needs a runtime for its
    /// timeouts).
    pub(super) fn start(
        origin: String,
        make_pool: impl FnOnce() -> Result<Pool, StoreError> + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("store-postgres-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(StoreError::Writer(format!(
                            "cannot start the PostgreSQL store's runtime: {e}"
                        ))));
                        return;
                    }
                };
                let pool = {
                    let _entered = rt.enter();
                    make_pool()
                };
                let _ = ready.send(pool.map(|p| (rt.handle().clone(), p)));
                // Until the store is dropped (or dropped without sending).
                let _ = rt.block_on(stopped);
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .map_err(|e| StoreError::Writer(format!("cannot start the store's thread: {e}")))?;
        let (handle, pool) = started
            .recv()
            .map_err(|_| StoreError::Writer("the PostgreSQL store's thread stopped".into()))??;
        Ok(Self {
            handle,
            pool,
            origin,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The runtime, for the listening task.
    pub(super) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// This store's origin id.
    pub(super) fn origin(&self) -> &str {
        &self.origin
    }

    /// Runs `fut` on the store's runtime and waits for its answer (from any thread).
    pub(super) fn block<R: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<R, StoreError>> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = answer.send(fut.await);
        });
        answered.recv().map_err(|_| StoreError::Db {
            engine: "postgres",
            message: "the store's runtime dropped the operation (stopping, or a bug: see the log)"
                .into(),
            transient: false,
        })?
    }

    /// Runs `op(args)` in one transaction at `level` (see the module doc).
    pub(super) fn run<A, R>(&self, level: Level, args: A, op: Op<A, R>) -> Result<R, StoreError>
    where
        A: Send + Sync + 'static,
        R: Send + 'static,
    {
        let (pool, origin) = (self.pool.clone(), self.origin.clone());
        self.block(async move { transact(&pool, &origin, level, &args, op).await })
    }

    /// A connection of the pool (migrations).
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The transaction loop: open, run, notify and commit; again after a conflict.
async fn transact<A, R>(
    pool: &Pool,
    origin: &str,
    level: Level,
    args: &A,
    op: Op<A, R>,
) -> Result<R, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut client: Object = pool.get().await.map_err(pool_error)?;
        let result = once(&mut client, origin, level, args, op).await;
        match result {
            Err(e) if attempt < ATTEMPTS && is_conflict(&e) => {
                let cap = 2u64.saturating_pow(attempt).clamp(4, MAX_BACKOFF_MS);
                let ms = 1 + rand::random::<u64>() % cap;
                tracing::debug!(attempt, error = %e, "retrying a store transaction");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            r => return r,
        }
    }
}

async fn once<A, R>(
    client: &mut Object,
    origin: &str,
    level: Level,
    args: &A,
    op: Op<A, R>,
) -> Result<R, StoreError> {
    let (isolation, read_only) = match level {
        Level::Read => (IsolationLevel::RepeatableRead, true),
        Level::Blind => (IsolationLevel::ReadCommitted, false),
        Level::Serial => (IsolationLevel::Serializable, false),
    };
    let txn = client
        .build_transaction()
        .isolation_level(isolation)
        .read_only(read_only)
        .start()
        .await
        .map_err(pg)?;
    let tx = Tx {
        txn,
        notes: Mutex::new(Notes::default()),
    };
    // An error drops `tx`, which rolls back.
    let r = op(&tx, args).await?;
    tx.commit(origin).await?;
    Ok(r)
}
