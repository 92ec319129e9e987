//! Environment overrides: `COUNTERSIGN_SECTION__…__KEY=value` sets one key of the configuration
//! before it is validated, and `…_FILE=/path` reads the value from a file (how container
//! platforms hand out secrets). Only variables that start with `COUNTERSIGN_` and contain `__`
//! are overrides; the CLI's own variables (`COUNTERSIGN_SERVER`, `COUNTERSIGN_TOKEN`, …) have no
//! `__` and are left alone.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;

use crate::check::Ctx;
use crate::tree::{Node, Origin, Table, Value, parse_env_value};

const PREFIX: &str = "COUNTERSIGN_";
/// Arrays of tables, whose elements an override picks by `name` (or by position): at the top
/// level, and inside those elements (a gate's `rules` and `webhooks`; the top-level
/// `[webhooks]` is a plain table).
const ROOT_NAMED_ARRAYS: &[(&str, &str)] = &[
    ("issuers", "issuer"),
    ("resource_servers", "resource server"),
    ("gates", "gate"),
];
const NESTED_NAMED_ARRAYS: &[(&str, &str)] = &[("rules", "rule"), ("webhooks", "webhook")];
/// Keys whose values are secrets, so that they are scrubbed from every message.
const SECRET_KEYS: &[&str] = &["client_secret", "secret", "key_encryption_key"];

/// A snapshot of environment variables, taken once so that loading is repeatable and tests do
/// not touch the process environment.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process's environment (variables that are not valid UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// Exactly these variables.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// No variables at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// One variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

impl fmt::Debug for Env {
    // Values may be secrets: show names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

/// One override, its value already parsed (or read from its file).
#[derive(Debug)]
pub(crate) struct Override {
    var: String,
    /// The path as written, e.g. `["ISSUERS", "OKTA", "CLIENT_SECRET"]` (`_FILE` removed).
    segments: Vec<String>,
    node: Node,
}

impl Override {
    fn is_gate(&self) -> bool {
        self.segments[0].eq_ignore_ascii_case("gates")
    }
}

/// Picks the overrides out of `env`, reading `_FILE` values. Problems (a malformed name, an
/// unreadable file, two variables for one key) are reported against the variable.
pub(crate) fn collect(ctx: &mut Ctx, env: &Env) -> Vec<Override> {
    let mut out = Vec::new();
    let mut targets: BTreeMap<String, String> = BTreeMap::new();
    for (var, value) in &env.vars {
        let Some(rest) = var.strip_prefix(PREFIX) else {
            continue;
        };
        if !var.contains("__") {
            continue;
        }
        let origin = Origin::Env { var: var.clone() };
        let mut segments: Vec<String> = rest.split("__").map(str::to_string).collect();
        if segments.len() < 2 || segments.iter().any(String::is_empty) {
            ctx.report(
                &origin,
                "",
                "not a valid override name: write COUNTERSIGN_ followed by the key path with sections separated by a double underscore, e.g. COUNTERSIGN_SERVER__LISTEN",
            );
            continue;
        }
        let last = segments.last_mut().map(std::mem::take).unwrap_or_default();
        let from_file = last.len() > 5 && last.to_ascii_uppercase().ends_with("_FILE");
        let key = if from_file {
            last[..last.len() - 5].to_string()
        } else {
            last
        };
        if let Some(slot) = segments.last_mut() {
            *slot = key.clone();
        }
        let secret_key = SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str());

        let node = if from_file {
            let path = value.trim();
            match fs::read_to_string(path) {
                Ok(text) => {
                    let text = text.trim().to_string();
                    if text.is_empty() {
                        ctx.report(&origin, "", format!("'{path}' is empty"));
                        continue;
                    }
                    // Whatever a file holds is treated as a secret.
                    ctx.remember_secret(&text);
                    Node {
                        value: Value::String(text.clone()),
                        origin: origin.clone(),
                        env_text: Some(text),
                    }
                }
                Err(e) => {
                    ctx.report(&origin, "", format!("cannot read '{path}': {e}"));
                    continue;
                }
            }
        } else {
            if secret_key {
                ctx.remember_secret(value);
            }
            parse_env_value(value, var)
        };

        let target = segments
            .iter()
            .map(|s| normalize(s))
            .collect::<Vec<_>>()
            .join(".");
        if let Some(first) = targets.get(&target) {
            ctx.report(
                &origin,
                "",
                format!("{first} already sets this key; set only one of them"),
            );
            continue;
        }
        targets.insert(target, var.clone());
        out.push(Override {
            var: var.clone(),
            segments,
            node,
        });
    }
    out
}

/// Applies the overrides for gates (`gates == true`) or for everything else. Gates go last,
/// after the gates directory has been merged, so that they can reach gates defined there.
pub(crate) fn apply(ctx: &mut Ctx, root: &mut Node, overrides: &[Override], gates: bool) {
    let root_origin = root.origin.clone();
    let Value::Table(table) = &mut root.value else {
        return;
    };
    for o in overrides.iter().filter(|o| o.is_gate() == gates) {
        if let Err(message) = set(
            table,
            &root_origin,
            true,
            &o.segments,
            &o.var,
            o.node.clone(),
        ) {
            ctx.report(&Origin::Env { var: o.var.clone() }, "", message);
        }
    }
}

/// Sets the key at `segments` below `table`. Tables on the way that do not exist yet are
/// created; they take the origin of their parent, so that a problem about one of their
/// missing keys points at the file rather than at a variable that did not cause it.
fn set(
    table: &mut Table,
    table_origin: &Origin,
    at_root: bool,
    segments: &[String],
    var: &str,
    value: Node,
) -> Result<(), String> {
    let env_origin = Origin::Env {
        var: var.to_string(),
    };
    let key = segments[0].to_ascii_lowercase();
    if segments.len() == 1 {
        // The override replaces the file's value however the file gave it: an inline
        // `client_secret` or a `client_secret_file`.
        table.remove(&format!("{key}_file"));
        table.set(&key, env_origin, value);
        return Ok(());
    }
    let next = &segments[1..];

    let named_arrays = if at_root {
        ROOT_NAMED_ARRAYS
    } else {
        NESTED_NAMED_ARRAYS
    };
    if let Some((_, what)) = named_arrays.iter().find(|(k, _)| *k == key) {
        let Some(node) = table.get_mut(&key) else {
            return Err(format!(
                "no {what} named '{}' ({key} has none)",
                next[0].to_ascii_lowercase()
            ));
        };
        if let Value::Array(items) = &mut node.value {
            let wanted = normalize(&next[0]);
            let names: Vec<Option<String>> = items.iter().map(element_name).collect();
            let matches: Vec<usize> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.as_deref().map(normalize).as_deref() == Some(wanted.as_str()))
                .map(|(i, _)| i)
                .collect();
            let index = match matches.as_slice() {
                [i] => *i,
                [] => match next[0].parse::<usize>() {
                    Ok(i) if i < items.len() && names.iter().all(Option::is_none) => i,
                    _ => {
                        let configured: Vec<String> = names.into_iter().flatten().collect();
                        return Err(if configured.is_empty() {
                            format!("no {what} named '{}'", next[0].to_ascii_lowercase())
                        } else {
                            format!(
                                "no {what} named '{}' (configured: {})",
                                next[0].to_ascii_lowercase(),
                                configured.join(", ")
                            )
                        });
                    }
                },
                _ => {
                    return Err(format!(
                        "'{}' matches more than one {what} ('-' and '_' are the same in variable names)",
                        next[0].to_ascii_lowercase()
                    ));
                }
            };
            if next.len() == 1 {
                return Err(format!(
                    "name a key of the {what} after its name, e.g. {var}__URL"
                ));
            }
            let element = &mut items[index];
            let origin = element.origin.clone();
            return match &mut element.value {
                Value::Table(t) => set(t, &origin, false, &next[1..], var, value),
                other => Err(format!("{key} holds {}, not tables", other.kind())),
            };
        }
    }

    if table.get(&key).is_none() {
        table.set(
            &key,
            env_origin,
            Node {
                value: Value::Table(Table::default()),
                origin: table_origin.clone(),
                env_text: None,
            },
        );
    }
    let Some(node) = table.get_mut(&key) else {
        return Ok(());
    };
    let origin = node.origin.clone();
    match &mut node.value {
        Value::Table(t) => set(t, &origin, false, next, var, value),
        other => Err(format!(
            "'{key}' is {}, not a table, so it has no key '{}'",
            other.kind(),
            next[0].to_ascii_lowercase()
        )),
    }
}

fn element_name(node: &Node) -> Option<String> {
    let Value::Table(t) = &node.value else {
        return None;
    };
    match &t.get("name")?.value {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Names compare case-insensitively with `-` and `_` alike: variable names cannot hold `-`.
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}
