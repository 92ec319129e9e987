//! `spawn_app()`: a fresh app with its own database and providers, and a small client.

use std::sync::Arc;

use countersign_config::DEMO_GATES;
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
    pub state: countersign_server::state::AppState,
    pub deliverer: countersign_notify::Deliverer,
    /// The configuration the app was built from (a second instance reuses it).
    pub config_text: String,
    _dir: tempfile::TempDir,
}

/// The resource server the tests introspect as.
pub const RESOURCE_SERVER: (&str, &str) = ("deployer", "deployer-secret");

fn config(people: &str, ci: &str, database: &str, port: u16) -> String {
    format!(
        r#"
[server]
public_url = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
database = "{database}"
audit_readers = '"admin" in principal.groups'
max_wait = "30s"
key_encryption_key = "Y291bnRlcnNpZ24gQVBJIHRlc3RzIG9ubHkga2V5ISE="

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

[webhooks]
max_attempts = 4
timeout = "2s"
backoff_base = "1s"
backoff_max = "10s"

[[resource_servers]]
name = "{rs_name}"
client_id = "{rs_name}"
client_secret = "{rs_secret}"

{DEMO_GATES}

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
"#,
        rs_name = RESOURCE_SERVER.0,
        rs_secret = RESOURCE_SERVER.1,
    )
}

/// Starts the providers, a database of the chosen backend and the app.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, "").await
}

/// Like [`spawn_app`], with more configuration appended (gates with webhooks, say).
pub async fn spawn_app_with(backend: Backend, extra: &str) -> TestApp {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config_text = format!(
        "{}\n{extra}",
        config(people.issuer(), ci.issuer(), &database, port)
    );
    let clock = Arc::new(ManualClock::new(countersign_server::SystemClock.now()));
    let app = build(&config_text, clock.clone(), Some(listener)).await;
    let engine = app.state().engine.clone();
    let state = app.state().clone();
    let deliverer = app.deliverer().clone();
    let (addr, _) = app.spawn();
    TestApp {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        people,
        ci,
        clock,
        engine,
        state,
        deliverer,
        config_text,
        _dir: dir,
    }
}

/// Builds (does not serve) an app from a configuration text: workers off, tests drive them.
pub async fn build(
    text: &str,
    clock: Arc<ManualClock>,
    listener: Option<tokio::net::TcpListener>,
) -> countersign_server::Application {
    let settings =
        countersign_config::load_str(text, "test.toml", &countersign_config::Env::empty())
            .unwrap_or_else(|e| panic!("{e}"));
    let listener = match listener {
        Some(l) => l,
        None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let options = countersign_server::BuildOptions {
        clock,
        listener: Some(listener),
        sweep_every: None,
        deliver_every: None,
        ..Default::default()
    };
    countersign_server::Application::build(settings, options)
        .await
        .unwrap()
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
