//! Grants and signing keys.

use super::Db;
use super::fixtures::*;
use super::helpers::*;
use countersign_core::StoreError;
use countersign_core::request::State;
use countersign_store::verify_audit;
use serde_json::json;
use std::sync::Arc;

pub async fn grant_needs_the_request_approved_at_the_version(db: Db) {
    // Not approved yet.
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    let g = grant("jti-pending", &req, 5);
    let before = snapshot(&db, &req).await;
    let err = db
        .store
        .insert_grant(
            &g,
            1,
            false,
            &issued(&g, &req),
            &[message(5, &req, "grant.redeemed")],
        )
        .await;
    assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");
    assert_eq!(db.store.get_grant(&g.jti).await.expect("get"), None);
    assert_eq!(snapshot(&db, &req).await, before);

    // Approved at version 2: a grant computed from version 1 is stale, as is one from the
    // future.
    db.store
        .apply(&approve(&req, 1, &person("okta", "bob")))
        .await
        .expect("approve");
    let before = snapshot(&db, &req).await;
    for version in [1, 3] {
        let err = db
            .store
            .insert_grant(
                &g,
                version,
                true,
                &issued(&g, &req),
                &[message(25, &req, "grant.redeemed")],
            )
            .await;
        assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");
    }
    assert_eq!(db.store.get_grant(&g.jti).await.expect("get"), None);
    assert_eq!(snapshot(&db, &req).await, before);

    // At the version read: stored with its event and its message.
    let g = grant("jti-ok", &req, 30);
    let outbox = vec![message(30, &req, "grant.redeemed")];
    db.store
        .insert_grant(&g, 2, false, &issued(&g, &req), &outbox)
        .await
        .expect("grant");
    assert_eq!(
        db.store.get_grant(&g.jti).await.expect("get"),
        Some(g.clone())
    );
    assert_eq!(db.store.get_grant("jti-unknown").await.expect("get"), None);
    let events = all_events(&db).await;
    assert_eq!(
        events.last().map(|e| e.action.as_str()),
        Some("grant.issued")
    );
    assert_eq!(events.len(), before.1.len() + 1);
    assert_eq!(
        delivery_ids(&deliveries(&db, None).await),
        message_ids(&outbox)
    );
    // A grant does not change the request.
    assert_eq!(db.store.get_request(&req.id).await.expect("get"), before.0);

    // Revoked (version 3): no longer approved, whatever the version.
    let mut revoke = change(&req, 2, State::Revoked, 40);
    revoke.testing_mut().decided_at = None;
    db.store.apply(&revoke).await.expect("revoke");
    let before = snapshot(&db, &req).await;
    for version in [2, 3] {
        let g = grant(&format!("jti-revoked-{version}"), &req, 50);
        let err = db
            .store
            .insert_grant(
                &g,
                version,
                false,
                &issued(&g, &req),
                &[message(50, &req, "grant.redeemed")],
            )
            .await;
        assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");
        assert_eq!(db.store.get_grant(&g.jti).await.expect("get"), None);
    }
    assert_eq!(snapshot(&db, &req).await, before);

    // A request that does not exist.
    let ghost = request(60, "deploy-prod", &person("okta", "alice"));
    let g = grant("jti-ghost", &ghost, 60);
    let err = db
        .store
        .insert_grant(&g, 1, false, &issued(&g, &ghost), &[])
        .await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    assert_eq!(snapshot(&db, &req).await, before);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(5));
}

pub async fn single_use_grant_is_issued_once(db: Db) {
    let req = approved(&db, 0).await;
    let first = grant("jti-first", &req, 30);
    db.store
        .insert_grant(
            &first,
            2,
            true,
            &issued(&first, &req),
            &[message(30, &req, "grant.redeemed")],
        )
        .await
        .expect("first");
    let before = snapshot(&db, &req).await;
    // Refused every time it is tried.
    for _ in 0..2 {
        let second = grant("jti-second", &req, 31);
        let err = db
            .store
            .insert_grant(
                &second,
                2,
                true,
                &issued(&second, &req),
                &[message(31, &req, "grant.redeemed")],
            )
            .await;
        match err {
            Err(StoreError::Duplicate(why)) => assert!(why.contains("single-use"), "{why}"),
            other => panic!("expected a duplicate, got {other:?}"),
        }
        assert_eq!(db.store.get_grant(&second.jti).await.expect("get"), None);
    }
    assert_eq!(snapshot(&db, &req).await, before);
    // The same jti again is refused too, even for a reusable grant.
    let again = grant("jti-first", &req, 32);
    let err = db
        .store
        .insert_grant(&again, 2, false, &issued(&again, &req), &[])
        .await;
    match err {
        Err(StoreError::Duplicate(why)) => assert!(why.contains("jti-first"), "{why}"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(
        db.store.get_grant(&first.jti).await.expect("get"),
        Some(first)
    );
    assert_eq!(snapshot(&db, &req).await, before);

    // Reusable grants: as many as asked for.
    let other = approved(&db, 100).await;
    for i in 0..3 {
        let g = grant(&format!("jti-reusable-{i}"), &other, 130 + i);
        db.store
            .insert_grant(&g, 2, false, &issued(&g, &other), &[])
            .await
            .expect("reusable");
        assert_eq!(db.store.get_grant(&g.jti).await.expect("get"), Some(g));
    }
    // A single-use grant for another request is independent.
    let g = grant("jti-other-single", &other, 140);
    db.store
        .insert_grant(&g, 2, true, &issued(&g, &other), &[])
        .await
        .expect("single use on another request");
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(11));
}

pub async fn twenty_concurrent_single_use_redemptions_one_winner(db: Db) {
    let req = approved(&db, 0).await;
    let events_before = all_events(&db).await.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = db.store.clone();
        let req = req.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let g = grant(&format!("jti-{i}"), &req, 30);
            let outbox = [message(30, &req, "grant.redeemed")];
            barrier.wait().await;
            store
                .insert_grant(&g, 2, true, &issued(&g, &req), &outbox)
                .await
                .map(|()| g)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(g) => winners.push(g),
            Err(StoreError::Duplicate(_)) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let winner = &winners[0];
    for i in 0..20 {
        let jti = format!("jti-{i}");
        let got = db.store.get_grant(&jti).await.expect("get");
        assert_eq!(got.as_ref(), (jti == winner.jti).then_some(winner));
    }
    assert_eq!(all_events(&db).await.len(), events_before + 1);
    assert_eq!(deliveries(&db, None).await.len(), 1);
    assert_eq!(
        verify_audit(db.store.as_ref()).await,
        Ok(events_before as u64 + 1)
    );
}

pub async fn grant_revocation_first_wins(db: Db) {
    let req = approved(&db, 0).await;
    let g = grant("jti-1", &req, 30);
    db.store
        .insert_grant(&g, 2, false, &issued(&g, &req), &[])
        .await
        .expect("grant");
    let revoked = |ms| {
        vec![event(
            "grant.revoked",
            Some(&req),
            json!({"jti": "jti-1", "ms": ms}),
        )]
    };
    let n = all_events(&db).await.len();
    assert!(
        db.store
            .revoke_grant(&g.jti, at(40), &revoked(40))
            .await
            .expect("revoke")
    );
    let mut expected = g.clone();
    expected.revoked_at = Some(at(40));
    assert_eq!(
        db.store.get_grant(&g.jti).await.expect("get"),
        Some(expected.clone())
    );
    let events = all_events(&db).await;
    assert_eq!(events.len(), n + 1);
    assert_eq!(events[n].action, "grant.revoked");

    // Later revocations change nothing and append nothing.
    assert!(
        !db.store
            .revoke_grant(&g.jti, at(50), &revoked(50))
            .await
            .expect("again")
    );
    assert_eq!(
        db.store.get_grant(&g.jti).await.expect("get"),
        Some(expected)
    );
    assert_eq!(all_events(&db).await, events);
    // Nor does revoking a grant that does not exist.
    assert!(
        !db.store
            .revoke_grant("jti-unknown", at(60), &revoked(60))
            .await
            .expect("unknown")
    );
    assert_eq!(all_events(&db).await, events);

    // Concurrent revocations: exactly one wins.
    let g2 = grant("jti-2", &req, 31);
    db.store
        .insert_grant(&g2, 2, false, &issued(&g2, &req), &[])
        .await
        .expect("grant");
    let n = all_events(&db).await.len();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = db.store.clone();
        let events = vec![event(
            "grant.revoked",
            Some(&req),
            json!({"jti": "jti-2", "i": i}),
        )];
        tasks.push(tokio::spawn(async move {
            store.revoke_grant("jti-2", at(70 + i), &events).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        if task.await.expect("task").expect("revoke") {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert_eq!(all_events(&db).await.len(), n + 1);
    assert!(
        db.store
            .get_grant("jti-2")
            .await
            .expect("get")
            .expect("exists")
            .revoked_at
            .is_some()
    );
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(n as u64 + 1));
}

pub async fn signing_keys_add_list_and_retire(db: Db) {
    assert!(db.keys.signing_keys().await.expect("keys").is_empty());
    let k1 = signing_key("key-1", 0);
    db.keys
        .add_signing_key(
            &k1,
            &[],
            &[event("key.created", None, json!({"kid": "key-1"}))],
        )
        .await
        .expect("first key");
    assert_eq!(
        db.keys.signing_keys().await.expect("keys"),
        vec![k1.clone()]
    );

    // Rotation: the new key, and the old one's end of publication, together.
    let k2 = signing_key("key-2", 1_000);
    db.keys
        .add_signing_key(
            &k2,
            &[("key-1".to_string(), at(900_000))],
            &[event(
                "key.rotated",
                None,
                json!({"kid": "key-2", "retired": ["key-1"]}),
            )],
        )
        .await
        .expect("rotate");
    let mut k1_retired = k1.clone();
    k1_retired.publish_until = Some(at(900_000));
    assert_eq!(
        db.keys.signing_keys().await.expect("keys"),
        vec![k1_retired.clone(), k2.clone()]
    );
    let events = all_events(&db).await;
    assert_eq!(events.len(), 2);

    // A kid already stored: refused whole (the retirement is not applied either).
    let mut dup = signing_key("key-2", 2_000);
    dup.alg = "EdDSA".into();
    let err = db
        .keys
        .add_signing_key(
            &dup,
            &[("key-2".to_string(), at(5))],
            &[event("key.rotated", None, json!({}))],
        )
        .await;
    assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
    // Retiring a key that is not there: refused whole, the new key is not added.
    let k3 = signing_key("key-3", 3_000);
    let err = db
        .keys
        .add_signing_key(
            &k3,
            &[("key-2".to_string(), at(5)), ("key-0".to_string(), at(5))],
            &[event("key.rotated", None, json!({}))],
        )
        .await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    assert_eq!(
        db.keys.signing_keys().await.expect("keys"),
        vec![k1_retired.clone(), k2.clone()]
    );
    assert_eq!(all_events(&db).await, events);

    // Oldest first by creation, not by kid; retiring again moves the date.
    let k0 = signing_key("key-0", 2_000);
    db.keys
        .add_signing_key(&k0, &[("key-1".to_string(), at(800_000))], &[])
        .await
        .expect("third key");
    k1_retired.publish_until = Some(at(800_000));
    let keys = db.keys.signing_keys().await.expect("keys");
    assert_eq!(keys, vec![k1_retired, k2, k0]);
    assert_eq!(
        keys[2].sealed_private,
        signing_key("key-0", 0).sealed_private
    );
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(2));
}
