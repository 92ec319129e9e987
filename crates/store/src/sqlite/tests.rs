//! Tests of the SQLite store's own paths: the request cache, the listings read against it,
//! many events in one write. What both backends must do is the conformance suite's.

use std::collections::BTreeMap;
use std::time::Duration;

use countersign_core::Principal;
use countersign_core::audit::{self, NewAuditEvent};
use countersign_core::ports::{Order, RequestFilter, Store, Transition, TransitionParts};
use countersign_core::request::{Decision, Request, State};
use serde_json::json;

use super::*;
use crate::sql;

/// Runs `sql` with `values` on the store's writer, behind the store's back.
async fn raw_write(store: &SqliteStore, sql: &'static str, values: Vec<rusqlite::types::Value>) {
    store
        .writer
        .write(move |batch| {
            batch
                .execute(sql, rusqlite::params_from_iter(values))
                .map(drop)
                .map_err(|e| sqlite_backend("writing", e))
        })
        .await
        .expect("raw write");
}

/// Two requests, one with decisions, written as any writer would leave them.
async fn store_with_requests() -> (SqliteStore, Vec<RequestId>) {
    let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
    store.migrate().await.expect("migrate");
    let mut alice = Principal::human("okta", "alice");
    alice.testing_mut().name = Some("Alice \"Al\" Ærø".into());
    alice.testing_mut().groups = vec!["dev".into(), "on-call".into()];
    for (k, v) in [
        ("team", json!("payments")),
        ("weights", json!([0.5, 1e-7, 12345678901234i64, -0.0])),
        ("nested", json!({"a": [null, true, {"b": "\u{1F600}\n"}]})),
    ] {
        alice.testing_mut().claims.insert(k.into(), v);
    }
    let mut params = BTreeMap::new();
    params.insert("service".to_string(), json!("api"));
    params.insert("ratio".to_string(), json!(0.30000000000000004));
    params.insert("big".to_string(), json!(u64::MAX));
    let digest = countersign_core::request::content_digest(
        "deploy",
        &params,
        Some("why"),
        None,
        900,
        &alice,
    );
    let bob = Principal::human("okta", "bob");
    let mut ids = Vec::new();
    for ms in [1_000, 2_000] {
        let id = RequestId::generate(countersign_core::time::from_millis(ms).expect("time"));
        use rusqlite::types::Value;
        let text = |v: &str| Value::Text(v.to_owned());
        let opt = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
        raw_write(
            &store,
            sql::INSERT_REQUEST,
            vec![
                text(&id.to_string()),
                text("deploy"),
                text(if ms == 1_000 { "pending" } else { "approved" }),
                if ms == 2_000 {
                    text("quorum")
                } else {
                    Value::Null
                },
                Value::Integer(3),
                text(&serde_json::to_string(&params).expect("json")),
                text("why"),
                Value::Null,
                text(&serde_json::to_string(&alice).expect("json")),
                text("okta"),
                text("alice"),
                Value::Integer(900),
                text(&digest.to_string()),
                Value::Integer(ms),
                Value::Integer(ms + 3_600_000),
                opt((ms == 2_000).then_some(ms + 5)),
                Value::Integer(ms + 5),
            ],
        )
        .await;
        ids.push(id);
    }
    for (who, verdict, comment) in [(&bob, "approve", Some("ok ✓")), (&alice, "reject", None)] {
        use rusqlite::types::Value;
        let text = |v: &str| Value::Text(v.to_owned());
        raw_write(
            &store,
            sql::INSERT_DECISION,
            vec![
                text(&ids[1].to_string()),
                text(&who.identity().issuer),
                text(&who.identity().subject),
                text(&serde_json::to_string(&who.summary()).expect("json")),
                text(verdict),
                comment.map_or(Value::Null, text),
                text(&digest.to_string()),
                Value::Integer(2_003),
                text(r#"["sre","security"]"#),
            ],
        )
        .await;
    }
    (store, ids)
}

/// A listing reads each request with its decisions, in order, exactly as a read by id does
/// (the two read them through different statements).
#[tokio::test]
async fn a_listing_reads_requests_like_a_read_by_id() {
    let (store, ids) = store_with_requests().await;
    for order in [Order::OldestFirst, Order::NewestFirst] {
        let filter = RequestFilter {
            order,
            limit: 10,
            ..Default::default()
        };
        let listed = store.list_requests(&filter).await.expect("list");
        let mut expected = Vec::new();
        for id in &ids {
            store.cache.forget(&[*id]);
            let read = store.get_request(id).await.expect("read").expect("found");
            expected.push(Request::clone(&read));
        }
        if order == Order::NewestFirst {
            expected.reverse();
        }
        assert_eq!(listed, expected);
        assert_eq!(listed.iter().map(|r| r.decisions.len()).sum::<usize>(), 2);
    }
    let missing = RequestId::generate(countersign_core::time::from_millis(9).expect("time"));
    assert_eq!(store.get_request(&missing).await.expect("read"), None);
}

/// A listing takes a request from the cache only at the version the listing found, and
/// otherwise reads like the one-statement page; it keeps pending requests only.
#[tokio::test]
async fn a_listing_uses_the_cache_only_at_the_version_listed() {
    let (mut store, ids) = store_with_requests().await;
    // Entries that cannot age out while the test runs (it writes nothing).
    store.cache = Arc::new(RequestCache::new(
        cache::CAPACITY,
        Duration::from_secs(3600),
    ));
    for order in [Order::OldestFirst, Order::NewestFirst] {
        let filter = RequestFilter {
            order,
            limit: 10,
            ..Default::default()
        };
        let (cache, epoch) = (Arc::clone(&store.cache), store.cache.epoch());
        let by_version = {
            let filter = filter.clone();
            store
                .readers
                .read(move |conn| requests::page_by_version(conn, &cache, epoch, &filter))
                .await
                .expect("by version")
        };
        let paged = {
            let filter = filter.clone();
            store
                .readers
                .read(move |conn| requests::page(conn, &filter))
                .await
                .expect("page")
        };
        assert_eq!(by_version, paged);
    }
    let pending = store.cache.get(&ids[0]).expect("the pending one is kept");
    assert_eq!(pending.state, State::Pending);
    assert!(
        store.cache.get(&ids[1]).is_none(),
        "the approved one is not"
    );
    let filter = RequestFilter {
        state: Some(State::Pending),
        limit: 10,
        ..Default::default()
    };
    let mut doctored = Request::clone(&pending);
    doctored.reason = Some("from the cache".into());
    store.cache.forget(&[ids[0]]);
    store
        .cache
        .keep(store.cache.epoch(), &Arc::new(doctored.clone()));
    let listed = store.list_requests(&filter).await.expect("list");
    assert_eq!(listed[0], doctored);
    doctored.version += 1;
    store.cache.forget(&[ids[0]]);
    store.cache.keep(store.cache.epoch(), &Arc::new(doctored));
    let listed = store.list_requests(&filter).await.expect("list");
    assert_eq!(listed[0], *pending);
}

/// Another process's change to a request: a listing shows it at once (it checks
/// versions), a read by id within the cache's `MAX_AGE`.
#[tokio::test]
async fn a_change_by_another_process_shows() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let here = SqliteStore::connect(&url).await.expect("open");
    here.migrate().await.expect("migrate");
    let there = SqliteStore::connect(&url).await.expect("open again");
    let request = cache::tests::request(1);
    here.insert_request(&request, &[], &[], &[])
        .await
        .expect("insert");
    assert_eq!(
        here.get_request(&request.id).await.expect("read"),
        Some(Arc::new(request.clone()))
    );
    there
        .apply(&Transition::from_parts(TransitionParts {
            request_id: request.id,
            expected_version: 1,
            state: State::Cancelled,
            approval: None,
            decided_at: None,
            at: request.created_at,
            decision: None,
            events: Vec::new(),
            outbox: Vec::new(),
        }))
        .await
        .expect("apply there");
    let listed = here
        .list_requests(&RequestFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed[0].state, State::Cancelled);
    tokio::time::sleep(cache::MAX_AGE + Duration::from_millis(50)).await;
    let read = here
        .get_request(&request.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!((read.state, read.version), (State::Cancelled, 2));
}

/// What the writer keeps in the cache after a write is exactly what reading the request
/// back from the database gives, for a new request, a decision and a change of state.
#[tokio::test]
async fn what_a_write_leaves_in_the_cache_is_what_the_database_holds() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = SqliteStore::connect(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    let at = |ms: i64| countersign_core::time::from_millis(ms).expect("time");
    let mut request = cache::tests::request(1);
    request.requester.testing_mut().name = Some("Alice \"Al\" Ærø".into());
    request.requester.testing_mut().claims.insert(
        "weights".into(),
        json!([0.5, 1e-7, 12345678901234i64, -0.0, {"b": "\u{1F600}\n"}]),
    );
    request
        .params
        .insert("ratio".into(), json!(0.30000000000000004));
    request.params.insert("big".into(), json!(u64::MAX));
    request.reason = Some("why ✓".into());
    let id = request.id;
    // Read back by a store of its own, with an empty cache.
    let read_back = || async {
        let fresh = SqliteStore::connect(&url).await.expect("open");
        fresh.get_request(&id).await.expect("read").expect("found")
    };
    store
        .insert_request(&request, &[], &[], &[])
        .await
        .expect("insert");
    assert_eq!(store.cache.get(&id), Some(read_back().await));

    let mut bob = Principal::human("okta", "bob");
    bob.testing_mut().groups = vec!["sre".into()];
    let decide = TransitionParts {
        request_id: id,
        expected_version: request.version,
        state: State::Approved,
        approval: Some(countersign_core::request::ApprovalPath::Quorum),
        decided_at: Some(at(7_000)),
        at: at(7_000),
        decision: Some(Decision {
            approver: bob.summary(),
            verdict: countersign_core::request::Verdict::Approve,
            comment: Some("ok ✓".into()),
            digest: request.digest.clone(),
            at: at(7_000),
            eligible_rules: vec!["sre".into()],
        }),
        events: Vec::new(),
        outbox: Vec::new(),
    };
    store
        .apply(&Transition::from_parts(decide.clone()))
        .await
        .expect("decide");
    let decided = store.cache.get(&id).expect("kept");
    assert_eq!(decided.version, request.version + 1);
    assert_eq!(decided, read_back().await);

    let cancel = TransitionParts {
        expected_version: decided.version,
        state: State::Cancelled,
        approval: None,
        decision: None,
        at: at(8_000),
        ..decide
    };
    store
        .apply(&Transition::from_parts(cancel.clone()))
        .await
        .expect("cancel");
    assert_eq!(store.cache.get(&id), Some(read_back().await));

    // A change the writer cannot derive (the request was not cached at the version it
    // changes) leaves the cache without it.
    store.cache.forget(&[id]);
    let expire = TransitionParts {
        expected_version: decided.version + 1,
        state: State::Expired,
        at: at(9_000),
        ..cancel
    };
    store
        .apply(&Transition::from_parts(expire.clone()))
        .await
        .expect("expire");
    assert_eq!(store.cache.get(&id), None);
    assert_eq!(
        store.get_request(&id).await.expect("read").map(|r| r.state),
        Some(State::Expired)
    );
}

/// A change whose caller hangs up before the writer answers still reaches the request
/// cache: the writer, not the caller, has the cache forget what a batch touched.
#[tokio::test]
async fn a_change_whose_caller_went_away_is_read_back() {
    let (store, ids) = store_with_requests().await;
    let id = ids[0];
    let before = store.get_request(&id).await.expect("read").expect("found");
    assert_eq!(
        store.cache.get(&id).map(|r| r.version),
        Some(before.version)
    );
    // Hold the writer so the change below queues behind this job.
    let held = store.writer.clone();
    let holder = tokio::spawn(async move {
        held.write(|_batch| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let transition = Transition::from_parts(TransitionParts {
        request_id: id,
        expected_version: before.version,
        state: State::Cancelled,
        approval: None,
        decided_at: None,
        at: countersign_core::time::from_millis(5_000).expect("time"),
        decision: None,
        events: Vec::new(),
        outbox: Vec::new(),
    });
    let changer = store.clone();
    let caller = tokio::spawn(async move { changer.apply(&transition).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    caller.abort();
    holder.await.expect("holder").expect("held");
    // The next batch runs after the change's, so once it is answered the change is in.
    store.writer.write(|_| Ok(())).await.expect("flush");
    let after = store.get_request(&id).await.expect("read").expect("found");
    assert_eq!(after.state, State::Cancelled);
    assert_eq!(after.version, before.version + 1);
}

/// A write's events go in as few statements as fit: more than one statement's worth still
/// lands whole, in order, chained without a gap.
#[tokio::test]
async fn many_events_of_one_write_are_chained_across_statements() {
    let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
    store.migrate().await.expect("migrate");
    let n = 2 * sql::SQLITE_EVENTS_PER_INSERT + 1;
    let events: Vec<NewAuditEvent> = (0..n)
        .map(|i| NewAuditEvent {
            at: countersign_core::time::from_millis(1_000).expect("time"),
            actor: audit::Actor::system(),
            action: audit::AuditAction::KeyCreated,
            request_id: None,
            digest: None,
            detail: json!({ "i": i }),
        })
        .collect();
    store.append_audit(&events[..1]).await.expect("one");
    store.append_audit(&events).await.expect("many");
    assert_eq!(crate::verify_audit(&store).await, Ok(n as u64 + 1));
    let last: (i64, String) = store
        .readers
        .read(|conn| {
            conn.query_row(
                "SELECT seq, detail FROM audit_events ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| sqlite_backend("reading", e))
        })
        .await
        .expect("last");
    assert_eq!(
        last,
        (
            i64::try_from(n + 1).expect("n"),
            format!("{{\"i\":{}}}", n - 1)
        )
    );
}

/// Every statement shared by both dialects numbers its `$N` placeholders in the order they
/// first appear, so SQLite, which numbers them as it meets them, binds them by position as
/// PostgreSQL binds them by number (see [`crate::sql`]).
#[tokio::test]
async fn placeholders_are_numbered_in_order() {
    let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
    store.migrate().await.expect("migrate");
    let shared = [
        sql::INSERT_REQUEST,
        sql::CAS_REQUEST,
        sql::SQLITE_CAS_REQUEST_UNDECIDED,
        sql::SQLITE_REQUEST_VERSION,
        sql::REQUEST_EXISTS,
        sql::SELECT_REQUEST,
        sql::INSERT_DECISION,
        sql::SQLITE_REQUEST_WITH_DECISIONS,
        sql::SQLITE_REQUESTS_BY_ID_WITH_DECISIONS,
        sql::SELECT_DECISIONS,
        sql::INSERT_EVENT,
        sql::UPDATE_HEAD,
        sql::DUE_FOR_EXPIRY,
        sql::SELECT_EVENTS,
        sql::SELECT_EVENTS_OF_REQUEST,
        sql::INSERT_GRANT,
        sql::SQLITE_INSERT_GRANT,
        sql::SELECT_GRANT,
        sql::REVOKE_GRANT,
        sql::INSERT_KEY,
        sql::RETIRE_KEY,
        sql::INSERT_DELIVERY,
        sql::DUE_DELIVERIES,
        sql::RECORD_ATTEMPT,
        sql::DELIVERY_EXISTS,
        sql::RETRY_DELIVERY,
        sql::INSERT_LOGIN,
        sql::TAKE_LOGIN,
        sql::INSERT_SESSION,
        sql::SELECT_SESSION,
        sql::UPDATE_SESSION,
        sql::DELETE_SESSION,
        sql::DELETE_SESSIONS_OF_SUBJECT,
        sql::DELETE_SESSIONS_OF_SID,
        sql::DELETE_SESSIONS_OF_SUBJECT_AND_SID,
        sql::PURGE_LOGINS,
        sql::PURGE_SESSIONS,
        sql::INSERT_NOTICE_BATCH,
        sql::WAITING_BATCHES,
        sql::DUE_NOTICES,
        sql::RECORD_NOTICE,
        sql::NOTICE_EXISTS,
        sql::RETRY_NOTICE,
        sql::DEFER_NOTICE,
        sql::NOTICE_THREAD,
        sql::SHOW_ON_THREAD_SQLITE,
        sql::SUPERSEDE_NOTICES,
        sql::SEE_PERSON,
        sql::PEOPLE,
    ];
    let mut statements: Vec<String> = shared.iter().map(|s| (*s).to_owned()).collect();
    statements.push(sql::insert_notices_ignoring_duplicates(2));
    let misnumbered = store
        .readers
        .read(move |conn| {
            let mut misnumbered = Vec::new();
            for text in statements {
                let statement = conn
                    .prepare(&text)
                    .map_err(|e| sqlite_backend("preparing", e))?;
                let count = statement.parameter_count();
                let names: Vec<_> = (1..=count)
                    .map(|i| statement.parameter_name(i).map(str::to_owned))
                    .collect();
                let expected: Vec<_> = (1..=count).map(|i| Some(format!("${i}"))).collect();
                if count == 0 || names != expected {
                    misnumbered.push((text, names));
                }
            }
            Ok(misnumbered)
        })
        .await
        .expect("prepare every statement");
    assert!(misnumbered.is_empty(), "{misnumbered:#?}");
}
