//! Tests of the writer thread: batches, savepoints, checked jobs and their refusals.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::error::sqlite_backend;

/// A connection of the test's own to the database at `path`.
fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// A writer on a fresh database with a table `t (x INTEGER PRIMARY KEY)`, and the path
/// to read it back from.
fn writer() -> (Writer, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let conn = open(&path);
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        .unwrap();
    let cache = Arc::new(RequestCache::new(0, crate::cache::MAX_AGE));
    (
        Writer::start(conn, cache, &mut Vec::new()).unwrap(),
        path,
        dir,
    )
}

fn rows(path: &Path) -> Vec<i64> {
    open(path)
        .prepare("SELECT x FROM t ORDER BY x")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Inserts `x` into `t` inside `batch`.
fn put(batch: &Batch<'_>, x: i64) -> Result<(), StoreError> {
    batch
        .execute("INSERT INTO t VALUES (?1)", [x])
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
    let (writer, path, _dir) = writer();
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
    assert_eq!(rows(&path), expected);
}

/// A checked job refused by its check has nothing to undo and needs no savepoint; its
/// neighbours, checked or not, commit.
#[tokio::test]
async fn a_checked_job_refused_by_its_check_leaves_the_batch_alone() {
    let (writer, path, _dir) = writer();
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
    assert_eq!(rows(&path), vec![0, 1, 2, 3]);
}

/// A checked job that fails after its check wrote takes its whole batch back: it hears
/// its own error, the other jobs a backend error, and nothing is kept.
#[tokio::test]
async fn a_checked_job_failing_after_its_check_takes_the_batch_back() {
    let (writer, path, _dir) = writer();
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
    assert_eq!(rows(&path), Vec::<i64>::new());
    // The writer carries on.
    writer.write(|batch| put(batch, 12)).await.unwrap();
    assert_eq!(rows(&path), vec![12]);
}

/// A job that breaks a constraint is refused with its own error; a later job still writes.
#[tokio::test]
async fn a_constraint_violation_is_the_jobs_error_only() {
    let (writer, path, _dir) = writer();
    let put = |x: i64| {
        let writer = writer.clone();
        async move { writer.write(move |batch| put(batch, x)).await }
    };
    let (a, b, c) = tokio::join!(put(1), put(1), put(2));
    assert!(a.is_ok());
    assert!(
        matches!(b, Err(StoreError::Backend(ref m)) if m.what().starts_with("inserting")),
        "{b:?}"
    );
    assert!(c.is_ok());
    assert_eq!(rows(&path), vec![1, 2]);
}

/// A statement given too few values is refused with a backend error, and binds nothing.
#[tokio::test]
async fn a_statement_given_too_few_values_is_refused() {
    let (writer, path, _dir) = writer();
    let wrong = writer
        .write(|batch| {
            batch
                .execute("INSERT INTO t VALUES (?1 * 10 + ?2)", [4_i64])
                .map_err(|e| sqlite_backend("inserting", e))
        })
        .await;
    assert!(matches!(wrong, Err(StoreError::Backend(_))), "{wrong:?}");
    assert_eq!(rows(&path), Vec::<i64>::new());
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
        open(&path),
        Arc::new(RequestCache::new(0, crate::cache::MAX_AGE)),
        &mut Vec::new(),
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
                    crate::sqlite::audit::append_events(batch, &events)?;
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
    let details: Vec<String> = open(&path)
        .prepare("SELECT detail FROM audit_events ORDER BY seq")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        details
            .iter()
            .all(|d| !d.contains("\"i\":1") && !d.contains("\"i\":3"))
    );
}
