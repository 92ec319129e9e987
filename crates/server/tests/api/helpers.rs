//! `spawn_app()`: a fresh app with its own database and providers, and a small client.

use std::sync::Arc;

use countersign_core::ports::ManualClock;
use countersign_core::{Clock, Engine};
use countersign_testkit::{OidcProvider, TestPostgres};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Which database backs the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const AUDIENCE: &str = "api://countersign";

/// A running app and what a test needs to drive it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub people: OidcProvider,
    pub ci: OidcProvider,
    pub clock: Arc<ManualClock>,
    pub engine: Engine,
    _dir: tempfile::TempDir,
}

fn config(people: &str, ci: &str, database: &str) -> String {
    format!(
        r#"
[server]
public_url = "http://127.0.0.1:1"
listen = "127.0.0.1:0"
database = "{database}"
audit_readers = '"admin" in principal.groups'
max_wait = "30s"

[[issuers]]
name = "idp"
url = "{people}"
audiences = ["{AUDIENCE}"]
groups_claim = "groups"

[[issuers]]
name = "ci"
url = "{ci}"
kind = "workload"
audiences = ["{AUDIENCE}"]
actor_claim = "actor_id"
actor_issuer = "idp"

[[gates]]
name = "deploy-prod"
description = "Deploy to production"
requesters = 'principal.kind == "workload" || "dev" in principal.groups'
reason = "required"
pending_ttl = "2h"
grant = {{ audience = "deployer", scope = "deploy:{{{{params.service}}}}", ttl = "15m", max_ttl = "1h" }}
params.service = {{ type = "string", pattern = "^[a-z][a-z0-9-]{{1,40}}$", required = true }}
params.version = {{ type = "string", required = true }}
params.replicas = {{ type = "int", min = 1, max = 10 }}

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'

  [[gates.rules]]
  name = "security"
  approvers = '"security" in approver.groups && approver.claims.team != request.requester.claims.team'

[[gates]]
name = "staged"
description = "Two stages: a lead, then the change board"
requesters = 'true'
pending_ttl = "10m"

  [[gates.rules]]
  name = "lead"
  approvers = '"sre" in approver.groups'
  stage = 1

  [[gates.rules]]
  name = "board"
  approvers = '"security" in approver.groups'
  stage = 2

[[gates]]
name = "staging"
description = "Staging deploys are approved at once"
requesters = 'true'
auto_approve = 'request.params.env == "staging"'
params.env = {{ type = "enum", values = ["staging", "qa"], required = true }}

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'
"#
    )
}

/// Starts the providers, a database of the chosen backend and the app.
pub async fn spawn_app(backend: Backend) -> TestApp {
    let (people, ci) = tokio::join!(OidcProvider::start(), OidcProvider::start());
    let (people, ci) = (
        people.expect("people's provider"),
        ci.expect("workload provider"),
    );
    let dir = tempfile::tempdir().unwrap();
    let database = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("countersign.db").display()),
        Backend::Postgres => TestPostgres::shared()
            .await
            .unwrap()
            .fresh_database()
            .await
            .unwrap(),
    };
    let text = config(people.issuer(), ci.issuer(), &database);
    let settings = countersign_config::load_str(
        &text,
        "test.toml",
        &countersign_config::Env::from_pairs(Vec::<(String, String)>::new()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(ManualClock::new(countersign_server::SystemClock.now()));
    let options = countersign_server::BuildOptions {
        clock: clock.clone(),
        sweep_every: None,
        ..Default::default()
    };
    let app = countersign_server::Application::build(settings, options)
        .await
        .unwrap();
    let engine = app.state().engine.clone();
    let (addr, _) = app.spawn();
    TestApp {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        people,
        ci,
        clock,
        engine,

        _dir: dir,
    }
}

/// A response: status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn token(&self, user: &str) -> String {
        if user == "ci" {
            self.ci.workload_token().await.unwrap()
        } else {
            self.people.login(user).await.unwrap().access_token
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Creates a deploy-prod request as `token`'s owner; asserts 201.
    pub async fn create_deploy(&self, token: &str) -> Value {
        let r = self
            .post(
                "/api/v1/requests",
                token,
                json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1.4.2"}, "reason": "hotfix INC-42"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body
    }

    pub async fn decide(&self, request: &Value, token: &str, verdict: &str) -> Reply {
        let id = request["id"].as_str().unwrap();
        self.post(
            &format!("/api/v1/requests/{id}/{verdict}"),
            token,
            json!({"digest": request["digest"], "comment": format!("{verdict} from test")}),
        )
        .await
    }

    /// Every audit event, via the engine's store, verified as a chain.
    pub async fn verify_chain(&self) -> u64 {
        countersign_store::verify_audit(self.engine.store().as_ref())
            .await
            .expect("audit chain intact")
    }

    /// All audit events (through the API, as the admin).
    pub async fn audit(&self, admin: &str, request_id: Option<&str>) -> Vec<Value> {
        let path = match request_id {
            Some(id) => format!("/api/v1/audit?request_id={id}&limit=1000"),
            None => "/api/v1/audit?limit=1000".to_string(),
        };
        let r = self.get(&path, admin).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["items"].as_array().unwrap().clone()
    }

    pub async fn count_requests(&self, admin: &str) -> usize {
        let r = self.get("/api/v1/requests?limit=200", admin).await;
        r.body["items"].as_array().map_or(0, Vec::len)
    }
}
