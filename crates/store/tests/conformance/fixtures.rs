//! Values for the cases. Time is fixed: the suite never reads the clock.

use std::collections::BTreeMap;

use countersign_core::audit::{Actor, NewAuditEvent};
use countersign_core::grant::{GrantRecord, OutboxMessage, SigningKeyRecord};
use countersign_core::notice::{NoticeKind, NoticeMessage};
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

/// A notification about `request` for `channel`, written and due at `at(ms)`. Ids follow
/// generation order. It reports a version later than any a case records as shown
/// ([`REPORTED_VERSION`]), so that nothing is superseded unless a case means it.
/// The version [`notice`]'s messages report.
pub const REPORTED_VERSION: i64 = 1_000;

pub fn notice(ms: i64, request: &Request, channel: &str, kind: NoticeKind) -> NoticeMessage {
    let id = RequestId::generate(at(ms)).to_string();
    NoticeMessage {
        id: format!("ntf_{}", id.trim_start_matches("req_")),
        request_id: request.id,
        channel: channel.to_string(),
        kind,
        to_requester: false,
        due_at: at(ms),
        created_at: at(ms),
        version: REPORTED_VERSION,
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
