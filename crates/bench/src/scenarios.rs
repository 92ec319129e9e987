//! The scenarios and their baselines, against countersign built in-process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use countersign_api::{CreateRequest, DecisionBody, GrantToken, Request};
use countersign_config::DEMO_GATES;
use countersign_testkit::OidcProvider;
use futures_util::FutureExt as _;
use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use crate::Options;
use crate::http::{Http, Prototype, fixed_call, http};
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
    /// Whether the target was met; `None` where the figure is only reported.
    pub met: Option<bool>,
    /// Per-step latencies (S3, S3p).
    pub steps: BTreeMap<&'static str, Stats>,
    /// What the table shows instead of a throughput (S4's memory, say).
    pub headline: Option<String>,
    /// Further figures: sizes, settings, timings.
    pub details: Vec<(&'static str, Value)>,
}

impl Outcome {
    /// An outcome without steps, headline or details.
    pub fn new(id: &'static str, what: &'static str, measured: Stats) -> Self {
        Self {
            id,
            what,
            measured,
            baseline: None,
            expected: vec![200],
            target: "reported",
            met: None,
            steps: BTreeMap::new(),
            headline: None,
            details: Vec::new(),
        }
    }
}

/// The bench's configuration: the people's issuer at `people`, the database at `database`,
/// listening on `listen` (port 0 when the caller binds its own listener); the demo gates
/// (the scenarios drive `deploy-prod`) and two more that only S4's data set uses.
pub fn config(people: &str, database: &str, listen: &str) -> String {
    format!(
        r#"
[server]
public_url = "http://{listen}"
listen = "{listen}"
database = "{database}"
max_wait = "30s"
key_encryption_key = "Y291bnRlcnNpZ24gQVBJIHRlc3RzIG9ubHkga2V5ISE="

[[issuers]]
name = "idp"
url = "{people}"
audiences = ["{AUDIENCE}"]
groups_claim = "groups"

{DEMO_GATES}

[[gates]]
name = "db-migrate"
description = "Run a schema migration on a production database"
requesters = '"dev" in principal.groups'
reason = "required"
pending_ttl = "2h"
grant = {{ audience = "dba", scope = "migrate:{{{{params.database}}}}", ttl = "30m", max_ttl = "2h" }}
params.database = {{ type = "string", pattern = "^[a-z][a-z0-9_]{{1,40}}$", required = true }}
params.migration = {{ type = "string", required = true }}

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'

  [[gates.rules]]
  name = "security"
  approvers = '"security" in approver.groups && approver.claims.team != request.requester.claims.team'

[[gates]]
name = "prod-shell"
description = "A shell on a production host"
requesters = '"dev" in principal.groups'
reason = "required"
pending_ttl = "2h"
grant = {{ audience = "bastion", scope = "shell:{{{{params.host}}}}", ttl = "1h", max_ttl = "4h" }}
params.host = {{ type = "string", pattern = "^[a-z][a-z0-9-]{{1,40}}$", required = true }}

  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'

  [[gates.rules]]
  name = "security"
  approvers = '"security" in approver.groups && approver.claims.team != request.requester.claims.team'
"#
    )
}

/// A server under test, on its own runtime, with its database directory (SQLite).
pub(crate) struct Server {
    pub(crate) base: String,
    rt: Option<tokio::runtime::Runtime>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropped inside the load generator's runtime, where blocking is not allowed.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Starts countersign in-process on `database`, or on SQLite in a temp dir when `None`.
async fn start_server(people: &str, database: Option<&str>) -> anyhow::Result<Server> {
    start_server_with(
        database,
        |db| config(people, db, "127.0.0.1:0"),
        |_| {},
        true,
    )
    .await
}

/// [`start_server`] with the configuration text `text` makes for the database URL, each gate
/// changed by `gate` after loading (S6 routes `deploy-prod` to its channels), and the outbox
/// workers running only when `deliver` is set.
pub(crate) async fn start_server_with(
    database: Option<&str>,
    text: impl FnOnce(&str) -> String,
    gate: impl Fn(&mut countersign_core::Gate),
    deliver: bool,
) -> anyhow::Result<Server> {
    let (database, dir) = match database {
        Some(url) => (url.to_owned(), None),
        None => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("countersign.db").display());
            (url, Some(dir))
        }
    };
    let text = text(&database);
    let mut settings =
        countersign_config::load_str(&text, "bench.toml", &countersign_config::Env::empty())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let gates: Vec<countersign_core::Gate> = settings
        .gates
        .iter()
        .map(|g| {
            let mut g = (**g).clone();
            gate(&mut g);
            g
        })
        .collect();
    settings.gates = countersign_core::GateSet::new(gates);
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
                    deliver_every: if deliver {
                        countersign_server::BuildOptions::default().deliver_every
                    } else {
                        None
                    },
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
        rt: Some(rt),
        _dir: dir,
    })
}

/// A client of one server.
#[derive(Clone)]
pub struct Api {
    pub http: Http,
    pub base: String,
}

impl Api {
    /// A client of the server at `base`.
    pub fn new(base: &str) -> Self {
        Self {
            http: http(),
            base: base.to_owned(),
        }
    }

    /// `method` on `path` with `token` as bearer and `body` as JSON: the status and the
    /// answer read as `T` (status 0 for a request that could not be made or sent).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&impl Serialize>,
    ) -> (u16, anyhow::Result<T>) {
        let request = self.request(method, path, token).and_then(|r| match body {
            Some(b) => r.json(b),
            None => Ok(r),
        });
        match request {
            Ok(r) => r.send_as(&self.http).await,
            Err(e) => (0, Err(e)),
        }
    }

    /// `method` on `path` with `token` as bearer.
    pub fn request(&self, method: Method, path: &str, token: &str) -> anyhow::Result<Prototype> {
        Prototype::new(method, &format!("{}{path}", self.base))?.bearer(token)
    }

    pub(crate) async fn create(&self, token: &str) -> (u16, anyhow::Result<Request>) {
        let mut params = serde_json::Map::new();
        params.insert("service".into(), json!("api"));
        params.insert("version".into(), json!("1.4.2"));
        let body = CreateRequest {
            gate: "deploy-prod".into(),
            params,
            reason: Some("bench".into()),
            ..CreateRequest::default()
        };
        self.call(Method::POST, "/api/v1/requests", token, Some(&body))
            .await
    }

    async fn decide(&self, request: &Request, token: &str) -> (u16, anyhow::Result<Request>) {
        let body = DecisionBody {
            digest: request.digest.clone(),
            comment: Some("lgtm".into()),
        };
        self.call(
            Method::POST,
            &format!("/api/v1/requests/{}/approve", request.id),
            token,
            Some(&body),
        )
        .await
    }

    async fn token(&self, request: &Request, token: &str) -> (u16, anyhow::Result<GrantToken>) {
        self.call(
            Method::POST,
            &format!("/api/v1/requests/{}/token", request.id),
            token,
            None::<&()>,
        )
        .await
    }
}

/// Bearer tokens of alice (dev), bob (sre) and carol (security).
pub struct People {
    pub alice: String,
    pub bob: String,
    pub carol: String,
}

/// An approved request of alice's.
async fn approved(api: &Api, p: &People) -> anyhow::Result<Request> {
    let (s, req) = api.create(&p.alice).await;
    let req = req.context("create")?;
    if s != 201 {
        bail!("create answered {s}");
    }
    for t in [&p.bob, &p.carol] {
        let (s, body) = api.decide(&req, t).await;
        body.context("approve")?;
        if s != 200 {
            bail!("approve answered {s}");
        }
    }
    Ok(req)
}

pub async fn run_all(o: &Options) -> anyhow::Result<Vec<Outcome>> {
    let people = OidcProvider::start()
        .await
        .context("starting oidc-provider")?;
    let p = People {
        alice: people.login("alice").await?.access_token,
        bob: people.login("bob").await?.access_token,
        carol: people.login("carol").await?.access_token,
    };
    let mut out = Vec::new();
    let mut s5_outcome = None;
    if o.runs("S1") || o.runs("S2") || o.runs("S3") || o.runs("S5") || o.runs("S6") {
        let server = start_server(people.issuer(), None).await?;
        let api = Api::new(&server.base);
        if o.runs("S1") {
            out.push(s1(o, &api, &p).await?);
            eprintln!("S1 done");
        }
        if o.runs("S2") {
            out.push(s2(o, &api, &p, people.issuer()).await?);
            eprintln!("S2 done");
        }
        if o.runs("S3") {
            out.push(s3(o, &api, &p).await?);
            eprintln!("S3 done");
        }
        if o.runs("S5") {
            s5_outcome = Some(s5(o, &api, &p).await?);
            eprintln!("S5 done");
        }
        if o.runs("S6") {
            let s3 = out
                .iter()
                .find(|r: &&Outcome| r.id == "S3")
                .map(|r| r.measured.throughput());
            match crate::s6::run(o, &p, people.issuer(), s3).await {
                Ok(r) => out.push(r),
                Err(e) => out.push(could_not_run("S6", &e)),
            }
            eprintln!("S6 done");
        }
    }
    // These two need more of the machine (a PostgreSQL cluster, a large file, a release
    // binary): when one cannot run, the report says why and the others' results are kept.
    if o.runs("S3p") {
        match s3p(o, &p, people.issuer()).await {
            Ok(r) => out.push(r),
            Err(e) => out.push(could_not_run("S3p", &e)),
        }
        eprintln!("S3p done");
    }
    if o.runs("S4") {
        match crate::s4::run(o, &p, people.issuer()).await {
            Ok(r) => out.extend(r),
            Err(e) => out.push(could_not_run("S4", &e)),
        }
        eprintln!("S4 done");
    }
    out.extend(s5_outcome);
    Ok(out)
}

/// A scenario that failed before it measured anything: reported as not run, with the reason.
fn could_not_run(id: &'static str, e: &anyhow::Error) -> Outcome {
    eprintln!("{id} could not run: {e:#}");
    let mut r = Outcome::new(id, "could not run", Stats::new());
    r.details = vec![("error", Value::from(format!("{e:#}")))];
    r
}

/// A `GET` of `path` on the server, with `token` as its bearer when there is one.
pub fn get_call(api: &Api, path: &str, token: Option<&str>) -> anyhow::Result<Call> {
    let request = match token {
        Some(t) => api.request(Method::GET, path, t)?,
        None => Prototype::new(Method::GET, &format!("{}{path}", api.base))?,
    };
    Ok(fixed_call(&api.http, request))
}

async fn s1(o: &Options, api: &Api, p: &People) -> anyhow::Result<Outcome> {
    let req = approved(api, p).await?;
    let id = req.id;
    let baseline = drive(get_call(api, "/healthz", None)?, o.connections, o.duration).await;
    let path = format!("/api/v1/requests/{id}");
    let measured = drive(
        get_call(api, &path, Some(&p.alice))?,
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
        met: Some(met),
        steps: BTreeMap::new(),
        headline: None,
        details: Vec::new(),
    })
}

async fn s2(o: &Options, api: &Api, p: &People, issuer: &str) -> anyhow::Result<Outcome> {
    let req = approved(api, p).await?;
    let id = &req.id;
    let token = api.request(
        Method::POST,
        &format!("/api/v1/requests/{id}/token"),
        &p.alice,
    )?;
    let measured = drive(fixed_call(&api.http, token), o.connections, o.duration).await;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("resource", AUDIENCE)
        .append_pair("scope", "countersign")
        .finish();
    let basic = base64::engine::general_purpose::STANDARD.encode("ci-workload:ci-secret");
    let client_credentials = Prototype::new(Method::POST, &format!("{issuer}/token"))?
        .header(hyper::header::AUTHORIZATION, &format!("Basic {basic}"))?
        .body("application/x-www-form-urlencoded", form)?;
    let baseline = drive(
        fixed_call(&http(), client_credentials),
        o.connections,
        o.duration,
    )
    .await;
    let met = measured.throughput() >= 3.0 * baseline.throughput();
    Ok(Outcome {
        id: "S2",
        what: "POST /api/v1/requests/{id}/token",
        measured,
        baseline: Some(("panva oidc-provider client_credentials", baseline)),
        expected: vec![200, 201],
        target: ">= 3x baseline",
        met: Some(met),
        steps: BTreeMap::new(),
        headline: None,
        details: Vec::new(),
    })
}

/// The S3 flow from `o.connections` workers: alice creates, bob (sre) and carol (security)
/// approve, alice takes the token. Returns the flows and each step's latencies.
pub(crate) async fn flow(
    o: &Options,
    api: &Api,
    p: &People,
) -> (Stats, BTreeMap<&'static str, Stats>) {
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
                if let (201, Ok(req)) = (s, req) {
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
    let steps = steps.lock().map(|s| s.clone()).unwrap_or_default();
    (measured, steps)
}

async fn s3(o: &Options, api: &Api, p: &People) -> anyhow::Result<Outcome> {
    let (measured, steps) = flow(o, api, p).await;
    let baseline = sqlite_commits(o.duration).await?;
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
        met: Some(met),
        steps,
        headline: None,
        details: Vec::new(),
    })
}

/// S3 on PostgreSQL with durable settings, against the raw commit rate of the same cluster.
async fn s3p(o: &Options, p: &People, people: &str) -> anyhow::Result<Outcome> {
    let pg = countersign_testkit::TestPostgres::start_durable()
        .await
        .context("starting a durable PostgreSQL cluster")?;
    let raw_url = pg.fresh_database().await?;
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(o.connections).unwrap_or(16))
        .connect(&raw_url)
        .await
        .context("connecting to the durable cluster")?;
    // The point of S3p: commits reach the disk. Refuse to measure anything else.
    let mut details = Vec::new();
    for setting in [
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "wal_sync_method",
        "server_version",
        "shared_buffers",
    ] {
        let value: String = sqlx::query_scalar(AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&raw)
            .await?;
        if ["fsync", "synchronous_commit"].contains(&setting) && value != "on" {
            bail!("the S3p cluster runs with {setting} = {value}, not on");
        }
        details.push((setting, Value::from(value)));
    }
    let database = pg.fresh_database().await?;
    let server = start_server(people, Some(&database)).await?;
    let api = Api::new(&server.base);
    let (measured, steps) = flow(o, &api, p).await;
    drop(server);
    let baseline = postgres_commits(&raw, o).await?;
    raw.close().await;
    Ok(Outcome {
        id: "S3p",
        what: "flow: create, approve x2 (two teams), token; PostgreSQL fsync=on, synchronous_commit=on",
        measured,
        baseline: Some((
            "raw PostgreSQL durable commits (16 connections, 1 x 300 B insert each)",
            baseline,
        )),
        expected: vec![200, 201],
        target: "reported",
        met: None,
        steps,
        headline: None,
        details,
    })
}

/// Raw durable-commit rate of a PostgreSQL cluster: single-row INSERTs, each its own
/// transaction, from `o.connections` connections at once.
async fn postgres_commits(pool: &sqlx::PgPool, o: &Options) -> anyhow::Result<Stats> {
    sqlx::query("CREATE TABLE raw_commits (id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)")
        .execute(pool)
        .await?;
    let body: Arc<[u8]> = vec![0x5au8; 300].into();
    let pool = pool.clone();
    let call: Call = Arc::new(move |_| {
        let pool = pool.clone();
        let body = body.clone();
        async move {
            let r = sqlx::query("INSERT INTO raw_commits (body) VALUES ($1)")
                .bind(&*body)
                .execute(&pool)
                .await;
            if r.is_ok() { 200 } else { 0 }
        }
        .boxed()
    });
    Ok(drive(call, o.connections, o.duration).await)
}

/// Raw durable-commit rate of SQLite in a temp dir on the same disk as the server's database
/// (on a thread of its own, as the store's writer runs its commits).
async fn sqlite_commits(duration: Duration) -> anyhow::Result<Stats> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("raw.db");
    let stats = tokio::task::spawn_blocking(move || -> anyhow::Result<Stats> {
        let mut conn = rusqlite::Connection::open(&path)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")?;
        let body = vec![0x5au8; 300];
        let mut stats = Stats::new();
        let start = Instant::now();
        while start.elapsed() < duration {
            let t = Instant::now();
            let tx = conn.transaction()?;
            for _ in 0..2 {
                tx.prepare_cached("INSERT INTO t (body) VALUES (?1)")?
                    .execute([&body])?;
            }
            tx.commit()?;
            stats.record(200, t.elapsed());
        }
        stats.elapsed = start.elapsed();
        Ok(stats)
    })
    .await??;
    drop(dir);
    Ok(stats)
}

async fn s5(o: &Options, api: &Api, p: &People) -> anyhow::Result<Outcome> {
    let mut measured = Stats::new();
    let start = Instant::now();
    for _ in 0..o.wake_iterations {
        let (s, req) = api.create(&p.alice).await;
        let req = match req {
            Ok(req) if s == 201 => req,
            _ => {
                measured.record(s, Duration::ZERO);
                continue;
            }
        };
        let (id, version) = (req.id.clone(), req.version);
        let waiter = {
            let api = api.clone();
            let alice = p.alice.clone();
            tokio::spawn(async move {
                let path = format!("/api/v1/requests/{id}?wait=10s&version={version}");
                let (s, _) = api
                    .call::<Request>(Method::GET, &path, &alice, None::<&()>)
                    .await;
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
        met: Some(met),
        steps: BTreeMap::new(),
        headline: None,
        details: Vec::new(),
    })
}
