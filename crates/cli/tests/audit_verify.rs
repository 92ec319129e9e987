//! `countersign audit verify` on a real database: a sandbox writes an audit trail into a
//! SQLite file of ours, then the chain verifies, and an edited or a deleted event is named by
//! its seq (exit code 1).

mod common;

use std::path::Path;
use std::process::Output;

use common::{Sandbox, run_cli};
use rusqlite::Connection;
use serde_json::Value;

async fn verify(url: &str) -> Output {
    run_cli(&["audit", "verify", "--database", url], &[]).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code 0 and "intact"; returns how many events verified.
fn assert_intact(out: &Output) -> u64 {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("intact"), "{stdout}");
    // "audit chain intact: N events verified"
    stdout
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no event count in {stdout:?}"))
}

/// Exit code 1 and stderr naming `seq`; returns stderr.
fn assert_broken_at(out: &Output, seq: i64) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stdout.contains("intact"), "{stdout}");
    assert!(
        stderr.contains(&format!("BROKEN at seq {seq}:")),
        "expected seq {seq} to be named:\n{stderr}"
    );
    stderr
}

/// One connection straight to the file, bypassing countersign (closed when dropped).
fn open_raw(path: &Path) -> Connection {
    Connection::open(path).expect("open the sqlite file")
}

fn events(conn: &Connection) -> Vec<(i64, String)> {
    conn.prepare("SELECT seq, detail FROM audit_events ORDER BY seq")
        .and_then(|mut s| {
            s.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("read audit_events")
}

fn set_detail(conn: &Connection, seq: i64, detail: &str) {
    let done = conn
        .execute(
            "UPDATE audit_events SET detail = ?1 WHERE seq = ?2",
            (detail, seq),
        )
        .expect("update an event");
    assert_eq!(done, 1);
}

fn delete_event(conn: &Connection, seq: i64) {
    let done = conn
        .execute("DELETE FROM audit_events WHERE seq = ?1", [seq])
        .expect("delete an event");
    assert_eq!(done, 1);
}

/// Runs the README flow in a sandbox that writes to `url`, then stops the sandbox.
async fn write_a_trail(url: &str) {
    let mut sandbox = Sandbox::start(&["--database", url]);
    let api = sandbox.api();
    let (alice, bob, carol) = tokio::join!(
        sandbox.token("alice"),
        sandbox.token("bob"),
        sandbox.token("carol")
    );
    let created = api.create_deploy_prod(&alice).await;
    assert_eq!(
        created.status,
        201,
        "{:?}\n{}",
        created.body,
        sandbox.output()
    );
    let r = api.approve(&created.body, &bob).await;
    assert_eq!(r.body["state"], "pending", "{:?}", r.body);
    let r = api.approve(&created.body, &carol).await;
    assert_eq!(r.body["state"], "approved", "{:?}", r.body);
    // One more request, so that the trail is not about a single request only.
    let created = api.create_deploy_prod(&alice).await;
    assert_eq!(created.status, 201, "{:?}", created.body);

    let pid = sandbox.pid().expect("running");
    let (status, killed) = sandbox.stop().expect("the sandbox was running");
    assert!(
        status.success() && !killed,
        "pid {pid} should exit cleanly on SIGTERM: {status:?}, killed: {killed}\n{}",
        sandbox.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_or_deleted_event_is_named_by_its_seq() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("a.db");
    let url = format!("sqlite://{}", path.display());
    write_a_trail(&url).await;

    let verified = assert_intact(&verify(&url).await);
    assert!(
        verified >= 5,
        "created + 2 decisions + approved + created: {verified}"
    );

    let conn = open_raw(&path);
    let all = events(&conn);
    assert_eq!(all.len() as u64, verified);
    let seqs: Vec<i64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=verified as i64).collect::<Vec<_>>());
    let middle = seqs[seqs.len() / 2];
    let (_, original) = all
        .iter()
        .find(|(s, _)| *s == middle)
        .expect("the middle event")
        .clone();

    // (a) An edited detail, still valid JSON: the hash no longer matches.
    let mut edited: Value = serde_json::from_str(&original).expect("detail is JSON");
    match &mut edited {
        Value::Object(map) => {
            map.insert("tampered".into(), Value::Bool(true));
        }
        other => *other = serde_json::json!({"was": other.clone(), "tampered": true}),
    }
    set_detail(&conn, middle, &edited.to_string());
    drop(conn);
    let stderr = assert_broken_at(&verify(&url).await, middle);
    assert!(stderr.contains("edited"), "{stderr}");

    // Restored byte for byte, the chain verifies again.
    let conn = open_raw(&path);
    set_detail(&conn, middle, &original);
    drop(conn);
    assert_eq!(assert_intact(&verify(&url).await), verified);

    // (b) A deleted event in the middle: the gap is named.
    let conn = open_raw(&path);
    delete_event(&conn, middle);
    drop(conn);
    let stderr = assert_broken_at(&verify(&url).await, middle);
    assert!(stderr.contains("missing"), "{stderr}");
}

/// Deleting the newest events leaves `audit_head` pointing past the end of the table (the
/// schema keeps the head apart for exactly this), but `verify_audit` never reads the head, so
/// a truncated tail verifies as intact until the next append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_newest_event_is_reported() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("a.db");
    let url = format!("sqlite://{}", path.display());
    write_a_trail(&url).await;
    let verified = assert_intact(&verify(&url).await);

    let conn = open_raw(&path);
    let last = i64::try_from(verified).expect("a small count");
    delete_event(&conn, last);
    drop(conn);
    assert_broken_at(&verify(&url).await, last);
}

/// A mistyped path should not verify (and create) an empty database.
#[tokio::test]
async fn a_missing_database_file_is_an_error() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("typo.db");
    let out = verify(&format!("sqlite://{}", path.display())).await;
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(!path.exists(), "audit verify created {path:?}");
}
