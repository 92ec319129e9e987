//! Requests and decisions: the round trip, the compare-and-set and its refusals.

use super::Db;
use super::fixtures::*;
use super::helpers::*;
use countersign_core::audit::GENESIS_HASH;
use countersign_core::ports::RequestFilter;
use countersign_core::request::{ApprovalPath, State, Verdict};
use countersign_core::{RequestId, StoreError};
use countersign_store::verify_audit;
use std::sync::Arc;

pub async fn round_trip_keeps_every_field(db: Db) {
    let alice = person("okta", "alice");
    let mut req = request(0, "deploy-prod", &workload("repo:acme/app", "alice"));
    req.requester.testing_mut().claims = alice.claims().clone();
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    assert_eq!(
        db.store.get_request(&req.id).await.expect("get"),
        Some(Arc::new(req.clone()))
    );

    let bob = person("okta", "bob");
    let carol = person("google", "carol");
    db.store.apply(&vote(&req, 1, &bob)).await.expect("vote");
    let mut t = vote(&req, 2, &carol);
    let parts = t.testing_mut();
    parts.decision.as_mut().expect("decision").verdict = Verdict::Reject;
    parts.decision.as_mut().expect("decision").comment = None;
    parts.decision.as_mut().expect("decision").at = at(11);
    parts.state = State::Rejected;
    parts.decided_at = Some(at(11));
    parts.at = at(11);
    db.store.apply(&t).await.expect("reject");

    let mut expected = req.clone();
    expected.version = 3;
    expected.state = State::Rejected;
    expected.decided_at = Some(at(11));
    expected.updated_at = at(11);
    expected.decisions = vec![
        vote(&req, 1, &bob).decision().cloned().expect("decision"),
        t.decision().cloned().expect("decision"),
    ];
    let got = db.store.get_request(&req.id).await.expect("get");
    assert_eq!(got, Some(Arc::new(expected.clone())));
    let listed = db
        .store
        .list_requests(&RequestFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed, vec![expected]);

    let missing = RequestId::generate(at(5));
    assert_eq!(db.store.get_request(&missing).await.expect("get"), None);

    // Events read back hash exactly as they were written.
    let events = all_events(&db).await;
    assert_eq!(seqs(&events), vec![1, 2, 3]);
    assert_eq!(events[0].detail, created(&req)[0].detail);
    assert_eq!(events[0].request_id, Some(req.id));
    assert_eq!(events[0].digest, Some(req.digest.clone()));
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(3));
}

pub async fn insert_of_an_existing_id_is_a_duplicate(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    let mut again = req.clone();
    again.gate = "other".into();
    let err = db
        .store
        .insert_request(&again, &created(&again), &[], &[])
        .await;
    assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
    assert_eq!(
        db.store.get_request(&req.id).await.expect("get"),
        Some(Arc::new(req))
    );
    assert_eq!(
        all_events(&db).await.len(),
        1,
        "the refused insert wrote no event"
    );
}

pub async fn cas_bumps_version_and_chains_events(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    let bob = person("okta", "bob");
    db.store
        .apply(&approve(&req, 1, &bob))
        .await
        .expect("approve");

    let got = db
        .store
        .get_request(&req.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.version, 2);
    assert_eq!(got.state, State::Approved);
    assert_eq!(got.approval, Some(ApprovalPath::Quorum));
    assert_eq!(got.decided_at, Some(at(20)));
    assert_eq!(got.updated_at, at(20));
    assert_eq!(got.decisions.len(), 1);

    let events = all_events(&db).await;
    assert_eq!(seqs(&events), vec![1, 2, 3]);
    assert_eq!(events[0].prev_hash, GENESIS_HASH);
    for pair in events.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["request.created", "decision.approve", "request.approved"]
    );
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(3));
}

pub async fn stale_cas_conflicts_and_changes_nothing(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    db.store
        .apply(&vote(&req, 1, &person("okta", "bob")))
        .await
        .expect("first vote");
    let before = db.store.get_request(&req.id).await.expect("get");
    let events_before = all_events(&db).await;

    // Computed from version 1, which is gone.
    let stale = approve(&req, 1, &person("okta", "carol"));
    let err = db.store.apply(&stale).await;
    assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");
    // A version from the future is just as stale.
    let err = db.store.apply(&change(&req, 7, State::Cancelled, 30)).await;
    assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");

    assert_eq!(db.store.get_request(&req.id).await.expect("get"), before);
    assert_eq!(all_events(&db).await, events_before, "no event appended");
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(2));
}

pub async fn unknown_request_is_not_found(db: Db) {
    let ghost = request(0, "deploy-prod", &person("okta", "alice"));
    let err = db
        .store
        .apply(&approve(&ghost, 1, &person("okta", "bob")))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    assert!(all_events(&db).await.is_empty());
}

pub async fn unreadable_stored_request_is_named(db: Db) {
    let alice = person("okta", "alice");
    let good = request(0, "deploy-prod", &alice);
    let bad = request(10, "deploy-prod", &alice);
    for req in [&good, &bad] {
        db.store
            .insert_request(req, &created(req), &[], &[])
            .await
            .expect("insert");
    }
    db.store
        .apply(&vote(&bad, 1, &person("okta", "bob")))
        .await
        .expect("vote");
    let all = RequestFilter {
        limit: 10,
        ..Default::default()
    };
    // The rows are damaged behind the store's back. The store that wrote them may keep
    // what it wrote in memory (SQLite's for up to a second: it hears of no other writer),
    // so they are read by another one, as after a restart.
    let reader = countersign_store::open(&db.url).await.expect("reopen");
    let unreadable = |err: StoreError, what: &str| {
        let text = err.to_string();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        assert!(
            text.contains(&bad.id.to_string()),
            "names the request: {text}"
        );
        assert!(text.contains(what), "names {what}: {text}");
    };

    // A stored JSON column that is not JSON, then one that is JSON of the wrong shape.
    for requester in ["{", r#"{"identity": 7}"#] {
        db.exec(&format!(
            "UPDATE requests SET requester = '{requester}' WHERE id = '{}'",
            bad.id
        ))
        .await;
        let err = reader.get_request(&bad.id).await.expect_err("unreadable");
        unreadable(err, "requester");
        let err = db.store.list_requests(&all).await.expect_err("unreadable");
        unreadable(err, "requester");
    }
    // A stored value that is JSON followed by more: spliced into a page, it would read as
    // a field of the request; it must be refused as the unreadable column it is.
    for more in [r#", "state": "approved""#, r#", "note": 1"#] {
        db.exec(&format!(
            "UPDATE requests SET requester = (SELECT requester FROM requests \
             WHERE id = '{}') || '{more}' WHERE id = '{}'",
            good.id, bad.id
        ))
        .await;
        let err = reader.get_request(&bad.id).await.expect_err("unreadable");
        unreadable(err, "requester");
        let err = db.store.list_requests(&all).await.expect_err("unreadable");
        unreadable(err, "requester");
    }
    db.exec(&format!(
        "UPDATE requests SET requester = (SELECT requester FROM requests WHERE id = '{}') \
         WHERE id = '{}'",
        good.id, bad.id
    ))
    .await;
    db.exec(&format!(
        "UPDATE decisions SET approver = '[' WHERE request_id = '{}'",
        bad.id
    ))
    .await;
    let err = reader.get_request(&bad.id).await.expect_err("unreadable");
    unreadable(err, "decision on");
    db.exec(&format!(
        "UPDATE decisions SET approver = '{{}}' WHERE request_id = '{}'",
        bad.id
    ))
    .await;
    let err = db.store.list_requests(&all).await.expect_err("unreadable");
    unreadable(err, "decision on");

    // The other request still reads, and nothing was changed by the failed reads.
    assert_eq!(
        db.store.get_request(&good.id).await.expect("get"),
        Some(Arc::new(good.clone()))
    );
}

pub async fn revocation_keeps_approval_and_decision_time(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    db.store
        .apply(&approve(&req, 1, &person("okta", "bob")))
        .await
        .expect("approve");
    let mut revoke = change(&req, 2, State::Revoked, 40);
    revoke.testing_mut().decided_at = None;
    db.store.apply(&revoke).await.expect("revoke");
    let got = db
        .store
        .get_request(&req.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.state, State::Revoked);
    assert_eq!(got.version, 3);
    assert_eq!(got.approval, Some(ApprovalPath::Quorum));
    assert_eq!(got.decided_at, Some(at(20)));
    assert_eq!(got.updated_at, at(40));
}

pub async fn duplicate_decision_is_refused_whole(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    let bob = person("okta", "bob");
    db.store.apply(&vote(&req, 1, &bob)).await.expect("vote");
    let before = db.store.get_request(&req.id).await.expect("get");
    let events_before = all_events(&db).await;

    // Same approver identity again, computed from the current version: the CAS passes,
    // the unique decision does not, and the whole transaction goes.
    let mut bob_again = bob.clone();
    bob_again.testing_mut().name = Some("Robert".into());
    let err = db.store.apply(&approve(&req, 2, &bob_again)).await;
    assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");

    assert_eq!(db.store.get_request(&req.id).await.expect("get"), before);
    assert_eq!(all_events(&db).await, events_before);

    // The same subject under another issuer is another identity.
    let other = person("google", "bob");
    db.store
        .apply(&vote(&req, 2, &other))
        .await
        .expect("other issuer");
    let got = db
        .store
        .get_request(&req.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.decisions.len(), 2);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(3));
}

pub async fn fifty_concurrent_deciders_one_winner(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = db.store.clone();
        let t = approve(&req, 1, &person("okta", &format!("approver{i}")));
        tasks.push(tokio::spawn(async move { store.apply(&t).await }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => won += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(won, 1);
    let got = db
        .store
        .get_request(&req.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.version, 2);
    assert_eq!(got.decisions.len(), 1);
    assert_eq!(seqs(&all_events(&db).await), vec![1, 2, 3]);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(3));
}

pub async fn concurrent_mixed_writers_keep_one_chain(db: Db) {
    let requester = person("okta", "alice");
    // Requests to change, created up front.
    let mut shared = Vec::new();
    for i in 0..5 {
        let req = request(i, "deploy-prod", &requester);
        db.store
            .insert_request(&req, &created(&req), &[], &[])
            .await
            .expect("insert");
        shared.push(req);
    }
    let mut tasks = Vec::new();
    for i in 0..20_i64 {
        let store = db.store.clone();
        let target = shared[(i % 5) as usize].clone();
        let requester = requester.clone();
        tasks.push(tokio::spawn(async move {
            match i % 4 {
                // A new request, then a change to it.
                0 => {
                    let req = request(100 + i, "deploy-staging", &requester);
                    store.insert_request(&req, &created(&req), &[], &[]).await?;
                    store
                        .apply(&vote(&req, 1, &person("okta", &format!("a{i}"))))
                        .await
                }
                // Votes racing on shared requests: some lose, and write nothing.
                1 | 2 => {
                    let current = store
                        .get_request(&target.id)
                        .await?
                        .ok_or(StoreError::NotFound)?;
                    let t = vote(&target, current.version, &person("okta", &format!("v{i}")));
                    match store.apply(&t).await {
                        Err(StoreError::Conflict) => Ok(()),
                        other => other,
                    }
                }
                // Events that change no request.
                _ => store.append_audit(&loose_events(3)).await,
            }
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("writer");
    }
    let events = all_events(&db).await;
    let n = events.len() as i64;
    assert_eq!(seqs(&events), (1..=n).collect::<Vec<_>>());
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(n as u64));
    // Every recorded decision has its event, and no more.
    let decisions: usize = db
        .store
        .list_requests(&RequestFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .iter()
        .map(|r| r.decisions.len())
        .sum();
    let decision_events = events
        .iter()
        .filter(|e| e.action == "decision.approve")
        .count();
    assert_eq!(decisions, decision_events);
}
