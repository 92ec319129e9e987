//! `latest.json` and `latest.md`, with the machine they were measured on.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::Options;
use crate::load::Stats;
use crate::scenarios::Outcome;

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, usize::from);
    json!({"nproc": nproc, "cpu": cpu, "kernel": kernel})
}

fn stats_json(s: &Stats) -> Value {
    json!({
        "count": s.count,
        "throughput_per_s": s.throughput(),
        "elapsed_s": s.elapsed.as_secs_f64(),
        "p50_ms": s.pct_ms(0.5),
        "p99_ms": s.pct_ms(0.99),
        "max_ms": s.hist.max() as f64 / 1000.0,
        "statuses": s.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

/// Writes the results; returns what failed (a scenario that did not run, or an unexpected
/// status), never anything about speed.
pub fn write(dir: &Path, o: &Options, results: &[Outcome]) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    let mut check = |id: &str, s: &Stats, expected: &[u16]| {
        if s.count == 0 {
            failures.push(format!("{id}: did not run"));
        }
        for (status, n) in &s.statuses {
            if !expected.contains(status) {
                failures.push(format!("{id}: {n} x unexpected status {status}"));
            }
        }
    };
    for r in results {
        check(r.id, &r.measured, &r.expected);
        if let Some((_, b)) = &r.baseline {
            check(&format!("{} baseline", r.id), b, &[200]);
        }
    }
    let required: &[&str] = &[
        "S1",
        "S2",
        "S3",
        "S3p",
        "S4 seed",
        "S4 inbox",
        "S4 get",
        "S4 verify",
        "S4 memory",
        "S5",
    ];
    for id in required {
        let scenario = id.split(' ').next().unwrap_or(id);
        if o.runs(scenario) && !results.iter().any(|r| r.id == *id) {
            failures.push(format!("{id}: missing"));
        }
    }

    let machine = machine();
    let scenarios: Vec<Value> = results
        .iter()
        .map(|r| {
            let ratio = r.baseline.as_ref().map(|(_, b)| ratio(&r.measured, b));
            json!({
                "id": r.id,
                "what": r.what,
                "measured": stats_json(&r.measured),
                "baseline": r.baseline.as_ref().map(|(name, b)| json!({"what": name, "stats": stats_json(b)})),
                "ratio": ratio,
                "target": r.target,
                "met": r.met,
                "steps": r.steps.iter().map(|(k, v)| (k.to_string(), stats_json(v))).collect::<serde_json::Map<_, _>>(),
                "headline": r.headline,
                "details": r.details.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    let doc = json!({
        "quick": o.quick,
        "duration_s": o.duration.as_secs_f64(),
        "connections": o.connections,
        "machine": machine,
        "scenarios": scenarios,
        "failures": failures,
    });
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("latest.json"),
        serde_json::to_string_pretty(&doc)? + "\n",
    )?;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# countersign benchmarks{}\n\nMachine: {} CPUs, {}, kernel {}. {} connections, {:.1} s per phase.\n",
        if o.quick {
            " (quick mode: not meaningful)"
        } else {
            ""
        },
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or_default(),
        machine["kernel"].as_str().unwrap_or_default(),
        o.connections,
        o.duration.as_secs_f64(),
    );
    md.push_str(
        "| scenario | throughput /s | baseline /s | ratio | target | met? | p50 ms | p99 ms |\n",
    );
    md.push_str("|---|---:|---:|---:|---|---|---:|---:|\n");
    // Latency columns of a result measured as a whole (S4's seed, verify, memory) stay empty.
    let ms = |s: &Stats, q: f64| {
        if s.hist.is_empty() {
            "–".to_owned()
        } else {
            format!("{:.2}", s.pct_ms(q))
        }
    };
    for r in results {
        let (b, ratio) = match &r.baseline {
            Some((_, b)) => (
                format!("{:.0}", b.throughput()),
                format!("{:.2}", ratio(&r.measured, b)),
            ),
            None => ("–".into(), "–".into()),
        };
        let _ = writeln!(
            md,
            "| {} {} | {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            r.what,
            r.headline
                .clone()
                .unwrap_or_else(|| format!("{:.0}", r.measured.throughput())),
            b,
            ratio,
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            },
            ms(&r.measured, 0.5),
            ms(&r.measured, 0.99),
        );
    }
    for r in results.iter().filter(|r| !r.steps.is_empty()) {
        let _ = writeln!(
            md,
            "\n{} per step:\n\n| step | p50 ms | p99 ms |\n|---|---:|---:|",
            r.id
        );
        for (name, s) in &r.steps {
            let _ = writeln!(
                md,
                "| {name} | {:.2} | {:.2} |",
                s.pct_ms(0.5),
                s.pct_ms(0.99)
            );
        }
    }
    for r in results.iter().filter(|r| !r.details.is_empty()) {
        let _ = writeln!(md, "\n{} details:\n", r.id);
        for (name, v) in &r.details {
            let v = match v {
                Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or_default()),
                Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
                other => other.to_string(),
            };
            let _ = writeln!(md, "- {name}: {v}");
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(md, "\nFailures:\n");
        for f in &failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    std::fs::write(dir.join("latest.md"), md)?;
    Ok(failures)
}

fn ratio(measured: &Stats, baseline: &Stats) -> f64 {
    let b = baseline.throughput();
    if b > 0.0 {
        measured.throughput() / b
    } else {
        0.0
    }
}
