//! The OpenAPI document served at `/api/v1/openapi.json`: a real validator accepts it, it
//! describes exactly the routes the server serves, and the answers of a real lifecycle read
//! into the shared wire types (`countersign_api`) and write back to the same JSON, so the
//! request view the server writes straight from the domain cannot drift from the type the
//! document describes.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

/// Every `(method, path)` the server documents: all of `/api/v1`, and the health endpoints.
const DOCUMENTED: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/auth/config"),
    ("get", "/api/v1/gates"),
    ("post", "/api/v1/requests"),
    ("get", "/api/v1/requests"),
    ("get", "/api/v1/requests/{id}"),
    ("post", "/api/v1/requests/{id}/approve"),
    ("post", "/api/v1/requests/{id}/reject"),
    ("post", "/api/v1/requests/{id}/cancel"),
    ("post", "/api/v1/requests/{id}/revoke"),
    ("post", "/api/v1/requests/{id}/token"),
    ("get", "/api/v1/requests/{id}/events"),
    ("get", "/api/v1/inbox/events"),
    ("get", "/api/v1/webhooks/deliveries"),
    ("post", "/api/v1/webhooks/deliveries/{id}/retry"),
    ("get", "/api/v1/notifications"),
    ("post", "/api/v1/notifications/{id}/retry"),
    ("get", "/api/v1/audit"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

/// The API routes the document leaves to their own specifications.
const STANDARDS: &[(&str, &str)] = &[
    ("get", "/.well-known/openid-configuration"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/oauth/introspect"),
    ("post", "/oauth/revoke"),
];

/// The operations anyone may call without a token.
const UNAUTHENTICATED: &[&str] = &["getOpenApi", "getAuthConfig", "healthz", "readyz"];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> (String, Value) {
    let r = app
        .http
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    let doc = serde_json::from_str(&text).expect("the document is JSON");
    (text, doc)
}

/// What `openapi-spec-validator` says of `text`: `Err` with its findings when it refuses.
fn validate(text: &str) -> Result<(), String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testkit/verifiers/validate_openapi.py");
    let mut child = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(script)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (pip install -r crates/testkit/verifiers/requirements.txt)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(*method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

fn set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

/// `path` with its parameters filled in with well-formed ids.
fn concrete(path: &str) -> String {
    path.replace("/requests/{id}", "/requests/req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3")
        .replace(
            "/deliveries/{id}",
            "/deliveries/msg_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3",
        )
}

/// Whether the server answers `method path` with a handler of its own, not with the answers
/// for unknown paths and methods.
async fn served(app: &TestApp, method: &str, path: &str) -> bool {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let r = app
        .http
        .request(method, format!("{}{}", app.base, concrete(path)))
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = r.status();
    // A stream would stay open: its status is all this needs.
    let message = if status == StatusCode::NOT_FOUND {
        r.json::<Value>().await.unwrap_or_default()["error"]["message"].clone()
    } else {
        Value::Null
    };
    status != StatusCode::METHOD_NOT_ALLOWED
        && !(status == StatusCode::NOT_FOUND && message == "no such endpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_valid_openapi_3_1() {
    let app = spawn_app(Backend::Sqlite).await;
    let (text, doc) = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    // Left where a reader can look at it after a run.
    let copy = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi.json");
    std::fs::write(&copy, &text).unwrap();
    validate(&text).unwrap_or_else(|e| panic!("openapi-spec-validator refuses it:\n{e}"));
    // The validator itself refuses a broken document (so the check above can fail).
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/gates"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        json!({"$ref": "#/components/schemas/NoSuchSchema"});
    assert!(validate(&broken.to_string()).is_err());
    broken = doc.clone();
    broken["info"].as_object_mut().unwrap().remove("version");
    assert!(validate(&broken.to_string()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_served_and_no_other() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, doc) = document(&app).await;
    assert_eq!(operations(&doc), set(DOCUMENTED));
    for (method, path) in DOCUMENTED.iter().chain(STANDARDS) {
        assert!(
            served(&app, method, path).await,
            "{method} {path} is not served"
        );
    }
    // No method is served on a documented path that the document does not name (HEAD is
    // axum's answer to every GET).
    let documented = set(DOCUMENTED);
    let paths: BTreeSet<&str> = DOCUMENTED.iter().map(|(_, p)| *p).collect();
    for path in paths {
        for method in METHODS
            .iter()
            .filter(|m| !matches!(**m, "head" | "options" | "trace"))
        {
            if !documented.contains(&(method.to_string(), path.to_string())) {
                assert!(
                    !served(&app, method, path).await,
                    "{method} {path} is served"
                );
            }
        }
    }
    // Every operation says whether it needs a token, and only the public ones do not.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            let public = UNAUTHENTICATED.contains(&id);
            assert_eq!(
                op.get("security").is_none(),
                public,
                "{method} {path} ({id}): security"
            );
            if !public {
                assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// `body` reads into `T`, and `T` writes `body` back, value for value.
fn round_trips<T: DeserializeOwned + Serialize>(body: &Value) -> T {
    let typed: T = serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e}: {body:#}"));
    assert_eq!(&serde_json::to_value(&typed).unwrap(), body);
    typed
}

/// A request view reads into `countersign_api::Request` and writes back byte for byte (the
/// view and the type both write their keys in byte order).
fn same_request(body: &Value) -> countersign_api::Request {
    let typed: countersign_api::Request = round_trips(body);
    assert_eq!(serde_json::to_string(&typed).unwrap(), body.to_string());
    typed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_are_the_shared_types() {
    let app = spawn_app(Backend::Sqlite).await;
    let (alice, bob, carol, erin) = tokio::join!(
        app.token("alice"),
        app.token("bob"),
        app.token("carol"),
        app.token("erin")
    );
    let request = app.create_deploy(&alice).await;
    same_request(&request);
    let id = request["id"].as_str().unwrap().to_owned();
    let first = app.decide(&request, &bob, "approve").await;
    let typed = same_request(&first.body);
    assert_eq!(typed.rules[0].approvals.len(), 1);
    let approved = app.decide(&request, &carol, "approve").await;
    let typed = same_request(&approved.body);
    assert_eq!(typed.state, countersign_api::RequestState::Approved);
    assert_eq!(typed.approval, Some(countersign_api::ApprovalPath::Quorum));

    let token = app
        .call(
            Method::POST,
            &format!("/api/v1/requests/{id}/token"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(token.status, StatusCode::OK, "{:?}", token.body);
    round_trips::<countersign_api::GrantToken>(&token.body);

    // A rejected one, a cancelled one, and one given up by an approver.
    let other = app.create_deploy(&alice).await;
    let rejected = app.decide(&other, &bob, "reject").await;
    same_request(&rejected.body);
    let third = app.create_deploy(&alice).await;
    let cancelled = app
        .post(
            &format!("/api/v1/requests/{}/cancel", third["id"].as_str().unwrap()),
            &alice,
            json!({"reason": "not needed"}),
        )
        .await;
    same_request(&cancelled.body);
    let revoked = app
        .post(&format!("/api/v1/requests/{id}/revoke"), &alice, json!({}))
        .await;
    same_request(&revoked.body);

    let page = app.get("/api/v1/requests?limit=2", &alice).await.body;
    let typed: countersign_api::RequestPage = round_trips(&page);
    assert_eq!(typed.items.len(), 2);
    for item in &page["items"].as_array().unwrap()[..] {
        same_request(item);
    }
    assert!(typed.next_cursor.is_some());

    round_trips::<countersign_api::GatePage>(&app.get("/api/v1/gates", &alice).await.body);
    let audit = app.get("/api/v1/audit?limit=1000", &erin).await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    round_trips::<countersign_api::AuditPage>(&audit.body);
    let deliveries = app.get("/api/v1/webhooks/deliveries", &erin).await;
    assert_eq!(deliveries.status, StatusCode::OK, "{:?}", deliveries.body);
    round_trips::<countersign_api::DeliveryPage>(&deliveries.body);
    let notifications = app.get("/api/v1/notifications", &erin).await;
    assert_eq!(
        notifications.status,
        StatusCode::OK,
        "{:?}",
        notifications.body
    );
    round_trips::<countersign_api::NotificationPage>(&notifications.body);
    let config = app
        .call(Method::GET, "/api/v1/auth/config", None, None)
        .await;
    round_trips::<countersign_api::AuthConfig>(&config.body);
    let health = app.call(Method::GET, "/healthz", None, None).await;
    round_trips::<countersign_api::Health>(&health.body);
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    round_trips::<countersign_api::Readiness>(&ready.body);
    let missing = app
        .get("/api/v1/requests/req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3", &alice)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    round_trips::<countersign_api::ErrorBody>(&missing.body);

    // The request stream's first event is the same view.
    let mut stream = app
        .http
        .get(format!("{}/api/v1/requests/{id}/events", app.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().expect("an event");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    same_request(&serde_json::from_str(data).unwrap());
}
