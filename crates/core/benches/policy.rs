//! M2: rule evaluation and approval matching for a gate with 5 rules and 10 decisions, and
//! authorizing + applying one more decision. Target: ≤ 20 µs each.
//!
//! Inbox: the eligibility check of an approver's listing over 100 pending requests, with
//! requester and approver tokens carrying a realistic set of claims.

#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is its report")]

use std::collections::BTreeMap;
use std::hint::black_box;

use countersign_core::gate::{APPROVER_VARIABLES, GrantSpec, REQUESTER_VARIABLES, Requirement};
use countersign_core::policy::{Approver, approver_checks, authorize_decision, decide, evaluate};
use countersign_core::principal::VerifiedClaims;
use countersign_core::{
    Condition, Gate, Identity, Principal, PrincipalKind, Request, Rule, State, Timestamp, Verdict,
};
use criterion::{Criterion, criterion_group, criterion_main};

const TEAMS: [&str; 5] = ["sre", "security", "dba", "platform", "compliance"];

fn rule(group: &str, min: u32) -> Rule {
    Rule {
        name: group.into(),
        approvers: Condition::compile(&format!("{group:?} in approver.groups"), APPROVER_VARIABLES)
            .unwrap(),
        min_approvals: min,
        stage: 1,
        reject_threshold: 1,
        notify: Vec::new(),
    }
}

/// Five rules of three approvals each: ten approvals leave it pending, so one more fits.
fn gate() -> Gate {
    Gate {
        name: "deploy".into(),
        description: String::new(),
        params: BTreeMap::new(),
        requesters: Condition::compile("true", REQUESTER_VARIABLES).unwrap(),
        reason: Requirement::Optional,
        ticket: Requirement::Optional,
        pending_ttl: chrono::Duration::hours(1),
        grant: GrantSpec {
            audience: "deploy".into(),
            scope: None,
            ttl: chrono::Duration::minutes(15),
            max_ttl: chrono::Duration::minutes(15),
            single_use: false,
        },
        rules: TEAMS.iter().map(|t| rule(t, 3)).collect(),
        auto_approve: None,
        break_glass: None,
        webhooks: Vec::new(),
        notify: Default::default(),
    }
}

fn t0() -> Timestamp {
    countersign_core::time::from_millis(1_800_000_000_000).unwrap()
}

/// A person as a verifier would vouch for them.
fn verified(subject: &str, groups: &[&str]) -> VerifiedClaims {
    VerifiedClaims {
        identity: Identity::new("idp", subject),
        kind: PrincipalKind::Human,
        name: None,
        email: Some(format!("{subject}@example.com")),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        claims: serde_json::Map::new(),
        auth_time: None,
        actor: None,
    }
}

fn person(subject: &str, groups: &[&str]) -> Principal {
    Principal::from_verified(verified(subject, groups))
}

fn request(requester: &Principal) -> Request {
    let params = BTreeMap::new();
    Request {
        id: countersign_core::RequestId::generate(t0()),
        gate: "deploy".into(),
        params: params.clone(),
        reason: None,
        ticket: None,
        requester: requester.clone(),
        duration_secs: 900,
        digest: countersign_core::request::content_digest(
            "deploy", &params, None, None, 900, requester,
        ),
        state: State::Pending,
        approval: None,
        version: 1,
        created_at: t0(),
        expires_at: t0() + chrono::Duration::hours(1),
        decided_at: None,
        updated_at: t0(),
        decisions: Vec::new(),
    }
}

/// Approver `i` belongs to team `i % 5` and, for every other one, to the next team too, so the
/// matching has to move earlier placements along augmenting paths.
fn approver(i: usize) -> Principal {
    let a = TEAMS[i % 5];
    let b = TEAMS[(i + 1) % 5];
    if i.is_multiple_of(2) {
        person(&format!("approver{i}"), &[a, b])
    } else {
        person(&format!("approver{i}"), &[a])
    }
}

fn now() -> Timestamp {
    t0() + chrono::Duration::minutes(1)
}

/// The request with ten approvals recorded through the real checks.
fn with_ten_decisions(g: &Gate) -> Request {
    let mut r = request(&person("alice", &["dev"]));
    for i in 0..10 {
        let permit = authorize_decision(g, &r, &approver(i), Verdict::Approve, now()).unwrap();
        let digest = r.digest.clone();
        r = decide(g, &r, permit, &digest, None).unwrap().request;
    }
    assert_eq!(r.decisions.len(), 10);
    assert_eq!(r.state, State::Pending);
    r
}

/// A principal whose token carried the claims a typical provider sends.
fn with_claims(subject: &str, groups: &[&str]) -> Principal {
    let mut p = verified(subject, groups);
    let claims = serde_json::json!({
        "iss": "https://idp.example.com", "sub": p.identity.subject, "aud": ["countersign"],
        "exp": 1_800_003_600u64, "iat": 1_800_000_000u64, "auth_time": 1_800_000_000u64,
        "nonce": "n-0S6_WzA2Mj", "at_hash": "MTIzNDU2Nzg5MDEyMzQ1Ng", "sid": "08a5019c-17e1-4977",
        "email": p.email, "email_verified": true, "name": "Some Person",
        "preferred_username": p.identity.subject, "given_name": "Some", "family_name": "Person",
        "locale": "en-GB", "zoneinfo": "Europe/London", "amr": ["pwd", "mfa"], "acr": "urn:mfa",
        "groups": p.groups, "department": "engineering", "cost_center": "cc-1234",
    });
    p.claims = claims.as_object().unwrap().clone();
    Principal::from_verified(p)
}

/// 100 pending requests by ten requesters, each with up to two approvals already.
fn inbox(g: &Gate) -> Vec<Request> {
    (0..100)
        .map(|i| {
            let requester = with_claims(&format!("dev{}", i % 10), &["dev", "oncall"]);
            let mut r = request(&requester);
            for j in 0..i % 3 {
                let permit =
                    authorize_decision(g, &r, &approver(j), Verdict::Approve, now()).unwrap();
                let digest = r.digest.clone();
                r = decide(g, &r, permit, &digest, None).unwrap().request;
            }
            r
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let g = gate();
    let r = with_ten_decisions(&g);
    let eleventh = approver(10);

    c.bench_function("m2/evaluate_5_rules_10_decisions", |b| {
        b.iter(|| evaluate(black_box(&g.rules), black_box(&r.decisions)))
    });
    // Diagnostics for the line below: the five approver conditions (CEL) alone.
    c.bench_function("m2/diag_approver_checks_5_rules", |b| {
        b.iter(|| approver_checks(black_box(&g), black_box(&r), black_box(&eleventh), now()))
    });
    c.bench_function("m2/authorize_and_decide_11th", |b| {
        b.iter(|| {
            let permit = authorize_decision(
                black_box(&g),
                black_box(&r),
                black_box(&eleventh),
                Verdict::Approve,
                now(),
            )
            .unwrap();
            decide(&g, &r, permit, &r.digest, Some("lgtm".into())).unwrap()
        })
    });

    let pending = inbox(&g);
    let me = with_claims("zed", &TEAMS);
    c.bench_function("inbox/authorize_each_of_100", |b| {
        b.iter(|| {
            pending
                .iter()
                .filter(|r| {
                    authorize_decision(&g, black_box(r), black_box(&me), Verdict::Approve, now())
                        .is_ok()
                })
                .count()
        })
    });
    // What the inbox does: the approver prepared once, then each request checked.
    c.bench_function("inbox/prepared_approver_100", |b| {
        b.iter(|| {
            let prepared = Approver::new(black_box(&me), now());
            pending
                .iter()
                .filter(|r| prepared.may_approve(&g, black_box(r)))
                .count()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
