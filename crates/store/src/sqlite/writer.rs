//! The SQLite store's writer thread, which commits concurrent writes together (group commit).
//!
//! With `synchronous = FULL` every commit waits for the disk, so one commit per write caps
//! the store at the disk's flush rate however fast the rest is. Instead, every write of this
//! process is a job sent to one writer thread. The writer starts a `BEGIN IMMEDIATE`
//! transaction, runs each waiting job inside its own savepoint — a job that fails is rolled
//! back to its savepoint and leaves no trace, the others keep their changes — and commits them
//! all with one flush. Only then is each caller answered: a write reported as done is durable,
//! exactly as before, and jobs run one after another, so each sees the effects of the jobs
//! before it (the compare-and-set on a request's version, the audit chain head) as if they had
//! committed separately.
//!
//! Batches form by themselves: while one commit waits for the disk, the next jobs queue up.
//! Under no load a batch is one job, so latency is what it was; under load the flush cost is
//! shared. A batch is capped at [`MAX_BATCH`] jobs so no caller waits behind an unbounded
//! queue.
//!
//! The writer thread owns its connection and runs a whole batch on it, statement after
//! statement, with no hand-over to another thread in between: a batch costs one wake-up of
//! the thread, however many statements it runs. Jobs are plain functions, run on that
//! thread, not in the caller's task: a caller that goes away (a client that hangs up) cannot
//! leave a write half-done.
//!
//! A job whose refusals all come from its first change ([`Writer::write_checked`]) runs
//! without a savepoint; savepoints are never released one by one (the commit ends them all);
//! and the audit chain head is read once per batch and written once, just before the commit
//! ([`Batch`]); the batch holds the database's write lock throughout, so no other process can
//! move the head in between.
//!
//! Jobs name the requests they change ([`Batch::touch`]); once the batch is over, committed
//! or not, the writer has the store's [`RequestCache`] forget them before it answers anyone.
//!
//! Each job keeps its own result, typed, until the batch is over ([`Job`]): the queue holds
//! jobs of any result type behind one trait, and nothing is converted back on the way out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use countersign_core::request::Request;
use countersign_core::{RequestId, StoreError};
use rusqlite::{Connection, Params, Row};
use tokio::sync::{mpsc, oneshot};

use crate::cache::RequestCache;
use crate::error::{failure_text, sqlite_backend};

/// The most jobs one transaction commits.
pub(crate) const MAX_BATCH: usize = 256;

/// Jobs that may wait for the writer before senders wait to enqueue.
const QUEUE_DEPTH: usize = 1024;

/// Prepared statements the writer's connection keeps (every statement a job runs is one of
/// a few dozen).
const STATEMENT_CACHE: usize = 64;

/// How a job failed, and so what undoing it takes. The error itself stays with the job.
enum Failure {
    /// Refused: its changes, if any, are undone by rolling back to its savepoint (a job with
    /// one) — or there are none (a checked job refused by its check).
    Refused,
    /// Failed after a checked job's check changed the database: only rolling back the whole
    /// batch undoes it. The text is what the batch's other jobs are told.
    Broke(String),
}

/// How a job's work failed: its error, and whether undoing it takes the whole batch.
struct Failed {
    error: StoreError,
    whole_batch: bool,
}

/// The work of one job, run inside the batch's transaction on the writer thread.
type Work<T> = Box<dyn FnOnce(&mut Batch<'_>) -> Result<T, Failed> + Send>;

/// One caller's write as the writer thread holds it, whatever its result type.
trait Job: Send {
    /// Whether the job runs in its own savepoint.
    fn savepoint(&self) -> bool;

    /// Runs the job's work (once) and keeps its result.
    fn run(&mut self, batch: &mut Batch<'_>) -> Result<(), Failure>;

    /// Answers the caller once the batch is over: the job's own refusal stands whatever
    /// happened to the others; its success only if the batch committed (`failed` is `None`).
    fn answer(self: Box<Self>, failed: Option<&str>);
}

/// A [`Job`] whose result is a `T`.
struct Typed<T> {
    work: Option<Work<T>>,
    savepoint: bool,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send> Job for Typed<T> {
    fn savepoint(&self) -> bool {
        self.savepoint
    }

    fn run(&mut self, batch: &mut Batch<'_>) -> Result<(), Failure> {
        let Some(work) = self.work.take() else {
            return Ok(());
        };
        match work(batch) {
            Ok(value) => {
                self.result = Some(Ok(value));
                Ok(())
            }
            Err(Failed { error, whole_batch }) => {
                let failure = if whole_batch {
                    // The job hears its own error; the batch's other jobs, that they went
                    // with it.
                    Failure::Broke(format!(
                        "a write committed together with this one failed: {}",
                        failure_text(&error)
                    ))
                } else {
                    Failure::Refused
                };
                self.result = Some(Err(error));
                Err(failure)
            }
        }
    }

    fn answer(self: Box<Self>, failed: Option<&str>) {
        let answer = match (self.result, failed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), None) => Ok(value),
            // Committed with a batch that failed, or never run.
            (_, Some(text)) => Err(StoreError::backend(text)),
            (None, None) => Err(StoreError::backend("the database writer skipped a write")),
        };
        let _ = self.reply.send(answer);
    }
}

/// The audit chain head: the last event's sequence number and hash.
pub(crate) type Head = (i64, String);

/// What the jobs of one batch share: the write transaction and the audit chain head as the
/// jobs so far have moved it.
pub(crate) struct Batch<'c> {
    conn: &'c Connection,
    cache: &'c RequestCache,
    /// The head as the batch's jobs moved it; `None` until a job appends events (the first
    /// to do so reads it from the database). Written back once, before the commit.
    pub(crate) head: Option<Head>,
    /// The requests the batch's jobs changed or tried to change.
    touched: Vec<RequestId>,
    /// Requests as the batch's jobs left them, for the cache to keep once committed.
    written: Vec<Request>,
}

impl Batch<'_> {
    /// Notes that the job changes request `id` (so the request cache forgets it).
    pub(crate) fn touch(&mut self, id: RequestId) {
        self.touched.push(id);
    }

    /// The request as the cache holds it, if it does.
    pub(crate) fn cached(&self, id: &RequestId) -> Option<Arc<Request>> {
        self.cache.get(id)
    }

    /// Notes `request` as the job leaves it: the cache keeps it if the batch commits, which
    /// spares the next reader the database. It must be exactly what reading it back gives.
    pub(crate) fn wrote(&mut self, request: Request) {
        self.written.push(request);
    }

    /// Runs `sql` with `params`, inside the batch's transaction: the number of rows it
    /// changed.
    pub(crate) fn execute(&self, sql: &str, params: impl Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// Runs `sql` with `params` and reads its first row, if any, with `read`.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        rows.next()?.map(read).transpose()
    }

    /// Runs `sql` with `params` and reads the first column of its first row as an integer,
    /// if there is a row.
    pub(crate) fn integer(&self, sql: &str, params: impl Params) -> rusqlite::Result<Option<i64>> {
        self.query_row(sql, params, |row| row.get(0))
    }

    /// Runs `sql` with `params` and reads every row with `read`.
    pub(crate) fn query_rows<T>(
        &self,
        sql: &str,
        params: impl Params,
        read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        statement.query_map(params, read)?.collect()
    }
}

/// The handle the store writes through. Cheap to clone; the writer thread ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread on `conn` (a connection to the store's database, set up for
    /// writing), adding it to `threads`; it keeps `cache` true to the requests it changes.
    pub(crate) fn start(
        conn: Connection,
        cache: Arc<RequestCache>,
        threads: &mut Vec<JoinHandle<()>>,
    ) -> Result<Self, StoreError> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(&conn, &cache, queue))
            .map_err(|e| StoreError::backend_caused_by("starting the database writer", e))?;
        threads.push(thread);
        Ok(Self { jobs })
    }

    /// Runs `work` in a write transaction and returns its result once that transaction is
    /// durably committed. When `work` fails, none of its changes are kept and its error is
    /// returned; when the commit fails, the commit's error is returned.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let work: Work<T> = Box::new(move |batch| {
            work(batch).map_err(|error| Failed {
                error,
                whole_batch: false,
            })
        });
        self.submit(work, true).await
    }

    /// Like [`Writer::write`], for a job whose refusals come from `check`, which changes
    /// nothing unless it succeeds (one statement, which SQLite applies whole or not at all,
    /// after any reads): such a job needs no savepoint. `then` writes the rest and is not
    /// expected to fail; when it does (a database error, a colliding outbox id), or when
    /// `check` fails with [`StoreError::Backend`], only rolling back the whole batch undoes
    /// the job: it is answered with its own error, and every other job of the batch with a
    /// backend error.
    pub(crate) async fn write_checked<C, T, F, G>(&self, check: F, then: G) -> Result<T, StoreError>
    where
        C: 'static,
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> Result<C, StoreError> + Send + 'static,
        G: FnOnce(&mut Batch<'_>, C) -> Result<T, StoreError> + Send + 'static,
    {
        let work: Work<T> = Box::new(move |batch| {
            let checked = check(batch).map_err(|error| Failed {
                whole_batch: matches!(error, StoreError::Backend(_)),
                error,
            })?;
            then(batch, checked).map_err(|error| Failed {
                error,
                whole_batch: true,
            })
        });
        self.submit(work, false).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        work: Work<T>,
        savepoint: bool,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed {
            work: Some(work),
            savepoint,
            result: None,
            reply,
        });
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::backend("the database writer has stopped")
}

/// The writer thread: takes whatever jobs are waiting, runs them in one transaction,
/// commits, answers, and starts over.
fn run(conn: &Connection, cache: &RequestCache, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Some(first) = queue.blocking_recv() {
        run_batch(conn, cache, first, &mut queue);
    }
}

/// Runs `sql`, a statement without parameters, on `conn`, saying what failed as `doing`.
fn run_plain(conn: &Connection, sql: &str, doing: &str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(|e| failure_text(&sqlite_backend(doing, e)))
}

/// Runs `first` and the jobs waiting behind it (also those that arrive meanwhile, up to
/// [`MAX_BATCH`]) in one transaction, and answers each.
fn run_batch(
    conn: &Connection,
    cache: &RequestCache,
    first: Box<dyn Job>,
    queue: &mut mpsc::Receiver<Box<dyn Job>>,
) {
    let mut pending = VecDeque::from([first]);
    let mut taken = 1;
    let mut done: Vec<Box<dyn Job>> = Vec::new();
    let mut broken = run_plain(conn, "BEGIN IMMEDIATE", "starting a write transaction").err();
    let mut batch = Batch {
        conn,
        cache,
        head: None,
        touched: Vec::new(),
        written: Vec::new(),
    };
    while broken.is_none() {
        if pending.is_empty() {
            // Jobs that arrived while the batch ran join it, up to the cap.
            while taken < MAX_BATCH {
                let Ok(job) = queue.try_recv() else { break };
                pending.push_back(job);
                taken += 1;
            }
        }
        let Some(mut job) = pending.pop_front() else {
            break;
        };
        // Savepoints nest; a failed job rolls back to its own (the newest), and the commit
        // releases them all.
        if job.savepoint()
            && let Err(text) = run_plain(conn, "SAVEPOINT job", "starting a write")
        {
            broken = Some(text);
            pending.push_front(job);
            break;
        }
        let (head, written) = (batch.head.clone(), batch.written.len());
        let undone = match job.run(&mut batch) {
            Ok(()) => Ok(()),
            Err(Failure::Refused) => {
                batch.head = head;
                batch.written.truncate(written);
                if job.savepoint() {
                    run_plain(conn, "ROLLBACK TO SAVEPOINT job", "undoing a write")
                } else {
                    Ok(())
                }
            }
            Err(Failure::Broke(text)) => Err(text),
        };
        done.push(job);
        if let Err(text) = undone {
            broken = Some(text);
            break;
        }
    }
    let outcome = match broken {
        None => finish(&batch),
        Some(text) => Err(text),
    };
    if outcome.is_err() && !conn.is_autocommit() {
        // Nothing of a failed batch is kept. A failed rollback leaves the transaction to the
        // next batch's `BEGIN`, which then fails in turn and says so.
        if let Err(text) = run_plain(conn, "ROLLBACK", "rolling back a write") {
            tracing::warn!(error = %text, "store: a failed write batch was not rolled back");
        }
    }
    // Committed or not, after the commit and before anyone hears of it.
    match outcome {
        Ok(()) => cache.settle(&batch.touched, batch.written),
        Err(_) => cache.forget(&batch.touched),
    }
    if let Err(text) = &outcome {
        tracing::warn!(error = %text, jobs = taken, "store: a write batch failed");
    }
    let failed = outcome.as_ref().err().map(String::as_str);
    for job in done {
        job.answer(failed);
    }
    // Jobs of a broken batch that never ran.
    for job in pending {
        job.answer(failed);
    }
}

/// Writes the moved chain head and commits.
fn finish(batch: &Batch<'_>) -> Result<(), String> {
    if let Some((seq, hash)) = &batch.head {
        batch
            .execute(crate::sql::UPDATE_HEAD, (seq, hash))
            .map_err(|e| failure_text(&sqlite_backend("moving the audit chain head", e)))?;
    }
    run_plain(batch.conn, "COMMIT", "committing a write")
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
