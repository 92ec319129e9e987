//! Configuration: reads `countersign.toml`, the gate files of its gates directory
//! (`gates.d/*.toml`) and `COUNTERSIGN_…__…` environment overrides, validates all of it and
//! resolves it once into [`Settings`]: durations parsed, conditions compiled, secrets read.
//!
//! Layers, lowest first: built-in defaults, the main file, the gates directory (gates only),
//! environment overrides. Validation runs after every layer is applied, so an override is
//! checked exactly like a value from a file. Every problem is collected — unknown keys
//! included — and reported with its file, line and key ([`ConfigErrors`]); only a TOML syntax
//! error stops the run early, since nothing after it can be trusted.
//!
//! Paths in the configuration (`gates_dir`, `key_encryption_key_file`, `client_secret_file`,
//! `secret_file`) that are relative resolve against the directory of the file that names them
//! (`gates_dir`: the main file's directory, even when set from the environment). Paths in
//! environment variables (`…_FILE`) resolve against the working directory.

mod check;
mod env;
mod gate;
mod issuer;
mod notifications;
mod problem;
mod resource_server;
mod server;
mod settings;
mod tree;
mod webhooks;

use std::fs;
use std::path::{Path, PathBuf};

use countersign_core::GateSet;

pub use env::Env;
pub use notifications::NotificationSettings;
pub use problem::{ConfigErrors, ENVIRONMENT, Problem};
pub use settings::{
    AUDIT_READER_VARIABLES, GRANT_SIGNING_ALGORITHMS, IssuerConfig, LogFormat,
    ResourceServerConfig, SUPPORTED_ALGORITHMS, ServerSettings, Settings, WebhookSettings,
};

use check::{Ctx, Fields, resolve_path};
use tree::{Node, Origin, Value, parse_document};

/// The demo gates as TOML `[[gates]]` sections: `deploy-prod` (one SRE and one security
/// engineer from another team), `db-session` (one SRE, a grant of up to 4h) and
/// `deploy-staging` (approved automatically for developers and CI). `countersign dev` serves
/// them; the test suites and the benchmark append them to their own `[server]` and
/// `[[issuers]]`, so every one of them runs against the gates the sandbox shows.
pub const DEMO_GATES: &str = include_str!("demo-gates.toml");

/// The keys of the main file's top level.
const ROOT_KEYS: &[&str] = &[
    "server",
    "webhooks",
    "notifications",
    "issuers",
    "resource_servers",
    "gates",
];
/// The gates directory looked for next to the main file when `gates_dir` is not set.
const DEFAULT_GATES_DIR: &str = "gates.d";

/// Loads the configuration file at `path`, its gates directory, and the overrides in `env`.
pub fn load(path: &Path, env: &Env) -> Result<Settings, ConfigErrors> {
    let mut ctx = Ctx::default();
    let main = ctx.add_file(path.to_path_buf());
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            ctx.report_file(
                main,
                None,
                format!("cannot read the configuration file: {e}"),
            );
            return Err(ctx.into_errors());
        }
    };
    run(ctx, &text, env, true)
}

/// Loads a configuration held in memory (tests, the `dev` sandbox). `file_name` is what
/// problems name. No gates directory is read; a configured `gates_dir` is only resolved.
pub fn load_str(text: &str, file_name: &str, env: &Env) -> Result<Settings, ConfigErrors> {
    let mut ctx = Ctx::default();
    ctx.add_file(PathBuf::from(file_name));
    run(ctx, text, env, false)
}

fn run(mut ctx: Ctx, text: &str, env: &Env, from_disk: bool) -> Result<Settings, ConfigErrors> {
    const MAIN: usize = 0;
    let mut root = match parse_document(text, MAIN) {
        Ok(root) => root,
        Err(e) => {
            ctx.report_file(MAIN, e.line, e.message);
            return Err(ctx.into_errors());
        }
    };
    let overrides = env::collect(&mut ctx, env);
    env::apply(&mut ctx, &mut root, &overrides, false);

    let gates_dir = gates_dir(&mut ctx, &root, from_disk);
    let mut sources = Vec::new();
    if from_disk {
        sources.push(ctx.files[MAIN].clone());
        if let Some(dir) = &gates_dir
            && !read_gates_dir(&mut ctx, &mut root, dir, &mut sources)
        {
            // A syntax error: stop here, as for the main file.
            return Err(ctx.into_errors());
        }
    }
    env::apply(&mut ctx, &mut root, &overrides, true);

    let resolved = Fields::open(&mut ctx, &root, String::new(), ROOT_KEYS).map(|root| {
        let server = server::resolve(&mut ctx, &root, gates_dir);
        let webhooks = webhooks::resolve(&mut ctx, &root);
        let issuers = issuer::resolve_all(&mut ctx, &root);
        let resource_servers = resource_server::resolve_all(&mut ctx, &root);
        let notifications = notifications::resolve(&mut ctx, &root);
        if let Some(server) = &server
            && !server.listen.ip().is_loopback()
            && let Some(c) = notifications
                .channels
                .iter()
                .find(|c| matches!(c.kind, countersign_core::channel::ChannelKind::Preview))
        {
            ctx.report(
                &Origin::File { file: 0, line: 1 },
                "notifications.channels",
                format!(
                    "channel '{}' is a preview (the sandbox's outbox viewer): it is served only by a server that listens on a loopback address",
                    c.name
                ),
            );
        }
        let gates = gate::resolve_all(&mut ctx, &root, &notifications);
        (
            server,
            webhooks,
            issuers,
            resource_servers,
            gates,
            notifications,
        )
    });
    match resolved {
        Some((Some(server), webhooks, issuers, resource_servers, gates, notifications))
            if !ctx.has_problems() =>
        {
            Ok(Settings {
                server,
                issuers,
                gates: GateSet::new(gates),
                webhooks,
                notifications,
                resource_servers,
                sources,
            })
        }
        _ => Err(ctx.into_errors()),
    }
}

/// Works out the gates directory: `server.gates_dir` resolved against the main file's
/// directory, else `gates.d` there when it exists (only when loading from disk).
fn gates_dir(ctx: &mut Ctx, root: &Node, from_disk: bool) -> Option<PathBuf> {
    let base = ctx.base_dir(&Origin::File { file: 0, line: 1 });
    let configured = match &root.value {
        Value::Table(t) => t.get("server").and_then(|s| match &s.value {
            Value::Table(s) => s.get("gates_dir"),
            _ => None,
        }),
        _ => None,
    };
    let Some(node) = configured else {
        let dir = base.join(DEFAULT_GATES_DIR);
        return (from_disk && dir.is_dir()).then_some(dir);
    };
    // A value of the wrong type is reported when `[server]` is resolved.
    let text = match (&node.value, &node.env_text) {
        (Value::String(s), _) => s.as_str(),
        (_, Some(t)) => t.as_str(),
        _ => return None,
    };
    if text.trim().is_empty() {
        return None;
    }
    let dir = resolve_path(&base, text);
    if from_disk && !dir.is_dir() {
        ctx.report(
            &node.origin,
            "server.gates_dir",
            format!("'{}' is not a directory", dir.display()),
        );
        return None;
    }
    Some(dir)
}

/// Reads every `*.toml` of the gates directory in name order and appends their gates to the
/// main file's. Returns false when a file has a TOML syntax error.
fn read_gates_dir(ctx: &mut Ctx, root: &mut Node, dir: &Path, sources: &mut Vec<PathBuf>) -> bool {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            ctx.report(
                &Origin::File { file: 0, line: 1 },
                "server.gates_dir",
                format!("cannot read the directory '{}': {e}", dir.display()),
            );
            return true;
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        // Hidden files are editor leftovers, not gates.
        .filter(|n| n.ends_with(".toml") && !n.starts_with('.'))
        .filter(|n| dir.join(n).is_file())
        .collect();
    names.sort();

    let mut parsed_all = true;
    for name in names {
        let path = dir.join(&name);
        let file = ctx.add_file(path.clone());
        sources.push(path.clone());
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                ctx.report_file(file, None, format!("cannot read this gates file: {e}"));
                continue;
            }
        };
        match parse_document(&text, file) {
            Ok(doc) => merge_gates(ctx, root, doc),
            Err(e) => {
                ctx.report_file(file, e.line, e.message);
                parsed_all = false;
            }
        }
    }
    parsed_all
}

/// Appends a gates file's `[[gates]]` to the main file's; anything else in it is a problem.
fn merge_gates(ctx: &mut Ctx, root: &mut Node, doc: Node) {
    let Value::Table(doc) = doc.value else {
        return;
    };
    let Value::Table(root) = &mut root.value else {
        return;
    };
    for entry in doc.entries {
        if entry.key != "gates" {
            ctx.report(
                &entry.key_origin,
                &entry.key,
                format!(
                    "a gates file may only contain [[gates]] sections; move '{}' to the main configuration file",
                    entry.key
                ),
            );
            continue;
        }
        let Value::Array(items) = entry.node.value else {
            let kind = entry.node.value.kind();
            ctx.report(
                &entry.node.origin,
                "gates",
                format!("expected [[gates]] sections (an array of tables), found {kind}"),
            );
            continue;
        };
        match root.get_mut("gates") {
            Some(Node {
                value: Value::Array(existing),
                ..
            }) => existing.extend(items),
            // The main file's own `gates` is of the wrong type: reported when it is resolved.
            Some(_) => {}
            None => root.set(
                "gates",
                entry.key_origin,
                Node {
                    value: Value::Array(items),
                    origin: entry.node.origin,
                    env_text: None,
                },
            ),
        }
    }
}
