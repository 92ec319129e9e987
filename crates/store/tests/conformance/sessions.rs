//! Browser logins in flight and web sessions.

use super::Db;
use super::fixtures::*;
use countersign_core::StoreError;
use countersign_core::secret::Secret;
use serde_json::json;
use std::sync::Arc;

pub async fn login_round_trip_and_single_use(db: Db) {
    let first = login("state-1", 0);
    let mut second = login("state-2", 5);
    second.max_age = None;
    db.sessions.insert_login(&first).await.expect("insert");
    db.sessions.insert_login(&second).await.expect("insert");
    let err = db
        .sessions
        .insert_login(&login("state-1", 9))
        .await
        .expect_err("same state");
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert!(!err.to_string().contains("state-1"), "no state in {err}");

    assert_eq!(
        db.sessions.take_login("state-1").await.expect("take"),
        Some(first)
    );
    assert_eq!(
        db.sessions.take_login("state-1").await.expect("again"),
        None
    );
    assert_eq!(
        db.sessions.take_login("unknown").await.expect("unknown"),
        None
    );
    assert_eq!(
        db.sessions.take_login("state-2").await.expect("take"),
        Some(second)
    );
    assert_eq!(
        db.sessions.take_login("state-2").await.expect("again"),
        None
    );
}

pub async fn ten_concurrent_login_takers_one_winner(db: Db) {
    let l = login("state-raced", 0);
    db.sessions.insert_login(&l).await.expect("insert");
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let sessions = db.sessions.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            sessions.take_login("state-raced").await
        }));
    }
    let mut taken = Vec::new();
    for task in tasks {
        if let Some(got) = task.await.expect("task").expect("take") {
            taken.push(got);
        }
    }
    assert_eq!(taken, vec![l]);
    assert_eq!(
        db.sessions.take_login("state-raced").await.expect("after"),
        None
    );
}

pub async fn session_round_trip_keeps_every_field(db: Db) {
    let alice = person("okta", "alice");
    assert!(!alice.claims().is_empty());
    let full = session("hash-full", &alice, Some("sid-1"), 0);
    let mut bare = session("hash-bare", &person("okta", "bob"), None, 5);
    bare.id_token = None;
    bare.refresh_token = None;
    let mut empty_token = session("hash-empty", &alice, Some("sid-2"), 6);
    empty_token.refresh_token = Some(Vec::new());
    for s in [&full, &bare, &empty_token] {
        db.sessions.insert_session(s).await.expect("insert");
    }
    for s in [&full, &bare, &empty_token] {
        assert_eq!(
            db.sessions
                .get_session(&s.id_hash)
                .await
                .expect("get")
                .as_ref(),
            Some(s)
        );
    }
    assert_eq!(
        db.sessions.get_session("hash-none").await.expect("get"),
        None
    );

    let mut again = session("hash-full", &person("okta", "mallory"), None, 9);
    again.csrf_token = Secret::new("other");
    let err = db
        .sessions
        .insert_session(&again)
        .await
        .expect_err("same id hash");
    assert!(matches!(err, StoreError::Duplicate(_)), "{err:?}");
    assert!(!err.to_string().contains("hash-full"), "no key in {err}");
    assert_eq!(
        db.sessions.get_session("hash-full").await.expect("get"),
        Some(full)
    );
}

pub async fn update_session_changes_all_but_the_start(db: Db) {
    let alice = person("okta", "alice");
    let original = session("hash-1", &alice, Some("sid-1"), 0);
    db.sessions.insert_session(&original).await.expect("insert");

    // A plain touch: only the last use moves.
    let mut touched = original.clone();
    touched.last_seen_at = at(60_000);
    db.sessions.update_session(&touched).await.expect("touch");
    assert_eq!(
        db.sessions.get_session("hash-1").await.expect("get"),
        Some(touched.clone())
    );

    // After a refresh: new claims, tokens and provider session; the start stays.
    let mut refreshed = touched.clone();
    refreshed.principal.testing_mut().groups = vec!["sre".into()];
    refreshed
        .principal
        .testing_mut()
        .claims
        .insert("acr".into(), json!("phr"));
    refreshed.principal.testing_mut().auth_time = Some(at(100_000));
    refreshed.sid = Some("sid-2".into());
    refreshed.id_token = None;
    refreshed.refresh_token = Some(vec![7, 0, 7]);
    refreshed.csrf_token = Secret::new("csrf-rotated");
    refreshed.last_seen_at = at(120_000);
    refreshed.created_at = at(119_000);
    db.sessions
        .update_session(&refreshed)
        .await
        .expect("refresh");
    let got = db
        .sessions
        .get_session("hash-1")
        .await
        .expect("get")
        .expect("exists");
    let mut expected = refreshed.clone();
    expected.created_at = original.created_at;
    assert_eq!(got, expected);
    // The provider session id moved with it: logout of the new sid finds it.
    assert_eq!(
        db.sessions
            .delete_sessions("okta", None, Some("sid-1"))
            .await
            .expect("old sid"),
        0
    );

    // An update never brings back a session that is gone.
    let gone = session("hash-gone", &alice, None, 0);
    let err = db
        .sessions
        .update_session(&gone)
        .await
        .expect_err("unknown session");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(
        db.sessions.get_session("hash-gone").await.expect("get"),
        None
    );
    assert!(db.sessions.delete_session("hash-1").await.expect("delete"));
    let err = db
        .sessions
        .update_session(&refreshed)
        .await
        .expect_err("deleted session");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(db.sessions.get_session("hash-1").await.expect("get"), None);
}

pub async fn delete_session_once(db: Db) {
    let alice = person("okta", "alice");
    let one = session("hash-1", &alice, Some("sid-1"), 0);
    let other = session("hash-2", &alice, Some("sid-1"), 0);
    db.sessions.insert_session(&one).await.expect("insert");
    db.sessions.insert_session(&other).await.expect("insert");
    assert!(db.sessions.delete_session("hash-1").await.expect("delete"));
    assert!(!db.sessions.delete_session("hash-1").await.expect("again"));
    assert!(
        !db.sessions
            .delete_session("hash-none")
            .await
            .expect("unknown")
    );
    assert_eq!(db.sessions.get_session("hash-1").await.expect("get"), None);
    assert_eq!(
        db.sessions.get_session("hash-2").await.expect("get"),
        Some(other)
    );
}

/// Sessions at two issuers: alice at okta in provider sessions s1 and s2 and one without a
/// sid, bob at okta in s1, alice at google in s1.
async fn logged_in(db: &Db) -> Vec<String> {
    let alice = person("okta", "alice");
    let all = [
        session("okta-alice-s1", &alice, Some("s1"), 0),
        session("okta-alice-s2", &alice, Some("s2"), 1),
        session("okta-alice-none", &alice, None, 2),
        session("okta-bob-s1", &person("okta", "bob"), Some("s1"), 3),
        session("google-alice-s1", &person("google", "alice"), Some("s1"), 4),
    ];
    for s in &all {
        db.sessions.insert_session(s).await.expect("insert");
    }
    all.into_iter().map(|s| s.id_hash).collect()
}

/// The id hashes of the sessions among `of` that are still there.
async fn remaining(db: &Db, of: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for id in of {
        if db.sessions.get_session(id).await.expect("get").is_some() {
            left.push(id.clone());
        }
    }
    left
}

pub async fn delete_sessions_by_subject(db: Db) {
    let all = logged_in(&db).await;
    assert_eq!(
        db.sessions
            .delete_sessions("okta", Some("alice"), None)
            .await
            .expect("delete"),
        3
    );
    assert_eq!(
        remaining(&db, &all).await,
        ["okta-bob-s1", "google-alice-s1"]
    );
    assert_eq!(
        db.sessions
            .delete_sessions("okta", Some("alice"), None)
            .await
            .expect("again"),
        0
    );
    assert_eq!(
        db.sessions
            .delete_sessions("okta", Some("carol"), None)
            .await
            .expect("unknown"),
        0
    );
}

pub async fn delete_sessions_by_sid(db: Db) {
    let all = logged_in(&db).await;
    assert_eq!(
        db.sessions
            .delete_sessions("okta", None, Some("s1"))
            .await
            .expect("delete"),
        2
    );
    assert_eq!(
        remaining(&db, &all).await,
        ["okta-alice-s2", "okta-alice-none", "google-alice-s1"]
    );
    assert_eq!(
        db.sessions
            .delete_sessions("okta", None, Some("s9"))
            .await
            .expect("unknown"),
        0
    );
}

pub async fn delete_sessions_by_subject_and_sid(db: Db) {
    let all = logged_in(&db).await;
    assert_eq!(
        db.sessions
            .delete_sessions("okta", Some("alice"), Some("s1"))
            .await
            .expect("delete"),
        1
    );
    assert_eq!(
        remaining(&db, &all).await,
        [
            "okta-alice-s2",
            "okta-alice-none",
            "okta-bob-s1",
            "google-alice-s1"
        ]
    );
    // Both must match: bob's s1 is not alice's.
    assert_eq!(
        db.sessions
            .delete_sessions("okta", Some("carol"), Some("s1"))
            .await
            .expect("other subject"),
        0
    );
    assert_eq!(remaining(&db, &all).await.len(), 4);
}

pub async fn delete_sessions_needs_subject_or_sid(db: Db) {
    let all = logged_in(&db).await;
    for issuer in ["okta", "google", "unknown"] {
        assert_eq!(
            db.sessions
                .delete_sessions(issuer, None, None)
                .await
                .expect("delete nothing"),
            0
        );
    }
    assert_eq!(remaining(&db, &all).await, all);
}

pub async fn purge_respects_both_cutoffs(db: Db) {
    // Logins expire ten minutes after they start: at 600_000, 700_000 and 800_000.
    for (state, ms) in [("old", 0), ("edge", 100_000), ("fresh", 200_000)] {
        db.sessions
            .insert_login(&login(state, ms))
            .await
            .expect("login");
    }
    let alice = person("okta", "alice");
    let mut idle = session("idle", &alice, None, 0);
    idle.last_seen_at = at(100_000);
    let mut edge = session("edge", &alice, None, 0);
    edge.last_seen_at = at(300_000);
    // Started long ago but in use: purging goes by the last use, not the start.
    let mut busy = session("busy", &alice, None, 0);
    busy.last_seen_at = at(900_000);
    for s in [&idle, &edge, &busy] {
        db.sessions.insert_session(s).await.expect("session");
    }
    // Logins whose deadline is before 700_000 (strictly), sessions idle since before
    // 300_000 (strictly): one of each.
    assert_eq!(
        db.sessions
            .purge_sessions(at(700_000), at(300_000))
            .await
            .expect("purge"),
        2
    );
    assert_eq!(db.sessions.take_login("old").await.expect("take"), None);
    assert_eq!(db.sessions.get_session("idle").await.expect("get"), None);
    assert_eq!(
        db.sessions.get_session("edge").await.expect("get"),
        Some(edge)
    );
    assert_eq!(
        db.sessions.get_session("busy").await.expect("get"),
        Some(busy.clone())
    );
    assert_eq!(
        db.sessions
            .purge_sessions(at(700_000), at(300_000))
            .await
            .expect("again"),
        0
    );
    // The two cutoffs are independent: a late login cutoff takes every login and no
    // session; a late session cutoff takes the rest of the sessions.
    assert_eq!(
        db.sessions
            .purge_sessions(at(10_000_000), at(0))
            .await
            .expect("logins"),
        2
    );
    assert_eq!(db.sessions.take_login("edge").await.expect("take"), None);
    assert_eq!(db.sessions.take_login("fresh").await.expect("take"), None);
    assert_eq!(
        db.sessions.get_session("busy").await.expect("get"),
        Some(busy)
    );
    assert_eq!(
        db.sessions
            .purge_sessions(at(0), at(10_000_000))
            .await
            .expect("sessions"),
        2
    );
    assert_eq!(db.sessions.get_session("busy").await.expect("get"), None);
}

/// The identity columns are what logout deletes by: a row whose columns were edited away
/// from its principal is refused, not served, and the error names no key.
pub async fn tamper_session_identity_is_refused(db: Db) {
    let s = session("hash-tampered", &person("okta", "alice"), Some("sid-1"), 0);
    db.sessions.insert_session(&s).await.expect("insert");
    db.exec("UPDATE web_sessions SET subject = 'mallory' WHERE id_hash = 'hash-tampered'")
        .await;
    let err = db
        .sessions
        .get_session("hash-tampered")
        .await
        .expect_err("inconsistent row");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(
        !err.to_string().contains("hash-tampered"),
        "no key in {err}"
    );
    db.exec("UPDATE web_sessions SET subject = 'alice', principal = '{' WHERE id_hash = 'hash-tampered'")
        .await;
    let err = db
        .sessions
        .get_session("hash-tampered")
        .await
        .expect_err("unreadable principal");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(
        !err.to_string().contains("hash-tampered"),
        "no key in {err}"
    );
}
