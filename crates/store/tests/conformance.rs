//! The storage conformance suite: every case is written once, in `cases`, and run against
//! SQLite (a temporary file) and PostgreSQL (a fresh database per test, from the testkit's
//! throwaway cluster). A backend is conformant when every case passes on it.

use std::sync::Arc;

use countersign_core::Store;
use countersign_store::{PostgresStore, SqliteStore};

/// One backend under test: the store, plus direct SQL access for the tamper cases.
struct Db {
    store: Arc<dyn Store>,
    raw: Raw,
    url: String,
    /// Keeps the SQLite file's directory alive for the length of the test.
    _dir: Option<tempfile::TempDir>,
}

enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Runs SQL straight against the database, behind the store's back.
    async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.raw {
            Raw::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Raw::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
        .expect("tamper sql runs");
    }
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("countersign.db").display());
    let store = SqliteStore::connect(&url).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    Db {
        raw: Raw::Sqlite(store.pool().clone()),
        store: Arc::new(store),
        url,
        _dir: Some(dir),
    }
}

async fn postgres() -> Db {
    let url = countersign_testkit::TestPostgres::shared()
        .await
        .expect("start the test postgresql cluster")
        .fresh_database()
        .await
        .expect("create a fresh database");
    let store = PostgresStore::connect(&url)
        .await
        .expect("connect postgres");
    store.migrate().await.expect("migrate postgres");
    Db {
        raw: Raw::Postgres(store.pool().clone()),
        store: Arc::new(store),
        url,
        _dir: None,
    }
}

/// Runs every listed case on both backends, as `sqlite::<case>` and `postgres::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::cases::$case(super::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::cases::$case(super::postgres().await).await;
                }
            )*
        }
    };
}

conformance!(
    round_trip_keeps_every_field,
    insert_of_an_existing_id_is_a_duplicate,
    cas_bumps_version_and_chains_events,
    stale_cas_conflicts_and_changes_nothing,
    unknown_request_is_not_found,
    revocation_keeps_approval_and_decision_time,
    duplicate_decision_is_refused_whole,
    fifty_concurrent_deciders_one_winner,
    concurrent_mixed_writers_keep_one_chain,
    list_filters,
    list_orders_and_pages_without_gaps,
    list_limit_is_capped,
    due_for_expiry_finds_overdue_pending,
    audit_events_by_request_and_cursor,
    empty_audit_verifies,
    tamper_edited_detail,
    tamper_deleted_event,
    tamper_swapped_events,
    tamper_inserted_copy,
    tamper_inserted_forgery,
    tamper_unreadable_event,
    migrations_are_idempotent,
);

mod fixtures {
    //! Values for the cases. Time is fixed: the suite never reads the clock.

    use std::collections::BTreeMap;

    use countersign_core::audit::{Actor, NewAuditEvent};
    use countersign_core::ports::Transition;
    use countersign_core::request::{ApprovalPath, Decision, Request, State, Verdict};
    use countersign_core::{Digest, Identity, Principal, PrincipalKind, RequestId, Timestamp};
    use serde_json::{Value, json};

    pub const T0: i64 = 1_700_000_000_000;

    /// `T0` plus `ms` milliseconds.
    pub fn at(ms: i64) -> Timestamp {
        countersign_core::time::from_millis(T0 + ms).expect("valid instant")
    }

    /// A person with every field a principal can carry filled in.
    pub fn person(issuer: &str, subject: &str) -> Principal {
        let mut p = Principal::human(issuer, subject);
        p.name = Some(format!("{subject} Ñoño"));
        p.email = Some(format!("{subject}@example.com"));
        p.groups = vec!["sre".into(), "security".into()];
        let claims = json!({
            "sub": subject,
            "groups": ["sre", "security"],
            "nested": {"team": "platform", "level": 3, "ratio": 0.25, "on": true, "none": null},
            "unicode": "日本語 \"quoted\" \\ back",
        });
        if let Value::Object(map) = claims {
            p.claims = map;
        }
        p.auth_time = Some(at(-60_000));
        p
    }

    /// A CI job acting for a person.
    pub fn workload(subject: &str, for_person: &str) -> Principal {
        let mut p = Principal::human("github", subject);
        p.kind = PrincipalKind::Workload;
        p.actor = Some(Identity::new("okta", for_person));
        p
    }

    /// A pending request created at `at(ms)` (ids follow creation time), expiring an hour later.
    pub fn request(ms: i64, gate: &str, requester: &Principal) -> Request {
        let mut params = BTreeMap::new();
        params.insert("service".to_string(), json!("api"));
        params.insert("replicas".to_string(), json!(3));
        params.insert("canary".to_string(), json!(true));
        params.insert("weights".to_string(), json!([0.5, 1e-7, 12345678901234i64]));
        let digest = countersign_core::request::content_digest(
            gate,
            &params,
            Some("hotfix INC-42"),
            Some("INC-42"),
            900,
            requester,
        );
        Request {
            id: RequestId::generate(at(ms)),
            gate: gate.to_string(),
            params,
            reason: Some("hotfix INC-42".into()),
            ticket: Some("INC-42".into()),
            requester: requester.clone(),
            duration_secs: 900,
            digest,
            state: State::Pending,
            approval: None,
            version: 1,
            created_at: at(ms),
            expires_at: at(ms + 3_600_000),
            decided_at: None,
            updated_at: at(ms),
            decisions: Vec::new(),
        }
    }

    pub fn event(action: &str, request: Option<&Request>, detail: Value) -> NewAuditEvent {
        NewAuditEvent {
            at: at(1),
            actor: Actor::system(),
            action: action.to_string(),
            request_id: request.map(|r| r.id),
            digest: request.map(|r| r.digest.clone()),
            detail,
        }
    }

    pub fn created(request: &Request) -> Vec<NewAuditEvent> {
        vec![event(
            "request.created",
            Some(request),
            json!({"gate": request.gate, "params": request.params}),
        )]
    }

    pub fn decision(approver: &Principal, verdict: Verdict, digest: &Digest, ms: i64) -> Decision {
        Decision {
            approver: approver.summary(),
            verdict,
            comment: Some(format!("{} by {}", verdict.as_str(), approver.identity)),
            digest: digest.clone(),
            at: at(ms),
            eligible_rules: vec!["sre".into(), "security".into()],
        }
    }

    /// A decision by `approver` that leaves the request pending.
    pub fn vote(request: &Request, expected_version: i64, approver: &Principal) -> Transition {
        let d = decision(approver, Verdict::Approve, &request.digest, 10);
        Transition {
            request_id: request.id,
            expected_version,
            state: State::Pending,
            approval: None,
            decided_at: None,
            at: at(10),
            decision: Some(d),
            events: vec![event(
                "decision.approve",
                Some(request),
                json!({"approver": approver.identity.to_string(), "rule": "sre"}),
            )],
        }
    }

    /// The final approval by `approver`.
    pub fn approve(request: &Request, expected_version: i64, approver: &Principal) -> Transition {
        let mut t = vote(request, expected_version, approver);
        t.state = State::Approved;
        t.approval = Some(ApprovalPath::Quorum);
        t.decided_at = Some(at(20));
        t.at = at(20);
        t.events.push(event(
            "request.approved",
            Some(request),
            json!({"rules": ["sre"]}),
        ));
        t
    }

    /// A state change without a decision.
    pub fn change(request: &Request, expected_version: i64, state: State, ms: i64) -> Transition {
        Transition {
            request_id: request.id,
            expected_version,
            state,
            approval: None,
            decided_at: if state == State::Pending {
                None
            } else {
                Some(at(ms))
            },
            at: at(ms),
            decision: None,
            events: vec![event(
                &format!("request.{state}"),
                Some(request),
                json!({"by": "test"}),
            )],
        }
    }

    /// `n` events that change no request.
    pub fn loose_events(n: usize) -> Vec<NewAuditEvent> {
        (0..n)
            .map(|i| event("auth.failed", None, json!({"i": i, "why": "bad token"})))
            .collect()
    }
}

mod cases {
    //! The cases, each an `async fn(Db)`.

    use std::collections::HashSet;

    use countersign_core::audit::{AuditEvent, GENESIS_HASH};
    use countersign_core::ports::{AuditQuery, Order, RequestFilter};
    use countersign_core::request::{ApprovalPath, State, Verdict};
    use countersign_core::{Identity, RequestId, StoreError};
    use countersign_store::verify_audit;
    use serde_json::json;

    use super::Db;
    use super::fixtures::*;

    async fn all_events(db: &Db) -> Vec<AuditEvent> {
        db.store
            .audit_events(&AuditQuery {
                request_id: None,
                after_seq: 0,
                limit: 5000,
            })
            .await
            .expect("read events")
    }

    fn seqs(events: &[AuditEvent]) -> Vec<i64> {
        events.iter().map(|e| e.seq).collect()
    }

    pub async fn round_trip_keeps_every_field(db: Db) {
        let alice = person("okta", "alice");
        let mut req = request(0, "deploy-prod", &workload("repo:acme/app", "alice"));
        req.requester.claims = alice.claims.clone();
        db.store
            .insert_request(&req, &created(&req))
            .await
            .expect("insert");
        assert_eq!(
            db.store.get_request(&req.id).await.expect("get"),
            Some(req.clone())
        );

        let bob = person("okta", "bob");
        let carol = person("google", "carol");
        db.store.apply(&vote(&req, 1, &bob)).await.expect("vote");
        let mut t = vote(&req, 2, &carol);
        t.decision.as_mut().expect("decision").verdict = Verdict::Reject;
        t.decision.as_mut().expect("decision").comment = None;
        t.decision.as_mut().expect("decision").at = at(11);
        t.state = State::Rejected;
        t.decided_at = Some(at(11));
        t.at = at(11);
        db.store.apply(&t).await.expect("reject");

        let mut expected = req.clone();
        expected.version = 3;
        expected.state = State::Rejected;
        expected.decided_at = Some(at(11));
        expected.updated_at = at(11);
        expected.decisions = vec![
            vote(&req, 1, &bob).decision.expect("decision"),
            t.decision.clone().expect("decision"),
        ];
        let got = db.store.get_request(&req.id).await.expect("get");
        assert_eq!(got, Some(expected.clone()));
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
            .insert_request(&req, &created(&req))
            .await
            .expect("insert");
        let mut again = req.clone();
        again.gate = "other".into();
        let err = db.store.insert_request(&again, &created(&again)).await;
        assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
        assert_eq!(db.store.get_request(&req.id).await.expect("get"), Some(req));
        assert_eq!(
            all_events(&db).await.len(),
            1,
            "the refused insert wrote no event"
        );
    }

    pub async fn cas_bumps_version_and_chains_events(db: Db) {
        let req = request(0, "deploy-prod", &person("okta", "alice"));
        db.store
            .insert_request(&req, &created(&req))
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
            .insert_request(&req, &created(&req))
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

    pub async fn revocation_keeps_approval_and_decision_time(db: Db) {
        let req = request(0, "deploy-prod", &person("okta", "alice"));
        db.store
            .insert_request(&req, &created(&req))
            .await
            .expect("insert");
        db.store
            .apply(&approve(&req, 1, &person("okta", "bob")))
            .await
            .expect("approve");
        let mut revoke = change(&req, 2, State::Revoked, 40);
        revoke.decided_at = None;
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
            .insert_request(&req, &created(&req))
            .await
            .expect("insert");
        let bob = person("okta", "bob");
        db.store.apply(&vote(&req, 1, &bob)).await.expect("vote");
        let before = db.store.get_request(&req.id).await.expect("get");
        let events_before = all_events(&db).await;

        // Same approver identity again, computed from the current version: the CAS passes,
        // the unique decision does not, and the whole transaction goes.
        let mut bob_again = bob.clone();
        bob_again.name = Some("Robert".into());
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
            .insert_request(&req, &created(&req))
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
                .insert_request(&req, &created(&req))
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
                        store.insert_request(&req, &created(&req)).await?;
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

    /// Twelve requests: gates alternate, three requesters, some decided.
    async fn populate(db: &Db) -> Vec<countersign_core::Request> {
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
                .insert_request(&req, &created(&req))
                .await
                .expect("insert");
            let req = if i % 4 == 3 {
                db.store
                    .apply(&change(&req, 1, State::Cancelled, i * 1000 + 5))
                    .await
                    .expect("cancel");
                db.store
                    .get_request(&req.id)
                    .await
                    .expect("get")
                    .expect("exists")
            } else {
                req
            };
            out.push(req);
        }
        out
    }

    fn ids(requests: &[countersign_core::Request]) -> Vec<RequestId> {
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
            .filter(|r| r.requester.identity == alice)
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
                    && r.requester.identity == Identity::new("okta", "bob")
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
            db.store.insert_request(&req, &[]).await.expect("insert");
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
                .insert_request(&req, &created(&req))
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

    pub async fn audit_events_by_request_and_cursor(db: Db) {
        let alice = person("okta", "alice");
        let a = request(0, "deploy-prod", &alice);
        let b = request(1, "deploy-prod", &alice);
        db.store.insert_request(&a, &created(&a)).await.expect("a"); // 1
        db.store
            .append_audit(&loose_events(1))
            .await
            .expect("loose"); // 2
        db.store.insert_request(&b, &created(&b)).await.expect("b"); // 3
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
            .append_audit(&[event("request.refused", Some(&ghost), json!({}))])
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
    }

    pub async fn migrations_are_idempotent(db: Db) {
        let req = request(0, "deploy-prod", &person("okta", "alice"));
        db.store
            .insert_request(&req, &created(&req))
            .await
            .expect("insert");
        // Opening again (as every start does) migrates nothing and loses nothing.
        let again = countersign_store::open(&db.url).await.expect("reopen");
        assert_eq!(again.get_request(&req.id).await.expect("get"), Some(req));
        assert_eq!(verify_audit(again.as_ref()).await, Ok(1));
    }
}

#[tokio::test]
async fn open_picks_the_backend_from_the_url() {
    let store = countersign_store::open("sqlite::memory:")
        .await
        .expect("memory");
    store.ping().await.expect("ping");
    assert_eq!(countersign_store::verify_audit(store.as_ref()).await, Ok(0));

    let err = countersign_store::open("mysql://root:hunter2@localhost/db")
        .await
        .expect_err("unsupported");
    let text = err.to_string();
    assert!(text.contains("unsupported database url"), "{text}");
    assert!(!text.contains("hunter2"), "the url is not echoed: {text}");
}

/// Two stores on one SQLite file stand for two processes (a server and a CLI, say): they share
/// no in-process lock, so their writers meet at SQLite's own write lock, which `BEGIN
/// IMMEDIATE` and the busy timeout turn into waiting, not failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_in_two_processes_share_one_chain() {
    use countersign_core::ports::AuditQuery;
    use fixtures::*;

    let db = sqlite().await;
    let other: Arc<dyn Store> = countersign_store::open(&db.url)
        .await
        .expect("second store");
    let mut tasks = Vec::new();
    for i in 0..20_i64 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let req = request(i, "deploy-prod", &person("okta", "alice"));
            store.insert_request(&req, &created(&req)).await?;
            store.append_audit(&loose_events(2)).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("writer");
    }
    let events = db
        .store
        .audit_events(&AuditQuery {
            request_id: None,
            after_seq: 0,
            limit: 0,
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 60);
    assert_eq!(
        countersign_store::verify_audit(other.as_ref()).await,
        Ok(60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_keeps_its_data() {
    use fixtures::*;

    let store = countersign_store::open("sqlite::memory:")
        .await
        .expect("memory");
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    store
        .insert_request(&req, &created(&req))
        .await
        .expect("insert");
    store
        .apply(&approve(&req, 1, &person("okta", "bob")))
        .await
        .expect("approve");
    let got = store
        .get_request(&req.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.version, 2);
    assert_eq!(countersign_store::verify_audit(store.as_ref()).await, Ok(3));
}
