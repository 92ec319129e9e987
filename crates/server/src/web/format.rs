//! Small text helpers for pages: ages, time left, absolute times, who someone is, parameter
//! values. Everything returned here is plain text; templates escape it.

use chrono::Duration;
use countersign_core::{Principal, Timestamp};
use serde_json::Value;

/// A span of time in words, coarse enough to read at a glance: `40 s`, `5 min`,
/// `1 h 55 min`, `3 d 4 h`.
pub(super) fn span(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => {
            let (h, m) = (s / 3600, (s % 3600) / 60);
            if m == 0 {
                format!("{h} h")
            } else {
                format!("{h} h {m} min")
            }
        }
        _ => {
            let (d, h) = (s / 86_400, (s % 86_400) / 3600);
            if h == 0 {
                format!("{d} d")
            } else {
                format!("{d} d {h} h")
            }
        }
    }
}

/// How long ago `t` was: `just now`, `5 min ago`.
pub(super) fn ago(now: Timestamp, t: Timestamp) -> String {
    let d = now - t;
    if d < Duration::seconds(60) {
        "just now".to_owned()
    } else {
        format!("{} ago", span(d))
    }
}

/// How long until `t`: `5 min left`, or `overdue` once past.
pub(super) fn left(now: Timestamp, t: Timestamp) -> String {
    let d = t - now;
    if d <= Duration::zero() {
        "overdue".to_owned()
    } else {
        format!("{} left", span(d))
    }
}

/// How pressing a deadline is, as a CSS class: under 15 minutes is `soon`.
pub(super) fn urgency(now: Timestamp, t: Timestamp) -> &'static str {
    if t - now < Duration::minutes(15) {
        "soon"
    } else {
        ""
    }
}

/// An absolute time for a tooltip or a fact list: `2026-05-01 14:03:07 UTC`.
pub(super) fn absolute(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The name to show for a person: their name, else their e-mail, else their subject.
pub(super) fn who(p: &Principal) -> String {
    p.name()
        .or_else(|| p.email())
        .unwrap_or(&p.identity().subject)
        .to_owned()
}

/// The precise identity: `alice@example.com · okta: 00u1…`.
pub(super) fn who_detail(p: &Principal) -> String {
    match p.email() {
        Some(email) => format!(
            "{email} · {}: {}",
            p.identity().issuer,
            p.identity().subject
        ),
        None => format!("{}: {}", p.identity().issuer, p.identity().subject),
    }
}

/// `path` with a query of `pairs` (form-encoded), or `path` alone when there are none.
pub(super) fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    format!("{path}?{}", query.finish())
}

/// A parameter value as text: strings as they are, everything else as JSON.
pub(super) fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_well() {
        assert_eq!(span(Duration::seconds(5)), "5 s");
        assert_eq!(span(Duration::seconds(300)), "5 min");
        assert_eq!(span(Duration::seconds(3600)), "1 h");
        assert_eq!(span(Duration::seconds(6900)), "1 h 55 min");
        assert_eq!(span(Duration::days(3) + Duration::hours(4)), "3 d 4 h");
        assert_eq!(span(Duration::seconds(-5)), "0 s");
    }

    #[test]
    fn queries() {
        assert_eq!(with_query("/login", &[]), "/login");
        assert_eq!(
            with_query("/login", &[("issuer", "idp"), ("return_to", "/a?b=c&d")]),
            "/login?issuer=idp&return_to=%2Fa%3Fb%3Dc%26d"
        );
    }

    #[test]
    fn ages_and_deadlines() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert_eq!(ago(now, now - Duration::seconds(10)), "just now");
        assert_eq!(ago(now, now - Duration::minutes(5)), "5 min ago");
        assert_eq!(left(now, now + Duration::minutes(90)), "1 h 30 min left");
        assert_eq!(left(now, now - Duration::minutes(1)), "overdue");
        assert_eq!(urgency(now, now + Duration::minutes(5)), "soon");
        assert_eq!(absolute(now), "2027-01-15 08:00:00 UTC");
    }
}
