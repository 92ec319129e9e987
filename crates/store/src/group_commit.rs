//! Group commit for the SQLite store.
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

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;

use countersign_core::request::Request;
use countersign_core::{RequestId, StoreError};
use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use crate::cache::RequestCache;
use crate::error::sqlite_backend;

/// The most jobs one transaction commits.
pub(crate) const MAX_BATCH: usize = 256;

/// Jobs that may wait for the writer before senders wait to enqueue.
const QUEUE_DEPTH: usize = 1024;

/// Prepared statements the writer's connection keeps (every statement a job runs is one of
/// a few dozen).
const STATEMENT_CACHE: usize = 64;

/// A job's result, its type erased so jobs of any result type share one queue.
type Erased = Result<Box<dyn Any + Send>, StoreError>;

/// How a job failed, and so what undoing it takes.
enum Failure {
    /// Refused: its changes, if any, are undone by rolling back to its savepoint (a job with
    /// one) — or there are none (a checked job refused by its check).
    Refused(StoreError),
    /// Failed after a checked job's check changed the database: only rolling back the whole
    /// batch undoes it.
    Broke(StoreError),
}

/// The work of one job, run inside the batch's transaction on the writer thread.
type Work = Box<dyn FnOnce(&mut Batch<'_>) -> Result<Box<dyn Any + Send>, Failure> + Send>;

/// The audit chain head: the last event's sequence number and hash.
pub(crate) type Head = (i64, String);

/// Values bound to a statement's parameters: `$N` and `?N` take the `N`th value, a bare `?`
/// the next one (as SQLite numbers them). Built with `bind`, like a sqlx query, so the
/// codec's `bind_*!` macros fill it.
#[derive(Default)]
pub(crate) struct Params<'a>(Vec<Box<dyn ToSql + 'a>>);

impl<'a> Params<'a> {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }

    /// Adds the next value.
    pub(crate) fn bind<T: ToSql + 'a>(mut self, value: T) -> Self {
        self.0.push(Box::new(value));
        self
    }
}

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
    pub(crate) fn execute(&self, sql: &str, params: Params<'_>) -> rusqlite::Result<usize> {
        let mut statement = self.conn.prepare_cached(sql)?;
        bind(&mut statement, &params)?;
        statement.raw_execute()
    }

    /// Runs `sql` with `params` and reads its first row, if any, with `read`.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        bind(&mut statement, &params)?;
        let mut rows = statement.raw_query();
        rows.next()?.map(read).transpose()
    }

    /// Runs `sql` with `params` and reads the first column of its first row as an integer,
    /// if there is a row.
    pub(crate) fn integer(&self, sql: &str, params: Params<'_>) -> rusqlite::Result<Option<i64>> {
        self.query_row(sql, params, |row| row.get(0))
    }

    /// Runs `sql` with `params` and reads every row with `read`.
    pub(crate) fn query_rows<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        mut read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        bind(&mut statement, &params)?;
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read(row)?);
        }
        Ok(out)
    }
}

/// Binds `params` to `statement`'s parameters (see [`Params`]).
fn bind(statement: &mut rusqlite::Statement<'_>, params: &Params<'_>) -> rusqlite::Result<()> {
    let count = statement.parameter_count();
    if count != params.0.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            params.0.len(),
            count,
        ));
    }
    for index in 1..=count {
        let number = statement
            .parameter_name(index)
            .and_then(|name| name.get(1..))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(index);
        let value = params
            .0
            .get(number.wrapping_sub(1))
            .ok_or(rusqlite::Error::InvalidParameterCount(number, count))?;
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

/// One caller's write and where its answer goes.
struct Job {
    work: Work,
    /// Whether the job runs in its own savepoint.
    savepoint: bool,
    reply: oneshot::Sender<Erased>,
}

/// The handle the store writes through. Cheap to clone; the writer thread ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn` (a connection to the store's database, set up for
    /// writing); it keeps `cache` true to the requests it changes.
    pub(crate) fn start(conn: Connection, cache: Arc<RequestCache>) -> Result<Self, StoreError> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(&conn, &cache, queue))
            .map_err(|e| StoreError::Backend(format!("starting the database writer: {e}")))?;
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
        let work: Work = Box::new(move |batch| {
            work(batch)
                .map(|value| Box::new(value) as Box<dyn Any + Send>)
                .map_err(Failure::Refused)
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
        let work: Work = Box::new(move |batch| {
            let checked = check(batch).map_err(|e| match e {
                StoreError::Backend(_) => Failure::Broke(e),
                refusal => Failure::Refused(refusal),
            })?;
            then(batch, checked)
                .map(|value| Box::new(value) as Box<dyn Any + Send>)
                .map_err(Failure::Broke)
        });
        self.submit(work, false).await
    }

    async fn submit<T: 'static>(&self, work: Work, savepoint: bool) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                work,
                savepoint,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        let value = answer.await.map_err(|_| stopped())??;
        value
            .downcast::<T>()
            .map(|value| *value)
            .map_err(|_| StoreError::Backend("the database writer answered the wrong type".into()))
    }
}

/// The text of a backend error, to hand to every job of a failed batch.
fn message(e: StoreError) -> String {
    match e {
        StoreError::Backend(message) => message,
        other => other.to_string(),
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the database writer has stopped".into())
}

/// The writer thread: takes whatever jobs are waiting, runs them in one transaction,
/// commits, answers, and starts over.
fn run(conn: &Connection, cache: &RequestCache, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.blocking_recv() {
        run_batch(conn, cache, first, &mut queue);
    }
}

/// Runs `sql`, a statement without parameters, on `conn`, saying what failed as `doing`.
fn run_plain(conn: &Connection, sql: &str, doing: &str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.raw_execute())
        .map(drop)
        .map_err(|e| message(sqlite_backend(doing, e)))
}

/// Runs `first` and the jobs waiting behind it (also those that arrive meanwhile, up to
/// [`MAX_BATCH`]) in one transaction, and answers each.
fn run_batch(conn: &Connection, cache: &RequestCache, first: Job, queue: &mut mpsc::Receiver<Job>) {
    let mut pending = VecDeque::from([first]);
    let mut taken = 1;
    let mut done: Vec<(oneshot::Sender<Erased>, Erased)> = Vec::new();
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
        let Some(job) = pending.pop_front() else {
            break;
        };
        // Savepoints nest; a failed job rolls back to its own (the newest), and the commit
        // releases them all.
        if job.savepoint
            && let Err(text) = run_plain(conn, "SAVEPOINT job", "starting a write")
        {
            broken = Some(text);
            pending.push_front(job);
            break;
        }
        let (head, written) = (batch.head.clone(), batch.written.len());
        let (result, undone) = match (job.work)(&mut batch) {
            Ok(value) => (Ok(value), Ok(())),
            Err(Failure::Refused(e)) => {
                batch.head = head;
                batch.written.truncate(written);
                let undone = if job.savepoint {
                    run_plain(conn, "ROLLBACK TO SAVEPOINT job", "undoing a write")
                } else {
                    Ok(())
                };
                (Err(e), undone)
            }
            Err(Failure::Broke(e)) => {
                // The job hears its own error; the batch's other jobs, that they went with it.
                let text = format!("a write committed together with this one failed: {e}");
                (Err(e), Err(text))
            }
        };
        done.push((job.reply, result));
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
    for (reply, result) in done {
        let answer = match (result, &outcome) {
            // A job's own refusal stands whatever happened to the others.
            (Err(e), _) => Err(e),
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(text)) => Err(StoreError::Backend(text.clone())),
        };
        let _ = reply.send(answer);
    }
    // Jobs of a broken batch that never ran.
    if let Err(text) = &outcome {
        for job in pending {
            let _ = job.reply.send(Err(StoreError::Backend(text.clone())));
        }
    }
}

/// Writes the moved chain head and commits.
fn finish(batch: &Batch<'_>) -> Result<(), String> {
    if let Some((seq, hash)) = &batch.head {
        batch
            .execute(
                crate::sql::UPDATE_HEAD,
                Params::new().bind(*seq).bind(hash.as_str()),
            )
            .map_err(|e| message(sqlite_backend("moving the audit chain head", e)))?;
    }
    run_plain(batch.conn, "COMMIT", "committing a write")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use sqlx::sqlite::SqlitePool;

    use super::*;
    use crate::error::sqlite_backend;

    /// A writer on a fresh database with a table `t (x INTEGER PRIMARY KEY)`, and a pool to
    /// read it back.
    async fn writer() -> (Writer, SqlitePool, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = crate::SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let pool = store.pool().clone();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let cache = Arc::new(RequestCache::new(0, crate::cache::MAX_AGE));
        (Writer::start(conn, cache).unwrap(), pool, dir)
    }

    async fn rows(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// Inserts `x` into `t` inside `batch`.
    fn put(batch: &Batch<'_>, x: i64) -> Result<(), StoreError> {
        batch
            .execute("INSERT INTO t VALUES (?)", Params::new().bind(x))
            .map(drop)
            .map_err(|e| sqlite_backend("inserting", e))
    }

    /// Starts a job that writes 0 and holds its batch open, so that jobs started in the next
    /// few milliseconds join that batch.
    fn holder(writer: &Writer) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let writer = writer.clone();
        tokio::spawn(async move {
            writer
                .write(|batch| {
                    put(batch, 0)?;
                    std::thread::sleep(Duration::from_millis(100));
                    Ok(())
                })
                .await
        })
    }

    /// Jobs queued behind a slow one share its transaction; each failing job is undone alone,
    /// the others are committed, and every caller gets its own answer.
    #[tokio::test]
    async fn a_failing_job_leaves_no_trace_and_the_others_commit() {
        let (writer, pool, _dir) = writer().await;
        let first = holder(&writer);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut jobs = Vec::new();
        for x in 1..=20_i64 {
            let writer = writer.clone();
            jobs.push(tokio::spawn(async move {
                writer
                    .write(move |batch| {
                        put(batch, x)?;
                        // Odd jobs change their mind after writing.
                        if x % 2 == 1 {
                            return Err(StoreError::Conflict);
                        }
                        Ok(x)
                    })
                    .await
            }));
        }
        assert!(first.await.unwrap().is_ok());
        for (x, job) in (1..=20_i64).zip(jobs) {
            match job.await.unwrap() {
                Ok(v) => assert!(x % 2 == 0 && v == x, "job {x} answered {v}"),
                Err(StoreError::Conflict) => assert!(x % 2 == 1, "job {x} refused"),
                Err(e) => panic!("job {x}: {e}"),
            }
        }
        let expected: Vec<i64> = (0..=20).filter(|x| x % 2 == 0).collect();
        assert_eq!(rows(&pool).await, expected);
    }

    /// A checked job refused by its check has nothing to undo and needs no savepoint; its
    /// neighbours, checked or not, commit.
    #[tokio::test]
    async fn a_checked_job_refused_by_its_check_leaves_the_batch_alone() {
        let (writer, pool, _dir) = writer().await;
        let first = holder(&writer);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (w1, w2, w3) = (writer.clone(), writer.clone(), writer.clone());
        let (a, b, c) = tokio::join!(
            w1.write_checked(|batch| put(batch, 1), |batch, ()| put(batch, 2)),
            w2.write_checked(
                |_batch| Err::<(), _>(StoreError::Conflict),
                |batch, ()| put(batch, 99),
            ),
            w3.write(|batch| put(batch, 3)),
        );
        assert!(first.await.unwrap().is_ok());
        assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
        assert!(matches!(b, Err(StoreError::Conflict)), "{b:?}");
        assert_eq!(rows(&pool).await, vec![0, 1, 2, 3]);
    }

    /// A checked job that fails after its check wrote takes its whole batch back: it hears
    /// its own error, the other jobs a backend error, and nothing is kept.
    #[tokio::test]
    async fn a_checked_job_failing_after_its_check_takes_the_batch_back() {
        let (writer, pool, _dir) = writer().await;
        let first = holder(&writer);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (w1, w2) = (writer.clone(), writer.clone());
        let (a, b) = tokio::join!(
            w1.write_checked(
                |batch| put(batch, 10),
                |_batch, ()| Err::<(), _>(StoreError::Duplicate("outbox".into())),
            ),
            w2.write(|batch| put(batch, 11)),
        );
        assert!(
            matches!(a, Err(StoreError::Duplicate(ref m)) if m == "outbox"),
            "{a:?}"
        );
        assert!(matches!(b, Err(StoreError::Backend(_))), "{b:?}");
        assert!(matches!(first.await.unwrap(), Err(StoreError::Backend(_))));
        assert_eq!(rows(&pool).await, Vec::<i64>::new());
        // The writer carries on.
        writer.write(|batch| put(batch, 12)).await.unwrap();
        assert_eq!(rows(&pool).await, vec![12]);
    }

    /// A job that breaks a constraint is refused with its own error; a later job still writes.
    #[tokio::test]
    async fn a_constraint_violation_is_the_jobs_error_only() {
        let (writer, pool, _dir) = writer().await;
        let put = |x: i64| {
            let writer = writer.clone();
            async move { writer.write(move |batch| put(batch, x)).await }
        };
        let (a, b, c) = tokio::join!(put(1), put(1), put(2));
        assert!(a.is_ok());
        assert!(matches!(b, Err(StoreError::Backend(ref m)) if m.starts_with("inserting")));
        assert!(c.is_ok());
        assert_eq!(rows(&pool).await, vec![1, 2]);
    }

    /// Parameters are bound by their numbers, whatever order the statement names them in.
    #[tokio::test]
    async fn parameters_are_bound_by_number() {
        let (writer, pool, _dir) = writer().await;
        writer
            .write(|batch| {
                batch
                    .execute(
                        "INSERT INTO t VALUES ($2 * 10 + $1)",
                        Params::new().bind(3_i64).bind(4_i64),
                    )
                    .map_err(|e| sqlite_backend("inserting", e))
            })
            .await
            .unwrap();
        let wrong = writer
            .write(|batch| {
                batch
                    .execute("INSERT INTO t VALUES ($1)", Params::new())
                    .map_err(|e| sqlite_backend("inserting", e))
            })
            .await;
        assert!(matches!(wrong, Err(StoreError::Backend(_))), "{wrong:?}");
        assert_eq!(rows(&pool).await, vec![43]);
    }

    /// Audit events appended by a job that then fails vanish with it, and the chain the batch
    /// carries on from is the one before that job: the stored chain verifies, without gaps.
    #[tokio::test]
    async fn a_failed_job_takes_its_audit_events_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = crate::SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let writer = Writer::start(
            Connection::open(&path).unwrap(),
            Arc::new(RequestCache::new(0, crate::cache::MAX_AGE)),
        )
        .unwrap();
        let event = |i: i64| countersign_core::audit::NewAuditEvent {
            at: chrono::DateTime::from_timestamp(1_700_000_000 + i, 0).unwrap(),
            actor: countersign_core::audit::Actor::system(),
            action: countersign_core::audit::AuditAction::KeyCreated,
            request_id: None,
            digest: None,
            detail: serde_json::json!({ "i": i }),
        };
        let append = |i: i64, fail: bool| {
            let writer = writer.clone();
            let events = vec![event(i), event(i)];
            async move {
                writer
                    .write(move |batch| {
                        crate::sqlite::append_events(batch, &events)?;
                        if i == 0 {
                            // Hold the batch open so that the others join it.
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        if fail {
                            return Err(StoreError::Conflict);
                        }
                        Ok(())
                    })
                    .await
            }
        };
        let (a, b, c, d) = tokio::join!(
            append(0, false),
            append(1, true),
            append(2, false),
            append(3, true)
        );
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(StoreError::Conflict)) && matches!(d, Err(StoreError::Conflict)));
        assert_eq!(crate::verify_audit(&store).await, Ok(4));
        let details: Vec<String> =
            sqlx::query_scalar("SELECT detail FROM audit_events ORDER BY seq")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert!(
            details
                .iter()
                .all(|d| !d.contains("\"i\":1") && !d.contains("\"i\":3"))
        );
    }
}
