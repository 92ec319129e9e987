//! The audit chain: pages of events, verification, and tampering found where it is.

use super::Db;
use super::fixtures::*;
use super::helpers::*;
use countersign_core::audit::AuditEvent;
use countersign_core::ports::{AttemptOutcome, AuditQuery};
use countersign_core::request::State;
use countersign_store::{verify_audit, verify_audit_in_pages};
use serde_json::json;

pub async fn audit_events_by_request_and_cursor(db: Db) {
    let alice = person("okta", "alice");
    let a = request(0, "deploy-prod", &alice);
    let b = request(1, "deploy-prod", &alice);
    db.store
        .insert_request(&a, &created(&a), &[], &[])
        .await
        .expect("a"); // 1
    db.store
        .append_audit(&loose_events(1))
        .await
        .expect("loose"); // 2
    db.store
        .insert_request(&b, &created(&b), &[], &[])
        .await
        .expect("b"); // 3
    db.store
        .apply(&approve(&a, 1, &person("okta", "bob")))
        .await
        .expect("approve a"); // 4, 5
    db.store
        .apply(&vote(&b, 1, &person("okta", "bob")))
        .await
        .expect("vote b"); // 6
    // An event about a request the store has never seen is kept too.
    let ghost = request(2, "deploy-prod", &alice);
    db.store
        .append_audit(&[event("access.denied", Some(&ghost), json!({}))])
        .await
        .expect("ghost"); // 7

    let query = |request_id, after_seq, limit| {
        let store = db.store.clone();
        async move {
            seqs(
                &store
                    .audit_events(&AuditQuery {
                        request_id,
                        after_seq,
                        limit,
                    })
                    .await
                    .expect("events"),
            )
        }
    };
    assert_eq!(query(Some(a.id), 0, 100).await, vec![1, 4, 5]);
    assert_eq!(query(Some(b.id), 0, 100).await, vec![3, 6]);
    assert_eq!(query(Some(ghost.id), 0, 100).await, vec![7]);
    assert_eq!(query(Some(a.id), 1, 100).await, vec![4, 5]);
    assert_eq!(query(Some(a.id), 0, 2).await, vec![1, 4]);
    assert_eq!(query(None, 0, 100).await, (1..=7).collect::<Vec<_>>());
    assert_eq!(query(None, 2, 3).await, vec![3, 4, 5]);
    assert_eq!(query(None, 7, 100).await, Vec::<i64>::new());
    assert_eq!(query(None, 0, 0).await.len(), 7, "0 means a full page");

    let events = db
        .store
        .audit_events(&AuditQuery {
            request_id: Some(a.id),
            after_seq: 0,
            limit: 10,
        })
        .await
        .expect("events");
    assert!(events.iter().all(|e| e.request_id == Some(a.id)));
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(7));
}

pub async fn empty_audit_verifies(db: Db) {
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(0));
    db.store.append_audit(&[]).await.expect("nothing to append");
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(0));
    db.store.ping().await.expect("ping");
}

/// Five chained events, verified intact before the tampering starts.
async fn five_events(db: &Db) {
    db.store
        .append_audit(&loose_events(2))
        .await
        .expect("append");
    db.store
        .append_audit(&loose_events(3))
        .await
        .expect("append");
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(5));
}

async fn broken_at(db: &Db) -> i64 {
    verify_audit(db.store.as_ref())
        .await
        .expect_err("tampering is detected")
        .seq
}

pub async fn tamper_edited_detail(db: Db) {
    five_events(&db).await;
    db.exec(r#"UPDATE audit_events SET detail = '{"i":99,"why":"bad token"}' WHERE seq = 3"#)
        .await;
    assert_eq!(broken_at(&db).await, 3);
}

pub async fn tamper_deleted_event(db: Db) {
    five_events(&db).await;
    db.exec("DELETE FROM audit_events WHERE seq = 3").await;
    assert_eq!(broken_at(&db).await, 3);
}

pub async fn tamper_swapped_events(db: Db) {
    five_events(&db).await;
    db.exec(
        "UPDATE audit_events SET seq = -1 WHERE seq = 2; \
         UPDATE audit_events SET seq = 2 WHERE seq = 3; \
         UPDATE audit_events SET seq = 3 WHERE seq = -1;",
    )
    .await;
    assert_eq!(broken_at(&db).await, 2);
}

/// Moves events 4 and 5 to 5 and 6, leaving room for a forgery at 4.
async fn make_room_at_4(db: &Db) {
    db.exec(
        "UPDATE audit_events SET seq = -seq WHERE seq > 3; \
         UPDATE audit_events SET seq = 1 - seq WHERE seq < 0;",
    )
    .await;
}

pub async fn tamper_inserted_copy(db: Db) {
    five_events(&db).await;
    make_room_at_4(&db).await;
    db.exec(
        "INSERT INTO audit_events (seq, at, actor_issuer, actor_subject, action, request_id, \
         digest, detail, prev_hash, hash) SELECT 4, at, actor_issuer, actor_subject, \
         'forged', request_id, digest, detail, prev_hash, hash FROM audit_events \
         WHERE seq = 3",
    )
    .await;
    assert_eq!(broken_at(&db).await, 4);
}

pub async fn tamper_inserted_forgery(db: Db) {
    five_events(&db).await;
    // A forger who knows the hashing: the forged event itself verifies, so the break is
    // where the chain resumes after it.
    let third = all_events(&db).await.remove(2);
    let forged = AuditEvent::chain(
        event("request.approved", None, json!({"forged": true})),
        third.seq,
        &third.hash,
    );
    make_room_at_4(&db).await;
    db.exec(&format!(
        "INSERT INTO audit_events (seq, at, actor_issuer, actor_subject, action, request_id, \
         digest, detail, prev_hash, hash) VALUES ({}, {}, '{}', '{}', '{}', NULL, NULL, \
         '{}', '{}', '{}')",
        forged.seq,
        forged.at.timestamp_millis(),
        forged.actor.issuer,
        forged.actor.subject,
        forged.action,
        forged.detail,
        forged.prev_hash,
        forged.hash,
    ))
    .await;
    assert_eq!(broken_at(&db).await, 5);
}

pub async fn tamper_unreadable_event(db: Db) {
    five_events(&db).await;
    db.exec("UPDATE audit_events SET detail = 'not json' WHERE seq = 4")
        .await;
    let err = verify_audit(db.store.as_ref()).await.expect_err("detected");
    assert_eq!(err.seq, 4, "{err}");
    assert!(err.reason.contains("cannot be read"), "{err}");
}

pub async fn detail_written_differently_still_verifies(db: Db) {
    five_events(&db).await;
    // The same value as `{"i":0,"why":"bad token"}`, written with spaces and its keys in
    // another order: the text as stored no longer hashes to the event's hash, but what it
    // says does, and that is what the chain covers.
    db.exec(r#"UPDATE audit_events SET detail = '{ "why": "bad token", "i": 0 }' WHERE seq = 3"#)
        .await;
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(5));
    let links = db
        .store
        .audit_links(&AuditQuery {
            request_id: None,
            after_seq: 2,
            limit: 1,
        })
        .await
        .expect("links");
    assert_eq!(links.len(), 1);
    assert_eq!((links[0].seq, links[0].content.clone()), (3, Ok(true)));
}

/// Pages read ahead on the guess that the chain has no gaps: every page size gives the
/// same answer, whether the chain ends on a page boundary or inside a page.
pub async fn verify_reads_ahead_page_by_page(db: Db) {
    db.store
        .append_audit(&loose_events(6))
        .await
        .expect("append");
    for page in [0, 1, 2, 3, 4, 6, 7, 100] {
        assert_eq!(
            verify_audit_in_pages(db.store.as_ref(), page).await,
            Ok(6),
            "page {page}"
        );
    }
    db.store
        .append_audit(&loose_events(1))
        .await
        .expect("append");
    for page in [1, 2, 3, 6, 7] {
        assert_eq!(
            verify_audit_in_pages(db.store.as_ref(), page).await,
            Ok(7),
            "page {page}"
        );
    }
}

pub async fn tamper_found_across_pages(db: Db) {
    db.store
        .append_audit(&loose_events(9))
        .await
        .expect("append");
    db.exec(r#"UPDATE audit_events SET detail = '{"i":99,"why":"bad token"}' WHERE seq = 8"#)
        .await;
    for page in [1, 2, 3, 4] {
        let err = verify_audit_in_pages(db.store.as_ref(), page)
            .await
            .expect_err("edited");
        assert_eq!(err.seq, 8, "page {page}: {err}");
    }
    // A gap where the next page was guessed to start, then the newest events deleted
    // (the chain head still names seq 9).
    db.exec("DELETE FROM audit_events WHERE seq = 4").await;
    for page in [1, 2, 3, 4] {
        let err = verify_audit_in_pages(db.store.as_ref(), page)
            .await
            .expect_err("gap");
        assert_eq!(err.seq, 4, "page {page}: {err}");
    }
    db.exec("DELETE FROM audit_events WHERE seq >= 4").await;
    for page in [1, 2, 3, 4] {
        let err = verify_audit_in_pages(db.store.as_ref(), page)
            .await
            .expect_err("tail deleted");
        assert_eq!(err.seq, 4, "page {page}: {err}");
        assert!(err.reason.contains("missing"), "page {page}: {err}");
    }
}

pub async fn chain_verifies_after_grants_keys_and_outbox(db: Db) {
    let req = approved(&db, 0).await; // 3 events
    let key = signing_key("key-1", 0);
    db.keys
        .add_signing_key(
            &key,
            &[],
            &[event("key.created", None, json!({"kid": "key-1"}))],
        )
        .await
        .expect("key"); // 4
    let g = grant("jti-1", &req, 30);
    db.store
        .insert_grant(
            &g,
            2,
            true,
            &issued(&g, &req),
            &[message(30, &req, "grant.redeemed")],
        )
        .await
        .expect("grant"); // 5
    // Refused writes in between append nothing.
    let g2 = grant("jti-2", &req, 31);
    assert!(
        db.store
            .insert_grant(&g2, 2, true, &issued(&g2, &req), &[])
            .await
            .is_err()
    );
    assert!(
        db.store
            .insert_grant(&g2, 1, false, &issued(&g2, &req), &[])
            .await
            .is_err()
    );
    assert!(
        db.store
            .revoke_grant(
                "jti-1",
                at(40),
                &[event("grant.revoked", Some(&req), json!({}))]
            )
            .await
            .expect("revoke")
    ); // 6
    assert!(
        !db.store
            .revoke_grant(
                "jti-1",
                at(41),
                &[event("grant.revoked", Some(&req), json!({}))]
            )
            .await
            .expect("revoke again")
    );
    let mut revoke = change(&req, 2, State::Revoked, 50);
    revoke.testing_mut().decided_at = None;
    revoke.testing_mut().outbox = vec![message(50, &req, "request.revoked")];
    db.store.apply(&revoke).await.expect("revoke request"); // 7
    let claimed = db
        .outbox
        .claim_deliveries(at(100), 10, lease())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    for d in &claimed {
        db.outbox
            .record_attempt(&d.message.id, &AttemptOutcome::Delivered, at(101))
            .await
            .expect("delivered");
    }
    db.store
        .append_audit(&loose_events(2))
        .await
        .expect("loose"); // 8, 9
    let events = all_events(&db).await;
    assert_eq!(seqs(&events), (1..=9).collect::<Vec<_>>());
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(9));
}
