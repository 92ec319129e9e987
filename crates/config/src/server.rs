//! The `[server]` section.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;

use crate::check::{Ctx, Fields, check_url};
use crate::settings::{AUDIT_READER_VARIABLES, LogFormat, ServerSettings};

const KEYS: &[&str] = &[
    "public_url",
    "listen",
    "database",
    "audit_readers",
    "max_wait",
    "log_format",
    "approval_max_auth_age",
    "gates_dir",
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

    Some(ServerSettings {
        public_url: public_url?,
        listen: listen?,
        database: database?,
        audit_readers,
        max_wait,
        log_format,
        approval_max_auth_age,
        gates_dir,
    })
}
