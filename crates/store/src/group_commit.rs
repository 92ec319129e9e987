//! Group commit for the SQLite store.
//!
//! With `synchronous = FULL` every commit waits for the disk, so one commit per write caps
//! the store at the disk's flush rate however fast the rest is. Instead, every write of this
//! process is a job sent to one writer task. The writer starts a `BEGIN IMMEDIATE`
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
//! A job runs inside the writer task, not the caller's: a caller that goes away (a client
//! that hangs up) cannot leave a write half-done.
//!
//! Every statement is a round trip to the database's thread, so a batch saves them where it
//! can: a job whose refusals all come from its first change ([`Writer::write_checked`]) runs
//! without a savepoint; savepoints are never released one by one (the commit ends them all);
//! and the audit chain head is read once per batch and written once, just before the commit
//! ([`Batch`]); the batch holds the database's write lock throughout, so no other process can
//! move the head in between.
//!
//! Jobs name the requests they change ([`Batch::touch`]); once the batch is over, committed
//! or not, the writer has the store's [`RequestCache`] forget them before it answers anyone.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use countersign_core::{RequestId, StoreError};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::cache::RequestCache;
use crate::error::backend;

/// A boxed, sendable future borrowing for `'a`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The most jobs one transaction commits.
pub(crate) const MAX_BATCH: usize = 256;

/// Jobs that may wait for the writer before senders wait to enqueue.
const QUEUE_DEPTH: usize = 1024;

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

/// The work of one job, run inside the batch's transaction.
type Work = Box<
    dyn for<'b> FnOnce(&'b mut Batch) -> BoxFuture<'b, Result<Box<dyn Any + Send>, Failure>> + Send,
>;

/// The audit chain head: the last event's sequence number and hash.
pub(crate) type Head = (i64, String);

/// What the jobs of one batch share: the write transaction and the audit chain head as the
/// jobs so far have moved it.
pub(crate) struct Batch {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    /// The head as the batch's jobs moved it; `None` until a job appends events (the first
    /// to do so reads it from the database). Written back once, before the commit.
    pub(crate) head: Option<Head>,
    /// The requests the batch's jobs changed or tried to change.
    touched: Vec<RequestId>,
}

impl Batch {
    /// The connection, inside the batch's transaction.
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Notes that the job changes request `id` (so the request cache forgets it).
    pub(crate) fn touch(&mut self, id: RequestId) {
        self.touched.push(id);
    }
}

/// One caller's write and where its answer goes.
struct Job {
    work: Work,
    /// Whether the job runs in its own savepoint.
    savepoint: bool,
    reply: oneshot::Sender<Erased>,
}

/// The handle the store writes through. Cheap to clone; the writer task ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task for `pool` on the current tokio runtime; it keeps `cache` true
    /// to the requests it changes.
    pub(crate) fn start(pool: SqlitePool, cache: Arc<RequestCache>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(pool, cache, queue));
        Self { jobs }
    }

    /// Runs `work` in a write transaction and returns its result once that transaction is
    /// durably committed. When `work` fails, none of its changes are kept and its error is
    /// returned; when the commit fails, the commit's error is returned.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'b> FnOnce(&'b mut Batch) -> BoxFuture<'b, Result<T, StoreError>> + Send + 'static,
    {
        let work: Work = Box::new(move |batch| {
            Box::pin(async move {
                work(batch)
                    .await
                    .map(|value| Box::new(value) as Box<dyn Any + Send>)
                    .map_err(Failure::Refused)
            })
        });
        self.submit(work, true).await
    }

    /// Like [`Writer::write`], for a job whose refusals come from `check`, which changes
    /// nothing unless it succeeds (one statement, which SQLite applies whole or not at all,
    /// after any reads): such a job needs no savepoint, which saves a round trip to the
    /// database's thread. `then` writes the rest and is not expected to fail; when it does
    /// (a database error, a colliding outbox id), or when `check` fails with
    /// [`StoreError::Backend`], only rolling back the whole batch undoes the job: it is
    /// answered with its own error, and every other job of the batch with a backend error.
    pub(crate) async fn write_checked<C, T, F, G>(&self, check: F, then: G) -> Result<T, StoreError>
    where
        C: Send + 'static,
        T: Send + 'static,
        F: for<'b> FnOnce(&'b mut Batch) -> BoxFuture<'b, Result<C, StoreError>> + Send + 'static,
        G: for<'b> FnOnce(&'b mut Batch, C) -> BoxFuture<'b, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let work: Work = Box::new(move |batch| {
            Box::pin(async move {
                let checked = check(batch).await.map_err(|e| match e {
                    StoreError::Backend(_) => Failure::Broke(e),
                    refusal => Failure::Refused(refusal),
                })?;
                then(batch, checked)
                    .await
                    .map(|value| Box::new(value) as Box<dyn Any + Send>)
                    .map_err(Failure::Broke)
            })
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

/// The writer task: takes whatever jobs are waiting, runs them in one transaction, commits,
/// answers, and starts over.
async fn run(pool: SqlitePool, cache: Arc<RequestCache>, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        run_batch(&pool, &cache, first, &mut queue).await;
    }
}

/// Runs `first` and the jobs waiting behind it (also those that arrive meanwhile, up to
/// [`MAX_BATCH`]) in one transaction, and answers each.
async fn run_batch(
    pool: &SqlitePool,
    cache: &RequestCache,
    first: Job,
    queue: &mut mpsc::Receiver<Job>,
) {
    let mut pending = VecDeque::from([first]);
    let mut taken = 1;
    let mut done: Vec<(oneshot::Sender<Erased>, Erased)> = Vec::new();
    let mut broken: Option<String> = None;
    let mut batch = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => Some(Batch {
            tx,
            head: None,
            touched: Vec::new(),
        }),
        Err(e) => {
            broken = Some(message(backend("starting a write transaction", e)));
            None
        }
    };
    while let Some(b) = batch.as_mut() {
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
            && let Err(e) = sqlx::query("SAVEPOINT job").execute(b.conn()).await
        {
            broken = Some(message(backend("starting a write", e)));
            pending.push_front(job);
            break;
        }
        let head = b.head.clone();
        let (result, undone) = match (job.work)(b).await {
            Ok(value) => (Ok(value), Ok(())),
            Err(Failure::Refused(e)) => {
                b.head = head;
                let undone = if job.savepoint {
                    sqlx::query("ROLLBACK TO SAVEPOINT job")
                        .execute(b.conn())
                        .await
                        .map(drop)
                        .map_err(|e| message(backend("undoing a write", e)))
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
    let touched = batch
        .as_mut()
        .map(|b| std::mem::take(&mut b.touched))
        .unwrap_or_default();
    let outcome = match (broken, batch) {
        (None, Some(batch)) => finish(batch).await,
        // Dropping the transaction rolls everything back.
        (Some(message), _) => Err(message),
        (None, None) => Err("the write transaction was lost".to_owned()),
    };
    // Committed or not, after the commit and before anyone hears of it.
    cache.forget(&touched);
    if let Err(message) = &outcome {
        tracing::warn!(error = %message, jobs = taken, "store: a write batch failed");
    }
    for (reply, result) in done {
        let answer = match (result, &outcome) {
            // A job's own refusal stands whatever happened to the others.
            (Err(e), _) => Err(e),
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(message)) => Err(StoreError::Backend(message.clone())),
        };
        let _ = reply.send(answer);
    }
    // Jobs of a broken batch that never ran.
    if let Err(message) = &outcome {
        for job in pending {
            let _ = job.reply.send(Err(StoreError::Backend(message.clone())));
        }
    }
}

/// Writes the moved chain head and commits.
async fn finish(mut batch: Batch) -> Result<(), String> {
    if let Some((seq, hash)) = &batch.head {
        sqlx::query(crate::sql::UPDATE_HEAD)
            .bind(seq)
            .bind(hash.as_str())
            .execute(batch.conn())
            .await
            .map_err(|e| message(backend("moving the audit chain head", e)))?;
    }
    batch
        .tx
        .commit()
        .await
        .map_err(|e| message(backend("committing a write", e)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn writer() -> (Writer, SqlitePool, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::SqliteStore::connect(&url).await.unwrap();
        let pool = store.pool().clone();
        sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        (
            Writer::start(
                pool.clone(),
                Arc::new(RequestCache::new(0, crate::cache::MAX_AGE)),
            ),
            pool,
            dir,
        )
    }

    async fn rows(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// Jobs queued behind a slow one share its transaction; each failing job is undone alone,
    /// the others are committed, and every caller gets its own answer.
    #[tokio::test]
    async fn a_failing_job_leaves_no_trace_and_the_others_commit() {
        let (writer, pool, _dir) = writer().await;
        let slow = writer.clone();
        let first = tokio::spawn(async move {
            slow.write(|batch| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t VALUES (0)")
                        .execute(batch.conn())
                        .await
                        .map_err(|e| backend("test", e))?;
                    // Hold the batch open so that the jobs below queue behind it.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(0_i64)
                })
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut jobs = Vec::new();
        for x in 1..=20_i64 {
            let writer = writer.clone();
            jobs.push(tokio::spawn(async move {
                writer
                    .write(move |batch| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO t VALUES (?)")
                                .bind(x)
                                .execute(batch.conn())
                                .await
                                .map_err(|e| backend("test", e))?;
                            // Odd jobs change their mind after writing.
                            if x % 2 == 1 {
                                return Err(StoreError::Conflict);
                            }
                            Ok(x)
                        })
                    })
                    .await
            }));
        }
        assert_eq!(first.await.unwrap().unwrap(), 0);
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

    /// Inserts `x` into `t` inside `batch`.
    async fn put(batch: &mut Batch, x: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO t VALUES (?)")
            .bind(x)
            .execute(batch.conn())
            .await
            .map(drop)
            .map_err(|e| backend("inserting", e))
    }

    /// Starts a job that writes 0 and holds its batch open, so that jobs started in the next
    /// few milliseconds join that batch.
    fn holder(writer: &Writer) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let writer = writer.clone();
        tokio::spawn(async move {
            writer
                .write(|batch| {
                    Box::pin(async move {
                        put(batch, 0).await?;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(())
                    })
                })
                .await
        })
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
            w1.write_checked(
                |batch| Box::pin(async move { put(batch, 1).await }),
                |batch, ()| Box::pin(async move { put(batch, 2).await }),
            ),
            w2.write_checked(
                |_batch| Box::pin(async { Err::<(), _>(StoreError::Conflict) }),
                |batch, ()| Box::pin(async move { put(batch, 99).await }),
            ),
            w3.write(|batch| Box::pin(async move { put(batch, 3).await })),
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
                |batch| Box::pin(async move { put(batch, 10).await }),
                |_batch, ()| {
                    Box::pin(async { Err::<(), _>(StoreError::Duplicate("outbox".into())) })
                },
            ),
            w2.write(|batch| Box::pin(async move { put(batch, 11).await })),
        );
        assert!(
            matches!(a, Err(StoreError::Duplicate(ref m)) if m == "outbox"),
            "{a:?}"
        );
        assert!(matches!(b, Err(StoreError::Backend(_))), "{b:?}");
        assert!(matches!(first.await.unwrap(), Err(StoreError::Backend(_))));
        assert_eq!(rows(&pool).await, Vec::<i64>::new());
        // The writer carries on.
        writer
            .write(|batch| Box::pin(async move { put(batch, 12).await }))
            .await
            .unwrap();
        assert_eq!(rows(&pool).await, vec![12]);
    }

    /// A job that breaks a constraint is refused with its own error; a later job still writes.
    #[tokio::test]
    async fn a_constraint_violation_is_the_jobs_error_only() {
        let (writer, pool, _dir) = writer().await;
        let put = |x: i64| {
            let writer = writer.clone();
            async move {
                writer
                    .write(move |batch| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO t VALUES (?)")
                                .bind(x)
                                .execute(batch.conn())
                                .await
                                .map_err(|e| backend("inserting", e))
                                .map(|_| ())
                        })
                    })
                    .await
            }
        };
        let (a, b, c) = tokio::join!(put(1), put(1), put(2));
        assert!(a.is_ok());
        assert!(matches!(b, Err(StoreError::Backend(ref m)) if m.starts_with("inserting")));
        assert!(c.is_ok());
        assert_eq!(rows(&pool).await, vec![1, 2]);
    }

    /// Audit events appended by a job that then fails vanish with it, and the chain the batch
    /// carries on from is the one before that job: the stored chain verifies, without gaps.
    #[tokio::test]
    async fn a_failed_job_takes_its_audit_events_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let writer = Writer::start(
            store.pool().clone(),
            Arc::new(RequestCache::new(0, crate::cache::MAX_AGE)),
        );
        let event = |i: i64| countersign_core::audit::NewAuditEvent {
            at: chrono::DateTime::from_timestamp(1_700_000_000 + i, 0).unwrap(),
            actor: countersign_core::audit::Actor::system(),
            action: "test.event".into(),
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
                        Box::pin(async move {
                            crate::sqlite::append_events(batch, &events).await?;
                            if i == 0 {
                                // Hold the batch open so that the others join it.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            if fail {
                                return Err(StoreError::Conflict);
                            }
                            Ok(())
                        })
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
