//! The storage conformance suite: every case is written once, in `cases`, and run against
//! SQLite (a temporary file) and PostgreSQL (a fresh database per test, from the testkit's
//! throwaway cluster). A backend is conformant when every case passes on it.

use std::sync::Arc;

use countersign_core::{KeyStore, OutboxStore, SessionStore, Store};
use countersign_store::{PostgresStore, SqliteStore};

/// One backend under test: the four ports (one store value), plus direct SQL access for the
/// tamper cases.
struct Db {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyStore>,
    outbox: Arc<dyn OutboxStore>,
    sessions: Arc<dyn SessionStore>,
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

    /// One text column of one row, read behind the store's back.
    async fn text(&self, sql: &str) -> String {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.raw {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("raw read")
    }
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("countersign.db").display());
    let store = SqliteStore::connect(&url).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    let raw = Raw::Sqlite(store.pool().clone());
    let store = Arc::new(store);
    Db {
        raw,
        store: store.clone(),
        keys: store.clone(),
        outbox: store.clone(),
        sessions: store,
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
    let raw = Raw::Postgres(store.pool().clone());
    let store = Arc::new(store);
    Db {
        raw,
        store: store.clone(),
        keys: store.clone(),
        outbox: store.clone(),
        sessions: store,
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
    unreadable_stored_request_is_named,
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
    detail_written_differently_still_verifies,
    verify_reads_ahead_page_by_page,
    tamper_found_across_pages,
    migrations_are_idempotent,
    outbox_rows_commit_with_their_change,
    grant_needs_the_request_approved_at_the_version,
    single_use_grant_is_issued_once,
    twenty_concurrent_single_use_redemptions_one_winner,
    grant_revocation_first_wins,
    signing_keys_add_list_and_retire,
    claim_respects_due_time_and_lease,
    record_attempt_transitions,
    list_deliveries_by_state_with_cursor,
    retry_delivery_only_for_failed,
    concurrent_claimers_never_share_a_row,
    chain_verifies_after_grants_keys_and_outbox,
    login_round_trip_and_single_use,
    ten_concurrent_login_takers_one_winner,
    session_round_trip_keeps_every_field,
    update_session_changes_all_but_the_start,
    delete_session_once,
    delete_sessions_by_subject,
    delete_sessions_by_sid,
    delete_sessions_by_subject_and_sid,
    delete_sessions_needs_subject_or_sid,
    purge_respects_both_cutoffs,
    tamper_session_identity_is_refused,
);

mod fixtures {
    //! Values for the cases. Time is fixed: the suite never reads the clock.

    use std::collections::BTreeMap;

    use countersign_core::audit::{Actor, NewAuditEvent};
    use countersign_core::grant::{GrantRecord, OutboxMessage, SigningKeyRecord};
    use countersign_core::ports::{LoginTransaction, Transition, TransitionParts, WebSession};
    use countersign_core::request::{ApprovalPath, Decision, Request, State, Verdict};
    use countersign_core::secret::Secret;
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
        p.testing_mut().name = Some(format!("{subject} Ñoño"));
        p.testing_mut().email = Some(format!("{subject}@example.com"));
        p.testing_mut().groups = vec!["sre".into(), "security".into()];
        let claims = json!({
            "sub": subject,
            "groups": ["sre", "security"],
            "nested": {"team": "platform", "level": 3, "ratio": 0.25, "on": true, "none": null},
            "unicode": "日本語 \"quoted\" \\ back",
        });
        if let Value::Object(map) = claims {
            p.testing_mut().claims = map;
        }
        p.testing_mut().auth_time = Some(at(-60_000));
        p
    }

    /// A CI job acting for a person.
    pub fn workload(subject: &str, for_person: &str) -> Principal {
        let mut p = Principal::human("github", subject);
        p.testing_mut().kind = PrincipalKind::Workload;
        p.testing_mut().actor = Some(Identity::new("okta", for_person));
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
            action: action.parse().expect("a known audit action"),
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
            comment: Some(format!("{} by {}", verdict.as_str(), approver.identity())),
            digest: digest.clone(),
            at: at(ms),
            eligible_rules: vec!["sre".into(), "security".into()],
        }
    }

    /// A decision by `approver` that leaves the request pending.
    pub fn vote(request: &Request, expected_version: i64, approver: &Principal) -> Transition {
        let d = decision(approver, Verdict::Approve, &request.digest, 10);
        Transition::from_parts(TransitionParts {
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
                json!({"approver": approver.identity().to_string(), "rule": "sre"}),
            )],
            outbox: Vec::new(),
        })
    }

    /// The final approval by `approver`.
    pub fn approve(request: &Request, expected_version: i64, approver: &Principal) -> Transition {
        let mut t = vote(request, expected_version, approver);
        let parts = t.testing_mut();
        parts.state = State::Approved;
        parts.approval = Some(ApprovalPath::Quorum);
        parts.decided_at = Some(at(20));
        parts.at = at(20);
        parts.events.push(event(
            "request.approved",
            Some(request),
            json!({"rules": ["sre"]}),
        ));
        t
    }

    /// A state change without a decision.
    pub fn change(request: &Request, expected_version: i64, state: State, ms: i64) -> Transition {
        Transition::from_parts(TransitionParts {
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
            outbox: Vec::new(),
        })
    }

    /// A webhook message about `request`, written at `at(ms)`. Ids follow generation order.
    pub fn message(ms: i64, request: &Request, event: &str) -> OutboxMessage {
        let id = RequestId::generate(at(ms)).to_string();
        OutboxMessage {
            id: format!("msg_{}", id.trim_start_matches("req_")),
            gate: request.gate.clone(),
            webhook: 1,
            url: "https://hooks.example.com/countersign?team=sre".into(),
            event: event.to_string(),
            request_id: request.id,
            payload: json!({
                "type": event,
                "timestamp": countersign_core::time::rfc3339(&at(ms)),
                "data": {
                    "id": request.id,
                    "params": request.params,
                    "unicode": "日本語 \"quoted\" \\ back \u{1F600}",
                    "numbers": [0.1, -1e-7, 12345678901234i64, u64::MAX, -0.0],
                    "nested": {"z": 1, "a": [true, false, null], "": {}},
                },
            }),
            created_at: at(ms),
        }
    }

    /// A grant for `request` issued at `at(ms)`.
    pub fn grant(jti: &str, request: &Request, ms: i64) -> GrantRecord {
        GrantRecord {
            jti: jti.to_string(),
            request_id: request.id,
            kid: "key-1".into(),
            issued_at: at(ms),
            expires_at: at(ms + 900_000),
            revoked_at: None,
        }
    }

    /// A signing key created at `at(ms)`, with sealed bytes covering every byte value.
    pub fn signing_key(kid: &str, ms: i64) -> SigningKeyRecord {
        let mut sealed: Vec<u8> = (0..=255u8).collect();
        sealed.extend(kid.bytes());
        sealed.extend([0, 0, 0xff]);
        SigningKeyRecord {
            kid: kid.to_string(),
            alg: "ES256".into(),
            public_jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            }),
            sealed_private: sealed,
            created_at: at(ms),
            signs_from: at(ms + 60_000),
            publish_until: None,
        }
    }

    /// A login in flight started at `at(ms)`, accepted for ten minutes.
    pub fn login(state: &str, ms: i64) -> LoginTransaction {
        LoginTransaction {
            state: state.to_string(),
            browser_binding: format!("{:0>64}", "b1nd"),
            issuer: "okta".into(),
            nonce: format!("nonce-{state}"),
            pkce_verifier: Secret::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            return_to: "/requests/req_01?tab=decisions&q=日本語".into(),
            max_age: Some(300),
            created_at: at(ms),
            expires_at: at(ms + 600_000),
        }
    }

    /// A session of `who` started at `at(ms)` and last seen then, with a sealed refresh token
    /// covering every byte value.
    pub fn session(id_hash: &str, who: &Principal, sid: Option<&str>, ms: i64) -> WebSession {
        let mut sealed: Vec<u8> = (0..=255u8).rev().collect();
        sealed.extend([0, 0, 0xff]);
        WebSession {
            id_hash: id_hash.to_string(),
            principal: who.clone(),
            sid: sid.map(str::to_string),
            id_token: Some(Secret::new(
                "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
            )),
            refresh_token: Some(sealed),
            csrf_token: Secret::new(format!("csrf-{id_hash}")),
            created_at: at(ms),
            last_seen_at: at(ms),
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
    use std::sync::Arc;

    use countersign_core::audit::{AuditEvent, GENESIS_HASH, NewAuditEvent};
    use countersign_core::grant::{Delivery, DeliveryState, GrantRecord, OutboxMessage};
    use countersign_core::ports::{AttemptOutcome, AuditQuery, Order, RequestFilter};
    use countersign_core::request::{ApprovalPath, Request, State, Verdict};
    use countersign_core::secret::Secret;
    use countersign_core::{Identity, RequestId, StoreError};
    use countersign_store::{verify_audit, verify_audit_in_pages};
    use serde_json::json;

    use super::Db;
    use super::fixtures::*;

    /// The request `id` as the store reads it now.
    async fn stored(db: &Db, id: &RequestId) -> Request {
        let read = db.store.get_request(id).await.expect("get");
        Arc::unwrap_or_clone(read.expect("exists"))
    }

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
        req.requester.testing_mut().claims = alice.claims().clone();
        db.store
            .insert_request(&req, &created(&req), &[])
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
            .insert_request(&req, &created(&req), &[])
            .await
            .expect("insert");
        let mut again = req.clone();
        again.gate = "other".into();
        let err = db.store.insert_request(&again, &created(&again), &[]).await;
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
            .insert_request(&req, &created(&req), &[])
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
            .insert_request(&req, &created(&req), &[])
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
                .insert_request(req, &created(req), &[])
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
            .insert_request(&req, &created(&req), &[])
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
            .insert_request(&req, &created(&req), &[])
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
            .insert_request(&req, &created(&req), &[])
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
                .insert_request(&req, &created(&req), &[])
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
                        store.insert_request(&req, &created(&req), &[]).await?;
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
                .insert_request(&req, &created(&req), &[])
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
                .insert_request(&req, &[], &[])
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
                .insert_request(&req, &created(&req), &[])
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
        db.store
            .insert_request(&a, &created(&a), &[])
            .await
            .expect("a"); // 1
        db.store
            .append_audit(&loose_events(1))
            .await
            .expect("loose"); // 2
        db.store
            .insert_request(&b, &created(&b), &[])
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
        db.exec(
            r#"UPDATE audit_events SET detail = '{ "why": "bad token", "i": 0 }' WHERE seq = 3"#,
        )
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

    pub async fn migrations_are_idempotent(db: Db) {
        let req = request(0, "deploy-prod", &person("okta", "alice"));
        db.store
            .insert_request(&req, &created(&req), &[])
            .await
            .expect("insert");
        // Opening again (as every start does) migrates nothing and loses nothing.
        let again = countersign_store::open(&db.url).await.expect("reopen");
        assert_eq!(
            again.get_request(&req.id).await.expect("get"),
            Some(Arc::new(req))
        );
        assert_eq!(verify_audit(again.as_ref()).await, Ok(1));
    }

    // ---- the outbox, grants and signing keys ----

    async fn deliveries(db: &Db, state: Option<DeliveryState>) -> Vec<Delivery> {
        db.outbox
            .list_deliveries(state, None, 500)
            .await
            .expect("list deliveries")
    }

    fn delivery_ids(deliveries: &[Delivery]) -> Vec<String> {
        deliveries.iter().map(|d| d.message.id.clone()).collect()
    }

    fn message_ids(messages: &[OutboxMessage]) -> Vec<String> {
        messages.iter().map(|m| m.id.clone()).collect()
    }

    /// A request approved by bob (version 2), with its events.
    async fn approved(db: &Db, ms: i64) -> Request {
        let req = request(ms, "deploy-prod", &person("okta", "alice"));
        db.store
            .insert_request(&req, &created(&req), &[])
            .await
            .expect("insert");
        db.store
            .apply(&approve(&req, 1, &person("okta", "bob")))
            .await
            .expect("approve");
        stored(db, &req.id).await
    }

    fn issued(grant: &GrantRecord, request: &Request) -> Vec<NewAuditEvent> {
        vec![event(
            "grant.issued",
            Some(request),
            json!({"jti": grant.jti, "kid": grant.kid}),
        )]
    }

    /// Everything a refused write must not have touched.
    async fn snapshot(
        db: &Db,
        request: &Request,
    ) -> (Option<Arc<Request>>, Vec<AuditEvent>, Vec<Delivery>) {
        (
            db.store.get_request(&request.id).await.expect("get"),
            all_events(db).await,
            deliveries(db, None).await,
        )
    }

    pub async fn outbox_rows_commit_with_their_change(db: Db) {
        let req = request(0, "deploy-prod", &person("okta", "alice"));
        let first = vec![
            message(0, &req, "request.created"),
            message(0, &req, "request.created"),
        ];
        db.store
            .insert_request(&req, &created(&req), &first)
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
            )
            .await;
        assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
        assert_eq!(snapshot(&db, &req).await, before);

        // A message id already in the outbox refuses the whole change.
        let other = request(40, "deploy-prod", &person("okta", "alice"));
        let err = db
            .store
            .insert_request(&other, &created(&other), &[first[0].clone()])
            .await;
        assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
        assert_eq!(db.store.get_request(&other.id).await.expect("get"), None);
        assert_eq!(snapshot(&db, &req).await, before);
        assert_eq!(verify_audit(db.store.as_ref()).await, Ok(3));
    }

    pub async fn grant_needs_the_request_approved_at_the_version(db: Db) {
        // Not approved yet.
        let req = request(0, "deploy-prod", &person("okta", "alice"));
        db.store
            .insert_request(&req, &created(&req), &[])
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

    /// Three pending deliveries for one request, due at 0, 10 and 20 ms.
    async fn three_due(db: &Db) -> Vec<OutboxMessage> {
        let req = request(0, "deploy-prod", &person("okta", "alice"));
        let messages: Vec<OutboxMessage> = [0, 10, 20]
            .into_iter()
            .map(|ms| message(ms, &req, "request.created"))
            .collect();
        db.store
            .insert_request(&req, &created(&req), &messages)
            .await
            .expect("insert");
        messages
    }

    fn lease() -> chrono::Duration {
        chrono::Duration::seconds(60)
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
            .insert_request(&req, &created(&req), &messages)
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
            .insert_request(&req, &created(&req), &messages)
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

    // ---- browser logins and web sessions ----

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
    let err = countersign_store::open_stores("mysql://root:hunter2@localhost/db")
        .await
        .expect_err("unsupported");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// The four ports from `open_stores` share one pool: with a private in-memory database (one
/// database per pool), what one port writes the others see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_stores_shares_one_database() {
    use countersign_core::grant::DeliveryState;
    use fixtures::*;

    let stores = countersign_store::open_stores("sqlite::memory:")
        .await
        .expect("memory");
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    let messages = [message(0, &req, "request.created")];
    stores
        .store
        .insert_request(&req, &created(&req), &messages)
        .await
        .expect("insert");
    let listed = stores
        .outbox
        .list_deliveries(Some(DeliveryState::Pending), None, 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].message, messages[0]);
    stores
        .keys
        .add_signing_key(&signing_key("key-1", 0), &[], &loose_events(1))
        .await
        .expect("key");
    assert_eq!(stores.keys.signing_keys().await.expect("keys").len(), 1);
    assert_eq!(
        countersign_store::verify_audit(stores.store.as_ref()).await,
        Ok(2)
    );
    let s = session("hash-1", &person("okta", "alice"), Some("sid-1"), 0);
    stores.sessions.insert_session(&s).await.expect("session");
    assert_eq!(
        stores.sessions.get_session("hash-1").await.expect("get"),
        Some(s)
    );
    stores
        .sessions
        .insert_login(&login("state-1", 0))
        .await
        .expect("login");
    assert!(
        stores
            .sessions
            .take_login("state-1")
            .await
            .expect("take")
            .is_some()
    );
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
            store.insert_request(&req, &created(&req), &[]).await?;
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
        .insert_request(&req, &created(&req), &[])
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
