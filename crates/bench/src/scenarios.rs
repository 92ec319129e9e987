//! The scenarios and their baselines, against countersign built in-process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use countersign_testkit::OidcProvider;
use futures_util::FutureExt as _;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use sqlx::ConnectOptions as _;
use sqlx::Connection as _;

use crate::Options;
use crate::load::{Call, Stats, drive};

const AUDIENCE: &str = "api://countersign";

/// One scenario's measurement and its baseline.
#[derive(Debug)]
pub struct Outcome {
    /// `S1`, `S2`, …
    pub id: &'static str,
    /// What was measured.
    pub what: &'static str,
    /// The measured load.
    pub measured: Stats,
    /// The baseline's load, where there is one.
    pub baseline: Option<(&'static str, Stats)>,
    /// Statuses that count as expected.
    pub expected: Vec<u16>,
    /// The target, in words.
    pub target: &'static str,
    /// Whether the target was met.
    pub met: bool,
    /// Per-step latencies (S3).
    pub steps: BTreeMap<&'static str, Stats>,
}

fn config(people: &str, database: &str) -> String {
    format!(
        r#"
[server]
public_url = "http://127.0.0.1:0"
listen = "127.0.0.1:0"
database = "{database}"
max_wait = "30s"
key_encryption_key = "Y291bnRlcnNpZ24gQVBJIHRlc3RzIG9ubHkga2V5ISE="

[[issuers]]
name = "idp"
url = "{people}"
audiences = ["{AUDIENCE}"]
groups_claim = "groups"

[[gates]]
name = "deploy-prod"
description = "Deploy to production"
requesters = '"dev" in principal.groups'
reason = "required"
pending_ttl = "2h"
grant = {{ audience = "deployer", scope = "deploy:{{{{params.service}}}}", ttl = "15m", max_ttl = "1h" }}
params.service = {{ type = "string", pattern = "^[a-z][a-z0-9-]{{1,40}}$", required = true }}
params.version = {{ type = "string", required = true }}

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'

  [[gates.rules]]
  name = "security"
  approvers = '"security" in approver.groups && approver.claims.team != request.requester.claims.team'
"#
    )
}

/// The server under test, on its own runtime, with its provider and database directory.
struct Server {
    base: String,
    people: OidcProvider,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropped inside the load generator's runtime, where blocking is not allowed.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn start_server() -> anyhow::Result<Server> {
    let people = OidcProvider::start()
        .await
        .context("starting oidc-provider")?;
    let dir = tempfile::tempdir()?;
    let database = format!("sqlite://{}", dir.path().join("countersign.db").display());
    let text = config(people.issuer(), &database);
    let settings =
        countersign_config::load_str(&text, "bench.toml", &countersign_config::Env::empty())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()?;
    let addr = rt
        .spawn(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let app = countersign_server::Application::build(
                settings,
                countersign_server::BuildOptions {
                    listener: Some(listener),
                    ..Default::default()
                },
            )
            .await?;
            let (addr, _) = app.spawn();
            anyhow::Ok(addr)
        })
        .await??;
    Ok(Server {
        base: format!("http://{addr}"),
        people,
        rt: Some(rt),
        _dir: dir,
    })
}

#[derive(Clone)]
struct Api {
    http: Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        match rb.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.json().await.unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn create(&self, token: &str) -> (u16, Value) {
        let body = json!({"gate": "deploy-prod", "params": {"service": "api", "version": "1.4.2"}, "reason": "bench"});
        self.call(Method::POST, "/api/v1/requests", token, Some(&body))
            .await
    }

    async fn decide(&self, request: &Value, token: &str) -> (u16, Value) {
        let id = request["id"].as_str().unwrap_or_default();
        let body = json!({"digest": request["digest"], "comment": "lgtm"});
        self.call(
            Method::POST,
            &format!("/api/v1/requests/{id}/approve"),
            token,
            Some(&body),
        )
        .await
    }

    async fn token(&self, request: &Value, token: &str) -> (u16, Value) {
        let id = request["id"].as_str().unwrap_or_default();
        self.call(
            Method::POST,
            &format!("/api/v1/requests/{id}/token"),
            token,
            None,
        )
        .await
    }
}

struct People {
    alice: String,
    bob: String,
    carol: String,
}

fn client(connections: usize) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// An approved request of alice's.
async fn approved(api: &Api, p: &People) -> anyhow::Result<Value> {
    let (s, req) = api.create(&p.alice).await;
    if s != 201 {
        bail!("create answered {s}: {req}");
    }
    for t in [&p.bob, &p.carol] {
        let (s, body) = api.decide(&req, t).await;
        if s != 200 {
            bail!("approve answered {s}: {body}");
        }
    }
    Ok(req)
}

pub async fn run_all(o: &Options) -> anyhow::Result<Vec<Outcome>> {
    let server = start_server().await?;
    let api = Api {
        http: client(o.connections)?,
        base: server.base.clone(),
    };
    let p = People {
        alice: server.people.login("alice").await?.access_token,
        bob: server.people.login("bob").await?.access_token,
        carol: server.people.login("carol").await?.access_token,
    };
    let mut out = Vec::new();
    out.push(s1(o, &api, &p).await?);
    eprintln!("S1 done");
    out.push(s2(o, &api, &p, server.people.issuer()).await?);
    eprintln!("S2 done");
    out.push(s3(o, &api, &p).await?);
    eprintln!("S3 done");
    out.push(s5(o, &api, &p).await?);
    eprintln!("S5 done");
    Ok(out)
}

fn get_call(api: &Api, path: String, token: Option<String>) -> Call {
    let api = api.clone();
    Arc::new(move |_| {
        let api = api.clone();
        let path = path.clone();
        let token = token.clone();
        async move {
            let mut rb = api.http.get(format!("{}{path}", api.base));
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            match rb.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            }
        }
        .boxed()
    })
}

async fn s1(o: &Options, api: &Api, p: &People) -> anyhow::Result<Outcome> {
    let req = approved(api, p).await?;
    let id = req["id"].as_str().unwrap_or_default().to_owned();
    let baseline = drive(
        get_call(api, "/healthz".into(), None),
        o.connections,
        o.duration,
    )
    .await;
    let measured = drive(
        get_call(api, format!("/api/v1/requests/{id}"), Some(p.alice.clone())),
        o.connections,
        o.duration,
    )
    .await;
    let met = measured.throughput() >= 0.5 * baseline.throughput();
    Ok(Outcome {
        id: "S1",
        what: "GET /api/v1/requests/{id}, bearer ES256",
        measured,
        baseline: Some(("GET /healthz", baseline)),
        expected: vec![200],
        target: ">= 50 % of baseline",
        met,
        steps: BTreeMap::new(),
    })
}

async fn s2(o: &Options, api: &Api, p: &People, issuer: &str) -> anyhow::Result<Outcome> {
    let req = approved(api, p).await?;
    let measured = {
        let api = api.clone();
        let alice = p.alice.clone();
        let call: Call = Arc::new(move |_| {
            let api = api.clone();
            let alice = alice.clone();
            let req = req.clone();
            async move { api.token(&req, &alice).await.0 }.boxed()
        });
        drive(call, o.connections, o.duration).await
    };
    let baseline = {
        let http = client(o.connections)?;
        let url = format!("{issuer}/token");
        let call: Call = Arc::new(move |_| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let r = http
                    .post(url)
                    .basic_auth("ci-workload", Some("ci-secret"))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("resource", AUDIENCE),
                        ("scope", "countersign"),
                    ])
                    .send()
                    .await;
                match r {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                }
            }
            .boxed()
        });
        drive(call, o.connections, o.duration).await
    };
    let met = measured.throughput() >= 3.0 * baseline.throughput();
    Ok(Outcome {
        id: "S2",
        what: "POST /api/v1/requests/{id}/token",
        measured,
        baseline: Some(("panva oidc-provider client_credentials", baseline)),
        expected: vec![200, 201],
        target: ">= 3x baseline",
        met,
        steps: BTreeMap::new(),
    })
}

async fn s3(o: &Options, api: &Api, p: &People) -> anyhow::Result<Outcome> {
    let steps: Arc<std::sync::Mutex<BTreeMap<&'static str, Stats>>> = Arc::default();
    let measured = {
        let api = api.clone();
        let (alice, bob, carol) = (p.alice.clone(), p.bob.clone(), p.carol.clone());
        let steps = steps.clone();
        let call: Call = Arc::new(move |_| {
            let api = api.clone();
            let (alice, bob, carol) = (alice.clone(), bob.clone(), carol.clone());
            let steps = steps.clone();
            async move {
                let mut mine: Vec<(&'static str, u16, Duration)> = Vec::with_capacity(4);
                let t = Instant::now();
                let (s, req) = api.create(&alice).await;
                mine.push(("1 create", s, t.elapsed()));
                let mut last = s;
                if s == 201 {
                    for (name, who) in [("2 approve sre", &bob), ("3 approve security", &carol)] {
                        let t = Instant::now();
                        let (s, _) = api.decide(&req, who).await;
                        mine.push((name, s, t.elapsed()));
                        last = s;
                        if s != 200 {
                            break;
                        }
                    }
                    if last == 200 {
                        let t = Instant::now();
                        let (s, _) = api.token(&req, &alice).await;
                        mine.push(("4 token", s, t.elapsed()));
                        last = s;
                    }
                }
                if let Ok(mut st) = steps.lock() {
                    for (name, s, d) in mine {
                        st.entry(name).or_default().record(s, d);
                    }
                }
                last
            }
            .boxed()
        });
        drive(call, o.connections, o.duration).await
    };
    let baseline = sqlite_commits(o.duration).await?;
    let steps = steps.lock().map(|s| s.clone()).unwrap_or_default();
    let met = measured.throughput() >= 1500.0;
    Ok(Outcome {
        id: "S3",
        what: "flow: create, approve x2 (two teams), token; SQLite synchronous=FULL",
        measured,
        baseline: Some((
            "raw SQLite durable commits (2 x 300 B inserts, WAL, FULL)",
            baseline,
        )),
        expected: vec![200, 201],
        target: ">= 1500 flows/s",
        met,
        steps,
    })
}

/// Raw durable-commit rate of SQLite in a temp dir on the same disk as the server's database.
async fn sqlite_commits(duration: Duration) -> anyhow::Result<Stats> {
    let dir = tempfile::tempdir()?;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .connect()
        .await?;
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .execute(&mut conn)
        .await?;
    let body = vec![0x5au8; 300];
    let mut stats = Stats::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        let mut tx = conn.begin().await?;
        for _ in 0..2 {
            sqlx::query("INSERT INTO t (body) VALUES (?)")
                .bind(&body)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        stats.record(200, t.elapsed());
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

async fn s5(o: &Options, api: &Api, p: &People) -> anyhow::Result<Outcome> {
    let mut measured = Stats::new();
    let start = Instant::now();
    for _ in 0..o.wake_iterations {
        let (s, req) = api.create(&p.alice).await;
        if s != 201 {
            measured.record(s, Duration::ZERO);
            continue;
        }
        let id = req["id"].as_str().unwrap_or_default().to_owned();
        let version = req["version"].as_i64().unwrap_or(1);
        let waiter = {
            let api = api.clone();
            let alice = p.alice.clone();
            tokio::spawn(async move {
                let path = format!("/api/v1/requests/{id}?wait=10s&version={version}");
                let (s, _) = api.call(Method::GET, &path, &alice, None).await;
                (s, Instant::now())
            })
        };
        // Let the waiter park before the approval lands.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (s, _) = api.decide(&req, &p.bob).await;
        let approved_at = Instant::now();
        let (ws, woken_at) = waiter.await?;
        let status = if s == 200 { ws } else { s };
        measured.record(status, woken_at.saturating_duration_since(approved_at));
    }
    measured.elapsed = start.elapsed();
    let met = measured.pct_ms(0.99) <= 20.0;
    Ok(Outcome {
        id: "S5",
        what: "long-poll waiter woken by another client's approval",
        measured,
        baseline: None,
        expected: vec![200],
        target: "woken within 20 ms at p99",
        met,
        steps: BTreeMap::new(),
    })
}
