//! Listings of requests: filters, order, pages, limits, and what is due for expiry.

use super::Db;
use super::fixtures::*;
use super::helpers::*;
use countersign_core::ports::{Order, RequestFilter};
use countersign_core::request::{Request, State};
use countersign_core::{Identity, RequestId};
use std::collections::HashSet;

/// Twelve requests: gates alternate, three requesters, some decided.
async fn populate(db: &Db) -> Vec<Request> {
    let people = [
        person("okta", "alice"),
        person("okta", "bob"),
        person("google", "alice"),
    ];
    let mut out = Vec::new();
    for i in 0..12_i64 {
        let gate = if i % 2 == 0 {
            "deploy-prod"
        } else {
            "db-session"
        };
        let req = request(i * 1000, gate, &people[(i % 3) as usize]);
        db.store
            .insert_request(&req, &created(&req), &[], &[])
            .await
            .expect("insert");
        let req = if i % 4 == 3 {
            db.store
                .apply(&change(&req, 1, State::Cancelled, i * 1000 + 5))
                .await
                .expect("cancel");
            stored(db, &req.id).await
        } else {
            req
        };
        out.push(req);
    }
    out
}

fn ids(requests: &[Request]) -> Vec<RequestId> {
    requests.iter().map(|r| r.id).collect()
}

pub async fn list_filters(db: Db) {
    let all = populate(&db).await;
    let list = |filter: RequestFilter| {
        let store = db.store.clone();
        async move { store.list_requests(&filter).await.expect("list") }
    };
    let page = |f: RequestFilter| RequestFilter { limit: 100, ..f };

    let everything = list(page(RequestFilter::default())).await;
    assert_eq!(everything, all);

    let cancelled = list(page(RequestFilter {
        state: Some(State::Cancelled),
        ..Default::default()
    }))
    .await;
    let expected: Vec<_> = all.iter().filter(|r| r.state == State::Cancelled).collect();
    assert_eq!(cancelled.iter().collect::<Vec<_>>(), expected);
    assert_eq!(cancelled.len(), 3);

    let prod = list(page(RequestFilter {
        gate: Some("deploy-prod".into()),
        ..Default::default()
    }))
    .await;
    assert_eq!(prod.len(), 6);
    assert!(prod.iter().all(|r| r.gate == "deploy-prod"));

    // Same subject, different issuer: not the same requester.
    let alice = Identity::new("okta", "alice");
    let mine = list(page(RequestFilter {
        requester: Some(alice.clone()),
        ..Default::default()
    }))
    .await;
    let expected: Vec<_> = all
        .iter()
        .filter(|r| *r.requester.identity() == alice)
        .cloned()
        .collect();
    assert_eq!(mine, expected);
    assert_eq!(mine.len(), 4);

    let combined = list(page(RequestFilter {
        state: Some(State::Pending),
        gate: Some("db-session".into()),
        requester: Some(Identity::new("okta", "bob")),
        ..Default::default()
    }))
    .await;
    let expected: Vec<_> = all
        .iter()
        .filter(|r| {
            r.state == State::Pending
                && r.gate == "db-session"
                && *r.requester.identity() == Identity::new("okta", "bob")
        })
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(combined, expected);

    let none = list(page(RequestFilter {
        gate: Some("no-such-gate".into()),
        ..Default::default()
    }))
    .await;
    assert!(none.is_empty());
}

pub async fn list_orders_and_pages_without_gaps(db: Db) {
    let all = populate(&db).await;
    let oldest_first = ids(&all);
    let mut newest_first = oldest_first.clone();
    newest_first.reverse();

    for (order, expected) in [
        (Order::OldestFirst, oldest_first),
        (Order::NewestFirst, newest_first),
    ] {
        let full = db
            .store
            .list_requests(&RequestFilter {
                order,
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(ids(&full), expected, "{order:?}");

        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = db
                .store
                .list_requests(&RequestFilter {
                    order,
                    after,
                    limit: 5,
                    ..Default::default()
                })
                .await
                .expect("page");
            assert!(page.len() <= 5);
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            paged.extend(ids(&page));
        }
        assert_eq!(paged, expected, "{order:?} pages");
        assert_eq!(paged.iter().collect::<HashSet<_>>().len(), paged.len());

        // Paging within a filter.
        let prod: Vec<RequestId> = full
            .iter()
            .filter(|r| r.gate == "deploy-prod")
            .map(|r| r.id)
            .collect();
        let first = db
            .store
            .list_requests(&RequestFilter {
                gate: Some("deploy-prod".into()),
                order,
                limit: 4,
                ..Default::default()
            })
            .await
            .expect("page 1");
        let second = db
            .store
            .list_requests(&RequestFilter {
                gate: Some("deploy-prod".into()),
                order,
                after: first.last().map(|r| r.id),
                limit: 4,
                ..Default::default()
            })
            .await
            .expect("page 2");
        let joined: Vec<RequestId> = ids(&first).into_iter().chain(ids(&second)).collect();
        assert_eq!(joined, prod, "{order:?} filtered pages");
    }
}

pub async fn list_limit_is_capped(db: Db) {
    let alice = person("okta", "alice");
    for i in 0..510 {
        let req = request(i, "deploy-prod", &alice);
        db.store
            .insert_request(&req, &[], &[], &[])
            .await
            .expect("insert");
    }
    for limit in [0, 501, u32::MAX] {
        let page = db
            .store
            .list_requests(&RequestFilter {
                limit,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(page.len(), 500, "limit {limit}");
    }
    let page = db
        .store
        .list_requests(&RequestFilter {
            limit: 7,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.len(), 7);
}

pub async fn due_for_expiry_finds_overdue_pending(db: Db) {
    let alice = person("okta", "alice");
    // Created in one order, expiring in another.
    let deadlines = [50_000, 10_000, 40_000, 20_000, 30_000, 90_000];
    let mut reqs = Vec::new();
    for (i, deadline) in deadlines.iter().enumerate() {
        let mut req = request(i as i64, "deploy-prod", &alice);
        req.expires_at = at(*deadline);
        db.store
            .insert_request(&req, &created(&req), &[], &[])
            .await
            .expect("insert");
        reqs.push(req);
    }
    // Overdue but no longer pending: not due.
    db.store
        .apply(&change(&reqs[3], 1, State::Cancelled, 100))
        .await
        .expect("cancel");

    let due = db.store.due_for_expiry(at(40_000), 100).await.expect("due");
    // 10_000, 30_000 and 40_000 (the deadline itself counts); 20_000 was cancelled.
    assert_eq!(due, vec![reqs[1].id, reqs[4].id, reqs[2].id]);
    let due = db.store.due_for_expiry(at(40_000), 2).await.expect("due");
    assert_eq!(due, vec![reqs[1].id, reqs[4].id]);
    assert!(
        db.store
            .due_for_expiry(at(9_999), 10)
            .await
            .expect("due")
            .is_empty()
    );
    let all_due = db
        .store
        .due_for_expiry(at(1_000_000), 100)
        .await
        .expect("due");
    assert_eq!(all_due.len(), 5);
}
