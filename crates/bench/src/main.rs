//! `countersign-bench [--quick] [--only ID,…] [--keep] [--out DIR]`: starts countersign
//! in-process (its own tokio runtime, SQLite in a temp dir, or a durable PostgreSQL cluster for
//! S3p; panva `oidc-provider` as the people's issuer), drives it with a bounded load generator
//! on loopback and writes `latest.json` and `latest.md` to DIR. S4 seeds a large SQLite file and
//! runs the release binary `countersign` (built next to this one) on it as a separate process.
//!
//! Every scenario is a ratio against a baseline measured in the same run, or a reported figure
//! with its target. The exit code is non-zero only when a scenario did not run or saw an
//! unexpected status, never on speed.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool: its report goes to standard output, progress to standard error"
)]

mod http;
mod load;
mod report;
mod s4;
mod s6;
mod scenarios;
mod seed;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

/// The allocator the `countersign` binary uses, so the in-process server is measured as it
/// runs in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Options from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds per measured phase.
    pub duration: Duration,
    /// Concurrent connections of the load generator.
    pub connections: usize,
    /// Iterations of the long-poll scenario.
    pub wake_iterations: usize,
    /// Whether this is the quick (CI) mode.
    pub quick: bool,
    /// The S4 data set.
    pub s4: seed::Size,
    /// Concurrent connections of S4's latency phases.
    pub s4_connections: usize,
    /// The scenarios to run (`S1`, `S2`, `S3`, `S3p`, `S4`, `S5`); all when empty.
    pub only: Vec<String>,
    /// Keep S4's database, configuration and server log instead of deleting them.
    pub keep: bool,
}

/// Every load scenario, in the order of `--only`.
pub const SCENARIOS: [&str; 7] = ["S1", "S2", "S3", "S3p", "S4", "S5", "S6"];

impl Options {
    /// Whether scenario `id` is to run.
    pub fn runs(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == id)
    }
}

fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut out = PathBuf::from("bench/results");
    let mut only = Vec::new();
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--keep" => keep = true,
            "--out" => out = PathBuf::from(args.next().context("--out needs a directory")?),
            "--only" => {
                let list = args
                    .next()
                    .context("--only needs scenario ids, e.g. S3p,S4")?;
                for id in list.split(',') {
                    if !SCENARIOS.contains(&id) {
                        anyhow::bail!("unknown scenario {id}; known: {}", SCENARIOS.join(", "));
                    }
                    only.push(id.to_owned());
                }
            }
            other => anyhow::bail!(
                "unknown argument {other}; usage: countersign-bench [--quick] [--only ID,…] [--keep] [--out DIR]"
            ),
        }
    }
    let options = Options {
        duration: if quick {
            Duration::from_millis(1500)
        } else {
            Duration::from_secs(10)
        },
        connections: 16,
        wake_iterations: if quick { 20 } else { 200 },
        quick,
        s4: if quick {
            seed::Size {
                requests: 20_000,
                events: 80_000,
                pending: 200,
            }
        } else {
            seed::Size {
                requests: 1_000_000,
                events: 4_000_000,
                pending: 3_000,
            }
        },
        // A few people at once: S4's targets are latencies of a server that is not saturated.
        s4_connections: 2,
        only,
        keep,
    };
    // The load generator's runtime; the server gets its own (see `scenarios::Server`).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(scenarios::run_all(&options))?;
    let failures = report::write(&out, &options, &results)?;
    if failures.is_empty() {
        println!("all {} scenarios ran with expected statuses", results.len());
        Ok(())
    } else {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1)
    }
}
