//! Grants and webhooks: tokens other people's libraries verify, single use, introspection and
//! revocation, key rotation, and signed webhook deliveries that survive failures and restarts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, RESOURCE_SERVER, TestApp, build, spawn_app, spawn_app_with};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_both_backends!(
    grant_tokens_verify_with_other_peoples_libraries,
    grants_only_for_the_requester_inside_the_window,
    single_use_grants_give_one_token,
    introspection_reflects_revocation,
    rotation_keeps_old_tokens_valid,
    webhooks_are_signed_retried_and_survive_restarts,
    bad_webhook_targets_fail_cleanly,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// An approved deploy-prod request of alice's, and alice's token.
async fn approved(app: &TestApp) -> (Value, String) {
    let (alice, bob, carol) =
        tokio::join!(app.token("alice"), app.token("bob"), app.token("carol"));
    let request = app.create_deploy(&alice).await;
    app.decide(&request, &bob, "approve").await;
    let r = app.decide(&request, &carol, "approve").await;
    assert_eq!(r.body["state"], "approved", "{:?}", r.body);
    (r.body, alice)
}

fn token_path(request: &Value) -> String {
    format!("/api/v1/requests/{}/token", request["id"].as_str().unwrap())
}

fn claims(token: &str) -> (Value, Value) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let header = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    let payload = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    (header, payload)
}

fn tamper(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    change(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    )
}

async fn grant_tokens_verify_with_other_peoples_libraries(backend: Backend) {
    let app = spawn_app(backend).await;
    let (request, alice) = approved(&app).await;
    let r = app.post(&token_path(&request), &alice, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    let token = r.body["token"].as_str().unwrap().to_string();
    let (header, payload) = claims(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].is_string());
    assert_eq!(payload["iss"], app.base);
    assert_eq!(payload["aud"], "deployer");
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["scope"], "deploy:api");
    assert_eq!(payload["jti"], r.body["jti"]);
    assert_eq!(payload["request_id"], request["id"]);
    assert_eq!(payload["gate"], "deploy-prod");
    assert_eq!(
        payload["params"],
        json!({"service": "api", "version": "1.4.2"})
    );
    assert_eq!(payload["digest"], request["digest"]);
    assert_eq!(payload["requester"], json!({"iss": "idp", "sub": "alice"}));
    let approvers: Vec<(String, String)> = payload["approvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["sub"].as_str().unwrap().into(),
                a["rule"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        approvers,
        vec![
            ("bob".into(), "sre".into()),
            ("carol".into(), "security".into())
        ]
    );
    let window = payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap();
    assert!(
        window > 0 && window <= 15 * 60,
        "exp is the approved window: {window}s"
    );

    // Other people's verifiers, given only our issuer URL and the audience.
    let issuer = app.base.clone();
    let (t1, t2, i1, i2) = (token.clone(), token.clone(), issuer.clone(), issuer.clone());
    let pyjwt = tokio::task::spawn_blocking(move || {
        countersign_testkit::verify_with_pyjwt(&i1, "deployer", &t1)
    });
    let jose = tokio::task::spawn_blocking(move || {
        countersign_testkit::verify_with_jose(&i2, "deployer", &t2)
    });
    let (pyjwt, jose) = (pyjwt.await.unwrap(), jose.await.unwrap());
    assert_eq!(
        pyjwt.expect("PyJWT accepts our token")["jti"],
        payload["jti"]
    );
    assert_eq!(jose.expect("jose accepts our token")["jti"], payload["jti"]);
    // … and both refuse a token whose payload was altered, or meant for someone else.
    let forged = tamper(&token, |p| p["scope"] = json!("deploy:everything"));
    let (f1, f2, i1, i2) = (forged.clone(), forged, issuer.clone(), issuer.clone());
    assert!(
        tokio::task::spawn_blocking(move || countersign_testkit::verify_with_pyjwt(
            &i1, "deployer", &f1
        ))
        .await
        .unwrap()
        .is_err()
    );
    assert!(
        tokio::task::spawn_blocking(move || countersign_testkit::verify_with_jose(
            &i2, "deployer", &f2
        ))
        .await
        .unwrap()
        .is_err()
    );
    let t3 = token.clone();
    assert!(
        tokio::task::spawn_blocking(move || countersign_testkit::verify_with_pyjwt(
            &issuer,
            "someone-else",
            &t3
        ))
        .await
        .unwrap()
        .is_err()
    );

    // The standards endpoints.
    let disco = app
        .call(
            reqwest::Method::GET,
            "/.well-known/openid-configuration",
            None,
            None,
        )
        .await;
    assert_eq!(disco.body["issuer"], app.base);
    assert!(
        !disco.body["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none"))
    );
    let jwks = app
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert!(
        jwks.headers
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    for key in jwks.body["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig");
        assert!(key["alg"].is_string() && key["kid"].is_string());
        assert!(key.get("d").is_none(), "public keys only");
    }
    // Issuance is audited.
    let erin = app.token("erin").await;
    let trail = app.audit(&erin, request["id"].as_str()).await;
    assert!(
        trail
            .iter()
            .any(|e| e["action"] == "grant.issued" && e["detail"]["jti"] == payload["jti"])
    );
}

async fn grants_only_for_the_requester_inside_the_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, bob) = tokio::join!(app.token("alice"), app.token("bob"));
    let pending = app.create_deploy(&alice).await;
    let r = app.post(&token_path(&pending), &alice, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "grant_unavailable"),
        "not before approval"
    );
    let (request, alice) = approved(&app).await;
    let r = app.post(&token_path(&request), &bob, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "not_allowed"),
        "only the requester"
    );
    let r = app.post(&token_path(&request), &alice, json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "not single-use: a second token is fine"
    );
    // Past the approved 15 minute window.
    app.clock.advance(chrono::Duration::minutes(16));
    let alice = app.token("alice").await;
    let r = app.post(&token_path(&request), &alice, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "grant_unavailable"),
        "{:?}",
        r.body
    );
    // Revoked requests give no tokens.
    let (request, alice) = approved(&app).await;
    let r = app
        .post(
            &format!(
                "/api/v1/requests/{}/revoke",
                request["id"].as_str().unwrap()
            ),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.post(&token_path(&request), &alice, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "grant_unavailable")
    );
}

const ONCE_GATE: &str = r#"
[[gates]]
name = "once"
description = "A one-time job"
requesters = 'true'
grant = { audience = "deployer", scope = "run:{{params.job}}", ttl = "10m", single_use = true }
params.job = { type = "string", pattern = "^[a-z]+$", required = true }

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'
"#;

async fn single_use_grants_give_one_token(backend: Backend) {
    let app = spawn_app_with(backend, ONCE_GATE).await;
    let (alice, bob, erin) = tokio::join!(app.token("alice"), app.token("bob"), app.token("erin"));
    let r = app
        .post(
            "/api/v1/requests",
            &alice,
            json!({"gate": "once", "params": {"job": "migrate"}}),
        )
        .await;
    let request = r.body;
    let r = app.decide(&request, &bob, "approve").await;
    assert_eq!(r.body["state"], "approved");
    let mut calls = Vec::new();
    for _ in 0..20 {
        let (http, url, alice) = (
            app.http.clone(),
            format!("{}{}", app.base, token_path(&request)),
            alice.clone(),
        );
        calls.push(tokio::spawn(async move {
            let r = http.post(url).bearer_auth(alice).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ok = 0;
    for c in calls {
        let (status, body) = c.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "already_redeemed"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one token from a single-use grant");
    let trail = app.audit(&erin, request["id"].as_str()).await;
    assert_eq!(
        trail
            .iter()
            .filter(|e| e["action"] == "grant.issued")
            .count(),
        1
    );
    let refused = trail
        .iter()
        .filter(|e| e["action"] == "access.denied" && e["detail"]["reason"] == "already_redeemed")
        .count();
    assert_eq!(refused, 19, "every refused redemption is audited");
    app.verify_chain().await;
}

async fn introspect(app: &TestApp, token: &str, auth: Option<(&str, &str)>) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(format!("{}/oauth/introspect", app.base))
        .form(&[("token", token)]);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn introspection_reflects_revocation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (request, alice) = approved(&app).await;
    let token = app
        .post(&token_path(&request), &alice, json!({}))
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = introspect(&app, &token, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "introspection needs a resource server"
    );
    let (status, _) = introspect(&app, &token, Some((RESOURCE_SERVER.0, "wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = introspect(&app, &token, Some(RESOURCE_SERVER)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["scope"], "deploy:api");
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["request_id"], request["id"]);
    let (_, body) = introspect(
        &app,
        &tamper(&token, |p| p["sub"] = json!("mallory")),
        Some(RESOURCE_SERVER),
    )
    .await;
    assert_eq!(body, json!({"active": false}));
    // A workload's bearer token also authenticates a resource server.
    let ci = app.token("ci").await;
    let r = app
        .http
        .post(format!("{}/oauth/introspect", app.base))
        .bearer_auth(&ci)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);

    // Revoking the request makes every token of it inactive at once.
    let bob = app.token("bob").await;
    app.post(
        &format!(
            "/api/v1/requests/{}/revoke",
            request["id"].as_str().unwrap()
        ),
        &bob,
        json!({}),
    )
    .await;
    let (_, body) = introspect(&app, &token, Some(RESOURCE_SERVER)).await;
    assert_eq!(body, json!({"active": false}));

    // RFC 7009: revoking one token.
    let (request, alice) = approved(&app).await;
    let token = app
        .post(&token_path(&request), &alice, json!({}))
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .http
        .post(format!("{}/oauth/revoke", app.base))
        .basic_auth(RESOURCE_SERVER.0, Some(RESOURCE_SERVER.1))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, body) = introspect(&app, &token, Some(RESOURCE_SERVER)).await;
    assert_eq!(body, json!({"active": false}));
    let r = app
        .http
        .post(format!("{}/oauth/revoke", app.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let erin = app.token("erin").await;
    let trail = app.audit(&erin, request["id"].as_str()).await;
    assert!(trail.iter().any(|e| e["action"] == "grant.revoked"));
}

async fn rotation_keeps_old_tokens_valid(backend: Backend) {
    let app = spawn_app(backend).await;
    let (request, alice) = approved(&app).await;
    let old = app
        .post(&token_path(&request), &alice, json!({}))
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_kid = claims(&old).0["kid"].as_str().unwrap().to_string();
    let max_ttl = chrono::Duration::hours(1);
    let key = app
        .state
        .keys
        .rotate(chrono::Duration::zero(), max_ttl)
        .await
        .unwrap();
    assert_ne!(key.kid, old_kid);
    let new = app
        .post(&token_path(&request), &alice, json!({}))
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        claims(&new).0["kid"],
        key.kid,
        "new tokens carry the new kid"
    );
    let (issuer, o) = (app.base.clone(), old.clone());
    let verdict = tokio::task::spawn_blocking(move || {
        countersign_testkit::verify_with_pyjwt(&issuer, "deployer", &o)
    })
    .await
    .unwrap();
    assert!(
        verdict.is_ok(),
        "a token signed before rotation still verifies: {verdict:?}"
    );
    let kids = |body: &Value| -> Vec<String> {
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let jwks = app
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .body;
    assert!(kids(&jwks).contains(&old_kid) && kids(&jwks).contains(&key.kid));
    // After the old key's last token has expired, it is no longer published.
    app.clock.advance(max_ttl + chrono::Duration::minutes(2));
    let jwks = app
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .body;
    assert!(!kids(&jwks).contains(&old_kid), "retired key unpublished");
    assert!(kids(&jwks).contains(&key.kid));
}

/// A Standard Webhooks receiver (the reference Python library verifies every request).
struct Receiver {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(script: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let script_path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../notify/tests/receiver.py");
        let mut child = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(script_path)
            .args(["--secret", SECRET, "--log"])
            .arg(&log)
            .args(["--script", &script.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with standardwebhooks (pip install -r crates/testkit/verifiers/requirements.txt)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver prints its port");
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hooked_gate(url: &str, events: &str) -> String {
    format!(
        r#"
[[gates]]
name = "hooked"
description = "A gate with a webhook"
requesters = 'true'
grant = {{ audience = "deployer", ttl = "10m" }}

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'

  [[gates.webhooks]]
  url = "{url}"
  secret = "{SECRET}"
  events = [{events}]
"#
    )
}

/// Runs the worker until nothing is due, moving the clock past each backoff.
async fn drain(
    deliverer: &countersign_notify::Deliverer,
    clock: &countersign_core::ports::ManualClock,
    rounds: usize,
) {
    for _ in 0..rounds {
        deliverer.run_once().await.unwrap();
        clock.advance(chrono::Duration::seconds(12));
    }
}

async fn webhooks_are_signed_retried_and_survive_restarts(backend: Backend) {
    // Three failures, then success.
    let receiver = Receiver::start(
        json!([{"status": 500}, {"status": 500}, {"status": 500}, {"status": 200}]),
    );
    let gate = hooked_gate(&receiver.url(), r#""request.approved", "grant.issued""#);
    let app = spawn_app_with(backend, &gate).await;
    let (alice, bob) = tokio::join!(app.token("alice"), app.token("bob"));
    let request = app
        .post("/api/v1/requests", &alice, json!({"gate": "hooked"}))
        .await
        .body;
    app.decide(&request, &bob, "approve").await;
    // Two attempts fail in this instance…
    drain(&app.deliverer, &app.clock, 2).await;
    assert_eq!(receiver.requests().len(), 2);
    // …then a "restarted" server (a new instance on the same database) carries on.
    let second = build(&app.config_text, app.clock.clone(), None).await;
    drain(second.deliverer(), &app.clock, 4).await;
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        4,
        "three failures and one success: {requests:?}"
    );
    assert!(
        requests.iter().all(|r| r["verified"] == true),
        "every request verified by standardwebhooks"
    );
    assert!(
        requests.iter().all(|r| r["id"] == requests[0]["id"]),
        "the same webhook-id on every attempt"
    );
    let body: Value = serde_json::from_str(requests[3]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "request.approved");
    assert_eq!(body["data"]["id"], request["id"]);
    assert_eq!(body["data"]["state"], "approved");
    // Redeeming announces grant.issued, the event's name in the audit log too.
    app.post(&token_path(&request), &alice, json!({})).await;
    drain(&app.deliverer, &app.clock, 1).await;
    let last: Value = serde_json::from_str(
        receiver.requests().last().unwrap()["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["type"], "grant.issued");
}

async fn bad_webhook_targets_fail_cleanly(backend: Backend) {
    let redirector =
        Receiver::start(json!([{"status": 302, "location": "http://127.0.0.1:9/elsewhere"}]));
    let app = spawn_app_with(
        backend,
        &hooked_gate(&redirector.url(), r#""request.created""#),
    )
    .await;
    let (alice, erin) = tokio::join!(app.token("alice"), app.token("erin"));
    let request = app
        .post("/api/v1/requests", &alice, json!({"gate": "hooked"}))
        .await
        .body;
    assert_eq!(request["state"], "pending");
    drain(&app.deliverer, &app.clock, 6).await;
    assert_eq!(
        redirector.requests().len(),
        4,
        "max_attempts = 4, the redirect never followed"
    );
    let failed = app
        .get("/api/v1/webhooks/deliveries?state=failed", &erin)
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{:?}", failed.body);
    let items = failed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0]["last_error"].as_str().unwrap().contains("302"));
    let id = items[0]["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/v1/webhooks/deliveries/{id}/retry"),
            &erin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    drain(&app.deliverer, &app.clock, 1).await;
    assert_eq!(
        redirector.requests().len(),
        5,
        "the manual retry tried again"
    );
    let r = app
        .get("/api/v1/webhooks/deliveries?state=failed", &alice)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "operators only");
    // The app kept serving throughout.
    let r = app
        .get(
            &format!("/api/v1/requests/{}", request["id"].as_str().unwrap()),
            &alice,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let _ = Arc::new(());
}
