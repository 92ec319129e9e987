//! The bounded load generator: N workers, a fixed duration, an HDR histogram of latencies and
//! counts per status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hdrhistogram::Histogram;

/// One call's result: the HTTP status (0 for a transport error).
pub type Call = Arc<dyn Fn(u64) -> BoxFuture<'static, u16> + Send + Sync>;

/// What a load phase measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Completed calls.
    pub count: u64,
    /// Calls per status (0: transport error).
    pub statuses: BTreeMap<u16, u64>,
    /// Latencies in microseconds.
    pub hist: Histogram<u64>,
    /// Wall time of the phase.
    pub elapsed: Duration,
}

impl Stats {
    /// An empty record.
    pub fn new() -> Self {
        Self {
            count: 0,
            statuses: BTreeMap::new(),
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            elapsed: Duration::ZERO,
        }
    }

    /// Records one call.
    pub fn record(&mut self, status: u16, latency: Duration) {
        self.count += 1;
        *self.statuses.entry(status).or_default() += 1;
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.hist.saturating_record(us);
    }

    /// Folds another record into this one.
    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        let _ = self.hist.add(&other.hist);
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// Calls per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        }
    }

    /// A percentile in milliseconds.
    pub fn pct_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `call` from `connections` workers for `duration`, after a warm-up of a tenth of it.
pub async fn drive(call: Call, connections: usize, duration: Duration) -> Stats {
    // Warm-up: connections open, caches filled.
    let _ = phase(call.clone(), connections, duration / 10).await;
    phase(call, connections, duration).await
}

async fn phase(call: Call, connections: usize, duration: Duration) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for worker in 0..connections {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let status = call((worker as u64) << 32 | i).await;
                stats.record(status, t.elapsed());
                i += 1;
            }
            stats
        }));
    }
    let mut total = Stats::new();
    for t in tasks {
        if let Ok(s) = t.await {
            total.merge(&s);
        }
    }
    total.elapsed = start.elapsed();
    total
}
