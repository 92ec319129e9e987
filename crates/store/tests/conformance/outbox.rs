//! The webhook outbox: deliveries written with their change, claimed, retried.

use super::Db;
use super::fixtures::*;
use super::helpers::*;
use countersign_core::StoreError;
use countersign_core::grant::{DeliveryState, OutboxMessage};
use countersign_core::ports::AttemptOutcome;
use countersign_core::request::State;
use countersign_store::verify_audit;
use std::collections::HashSet;
use std::sync::Arc;

pub async fn outbox_rows_commit_with_their_change(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    let first = vec![
        message(0, &req, "request.created"),
        message(0, &req, "request.created"),
    ];
    db.store
        .insert_request(&req, &created(&req), &first, &[])
        .await
        .expect("insert");
    let listed = deliveries(&db, None).await;
    // Newest first.
    assert_eq!(
        delivery_ids(&listed),
        vec![first[1].id.clone(), first[0].id.clone()]
    );
    for (delivery, message) in listed.iter().rev().zip(&first) {
        assert_eq!(&delivery.message, message);
        assert_eq!(delivery.state, DeliveryState::Pending);
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.next_attempt_at, message.created_at);
        assert_eq!(delivery.last_error, None);
        assert_eq!(delivery.updated_at, message.created_at);
    }
    // The payload is kept byte for byte.
    let stored = db
        .text(&format!(
            "SELECT payload FROM deliveries WHERE id = '{}'",
            first[0].id
        ))
        .await;
    assert_eq!(
        stored,
        serde_json::to_string(&first[0].payload).expect("json")
    );

    // A change writes its messages.
    let mut t = approve(&req, 1, &person("okta", "bob"));
    t.testing_mut().outbox = vec![message(20, &req, "request.approved")];
    db.store.apply(&t).await.expect("approve");
    assert_eq!(deliveries(&db, None).await.len(), 3);

    // A change that does not apply writes none.
    let before = snapshot(&db, &req).await;
    let mut stale = change(&req, 1, State::Cancelled, 30);
    stale.testing_mut().outbox = vec![message(30, &req, "request.cancelled")];
    let err = db.store.apply(&stale).await;
    assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");
    // Nor does a refused decision, nor a refused insert.
    let mut twice = vote(&req, 2, &person("okta", "bob"));
    twice.testing_mut().outbox = vec![message(31, &req, "request.approved")];
    let err = db.store.apply(&twice).await;
    assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
    let err = db
        .store
        .insert_request(
            &req,
            &created(&req),
            &[message(32, &req, "request.created")],
            &[],
        )
        .await;
    assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
    assert_eq!(snapshot(&db, &req).await, before);

    // A message id already in the outbox refuses the whole change.
    let other = request(40, "deploy-prod", &person("okta", "alice"));
    let err = db
        .store
        .insert_request(&other, &created(&other), &[first[0].clone()], &[])
        .await;
    assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
    assert_eq!(db.store.get_request(&other.id).await.expect("get"), None);
    assert_eq!(snapshot(&db, &req).await, before);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(3));
}

/// Three pending deliveries for one request, due at 0, 10 and 20 ms.
async fn three_due(db: &Db) -> Vec<OutboxMessage> {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    let messages: Vec<OutboxMessage> = [0, 10, 20]
        .into_iter()
        .map(|ms| message(ms, &req, "request.created"))
        .collect();
    db.store
        .insert_request(&req, &created(&req), &messages, &[])
        .await
        .expect("insert");
    messages
}

pub async fn claim_respects_due_time_and_lease(db: Db) {
    let m = three_due(&db).await;
    assert!(
        db.outbox
            .claim_deliveries(at(-1), 10, lease())
            .await
            .expect("claim")
            .is_empty()
    );

    // Due at or before now, oldest first, up to the limit.
    let claimed = db
        .outbox
        .claim_deliveries(at(15), 1, lease())
        .await
        .expect("claim");
    assert_eq!(delivery_ids(&claimed), vec![m[0].id.clone()]);
    let claimed = db
        .outbox
        .claim_deliveries(at(15), 10, lease())
        .await
        .expect("claim");
    assert_eq!(delivery_ids(&claimed), vec![m[1].id.clone()]);
    assert_eq!(claimed[0].message, m[1]);
    assert_eq!(
        claimed[0].next_attempt_at,
        at(15 + 60_000),
        "leased until now + lease"
    );
    assert_eq!(claimed[0].state, DeliveryState::Pending);
    assert_eq!(claimed[0].attempts, 0);

    // Leased rows are not claimed again before the lease ends.
    assert!(
        db.outbox
            .claim_deliveries(at(15), 10, lease())
            .await
            .expect("claim")
            .is_empty()
    );
    let claimed = db
        .outbox
        .claim_deliveries(at(20), 10, lease())
        .await
        .expect("claim");
    assert_eq!(delivery_ids(&claimed), vec![m[2].id.clone()]);
    assert!(
        db.outbox
            .claim_deliveries(at(60_014), 10, lease())
            .await
            .expect("claim")
            .is_empty()
    );
    // The stored rows show the lease.
    let listed = deliveries(&db, Some(DeliveryState::Pending)).await;
    let next: Vec<_> = listed.iter().rev().map(|d| d.next_attempt_at).collect();
    assert_eq!(next, vec![at(60_015), at(60_015), at(60_020)]);

    // Once the lease ends they are due again, oldest first by due time.
    let claimed = db
        .outbox
        .claim_deliveries(at(60_015), 10, lease())
        .await
        .expect("claim");
    assert_eq!(
        delivery_ids(&claimed),
        vec![m[0].id.clone(), m[1].id.clone()]
    );
    let claimed = db
        .outbox
        .claim_deliveries(at(200_000), 10, lease())
        .await
        .expect("claim");
    assert_eq!(
        delivery_ids(&claimed),
        vec![m[2].id.clone(), m[0].id.clone(), m[1].id.clone()]
    );

    // Only pending rows are claimed.
    db.outbox
        .record_attempt(&m[0].id, &AttemptOutcome::Delivered, at(200_001))
        .await
        .expect("delivered");
    db.outbox
        .record_attempt(
            &m[1].id,
            &AttemptOutcome::Failed {
                error: "HTTP 500".into(),
            },
            at(200_001),
        )
        .await
        .expect("failed");
    let claimed = db
        .outbox
        .claim_deliveries(at(10_000_000), 10, lease())
        .await
        .expect("claim");
    assert_eq!(delivery_ids(&claimed), vec![m[2].id.clone()]);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

pub async fn record_attempt_transitions(db: Db) {
    let m = three_due(&db).await;
    let claimed = db
        .outbox
        .claim_deliveries(at(100), 10, lease())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    let get = |id: String| {
        let outbox = db.outbox.clone();
        async move {
            outbox
                .list_deliveries(None, None, 500)
                .await
                .expect("list")
                .into_iter()
                .find(|d| d.message.id == id)
                .expect("listed")
        }
    };

    // Retry: still pending, due at the given time, with the error.
    db.outbox
        .record_attempt(
            &m[0].id,
            &AttemptOutcome::Retry {
                next_attempt_at: at(5_000),
                error: "HTTP 503".into(),
            },
            at(200),
        )
        .await
        .expect("retry");
    let d = get(m[0].id.clone()).await;
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.next_attempt_at, at(5_000));
    assert_eq!(d.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(d.updated_at, at(200));
    assert_eq!(d.message, m[0]);
    assert!(
        db.outbox
            .claim_deliveries(at(4_999), 10, lease())
            .await
            .expect("claim")
            .is_empty()
    );
    let again = db
        .outbox
        .claim_deliveries(at(5_000), 10, lease())
        .await
        .expect("claim");
    assert_eq!(delivery_ids(&again), vec![m[0].id.clone()]);

    // Delivered.
    db.outbox
        .record_attempt(&m[0].id, &AttemptOutcome::Delivered, at(5_100))
        .await
        .expect("delivered");
    let d = get(m[0].id.clone()).await;
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts, 2);
    assert_eq!(d.updated_at, at(5_100));

    // Failed.
    db.outbox
        .record_attempt(
            &m[1].id,
            &AttemptOutcome::Failed {
                error: "connection refused".into(),
            },
            at(300),
        )
        .await
        .expect("failed");
    let d = get(m[1].id.clone()).await;
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_error.as_deref(), Some("connection refused"));
    assert_eq!(d.updated_at, at(300));

    // An outcome that arrives after the delivery left `pending` (a lease that ran out and
    // another worker that finished first) is ignored.
    let delivered = get(m[0].id.clone()).await;
    db.outbox
        .record_attempt(
            &m[0].id,
            &AttemptOutcome::Failed {
                error: "late".into(),
            },
            at(9_000),
        )
        .await
        .expect("late outcome");
    assert_eq!(get(m[0].id.clone()).await, delivered);
    let failed = get(m[1].id.clone()).await;
    db.outbox
        .record_attempt(&m[1].id, &AttemptOutcome::Delivered, at(9_000))
        .await
        .expect("late outcome");
    assert_eq!(get(m[1].id.clone()).await, failed);

    // An unknown delivery.
    let err = db
        .outbox
        .record_attempt(
            "msg_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            &AttemptOutcome::Delivered,
            at(9_000),
        )
        .await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

pub async fn list_deliveries_by_state_with_cursor(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    let messages: Vec<OutboxMessage> = (0..9)
        .map(|i| {
            message(
                i,
                &req,
                if i % 2 == 0 {
                    "request.created"
                } else {
                    "request.approved"
                },
            )
        })
        .collect();
    db.store
        .insert_request(&req, &created(&req), &messages, &[])
        .await
        .expect("insert");
    // 0, 3, 6 delivered; 1, 4, 7 failed; 2, 5, 8 pending.
    for (i, m) in messages.iter().enumerate() {
        let outcome = match i % 3 {
            0 => AttemptOutcome::Delivered,
            1 => AttemptOutcome::Failed {
                error: format!("HTTP 4{i}0"),
            },
            _ => continue,
        };
        db.outbox
            .record_attempt(&m.id, &outcome, at(1_000))
            .await
            .expect("attempt");
    }
    let newest_first: Vec<String> = message_ids(&messages).into_iter().rev().collect();
    assert_eq!(delivery_ids(&deliveries(&db, None).await), newest_first);

    let of_state = |k: usize| -> Vec<String> {
        newest_first
            .iter()
            .enumerate()
            .filter(|(i, _)| (8 - i) % 3 == k)
            .map(|(_, id)| id.clone())
            .collect()
    };
    for (state, k) in [
        (DeliveryState::Delivered, 0),
        (DeliveryState::Failed, 1),
        (DeliveryState::Pending, 2),
    ] {
        let listed = deliveries(&db, Some(state)).await;
        assert_eq!(delivery_ids(&listed), of_state(k), "{state:?}");
        assert!(listed.iter().all(|d| d.state == state));
    }

    // Pages without gaps, in every filter.
    for state in [None, Some(DeliveryState::Failed)] {
        let expected = match state {
            None => newest_first.clone(),
            Some(_) => of_state(1),
        };
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = db
                .outbox
                .list_deliveries(state, after.as_deref(), 2)
                .await
                .expect("page");
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(last.message.id.clone());
            paged.extend(delivery_ids(&page));
        }
        assert_eq!(paged, expected, "{state:?}");
    }
    let after_fourth = db
        .outbox
        .list_deliveries(None, Some(newest_first[3].as_str()), 3)
        .await
        .expect("page");
    assert_eq!(delivery_ids(&after_fourth), newest_first[4..7].to_vec());
    // 0 means a full page.
    assert_eq!(
        db.outbox
            .list_deliveries(None, None, 0)
            .await
            .expect("list")
            .len(),
        9
    );
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

pub async fn retry_delivery_only_for_failed(db: Db) {
    let m = three_due(&db).await;
    db.outbox
        .record_attempt(
            &m[0].id,
            &AttemptOutcome::Failed {
                error: "HTTP 500".into(),
            },
            at(100),
        )
        .await
        .expect("fail");
    db.outbox
        .record_attempt(&m[1].id, &AttemptOutcome::Delivered, at(100))
        .await
        .expect("deliver");
    let before = deliveries(&db, None).await;
    // Pending, delivered, unknown: nothing to retry.
    for id in [
        m[2].id.as_str(),
        m[1].id.as_str(),
        "msg_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    ] {
        assert!(
            !db.outbox.retry_delivery(id, at(200)).await.expect("retry"),
            "{id}"
        );
    }
    assert_eq!(deliveries(&db, None).await, before);

    assert!(
        db.outbox
            .retry_delivery(&m[0].id, at(200))
            .await
            .expect("retry")
    );
    let d = deliveries(&db, None)
        .await
        .into_iter()
        .find(|d| d.message.id == m[0].id)
        .expect("listed");
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.attempts, 0);
    assert_eq!(d.next_attempt_at, at(200));
    assert_eq!(d.updated_at, at(200));
    // Only once: it is pending now.
    assert!(
        !db.outbox
            .retry_delivery(&m[0].id, at(300))
            .await
            .expect("retry")
    );
    // And the worker takes it again.
    let claimed = db
        .outbox
        .claim_deliveries(at(200), 10, lease())
        .await
        .expect("claim");
    assert_eq!(
        delivery_ids(&claimed),
        vec![m[2].id.clone(), m[0].id.clone()]
    );
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

/// Two store values on one database stand for two replicas, each running two workers.
pub async fn concurrent_claimers_never_share_a_row(db: Db) {
    let replica = countersign_store::open_stores(&db.url)
        .await
        .expect("second replica");
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    let messages: Vec<OutboxMessage> = (0..50)
        .map(|i| message(i % 7, &req, "request.created"))
        .collect();
    db.store
        .insert_request(&req, &created(&req), &messages, &[])
        .await
        .expect("insert");
    let outboxes = [
        db.outbox.clone(),
        db.outbox.clone(),
        replica.outbox.clone(),
        replica.outbox.clone(),
    ];
    let barrier = Arc::new(tokio::sync::Barrier::new(outboxes.len()));
    let mut tasks = Vec::new();
    for outbox in outboxes {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let claimed = outbox
                    .claim_deliveries(at(10), 3, lease())
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(delivery_ids(&claimed));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    assert_eq!(all.len(), 50, "every row claimed exactly once");
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), 50, "no row claimed twice");
    assert_eq!(
        unique,
        message_ids(&messages).iter().collect::<HashSet<_>>()
    );
    assert!(
        db.outbox
            .claim_deliveries(at(10), 100, lease())
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(verify_audit(replica.store.as_ref()).await, Ok(1));
}
