//! How often and how patiently a delivery is retried.

use std::time::Duration;

/// The retry schedule of webhook deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a delivery is marked `failed` (default 8). Zero behaves as one.
    pub max_attempts: u32,
    /// The longest one attempt may take, connecting included (default 10 s).
    pub timeout: Duration,
    /// The wait after the first failed attempt; it doubles after each further one
    /// (default 5 s).
    pub backoff_base: Duration,
    /// The longest wait between two attempts (default 1 h).
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

/// How much jitter moves a wait either way: ±20 %.
const JITTER_SPAN: f64 = 0.2;

/// The wait after `attempt` failed attempts (1 for the first): `backoff_base × 2^(attempt-1)`,
/// capped at `backoff_max`, then scaled by a factor between 0.8 and 1.2 chosen by `jitter`
/// (0 gives 0.8, 0.5 gives 1, values towards 1 approach 1.2) so that receivers coming back
/// from an outage are not hit by every retry at once. The result never exceeds `backoff_max`.
///
/// Deterministic given `jitter`; a `jitter` outside `[0, 1)` (or NaN) is clamped, and
/// `attempt` 0 counts as 1. Never panics, whatever the policy.
pub fn backoff(attempt: u32, policy: &RetryPolicy, jitter: f64) -> Duration {
    let exponent = attempt.max(1) - 1;
    let cap = policy.backoff_max;
    // An overflowing doubling is by definition past the cap.
    let raw = 2u32
        .checked_pow(exponent)
        .and_then(|factor| policy.backoff_base.checked_mul(factor))
        .map_or(cap, |wait| wait.min(cap));
    let jitter = if jitter.is_nan() {
        0.5
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let factor = 1.0 - JITTER_SPAN + 2.0 * JITTER_SPAN * jitter;
    Duration::try_from_secs_f64(raw.as_secs_f64() * factor).map_or(cap, |wait| wait.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    #[test]
    fn doubles_from_the_base_without_jitter() {
        let p = policy();
        assert_eq!(backoff(1, &p, 0.5), Duration::from_secs(5));
        assert_eq!(backoff(2, &p, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(3, &p, 0.5), Duration::from_secs(20));
        assert_eq!(backoff(7, &p, 0.5), Duration::from_secs(320));
        assert_eq!(backoff(0, &p, 0.5), backoff(1, &p, 0.5));
    }

    #[test]
    fn jitter_spans_twenty_percent_either_way() {
        let p = policy();
        assert_eq!(backoff(1, &p, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(2, &p, 0.0), Duration::from_secs(8));
        let high = backoff(1, &p, 0.999_999);
        assert!(high > Duration::from_millis(5990) && high < Duration::from_secs(6));
        assert_eq!(backoff(3, &p, 0.25), Duration::from_secs(18));
        // The same jitter gives the same wait.
        assert_eq!(backoff(4, &p, 0.37), backoff(4, &p, 0.37));
    }

    #[test]
    fn is_capped_at_the_maximum() {
        let p = policy();
        assert_eq!(backoff(11, &p, 0.5), Duration::from_secs(3600));
        assert_eq!(backoff(12, &p, 0.999), Duration::from_secs(3600));
        assert_eq!(backoff(12, &p, 0.0), Duration::from_secs(2880));
        assert_eq!(backoff(u32::MAX, &p, 0.5), Duration::from_secs(3600));
    }

    #[test]
    fn never_panics_on_odd_inputs() {
        let huge = RetryPolicy {
            max_attempts: 0,
            timeout: Duration::ZERO,
            backoff_base: Duration::MAX,
            backoff_max: Duration::MAX,
        };
        for attempt in [0, 1, 2, 31, 32, 33, 64, u32::MAX] {
            for jitter in [
                f64::NAN,
                f64::NEG_INFINITY,
                -1.0,
                0.0,
                0.5,
                1.0,
                7.0,
                f64::INFINITY,
            ] {
                assert!(backoff(attempt, &huge, jitter) <= Duration::MAX);
                let zero = RetryPolicy {
                    backoff_base: Duration::ZERO,
                    backoff_max: Duration::ZERO,
                    ..huge
                };
                assert_eq!(backoff(attempt, &zero, jitter), Duration::ZERO);
                let inverted = RetryPolicy {
                    backoff_base: Duration::from_secs(10),
                    backoff_max: Duration::from_secs(1),
                    ..huge
                };
                assert!(backoff(attempt, &inverted, jitter) <= Duration::from_secs(1));
            }
        }
        assert_eq!(backoff(1, &policy(), f64::NAN), Duration::from_secs(5));
    }
}
