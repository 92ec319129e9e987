//! S6: notifications. countersign in-process on SQLite with `deploy-prod` announced on three
//! channels (a Slack bot, a Teams workflow and a signed notification webhook), all pointing
//! at a loopback receiver in this process that answers as the real services do. Measured:
//! deliveries per second for a burst of requests, the lag from a request's commit to each of
//! its deliveries when the server is otherwise idle, and the S3 flow with these
//! notifications against S3 without them, in the same run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::extract::State;
use axum::routing::post;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::Options;
use crate::load::Stats;
use crate::scenarios::{Api, Outcome, People, Server, config, flow, start_server_with};

/// The channels every S6 request is announced on.
const CHANNELS: [&str; 3] = ["s6-slack", "s6-teams", "s6-hook"];

/// What the receiver has seen: for each request id, when each of its messages arrived.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<HashMap<String, Vec<Instant>>>>);

impl Received {
    fn record(&self, body: &[u8]) {
        let at = Instant::now();
        let text = String::from_utf8_lossy(body);
        // Every message names its request (`req_` and a 26-character ULID).
        if let Some(start) = text.find("req_")
            && let Some(id) = text.get(start..start + 30)
            && let Ok(mut seen) = self.0.lock()
        {
            seen.entry(id.to_owned()).or_default().push(at);
        }
    }

    fn total(&self) -> usize {
        self.0
            .lock()
            .map(|s| s.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    fn of(&self, id: &str) -> Vec<Instant> {
        self.0
            .lock()
            .map(|s| s.get(id).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

async fn slack(State(r): State<Received>, body: axum::body::Bytes) -> axum::Json<Value> {
    r.record(&body);
    static TS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let ts = TS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    axum::Json(json!({"ok": true, "channel": "CBENCH", "ts": format!("{ts}.000100")}))
}

async fn accept(State(r): State<Received>, body: axum::body::Bytes) -> axum::http::StatusCode {
    r.record(&body);
    axum::http::StatusCode::ACCEPTED
}

/// Starts the receiver on loopback; returns its base URL.
async fn receiver(received: Received) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/api/chat.postMessage", post(slack))
        .route("/api/chat.update", post(slack))
        .route("/teams", post(accept))
        .route("/hook", post(accept))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

/// The S6 configuration: the bench's, with the three channels.
fn notifying_config(people: &str, database: &str, receiver: &str) -> String {
    let mut text = config(people, database, "127.0.0.1:0");
    text.push_str(&format!(
        r#"
[notifications]
[[notifications.channels]]
name = "s6-slack"
kind = "slack"
bot_token = "xoxb-bench"
channel = "CBENCH"
api_url = "{receiver}/api"
max_per_second = 10000

[[notifications.channels]]
name = "s6-teams"
kind = "teams"
webhook_url = "{receiver}/teams"
max_per_second = 10000

[[notifications.channels]]
name = "s6-hook"
kind = "webhook"
url = "{receiver}/hook"
secret = "whsec_YmVuY2ggbm90aWZpY2F0aW9ucyBvbmx5"
max_per_second = 10000
"#
    ));
    text
}

/// Runs S6. `s3_without` is the S3 figure of this run, when S3 ran (the reference for S3 while
/// delivering; the write-path ratio has its own alternating reference).
pub async fn run(
    o: &Options,
    p: &People,
    people: &str,
    s3_without: Option<f64>,
) -> anyhow::Result<Outcome> {
    let received = Received::default();
    let base = receiver(received.clone()).await?;
    let route = |gate: &mut countersign_core::Gate| {
        if gate.name == "deploy-prod" {
            gate.notify.channels = CHANNELS.iter().map(|c| (*c).to_owned()).collect();
        }
    };
    let server: Server = start_server_with(
        None,
        |database| notifying_config(people, database, &base),
        route,
        true,
    )
    .await?;
    let api = Api::new(&server.base);

    // A burst: N requests from 16 workers, then wait for every delivery.
    let burst = if o.quick { 100 } else { 1_000 };
    let expected = burst * CHANNELS.len();
    let start = Instant::now();
    let created = futures_util::stream::iter(0..burst)
        .map(|_| {
            let api = api.clone();
            let alice = p.alice.clone();
            async move { api.create(&alice).await.0 }
        })
        .buffer_unordered(o.connections)
        .collect::<Vec<u16>>()
        .await;
    let failed = created.iter().filter(|s| **s != 201).count();
    if failed > 0 {
        bail!("{failed} of {burst} requests were not created");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.total() < expected {
        if Instant::now() > deadline {
            bail!(
                "only {} of {expected} deliveries arrived within 120 s",
                received.total()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut deliveries = Stats::new();
    deliveries.elapsed = start.elapsed();
    for _ in 0..expected {
        deliveries.record(200, Duration::from_micros(1));
    }

    // Idle lag: one request at a time, from its commit (the create answered) to each
    // channel's delivery.
    let probes = if o.quick { 10 } else { 100 };
    let mut lag = Stats::new();
    let lag_start = Instant::now();
    for _ in 0..probes {
        let (status, request) = api.create(&p.alice).await;
        let committed = Instant::now();
        let request = request.with_context(|| format!("create answered {status}"))?;
        let id = request.id.to_string();
        let deadline = committed + Duration::from_secs(10);
        loop {
            let seen = received.of(&id);
            if seen.len() >= CHANNELS.len() {
                for at in seen {
                    lag.record(200, at.saturating_duration_since(committed));
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("request {id}: {} of 3 deliveries within 10 s", seen.len());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Idle between probes: no burst behind this one.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lag.elapsed = lag_start.elapsed();

    // S3 with notifications, against S3 without them. With the worker delivering to the
    // in-process receiver at the same time, what the machine pays (rendering, three HTTP
    // exchanges on each side of this process):
    let (delivering, _) = flow(o, &api, p).await;
    drop(server);
    // And what the approval path itself pays: the notifications written in each transaction,
    // the worker stopped, against a server without notifications, in alternating rounds (this
    // machine's noise is larger than the difference), median of the ratios.
    let quiet = start_server_with(
        None,
        |database| notifying_config(people, database, &base),
        route,
        false,
    )
    .await?;
    let plain = start_server_with(
        None,
        |database| notifying_config(people, database, &base),
        |_| {},
        false,
    )
    .await?;
    let round = Options {
        duration: o.duration / 3,
        ..o.clone()
    };
    let (quiet_api, plain_api) = (Api::new(&quiet.base), Api::new(&plain.base));
    let mut rounds = Vec::new();
    let (mut writing, mut without) = (Stats::new(), Stats::new());
    for _ in 0..3 {
        let (w, _) = flow(&round, &quiet_api, p).await;
        let (b, _) = flow(&round, &plain_api, p).await;
        if b.throughput() > 0.0 {
            rounds.push(w.throughput() / b.throughput());
        }
        writing.merge(&w);
        without.merge(&b);
    }
    drop((quiet, plain));
    rounds.sort_by(f64::total_cmp);
    let ratio = rounds.get(rounds.len() / 2).copied().unwrap_or(0.0);
    let without_rate = without.count as f64 / (round.duration.as_secs_f64() * 3.0);
    let writing_rate = writing.count as f64 / (round.duration.as_secs_f64() * 3.0);
    let reference = s3_without.unwrap_or(without_rate);
    let live = if reference > 0.0 {
        delivering.throughput() / reference
    } else {
        0.0
    };
    let (p50, p99) = (lag.pct_ms(0.50), lag.pct_ms(0.99));
    let met = deliveries.throughput() >= 500.0 && p99 <= 250.0 && ratio >= 0.9;
    let mut outcome = Outcome::new(
        "S6",
        "notifications: requests announced on 3 channels (Slack bot, Teams, webhook) to loopback receivers",
        deliveries,
    );
    outcome.target =
        ">= 500 deliveries/s; idle lag p99 <= 250 ms; S3 writing notifications >= 0.9 x S3";
    outcome.met = Some(met);
    outcome.headline = Some(format!(
        "{:.0} deliveries/s; idle lag p50 {p50:.1} ms, p99 {p99:.1} ms; S3 x{ratio:.2} writing, x{live:.2} delivering",
        outcome.measured.throughput()
    ));
    outcome.details = vec![
        ("burst_requests", Value::from(burst)),
        ("deliveries", Value::from(expected)),
        ("idle_lag_p50_ms", Value::from(p50)),
        ("idle_lag_p99_ms", Value::from(p99)),
        ("idle_probes", Value::from(probes)),
        ("s3_without_flows_per_s", Value::from(without_rate)),
        (
            "s3_writing_notifications_flows_per_s",
            Value::from(writing_rate),
        ),
        ("s3_ratio_writing_rounds", Value::from(rounds.clone())),
        (
            "s3_delivering_notifications_flows_per_s",
            Value::from(delivering.throughput()),
        ),
        ("s3_ratio_writing", Value::from(ratio)),
        ("s3_ratio_delivering", Value::from(live)),
    ];
    Ok(outcome)
}
