//! Time as the domain sees it: UTC instants with millisecond precision, so that a value
//! survives a round trip through every store and hashes the same afterwards.

use chrono::{DateTime, SubsecRound, Utc};

/// An instant, always UTC, always truncated to whole milliseconds.
pub type Timestamp = DateTime<Utc>;

/// Truncates an instant to the precision the domain keeps.
pub fn truncate(t: Timestamp) -> Timestamp {
    t.trunc_subsecs(3)
}

/// RFC 3339 with milliseconds and a `Z`, the one text form used in the API and the audit hash.
pub fn rfc3339(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Builds an instant from Unix milliseconds, as stored.
pub fn from_millis(ms: i64) -> Option<Timestamp> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

/// Parses a human duration such as `90s`, `15m`, `2h`, `1d` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a duration must not be empty (write e.g. 15m or 2h)".into());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "'{text}' is not a duration (use s, m, h or d, e.g. 15m)"
                ));
            }
        };
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("'{text}' is not a duration (a number must precede '{ch}')"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("'{text}' is too long a duration"))?;
    }
    if !digits.is_empty() {
        return Err(format!("'{text}' has no unit (write e.g. {digits}m)"));
    }
    if total <= 0 {
        return Err(format!("'{text}' must be longer than zero"));
    }
    if total > 366 * 86_400 {
        return Err(format!("'{text}' is longer than a year"));
    }
    Ok(chrono::Duration::seconds(total))
}

/// Writes a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: chrono::Duration) -> String {
    let mut s = d.num_seconds();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("15m").unwrap().num_seconds(), 900);
        assert_eq!(parse_duration("1h30m").unwrap().num_seconds(), 5400);
        assert_eq!(format_duration(chrono::Duration::seconds(5400)), "1h30m");
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }
}
