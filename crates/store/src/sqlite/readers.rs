//! The SQLite store's readers: a few threads, each with a connection of its own, that take
//! read jobs from one queue.
//!
//! SQLite's calls block, so they run on threads of their own, never on the async runtime's.
//! A reader thread keeps its connection (and that connection's prepared statements) for its
//! whole life, so a read costs one hand-over to a thread that is already waiting, and back.
//! Each reader is `query_only`: every write goes through the writer thread
//! ([`super::writer`]). In WAL mode readers never wait for the writer nor it for them; each
//! read statement, or each read transaction a job opens, sees one snapshot.
//!
//! (Handing a pooled connection to `tokio::task::spawn_blocking` instead would add a
//! semaphore and a lock on the pool to the same hand-over; the two were not measured
//! against each other.)

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use countersign_core::StoreError;
use rusqlite::Connection;
use tokio::sync::oneshot;

/// Prepared statements each reader's connection keeps.
const STATEMENT_CACHE: usize = 64;

/// A read, with where its answer goes, as a reader thread runs it.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The handle the store reads through. Cheap to clone; the reader threads end when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    jobs: mpsc::Sender<ReadJob>,
}

impl Readers {
    /// Starts one reader thread on each of `conns` (connections to the store's database),
    /// adding them to `threads`.
    pub(crate) fn start(
        conns: Vec<Connection>,
        threads: &mut Vec<JoinHandle<()>>,
    ) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<ReadJob>();
        let queue = Arc::new(Mutex::new(queue));
        for (i, conn) in conns.into_iter().enumerate() {
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            let queue = Arc::clone(&queue);
            let thread = std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || serve(&conn, &queue))
                .map_err(|e| StoreError::backend_caused_by("starting a database reader", e))?;
            threads.push(thread);
        }
        Ok(Self { jobs })
    }

    /// Runs `read` on a reader's connection and returns what it returns.
    pub(crate) async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(read(conn));
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::backend("the database readers have stopped")
}

/// A reader thread: takes the next job from the shared queue, runs it, and waits for the
/// next, until every handle is gone.
fn serve(conn: &Connection, queue: &Mutex<mpsc::Receiver<ReadJob>>) {
    loop {
        // Only the thread holding the lock waits on the queue; the others wait for the lock.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        // A read that panics is answered by its dropped reply ("stopped"); the thread, and its
        // connection, go on serving the others.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(conn))).is_err() {
            tracing::warn!("store: a database read panicked");
        }
    }
}
