//! Group commit for SQLite: one writer thread owns the only write connection. Callers hand it
//! closures; it runs every closure queued since its last commit inside one `BEGIN IMMEDIATE`
//! transaction (each in its own savepoint, so one failing closure undoes only its own changes),
//! commits once (one WAL fsync under `synchronous=FULL`), and only then answers each caller. An
//! answered `Ok` is therefore on disk, and N concurrent writers cost one fsync instead of N.
//!
//! Reads go to a small pool of read-only connections; in WAL mode they never wait for the
//! writer and see every write already answered.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Most writes committed together (bounds the latency a long queue adds to its first write).
const MAX_BATCH: usize = 512;
/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

/// What the writer hands back after running a write: whether it succeeded (else its savepoint
/// is rolled back), and how to tell its caller once the batch's fate is known.
type Ran = (bool, Tell);
/// Tells a write's caller how its batch ended.
type Tell = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A queued write.
type Job = Box<dyn FnOnce(&Connection) -> Ran + Send>;

/// The database: the writer thread's queue and the read pool.
#[derive(Debug)]
pub(super) struct Db {
    path: PathBuf,
    queue: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
}

/// Settings every connection gets.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
}

impl Db {
    /// Opens the database at `path` in WAL mode, prepares it with `setup` (migrations) on the
    /// write connection, and starts the writer thread.
    pub(super) fn open(
        path: &Path,
        setup: impl FnOnce(&mut Connection) -> Result<(), StoreError>,
    ) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        configure(&conn)?;
        setup(&mut conn)?;
        let (queue, jobs) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, jobs))
            .map_err(|e| StoreError::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            queue: Some(queue),
            writer: Some(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` in the next group commit; returns its result once that commit is on disk. An
    /// `Err` from `f` rolls back what `f` wrote and nothing else.
    pub(super) fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let tell = Box::new(move |committed: Result<(), StoreError>| {
                // The caller may have given up waiting; nothing to do then.
                let _ = answer.send(committed.and(result));
            });
            (ok, tell)
        });
        let queue = self.queue.as_ref().ok_or_else(gone)?;
        queue.send(job).map_err(|_| gone())?;
        answered.recv().map_err(|_| {
            StoreError::Writer("the write was abandoned by the writer (see the log)".into())
        })?
    }

    /// Runs `f` on a read connection (never blocked by the writer).
    pub(super) fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = match self.idle().pop() {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.path)?;
                configure(&c)?;
                c.pragma_update(None, "query_only", "ON")?;
                c
            }
        };
        let result = f(&conn);
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The pool holds only idle connections: a panic elsewhere cannot leave one half-used.
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit.
        self.queue = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn gone() -> StoreError {
    StoreError::Writer("the store's writer thread has stopped".into())
}

/// The writer thread: batch, commit, answer; until the queue closes.
fn run(mut conn: Connection, jobs: Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let mut tells = Vec::with_capacity(size);
        let committed = commit(&mut conn, batch, &mut tells).map_err(|e| e.to_string());
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = size, "group commit failed");
        }
        for tell in tells {
            tell(committed.clone().map_err(StoreError::NotCommitted));
        }
    }
}

/// Runs `batch` in one transaction, each job in a savepoint, and commits.
fn commit(conn: &mut Connection, batch: Vec<Job>, tells: &mut Vec<Tell>) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in batch {
        tx.execute_batch("SAVEPOINT job")?;
        match catch_unwind(AssertUnwindSafe(|| job(&tx))) {
            Ok((true, tell)) => {
                tx.execute_batch("RELEASE job")?;
                tells.push(tell);
            }
            Ok((false, tell)) => {
                tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                tells.push(tell);
            }
            Err(_) => {
                // The job's answer went down with it: its caller hears "abandoned".
                tracing::error!("a store write panicked; its changes are rolled back");
                tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn db(dir: &Path) -> Db {
        Db::open(&dir.join("t.db"), |c| {
            c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)")?;
            Ok(())
        })
        .unwrap()
    }

    fn count(db: &Db) -> i64 {
        db.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .unwrap()
    }

    #[test]
    fn concurrent_writes_are_all_stored_and_a_failing_one_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        std::thread::scope(|s| {
            for t in 0..8i64 {
                let db = &db;
                s.spawn(move || {
                    for i in 0..50 {
                        let k = t * 1000 + i;
                        if i % 10 == 3 {
                            // Inserts, then fails: its row must not stay.
                            let r: Result<(), StoreError> = db.write(move |c| {
                                c.execute("INSERT INTO t (k) VALUES (?1)", [k + 500])?;
                                Err(StoreError::Corrupt("on purpose".into()))
                            });
                            assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
                        } else {
                            db.write(move |c| Ok(c.execute("INSERT INTO t (k) VALUES (?1)", [k])?))
                                .unwrap();
                        }
                    }
                });
            }
        });
        assert_eq!(count(&db), 8 * 45);
        drop(db);
        // Reopened: every acknowledged write is there, no failed one.
        let db = Db::open(&dir.path().join("t.db"), |_| Ok(())).unwrap();
        assert_eq!(count(&db), 8 * 45);
        let failed: i64 = db
            .read(|c| {
                Ok(
                    c.query_row("SELECT COUNT(*) FROM t WHERE k % 1000 >= 500", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .unwrap();
        assert_eq!(failed, 0);
    }

    #[test]
    fn a_write_that_panics_is_rolled_back_and_the_writer_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let r: Result<(), StoreError> = db.write(|c| {
            c.execute("INSERT INTO t (k) VALUES (1)", [])?;
            panic!("a bug in a write");
        });
        assert!(matches!(r, Err(StoreError::Writer(_))), "{r:?}");
        db.write(|c| Ok(c.execute("INSERT INTO t (k) VALUES (2)", [])?))
            .unwrap();
        assert_eq!(count(&db), 1);
    }

    #[test]
    fn a_read_sees_every_write_already_answered() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        for k in 0..20i64 {
            db.write(move |c| Ok(c.execute("INSERT INTO t (k) VALUES (?1)", [k])?))
                .unwrap();
            assert_eq!(count(&db), k + 1);
        }
    }
}
