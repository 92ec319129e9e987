//! `countersign-bench [--quick] [--out DIR]`: starts countersign in-process (its own tokio
//! runtime, SQLite in a temp dir, panva `oidc-provider` as the people's issuer), drives it with
//! a bounded load generator on loopback and writes `latest.json` and `latest.md` to DIR.
//!
//! Every scenario is a ratio against a baseline measured in the same run. The exit code is
//! non-zero only when a scenario did not run or saw an unexpected status, never on speed.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod load;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

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
}

fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut out = PathBuf::from("bench/results");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = PathBuf::from(args.next().context("--out needs a directory")?),
            other => anyhow::bail!(
                "unknown argument {other}; usage: countersign-bench [--quick] [--out DIR]"
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
