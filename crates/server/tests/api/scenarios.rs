//! The scenarios, each run against SQLite and PostgreSQL.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::spawn_app(super::Backend::Sqlite).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::spawn_app(super::Backend::Postgres).await).await
            }
        }
    )*};
}

on_both_backends!(
    two_teams_approve,
    one_person_in_both_teams_fills_one_slot,
    self_approval_is_refused,
    workloads_request_but_never_approve,
    digest_mismatch_changes_nothing,
    concurrent_decisions_end_in_one_terminal_state,
    expiry_is_enforced_at_every_transition,
    cancel_by_the_requester_only,
    revoke_an_approved_request,
    bad_input_changes_nothing,
    bad_bearer_tokens_are_refused_and_audited,
    long_poll_wakes_on_change,
    inbox_and_paging,
    stages_open_in_order,
    auto_approve_and_gates_listing,
);

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn two_teams_approve(app: TestApp) {
    let (alice, bob, carol, erin) = tokio::join!(
        app.token("alice"),
        app.token("bob"),
        app.token("carol"),
        app.token("erin")
    );
    let request = app.create_deploy(&alice).await;
    assert_eq!(request["state"], "pending");
    assert!(request["id"].as_str().unwrap().starts_with("req_"));
    assert!(request["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(request["requester"]["subject"], "alice");
    assert_eq!(request["requester"]["kind"], "human");
    assert_eq!(request["waiting_for"], json!(["sre", "security"]));

    let r = app.decide(&request, &bob, "approve").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["waiting_for"], json!(["security"]));
    assert_eq!(r.body["rules"][0]["satisfied"], true);
    assert_eq!(r.body["rules"][0]["approvals"][0]["subject"], "bob");

    let r = app.decide(&request, &carol, "approve").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "approved");
    assert_eq!(r.body["approval"], "quorum");
    assert_eq!(r.body["version"], 3);
    assert!(r.body["decided_at"].is_string());
    assert_eq!(r.body["decisions"][1]["rule"], "security");
    assert_eq!(r.body["decisions"][1]["verdict"], "approve");

    // A third approval is too late.
    let r = app.decide(&request, &erin, "approve").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "not_pending"),
        "{:?}",
        r.body
    );

    let id = request["id"].as_str().unwrap();
    let trail = actions(&app.audit(&erin, Some(id)).await);
    assert_eq!(trail.first().map(String::as_str), Some("request.created"));
    assert!(trail.contains(&"decision.approve".to_string()));
    assert!(trail.contains(&"request.approved".to_string()));
    assert!(app.verify_chain().await >= 4);
}

async fn one_person_in_both_teams_fills_one_slot(app: TestApp) {
    let (alice, dave, bob) = tokio::join!(app.token("alice"), app.token("dave"), app.token("bob"));
    let request = app.create_deploy(&alice).await;
    let r = app.decide(&request, &dave, "approve").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["state"], "pending",
        "one person must not satisfy two rules"
    );
    assert_eq!(r.body["waiting_for"].as_array().unwrap().len(), 1);
    let r = app.decide(&request, &dave, "approve").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "already_decided")
    );
    // Another SRE completes it: dave's approval moves to the security slot.
    let r = app.decide(&request, &bob, "approve").await;
    assert_eq!(r.body["state"], "approved", "{:?}", r.body);
    let rules: Vec<(String, String)> = r.body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["approver"]["subject"].as_str().unwrap().into(),
                d["rule"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            ("dave".into(), "security".into()),
            ("bob".into(), "sre".into())
        ]
    );
}

async fn self_approval_is_refused(app: TestApp) {
    let (alice, alice2, ci, erin) = tokio::join!(
        app.token("alice"),
        app.token("alice2"),
        app.token("ci"),
        app.token("erin")
    );
    let request = app.create_deploy(&alice).await;
    // alice2 is an SRE account of the same person (same verified e-mail).
    let r = app.decide(&request, &alice2, "approve").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "self_approval"),
        "{:?}",
        r.body
    );
    let r = app.decide(&request, &alice, "approve").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "self_approval")
    );
    // A CI run started by alice (its token's actor_id): alice cannot approve it.
    let ci_request = app.create_deploy(&ci).await;
    assert_eq!(ci_request["requester"]["kind"], "workload");
    let r = app.decide(&ci_request, &alice, "approve").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "self_approval"),
        "{:?}",
        r.body
    );
    let id = request["id"].as_str().unwrap();
    let denied = app
        .audit(&erin, Some(id))
        .await
        .into_iter()
        .filter(|e| e["action"] == "access.denied")
        .count();
    assert_eq!(denied, 2, "each refusal is audited");
    let r = app.get(&format!("/api/v1/requests/{id}"), &alice).await;
    assert_eq!(r.body["version"], 1, "nothing changed");
}

async fn workloads_request_but_never_approve(app: TestApp) {
    let (alice, ci) = tokio::join!(app.token("alice"), app.token("ci"));
    let request = app.create_deploy(&alice).await;
    let r = app.decide(&request, &ci, "approve").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "workload_cannot_approve"),
        "{:?}",
        r.body
    );
    let r = app.decide(&request, &ci, "reject").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "workload_cannot_approve")
    );
    // The workload cannot see a request it has nothing to do with (bob's, not alice's: the CI
    // run acts for alice).
    let bob = app.token("bob").await;
    let bobs = app
        .post("/api/v1/requests", &bob, json!({"gate": "staged"}))
        .await
        .body;
    let r = app
        .get(
            &format!("/api/v1/requests/{}", bobs["id"].as_str().unwrap()),
            &ci,
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = app
        .get(
            &format!("/api/v1/requests/{}", request["id"].as_str().unwrap()),
            &ci,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a run started by alice sees alice's requests"
    );
}

async fn digest_mismatch_changes_nothing(app: TestApp) {
    let (alice, bob) = tokio::join!(app.token("alice"), app.token("bob"));
    let request = app.create_deploy(&alice).await;
    let id = request["id"].as_str().unwrap();
    let forged = format!("sha256:{}", "0".repeat(64));
    let r = app
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            &bob,
            json!({"digest": forged}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "digest_mismatch")
    );
    let r = app
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            &bob,
            json!({"digest": "md5:abc"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.get(&format!("/api/v1/requests/{id}"), &bob).await;
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["decisions"], json!([]));
}

async fn concurrent_decisions_end_in_one_terminal_state(app: TestApp) {
    let alice = app.token("alice").await;
    let (bob, carol, dave, frank, erin) = tokio::join!(
        app.token("bob"),
        app.token("carol"),
        app.token("dave"),
        app.token("frank"),
        app.token("erin")
    );
    let deciders = [bob, carol, dave, frank];
    let request = app.create_deploy(&alice).await;
    let mut calls = Vec::new();
    for i in 0..50 {
        let verdict = if i % 3 == 0 { "reject" } else { "approve" };
        let token = deciders[i % deciders.len()].clone();
        let (base, http, request) = (app.base.clone(), app.http.clone(), request.clone());
        calls.push(tokio::spawn(async move {
            let id = request["id"].as_str().unwrap();
            let resp = http
                .post(format!("{base}/api/v1/requests/{id}/{verdict}"))
                .bearer_auth(token)
                .json(&json!({"digest": request["digest"]}))
                .send()
                .await
                .unwrap();
            resp.status()
        }));
    }
    for c in calls {
        let status = c.await.unwrap();
        assert!(
            [StatusCode::OK, StatusCode::CONFLICT, StatusCode::FORBIDDEN].contains(&status),
            "unexpected {status}"
        );
    }
    let id = request["id"].as_str().unwrap();
    let r = app.get(&format!("/api/v1/requests/{id}"), &alice).await;
    let state = r.body["state"].as_str().unwrap();
    assert!(state == "approved" || state == "rejected", "ended {state}");
    let decisions = r.body["decisions"].as_array().unwrap().len();
    assert!(decisions <= deciders.len());
    assert_eq!(r.body["version"], json!(1 + decisions as i64));
    let trail = actions(&app.audit(&erin, Some(id)).await);
    let terminal = trail
        .iter()
        .filter(|a| *a == "request.approved" || *a == "request.rejected")
        .count();
    assert_eq!(terminal, 1, "exactly one terminal transition: {trail:?}");
    assert_eq!(
        trail.iter().filter(|a| a.starts_with("decision.")).count(),
        decisions
    );
    app.verify_chain().await;
}

async fn expiry_is_enforced_at_every_transition(app: TestApp) {
    let (alice, bob, erin) = tokio::join!(app.token("alice"), app.token("bob"), app.token("erin"));
    let create = || app.post("/api/v1/requests", &alice, json!({"gate": "staged"}));
    let (request, other) = (create().await.body, create().await.body);
    // Past the gate's 10 minute pending_ttl (the tokens, valid for an hour, still are).
    app.clock.advance(chrono::Duration::minutes(11));
    // No sweeper has run: the approval is refused all the same.
    let r = app.decide(&request, &bob, "approve").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "not_pending"),
        "{:?}",
        r.body
    );
    let id = request["id"].as_str().unwrap();
    let r = app.get(&format!("/api/v1/requests/{id}"), &alice).await;
    assert_eq!(r.body["state"], "expired");
    // The sweeper expires the other one.
    assert_eq!(app.engine.expire_due().await.unwrap(), 1);
    let oid = other["id"].as_str().unwrap();
    let r = app.get(&format!("/api/v1/requests/{oid}"), &alice).await;
    assert_eq!(r.body["state"], "expired");
    assert_eq!(app.engine.expire_due().await.unwrap(), 0);
    let trail = actions(&app.audit(&erin, Some(oid)).await);
    assert_eq!(trail, vec!["request.created", "request.expired"]);
}

async fn cancel_by_the_requester_only(app: TestApp) {
    let (alice, bob) = tokio::join!(app.token("alice"), app.token("bob"));
    let request = app.create_deploy(&alice).await;
    let id = request["id"].as_str().unwrap();
    let r = app
        .post(&format!("/api/v1/requests/{id}/cancel"), &bob, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            &format!("/api/v1/requests/{id}/cancel"),
            &alice,
            json!({"reason": "not needed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "cancelled");
    let r = app
        .post(&format!("/api/v1/requests/{id}/cancel"), &alice, json!({}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "not_pending"));
    let r = app.decide(&request, &bob, "approve").await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "not_pending"));
}

async fn revoke_an_approved_request(app: TestApp) {
    let (alice, bob, carol, erin) = tokio::join!(
        app.token("alice"),
        app.token("bob"),
        app.token("carol"),
        app.token("erin")
    );
    let request = app.create_deploy(&alice).await;
    let id = request["id"].as_str().unwrap();
    let r = app
        .post(&format!("/api/v1/requests/{id}/revoke"), &bob, json!({}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "not_pending"),
        "only approved requests are revoked"
    );
    app.decide(&request, &bob, "approve").await;
    app.decide(&request, &carol, "approve").await;
    let r = app
        .post(&format!("/api/v1/requests/{id}/revoke"), &erin, json!({}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "erin is not an eligible approver"
    );
    let r = app
        .post(
            &format!("/api/v1/requests/{id}/revoke"),
            &bob,
            json!({"reason": "rollback"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "revoked");
    let trail = actions(&app.audit(&erin, Some(id)).await);
    assert_eq!(trail.last().map(String::as_str), Some("request.revoked"));
}

async fn bad_input_changes_nothing(app: TestApp) {
    let (alice, erin) = tokio::join!(app.token("alice"), app.token("erin"));
    let events_before = app.audit(&erin, None).await.len();
    let raw = |body: &'static str, content_type: &'static str| {
        let (http, base, alice) = (app.http.clone(), app.base.clone(), alice.clone());
        async move {
            let r = http
                .post(format!("{base}/api/v1/requests"))
                .bearer_auth(alice)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = raw("{\"gate\": ", "application/json").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let (s, _) = raw("{\"gate\": \"deploy-prod\"}", "text/plain").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let cases = [
        (
            json!({"gate": "nope", "params": {}}),
            StatusCode::NOT_FOUND,
            "unknown_gate",
        ),
        (
            json!({"gate": "deploy-prod", "params": {"service": "api"}, "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
        ),
        (
            json!({"gate": "deploy-prod", "params": {"service": "API!", "version": "1"}, "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
        ),
        (
            json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1", "replicas": 99}, "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
        ),
        (
            json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1", "color": "red"}, "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
        ),
        (
            json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason_required",
        ),
        (
            json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1"}, "reason": "x", "duration": "2h"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_duration",
        ),
        (
            json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1"}, "reason": "x", "duration": "soon"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_duration",
        ),
        (
            json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1"}, "reason": "x", "admin": true}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (json!({"gate": 7}), StatusCode::BAD_REQUEST, "invalid_json"),
    ];
    for (body, status, code) in cases {
        let r = app.post("/api/v1/requests", &alice, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{body} → {:?}",
            r.body
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let huge = json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1"}, "reason": "x".repeat(70 * 1024)});
    let r = app.post("/api/v1/requests", &alice, huge).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let r = app.get("/api/v1/requests/req_nothing", &alice).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = app.get("/api/v1/requests?state=bogus", &alice).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.count_requests(&erin).await, 0, "nothing stored");
    assert_eq!(
        app.audit(&erin, None).await.len(),
        events_before,
        "nothing audited as a change"
    );
}

async fn bad_bearer_tokens_are_refused_and_audited(app: TestApp) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (alice, erin) = tokio::join!(app.token("alice"), app.token("erin"));
    let id_token = app.people.login("alice").await.unwrap().id_token;
    let parts: Vec<&str> = alice.split('.').collect();
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let enc = |v: &Value| b64.encode(serde_json::to_vec(v).unwrap());
    let mut sig = b64.decode(parts[2]).unwrap();
    sig[0] ^= 0x5a;
    let discovery: Value = app
        .http
        .get(format!(
            "{}/.well-known/openid-configuration",
            app.people.issuer()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = app
        .http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hs_key = serde_json::to_string(&jwks["keys"][0]).unwrap();
    // HS256 keyed with the issuer's public key (the JWK text), the classic confusion attack.
    let hs256 = {
        let key = jsonwebtoken::EncodingKey::from_secret(hs_key.as_bytes()).unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = header["kid"].as_str().map(String::from);
        h.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&h, &payload, &key).unwrap()
    };
    let mut other_kid = header.clone();
    other_kid["kid"] = json!("no-such-key");
    let mut wrong_iss = payload.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-jwt".into()),
        (
            "bad signature",
            format!("{}.{}.{}", parts[0], parts[1], b64.encode(&sig)),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                enc(&json!({"alg": "none", "typ": "at+jwt"})),
                parts[1]
            ),
        ),
        ("hs256 with the public key", hs256),
        (
            "unknown kid",
            format!("{}.{}.{}", enc(&other_kid), parts[1], parts[2]),
        ),
        (
            "wrong iss",
            format!("{}.{}.{}", parts[0], enc(&wrong_iss), parts[2]),
        ),
        ("id token as bearer (wrong typ and aud)", id_token),
    ];
    let before = app
        .audit(&erin, None)
        .await
        .iter()
        .filter(|e| e["action"] == "auth.failed")
        .count();
    for (what, token) in &cases {
        let r = app.get("/api/v1/gates", token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.body);
        let challenge = r
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("invalid_token"),
            "{what}: {challenge}"
        );
        assert!(
            !r.body.to_string().contains(token.as_str()),
            "{what}: the token is echoed"
        );
    }
    let r = app.call(Method::GET, "/api/v1/gates", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key("www-authenticate"));
    // Expired and not-yet-valid, by moving the server's clock around the real token.
    app.clock.advance(chrono::Duration::hours(3));
    assert_eq!(
        app.get("/api/v1/gates", &alice).await.status,
        StatusCode::UNAUTHORIZED,
        "expired"
    );
    app.clock
        .advance(chrono::Duration::hours(-3) - chrono::Duration::minutes(10));
    assert_eq!(
        app.get("/api/v1/gates", &alice).await.status,
        StatusCode::UNAUTHORIZED,
        "issued in the future"
    );
    app.clock.advance(chrono::Duration::minutes(10));
    let failures: Vec<Value> = app
        .audit(&erin, None)
        .await
        .into_iter()
        .filter(|e| e["action"] == "auth.failed")
        .collect();
    assert_eq!(
        failures.len() - before,
        cases.len() + 3,
        "every failure audited"
    );
    let all = serde_json::to_string(&failures).unwrap();
    assert!(!all.contains(&alice), "no token in the audit log");
    for f in &failures {
        assert!(
            f["detail"]["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
    }
}

async fn long_poll_wakes_on_change(app: TestApp) {
    let (alice, bob) = tokio::join!(app.token("alice"), app.token("bob"));
    let request = app.create_deploy(&alice).await;
    let id = request["id"].as_str().unwrap().to_string();
    let waiter = {
        let (http, base, alice, id) = (
            app.http.clone(),
            app.base.clone(),
            alice.clone(),
            id.clone(),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = http
                .get(format!("{base}/api/v1/requests/{id}?wait=20s"))
                .bearer_auth(alice)
                .send()
                .await
                .unwrap();
            (r.json::<Value>().await.unwrap(), started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.decide(&request, &bob, "approve").await;
    let (body, elapsed) = waiter.await.unwrap();
    assert_eq!(body["version"], 2, "{body}");
    assert!(
        elapsed < std::time::Duration::from_secs(15),
        "woke on the change, not the deadline"
    );
    // Asking with an older version answers at once.
    let r = app
        .get(&format!("/api/v1/requests/{id}?wait=20s&version=1"), &alice)
        .await;
    assert_eq!(r.body["version"], 2);
    let r = app
        .get(&format!("/api/v1/requests/{id}?wait=forever"), &alice)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn inbox_and_paging(app: TestApp) {
    let (alice, bob, carol, erin) = tokio::join!(
        app.token("alice"),
        app.token("bob"),
        app.token("carol"),
        app.token("erin")
    );
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            app.create_deploy(&alice).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let inbox = app.get("/api/v1/requests?role=approver", &bob).await;
    assert_eq!(inbox.body["items"].as_array().unwrap().len(), 5);
    assert_eq!(inbox.body["items"][0]["id"], ids[0], "oldest first");
    let first: Value = app
        .get(&format!("/api/v1/requests/{}", ids[0]), &bob)
        .await
        .body;
    app.decide(&first, &bob, "approve").await;
    let inbox = app.get("/api/v1/requests?role=approver", &bob).await;
    assert_eq!(
        inbox.body["items"].as_array().unwrap().len(),
        4,
        "decided requests leave my inbox"
    );
    let inbox = app.get("/api/v1/requests?role=approver", &carol).await;
    assert_eq!(
        inbox.body["items"].as_array().unwrap().len(),
        5,
        "still in carol's"
    );
    assert_eq!(
        app.get("/api/v1/requests?role=approver", &alice).await.body["items"],
        json!([]),
        "never my own"
    );
    // Paging: 2 per page, no overlap, no gap.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/requests?role=requester&limit=2&cursor={c}"),
            None => "/api/v1/requests?role=requester&limit=2".into(),
        };
        let page = app.get(&path, &alice).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "my requests, newest first");
    let r = app
        .get("/api/v1/requests?state=approved&role=requester", &alice)
        .await;
    assert_eq!(r.body["items"], json!([]));
    assert_eq!(
        app.get("/api/v1/requests?gate=deploy-prod", &erin)
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

async fn stages_open_in_order(app: TestApp) {
    let (alice, bob, carol) =
        tokio::join!(app.token("alice"), app.token("bob"), app.token("carol"));
    let r = app
        .post("/api/v1/requests", &alice, json!({"gate": "staged"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let request = r.body;
    let r = app.decide(&request, &carol, "approve").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "not_eligible"),
        "stage 2 is not open yet"
    );
    let r = app.decide(&request, &bob, "approve").await;
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["waiting_for"], json!(["board"]));
    let r = app.decide(&request, &carol, "approve").await;
    assert_eq!(r.body["state"], "approved", "{:?}", r.body);
}

async fn auto_approve_and_gates_listing(app: TestApp) {
    let (alice, bob, erin) = tokio::join!(app.token("alice"), app.token("bob"), app.token("erin"));
    let r = app
        .post(
            "/api/v1/requests",
            &alice,
            json!({"gate": "staging", "params": {"env": "staging"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["state"], "approved");
    assert_eq!(r.body["approval"], "auto_approved");
    let trail = actions(&app.audit(&erin, Some(r.body["id"].as_str().unwrap())).await);
    assert_eq!(trail, vec!["request.created", "request.approved"]);
    let r = app
        .post(
            "/api/v1/requests",
            &alice,
            json!({"gate": "staging", "params": {"env": "qa"}}),
        )
        .await;
    assert_eq!(r.body["state"], "pending");

    let gates = app.get("/api/v1/gates", &alice).await.body;
    let deploy = gates["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "deploy-prod")
        .unwrap()
        .clone();
    assert_eq!(
        (
            deploy["can_request"].as_bool(),
            deploy["can_approve"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(deploy["params"]["service"]["required"], true);
    let gates = app.get("/api/v1/gates", &bob).await.body;
    let deploy = gates["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "deploy-prod")
        .unwrap()
        .clone();
    assert_eq!(
        (
            deploy["can_request"].as_bool(),
            deploy["can_approve"].as_bool()
        ),
        (Some(false), Some(true))
    );

    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(
        r.body["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
    let audit = app.get("/api/v1/audit", &alice).await;
    assert_eq!(
        audit.status,
        StatusCode::FORBIDDEN,
        "only audit readers read the whole log"
    );
}
