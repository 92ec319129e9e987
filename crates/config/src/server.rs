//! The `[server]` section.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;
use countersign_core::time::format_duration;

use crate::check::{Ctx, Fields, check_url};
use crate::settings::{
    AUDIT_READER_VARIABLES, GRANT_SIGNING_ALGORITHMS, LogFormat, ServerSettings,
};

const KEYS: &[&str] = &[
    "public_url",
    "listen",
    "database",
    "audit_readers",
    "max_wait",
    "log_format",
    "approval_max_auth_age",
    "gates_dir",
    "key_encryption_key",
    "key_encryption_key_file",
    "signing_alg",
    "key_rotation_delay",
    "session_idle_timeout",
    "session_max_lifetime",
];

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATABASE: &str = "sqlite://countersign.db";

/// Resolves `[server]`; `gates_dir` has already been worked out by the loader (it decides
/// which files are read).
pub(crate) fn resolve(
    ctx: &mut Ctx,
    root: &Fields<'_>,
    gates_dir: Option<PathBuf>,
) -> Option<ServerSettings> {
    let Some(node) = root.get("server") else {
        root.missing(
            ctx,
            "server",
            "missing: add a [server] section with public_url = \"https://approvals.example.com\"",
        );
        return None;
    };
    let f = Fields::open(ctx, node, "server".into(), KEYS)?;

    let public_url = match f.get("public_url") {
        None => {
            f.missing(
                ctx,
                "public_url",
                "missing: the address people open, e.g. https://approvals.example.com",
            );
            None
        }
        Some(n) => {
            let key = f.key("public_url");
            ctx.string(n, &key)
                .and_then(|text| match check_url(text, false, true) {
                    Ok(u) if u.query().is_some() => {
                        ctx.report(&n.origin, &key, format!("'{text}' must not have a ?query"));
                        None
                    }
                    Ok(u) => Some(u),
                    Err(e) => {
                        ctx.report(&n.origin, &key, e);
                        None
                    }
                })
        }
    };

    let listen = match f.get("listen") {
        None => DEFAULT_LISTEN.parse::<SocketAddr>().ok(),
        Some(n) => {
            let key = f.key("listen");
            ctx.string(n, &key).and_then(|text| match text.trim().parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    ctx.report(
                        &n.origin,
                        &key,
                        format!(
                            "'{text}' is not an address to listen on (write e.g. 127.0.0.1:8080 or 0.0.0.0:8080)"
                        ),
                    );
                    None
                }
            })
        }
    };

    let database = match f.get("database") {
        None => Some(DEFAULT_DATABASE.to_string()),
        Some(n) => {
            let key = f.key("database");
            ctx.string(n, &key).and_then(|text| {
                let known = ["sqlite:", "postgres://", "postgresql://"];
                if known.iter().any(|p| text.starts_with(p)) {
                    Some(text.to_string())
                } else {
                    // Not quoted back: a database URL may carry a password.
                    ctx.report(
                        &n.origin,
                        &key,
                        "the database URL must start with sqlite:, postgres:// or postgresql://",
                    );
                    None
                }
            })
        }
    };

    let audit_readers = f.condition(ctx, "audit_readers", AUDIT_READER_VARIABLES);
    let max_wait = f.duration(ctx, "max_wait").unwrap_or(Duration::seconds(60));
    let approval_max_auth_age = f
        .duration(ctx, "approval_max_auth_age")
        .unwrap_or(Duration::minutes(10));
    let log_format = match f.choice(ctx, "log_format", &["text", "json"]) {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    // The path itself was resolved by the loader; only its type is checked here.
    f.text(ctx, "gates_dir");

    let key_encryption_key = f
        .required_secret(
            ctx,
            "key_encryption_key",
            "key_encryption_key_file",
            "missing: set key_encryption_key or key_encryption_key_file (or the environment \
             variable COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY or \
             COUNTERSIGN_SERVER__KEY_ENCRYPTION_KEY_FILE): the key that encrypts the \
             grant-signing keys at rest, 32 random bytes as base64 or hex, e.g. from \
             `openssl rand -base64 32`",
        )
        .and_then(
            |(secret, node, key)| match check_key_form(secret.expose()) {
                Ok(()) => Some(secret),
                Err(e) => {
                    ctx.report(&node.origin, &key, e);
                    None
                }
            },
        );
    let signing_alg = match f.get("signing_alg") {
        None => Some(GRANT_SIGNING_ALGORITHMS[0].to_string()),
        Some(_) => f
            .choice(ctx, "signing_alg", GRANT_SIGNING_ALGORITHMS)
            .map(str::to_string),
    };
    let key_rotation_delay = f
        .duration(ctx, "key_rotation_delay")
        .unwrap_or(Duration::hours(1));
    let (session_idle_timeout, session_max_lifetime) = session_timeouts(ctx, &f);

    Some(ServerSettings {
        public_url: public_url?,
        listen: listen?,
        database: database?,
        audit_readers,
        max_wait,
        log_format,
        approval_max_auth_age,
        gates_dir,
        key_encryption_key: key_encryption_key?,
        signing_alg: signing_alg?,
        key_rotation_delay,
        session_idle_timeout,
        session_max_lifetime,
    })
}

/// The browser session limits: idle (default 30m) and absolute (default 12h). An idle timeout
/// longer than the absolute one could never apply, which is a mistake worth naming; it is
/// reported at the idle timeout when that was written, else at the absolute one.
fn session_timeouts(ctx: &mut Ctx, f: &Fields<'_>) -> (Duration, Duration) {
    let idle = f
        .duration(ctx, "session_idle_timeout")
        .unwrap_or(Duration::minutes(30));
    let max = f
        .duration(ctx, "session_max_lifetime")
        .unwrap_or(Duration::hours(12));
    if idle > max {
        let key = if f.has("session_idle_timeout") {
            "session_idle_timeout"
        } else {
            "session_max_lifetime"
        };
        if let Some(node) = f.get(key) {
            ctx.report(
                &node.origin,
                &f.key(key),
                format!(
                    "session_idle_timeout ({}) is longer than session_max_lifetime ({}); a session ends at whichever comes first, so the idle timeout could never apply",
                    format_duration(idle),
                    format_duration(max),
                ),
            );
        }
    }
    (idle, max)
}

/// Checks that a key-encryption key is 32 bytes written as base64 (standard or URL-safe
/// alphabet, padding optional) or as 64 hex characters. Messages never quote the key.
fn check_key_form(text: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected 32 bytes as base64 (standard or URL-safe, padding optional) \
                            or as 64 hex characters, e.g. from `openssl rand -base64 32`";
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    match base64_len(text) {
        Some(32) => Ok(()),
        Some(n) => Err(format!(
            "not a valid key: it decodes to {n} bytes as base64; {EXPECTED}"
        )),
        None if text.bytes().all(|b| b.is_ascii_hexdigit()) => Err(format!(
            "not a valid key: it has {} hex characters; {EXPECTED}",
            text.len()
        )),
        None => Err(format!("not a valid key: {EXPECTED}")),
    }
}

/// How many bytes `text` decodes to as canonical base64 (one alphabet, correct padding if
/// any, no stray bits in the last character), or `None` when it is not base64.
fn base64_len(text: &str) -> Option<usize> {
    let body = text.trim_end_matches('=');
    let padding = text.len() - body.len();
    if body.is_empty() || padding > 2 || (padding > 0 && !text.len().is_multiple_of(4)) {
        return None;
    }
    let standard = body.bytes().any(|b| b == b'+' || b == b'/');
    let url_safe = body.bytes().any(|b| b == b'-' || b == b'_');
    if standard && url_safe {
        return None;
    }
    let mut last = 0;
    for b in body.bytes() {
        last = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
    }
    match body.len() % 4 {
        1 => None,
        // The last character carries 4 (or 2) bits that belong to no byte: they must be 0.
        2 if last & 0x0f != 0 => None,
        3 if last & 0x03 != 0 => None,
        _ => Some(body.len() * 3 / 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_forms() {
        // 32 bytes: 0x00, 0x01, …, 0x1f, and 32 bytes that use the alphabets' last symbols.
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let standard = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let symbols = "+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/s=";
        let url_safe = "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s";
        for ok in [
            hex,
            &hex.to_ascii_uppercase(),
            standard,
            standard.trim_end_matches('='),
            symbols,
            url_safe,
            &format!("{url_safe}="),
        ] {
            assert_eq!(check_key_form(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            &hex[..62],
            &format!("{hex}00"),
            &hex.replace('a', "g"),
            // 16 and 48 bytes.
            "AAECAwQFBgcICQoLDA0ODw==",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v",
            // Wrong padding, stray bits, mixed alphabets, whitespace, other characters.
            &format!("{standard}="),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
            "+_v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/s=",
            "AAECAwQFBgcICQoLDA0ODxAREhMUF RYXGBkaGxwdHh8=",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8.",
        ] {
            let e = check_key_form(bad).expect_err(bad);
            assert!(e.starts_with("not a valid key"), "{e}");
            assert!(bad.len() < 4 || !e.contains(bad), "{e}");
        }
        assert!(
            check_key_form("AAECAwQFBgcICQoLDA0ODw==")
                .unwrap_err()
                .contains("decodes to 16 bytes")
        );
        assert!(
            check_key_form(&hex[..62])
                .unwrap_err()
                .contains("62 hex characters")
        );
    }
}
