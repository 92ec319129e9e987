//! S4: countersign on a large SQLite database, as a separate process.
//!
//! The data set (see [`crate::seed`]) is written straight into the file; then the release
//! binary `countersign serve` starts on it, and the approver's inbox and single-request reads
//! are measured at a light load (the targets are latencies, not throughput). Afterwards the
//! server's peak memory is read from `/proc`, it is stopped, and `countersign audit verify`
//! recomputes the whole chain.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use countersign_api::{Request, RequestPage};
use countersign_core::Clock as _;
use futures_util::FutureExt as _;
use hyper::Method;
use serde_json::Value;

use crate::Options;
use crate::http::Prototype;
use crate::load::{Call, Stats, drive};
use crate::scenarios::{Api, Outcome, People, config, get_call};
use crate::seed::{self, Seeded};

/// The inbox call of `countersign ls --inbox`: the approver's pending requests, oldest first.
const INBOX: &str = "/api/v1/requests?role=approver&limit=50";

/// The countersign binary built next to this one (`cargo build --release -p countersign`).
fn countersign_binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name("countersign");
    if !bin.exists() {
        bail!(
            "{} is missing; build it with cargo build --release -p countersign",
            bin.display()
        );
    }
    Ok(bin)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `VmHWM` and `VmRSS` of process `pid`, in bytes.
fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kb: u64 = line
            .trim_start_matches(name)
            .trim_start_matches(':')
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kb * 1024)
    };
    Ok((field("VmHWM")?, field("VmRSS")?))
}

/// CPU time the process `pid` has used so far, all threads (`utime` + `stime` of
/// `/proc/<pid>/stat`, in the kernel's 100 Hz ticks).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc stat line")?.parse()?)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// Runs a load phase and returns it with the server's CPU time per call, in milliseconds.
async fn phase(pid: u32, call: Call, connections: usize, duration: Duration) -> (Stats, f64) {
    let before = cpu_time(pid).unwrap_or_default();
    let stats = drive(call, connections, duration).await;
    let used = cpu_time(pid).unwrap_or_default().saturating_sub(before);
    // The warm-up's calls (a tenth of the phase) used CPU too.
    let calls = stats.count as f64 * 1.1;
    let per_call = if calls > 0.0 {
        used.as_secs_f64() * 1000.0 / calls
    } else {
        0.0
    };
    (stats, per_call)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Stops the server with SIGTERM (a graceful stop), then SIGKILL if it lingers.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

pub async fn run(o: &Options, p: &People, people: &str) -> anyhow::Result<Vec<Outcome>> {
    let bin = countersign_binary()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("s4.db");
    let now = countersign_server::SystemClock.now();
    let seeded = seed::seed(&db, o.s4, people, now)
        .await
        .context("seeding the S4 database")?;
    eprintln!(
        "S4: seeded {} requests, {} events in {:.1} s",
        seeded.requests,
        seeded.events,
        seeded.elapsed.as_secs_f64()
    );
    let database = format!("sqlite://{}", db.display());

    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let config_path = dir.path().join("countersign.toml");
    std::fs::write(&config_path, config(people, &database, &listen))?;
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path)?;
    let mut server = tokio::process::Command::new(&bin)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = server.id().context("the server exited at once")?;
    let base = format!("http://{listen}");
    let api = Api::new(&base);
    let ready = Prototype::new(Method::GET, &format!("{base}/readyz"))?;
    let started = Instant::now();
    loop {
        if ready.send(&api.http).await.0 == 200 {
            break;
        }
        if let Some(status) = server.try_wait()? {
            bail!("the S4 server exited ({status}):\n{}", log_tail(&log_path));
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the S4 server did not become ready:\n{}",
                log_tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let startup = started.elapsed();

    // The measurements mean something only if the inbox has work in it and reads succeed.
    let (s, inbox) = api
        .call::<RequestPage>(Method::GET, INBOX, &p.bob, None::<&()>)
        .await;
    let inbox = inbox.context("S4: bob's inbox")?;
    let items = inbox.items.len();
    if s != 200 || items < 50 {
        bail!(
            "S4: bob's inbox answered {s} with {items} items, not a full page of 50; the seed is \
             not what the server sees"
        );
    }
    let page_kb = serde_json::to_vec(&inbox).map_or(0, |v| v.len()) as f64 / 1024.0;
    let probe = seeded.ids[seeded.ids.len() / 2];
    let (s, body) = api
        .call::<Request>(
            Method::GET,
            &format!("/api/v1/requests/{probe}"),
            &p.bob,
            None::<&()>,
        )
        .await;
    body.context("S4: reading a seeded request")?;
    if s != 200 {
        bail!("S4: reading a seeded request answered {s}");
    }

    let inbox = phase(
        pid,
        get_call(&api, INBOX, Some(&p.bob))?,
        o.s4_connections,
        o.duration,
    )
    .await;
    let get = phase(
        pid,
        random_get(&api, &p.bob, &seeded),
        o.s4_connections,
        o.duration,
    )
    .await;
    let (peak, rss) = memory(pid).context("reading the server's memory")?;
    stop(&mut server).await;

    let verify = verify(&bin, &database).await?;
    if o.keep {
        eprintln!("S4: kept {}", dir.keep().display());
    }
    Ok(outcomes(
        o, &seeded, startup, inbox, page_kb, get, verify, peak, rss,
    ))
}

/// `GET /api/v1/requests/{id}` for ids drawn at random among all seeded requests.
fn random_get(api: &Api, token: &str, seeded: &Seeded) -> Call {
    let api = api.clone();
    let token = token.to_owned();
    let ids: Arc<[String]> = seeded.ids.iter().map(ToString::to_string).collect();
    Arc::new(move |n| {
        let id = &ids[(seed::mix(n) % ids.len() as u64) as usize];
        let request = api.request(Method::GET, &format!("/api/v1/requests/{id}"), &token);
        let http = api.http.clone();
        async move {
            match request {
                Ok(r) => r.send(&http).await.0,
                Err(_) => 0,
            }
        }
        .boxed()
    })
}

/// Runs `countersign audit verify` on the file; the events verified and the time it took.
async fn verify(bin: &Path, database: &str) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let out = tokio::process::Command::new(bin)
        .args(["audit", "verify", "--database", database])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running countersign audit verify")?;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let verified: Option<u64> = text
        .split_whitespace()
        .skip_while(|w| *w != "intact:")
        .nth(1)
        .and_then(|n| n.parse().ok());
    let mut stats = Stats::new();
    match verified {
        Some(n) if out.status.success() => {
            stats.count = n;
            stats.statuses.insert(200, n);
        }
        _ => {
            eprintln!(
                "S4: audit verify failed ({}): {}{}",
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            );
            stats.count = 1;
            stats.statuses.insert(500, 1);
        }
    }
    stats.elapsed = elapsed;
    Ok(stats)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per figure of the scenario report it writes"
)]
fn outcomes(
    o: &Options,
    seeded: &Seeded,
    startup: Duration,
    (inbox, inbox_cpu): (Stats, f64),
    page_kb: f64,
    (get, get_cpu): (Stats, f64),
    verify: Stats,
    peak: u64,
    rss: u64,
) -> Vec<Outcome> {
    let rows = seeded.requests + seeded.decisions + seeded.events + seeded.grants;
    let mut seed_stats = Stats::new();
    seed_stats.count = rows as u64;
    seed_stats.statuses.insert(200, rows as u64);
    seed_stats.elapsed = seeded.elapsed;
    let mut seed = Outcome::new("S4 seed", "write the data set (rows/s)", seed_stats);
    seed.headline = Some(format!(
        "{} requests, {} events in {:.1} s",
        seeded.requests,
        seeded.events,
        seeded.elapsed.as_secs_f64()
    ));
    seed.details = vec![
        ("requests", Value::from(seeded.requests)),
        ("pending", Value::from(seeded.pending)),
        ("decisions", Value::from(seeded.decisions)),
        ("audit_events", Value::from(seeded.events)),
        ("grants", Value::from(seeded.grants)),
        ("seed_s", Value::from(seeded.elapsed.as_secs_f64())),
        (
            "seed_generate_s",
            Value::from(seeded.generating.as_secs_f64()),
        ),
        ("seed_insert_s", Value::from(seeded.inserting.as_secs_f64())),
        ("seed_index_s", Value::from(seeded.indexing.as_secs_f64())),
        ("database_mb", Value::from(mb(seeded.file_bytes))),
        ("server_ready_s", Value::from(startup.as_secs_f64())),
        ("connections", Value::from(o.s4_connections)),
    ];

    let inbox_met = inbox.pct_ms(0.99) <= 5.0;
    let mut inbox_row = Outcome::new(
        "S4 inbox",
        "GET /api/v1/requests?role=approver&limit=50 (bob's inbox)",
        inbox,
    );
    inbox_row.target = "p99 <= 5 ms";
    inbox_row.met = Some(inbox_met);
    inbox_row.details = vec![
        ("server_cpu_ms_per_call", Value::from(inbox_cpu)),
        ("page_kb", Value::from(page_kb)),
    ];

    let get_met = get.pct_ms(0.99) <= 2.0;
    let mut get_row = Outcome::new("S4 get", "GET /api/v1/requests/{id}, random ids", get);
    get_row.target = "p99 <= 2 ms";
    get_row.met = Some(get_met);
    get_row.details = vec![("server_cpu_ms_per_call", Value::from(get_cpu))];

    let verify_met = verify.throughput() >= 200_000.0;
    let headline = format!("{:.0} events/s", verify.throughput());
    let mut verify_row = Outcome::new("S4 verify", "countersign audit verify (events/s)", verify);
    verify_row.target = ">= 200000 events/s";
    verify_row.met = Some(verify_met);
    verify_row.headline = Some(headline);

    let mut mem_stats = Stats::new();
    mem_stats.count = 1;
    mem_stats.statuses.insert(200, 1);
    let mut mem_row = Outcome::new("S4 memory", "server VmHWM after the load", mem_stats);
    mem_row.target = "<= 150 MB";
    mem_row.met = Some(peak <= 150 * 1024 * 1024);
    mem_row.headline = Some(format!("{:.1} MB (VmRSS {:.1} MB)", mb(peak), mb(rss)));
    mem_row.details = vec![
        ("vm_hwm_mb", Value::from(mb(peak))),
        ("vm_rss_mb", Value::from(mb(rss))),
    ];
    vec![seed, inbox_row, get_row, verify_row, mem_row]
}
