//! The validation toolkit: a problem collector that knows where every value came from, a typed
//! reader over one table that reports unknown and mistyped keys, and the checks shared by the
//! server, issuer and gate sections (names, URLs, durations, conditions, secret files).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use countersign_core::Condition;
use countersign_core::secret::Secret;
use url::{Host, Url};

use crate::problem::{ConfigErrors, ENVIRONMENT, Problem};
use crate::tree::{Node, Origin, Table, Value};

/// Collects problems while the configuration is validated.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    /// The configuration files, in the order they were read; `Origin::File` indexes this.
    pub files: Vec<PathBuf>,
    /// Problems with their sort key (file index, line).
    problems: Vec<(usize, usize, Problem)>,
    /// Every secret value seen, scrubbed from messages before they are returned: a last line
    /// of defence should some message ever quote one.
    secrets: Vec<String>,
}

impl Ctx {
    pub fn add_file(&mut self, path: PathBuf) -> usize {
        self.files.push(path);
        self.files.len() - 1
    }

    /// Records a problem with the value or key at `origin`. For an environment override the
    /// key reported is the variable's name: that is what the operator has to fix.
    pub fn report(&mut self, origin: &Origin, key: &str, message: impl Into<String>) {
        let message = message.into();
        match origin {
            Origin::File { file, line } => self.problems.push((
                *file,
                *line,
                Problem {
                    file: self.files[*file].clone(),
                    line: Some(*line),
                    key: key.to_string(),
                    message,
                },
            )),
            Origin::Env { var } => self.problems.push((
                usize::MAX,
                0,
                Problem {
                    file: ENVIRONMENT.into(),
                    line: None,
                    key: var.clone(),
                    message,
                },
            )),
        }
    }

    /// Records a problem about a whole file (unreadable, a syntax error).
    pub fn report_file(&mut self, file: usize, line: Option<usize>, message: impl Into<String>) {
        self.problems.push((
            file,
            line.unwrap_or(0),
            Problem {
                file: self.files[file].clone(),
                line,
                key: String::new(),
                message: message.into(),
            },
        ));
    }

    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    /// Remembers a secret so that no message can carry it.
    pub fn remember_secret(&mut self, secret: &str) {
        // Very short values would mangle unrelated words; nobody uses them as secrets, and
        // the checks never quote secret values in the first place.
        if secret.len() >= 4 {
            self.secrets.push(secret.to_string());
        }
    }

    /// The problems, sorted by file and line (environment last), secrets scrubbed.
    pub fn into_errors(mut self) -> ConfigErrors {
        self.problems.sort_by_key(|(file, line, _)| (*file, *line));
        let secrets = self.secrets;
        ConfigErrors(
            self.problems
                .into_iter()
                .map(|(_, _, mut p)| {
                    for s in &secrets {
                        if p.message.contains(s.as_str()) {
                            p.message = p.message.replace(s.as_str(), "[redacted]");
                        }
                    }
                    p
                })
                .collect(),
        )
    }

    /// Where a value was written, for messages that point at a second place.
    pub fn describe(&self, origin: &Origin) -> String {
        match origin {
            Origin::File { file, line } => format!("{}:{line}", self.files[*file].display()),
            Origin::Env { var } => format!("environment variable {var}"),
        }
    }

    /// The directory relative paths written at `origin` are resolved against: the directory
    /// of the file that names them, or the working directory for the environment.
    pub fn base_dir(&self, origin: &Origin) -> PathBuf {
        match origin {
            Origin::File { file, .. } => self.files[*file]
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            Origin::Env { .. } => PathBuf::new(),
        }
    }

    /// Reads a secret from the file named by `node` (trimmed; relative paths resolve against
    /// the directory of the file that names them).
    pub fn read_secret_file(&mut self, node: &Node, key: &str) -> Option<Secret> {
        let path = self.string(node, key)?;
        if path.trim().is_empty() {
            self.report(&node.origin, key, "the path must not be empty");
            return None;
        }
        let full = resolve_path(&self.base_dir(&node.origin), path);
        match fs::read_to_string(&full) {
            Ok(text) => {
                let value = text.trim();
                if value.is_empty() {
                    self.report(&node.origin, key, format!("'{}' is empty", full.display()));
                    return None;
                }
                self.remember_secret(value);
                Some(Secret::new(value))
            }
            Err(e) => {
                self.report(
                    &node.origin,
                    key,
                    format!("cannot read '{}': {e}", full.display()),
                );
                None
            }
        }
    }

    /// A secret given inline (never quoted in messages).
    pub fn inline_secret(&mut self, node: &Node, key: &str) -> Option<Secret> {
        let value = match &node.value {
            Value::String(s) => s.as_str(),
            _ => match &node.env_text {
                Some(t) => t.as_str(),
                None => {
                    self.report(
                        &node.origin,
                        key,
                        format!("expected a string, found {}", node.value.kind()),
                    );
                    return None;
                }
            },
        };
        self.remember_secret(value);
        if let Some(t) = &node.env_text {
            self.remember_secret(t);
        }
        let value = value.trim();
        if value.is_empty() {
            self.report(&node.origin, key, "the secret must not be empty");
            return None;
        }
        Some(Secret::new(value))
    }

    /// The node as a string (an environment override's text counts as one).
    pub fn string<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n str> {
        match (&node.value, &node.env_text) {
            (Value::String(s), _) => Some(s),
            (_, Some(text)) => Some(text),
            (v, None) => {
                let kind = v.kind();
                self.report(
                    &node.origin,
                    key,
                    format!("expected a string, found {kind}"),
                );
                None
            }
        }
    }

    /// The node as a list of strings. An environment override may also give a comma-separated
    /// list.
    pub fn strings(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match &item.value {
                        Value::String(s) => out.push(s.clone()),
                        v => {
                            ok = false;
                            let kind = v.kind();
                            self.report(
                                &item.origin,
                                &format!("{key}[{i}]"),
                                format!("expected a string, found {kind}"),
                            );
                        }
                    }
                }
                ok.then_some(out)
            }
            _ => match &node.env_text {
                Some(text) => Some(
                    text.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                ),
                None => {
                    let kind = node.value.kind();
                    self.report(
                        &node.origin,
                        key,
                        format!("expected an array of strings, found {kind}"),
                    );
                    None
                }
            },
        }
    }

    pub fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match &node.value {
            Value::Boolean(b) => Some(*b),
            v => {
                let kind = v.kind();
                self.report(
                    &node.origin,
                    key,
                    format!("expected true or false, found {kind}"),
                );
                None
            }
        }
    }

    /// The node as an integer within `lo..=hi`.
    pub fn integer(&mut self, node: &Node, key: &str, lo: i128, hi: i128) -> Option<i128> {
        match &node.value {
            Value::Integer(n) if (lo..=hi).contains(n) => Some(*n),
            Value::Integer(n) => {
                let message = if *n < lo {
                    format!("{n} is too small: it must be at least {lo}")
                } else {
                    format!("{n} is too large: it must be at most {hi}")
                };
                self.report(&node.origin, key, message);
                None
            }
            v => {
                let kind = v.kind();
                self.report(
                    &node.origin,
                    key,
                    format!("expected an integer, found {kind}"),
                );
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, key: &str) -> Option<chrono::Duration> {
        let text = self.string(node, key)?;
        match countersign_core::time::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.report(&node.origin, key, e);
                None
            }
        }
    }

    pub fn condition(&mut self, node: &Node, key: &str, variables: &[&str]) -> Option<Condition> {
        let source = self.string(node, key)?;
        if source.trim().is_empty() {
            self.report(
                &node.origin,
                key,
                "the condition is empty (write 'true' or 'false' to mean always or never)",
            );
            return None;
        }
        match Condition::compile(source, variables) {
            Ok(c) => Some(c),
            Err(e) => {
                self.report(&node.origin, key, e.to_string());
                None
            }
        }
    }

    /// The elements of an array of tables such as `[[gates]]`; each element is checked to be
    /// a table when it is opened.
    pub fn tables<'n>(&mut self, node: &'n Node, key: &str, header: &str) -> &'n [Node] {
        match &node.value {
            Value::Array(items) => items,
            v => {
                let kind = v.kind();
                self.report(
                    &node.origin,
                    key,
                    format!("expected {header} sections (an array of tables), found {kind}"),
                );
                &[]
            }
        }
    }

    /// The node as one of `allowed`.
    pub fn choice<'n>(&mut self, node: &'n Node, key: &str, allowed: &[&str]) -> Option<&'n str> {
        let text = self.string(node, key)?;
        if allowed.contains(&text) {
            Some(text)
        } else {
            self.report(
                &node.origin,
                key,
                format!("'{text}' is not one of: {}", allowed.join(", ")),
            );
            None
        }
    }
}

/// A typed view of one table at a known key path. Opening it reports every key it does not
/// know, so misspelt keys never pass silently.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    table: &'a Table,
    pub origin: &'a Origin,
    pub path: String,
}

impl<'a> Fields<'a> {
    /// Opens `node` as a table whose keys must be among `known`.
    pub fn open(ctx: &mut Ctx, node: &'a Node, path: String, known: &[&str]) -> Option<Self> {
        let Value::Table(table) = &node.value else {
            let kind = node.value.kind();
            ctx.report(
                &node.origin,
                &path,
                format!("expected a table, found {kind}"),
            );
            return None;
        };
        let fields = Self {
            table,
            origin: &node.origin,
            path,
        };
        for entry in &table.entries {
            if !known.contains(&entry.key.as_str()) {
                let key = fields.key(&entry.key);
                let mut message = format!("unknown key '{}'", entry.key);
                // The variable's name alone does not say where the key would go.
                if matches!(entry.key_origin, Origin::Env { .. }) && !fields.path.is_empty() {
                    message.push_str(&format!(" in {}", fields.path));
                }
                match suggest(&entry.key, known) {
                    Some(s) => message.push_str(&format!(" (did you mean '{s}'?)")),
                    None => message.push_str(&format!(" (expected one of: {})", known.join(", "))),
                }
                ctx.report(&entry.key_origin, &key, message);
            }
        }
        Some(fields)
    }

    /// The full path of one of this table's keys.
    pub fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.table.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.get(key).is_some()
    }

    /// Reports a required key that is absent, at the table's own line.
    pub fn missing(&self, ctx: &mut Ctx, key: &str, message: impl Into<String>) {
        ctx.report(self.origin, &self.key(key), message);
    }

    pub fn string(&self, ctx: &mut Ctx, key: &str) -> Option<&'a str> {
        let node = self.get(key)?;
        ctx.string(node, &self.key(key))
    }

    /// A string that, when given, must not be blank.
    pub fn text(&self, ctx: &mut Ctx, key: &str) -> Option<&'a str> {
        let node = self.get(key)?;
        let value = ctx.string(node, &self.key(key))?;
        if value.trim().is_empty() {
            ctx.report(&node.origin, &self.key(key), "must not be empty");
            return None;
        }
        Some(value)
    }

    pub fn strings(&self, ctx: &mut Ctx, key: &str) -> Option<Vec<String>> {
        let node = self.get(key)?;
        ctx.strings(node, &self.key(key))
    }

    pub fn boolean(&self, ctx: &mut Ctx, key: &str) -> Option<bool> {
        let node = self.get(key)?;
        ctx.boolean(node, &self.key(key))
    }

    pub fn integer(&self, ctx: &mut Ctx, key: &str, lo: i128, hi: i128) -> Option<i128> {
        let node = self.get(key)?;
        ctx.integer(node, &self.key(key), lo, hi)
    }

    pub fn duration(&self, ctx: &mut Ctx, key: &str) -> Option<chrono::Duration> {
        let node = self.get(key)?;
        ctx.duration(node, &self.key(key))
    }

    pub fn condition(&self, ctx: &mut Ctx, key: &str, variables: &[&str]) -> Option<Condition> {
        let node = self.get(key)?;
        ctx.condition(node, &self.key(key), variables)
    }

    pub fn choice(&self, ctx: &mut Ctx, key: &str, allowed: &[&str]) -> Option<&'a str> {
        let node = self.get(key)?;
        ctx.choice(node, &self.key(key), allowed)
    }

    /// A secret that must be given exactly one way: inline (`inline`) or read from a file
    /// (`file`). Both is a problem, reported at the second; neither is reported at the table
    /// with `missing`. Returns the secret with the node and the full key that gave it.
    pub fn required_secret(
        &self,
        ctx: &mut Ctx,
        inline: &str,
        file: &str,
        missing: &str,
    ) -> Option<(Secret, &'a Node, String)> {
        match (self.get(inline), self.get(file)) {
            (Some(first), Some(second)) => {
                // Not used, yet still never to be quoted.
                if let Some(text) = match (&first.value, &first.env_text) {
                    (Value::String(s), _) => Some(s),
                    (_, t) => t.as_ref(),
                } {
                    ctx.remember_secret(text);
                }
                ctx.report(
                    &second.origin,
                    &self.key(file),
                    format!("set only one of {inline} and {file}"),
                );
                None
            }
            (Some(node), None) => {
                let key = self.key(inline);
                let secret = ctx.inline_secret(node, &key)?;
                Some((secret, node, key))
            }
            (None, Some(node)) => {
                let key = self.key(file);
                let secret = ctx.read_secret_file(node, &key)?;
                Some((secret, node, key))
            }
            (None, None) => {
                self.missing(ctx, inline, missing);
                None
            }
        }
    }

    /// Reports `a` and `b` both being set (at `b`), for pairs such as `secret` and
    /// `secret_file`.
    pub fn exclusive(&self, ctx: &mut Ctx, a: &str, b: &str) -> bool {
        if let (Some(_), Some(second)) = (self.get(a), self.get(b)) {
            ctx.report(
                &second.origin,
                &self.key(b),
                format!("set either {a} or {b}, not both"),
            );
            return false;
        }
        true
    }
}

/// Whether `name` starts with a lowercase letter, continues with lowercase letters, digits or
/// one of `extra`, and has at most `max` characters.
pub(crate) fn is_name(name: &str, extra: &[char], max: usize) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
        && name.len() <= max
}

/// How an element of an array of tables is named in key paths: its `name` when it has a
/// usable one, else its position (from 0).
pub(crate) fn element_label(node: &Node, index: usize) -> String {
    if let Value::Table(t) = &node.value
        && let Some(n) = t.get("name")
    {
        let text = match (&n.value, &n.env_text) {
            (Value::String(s), _) => Some(s.as_str()),
            (_, Some(t)) => Some(t.as_str()),
            _ => None,
        };
        if let Some(text) = text
            && !text.is_empty()
            && text.len() <= 64
            && !text.contains(|c: char| c.is_control() || c == ']' || c == '[')
        {
            return text.to_string();
        }
    }
    index.to_string()
}

/// Checks an absolute http(s) URL; plain http only for a loopback host, unless `allow_http`.
/// Messages quote the URL only when `quote` is set: some URLs (chat and CI webhooks) carry a
/// token in their path.
pub(crate) fn check_url(text: &str, allow_http: bool, quote: bool) -> Result<Url, String> {
    let it = if quote {
        format!("'{text}'")
    } else {
        "the URL".to_string()
    };
    let url = Url::parse(text).map_err(|e| format!("{it} is not a valid URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http || is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{it} uses plain http, which is allowed only for a loopback host (localhost, 127.0.0.1, [::1]); use https"
            ));
        }
        other => return Err(format!("{it} must use http or https, not {other}")),
    }
    if url.host().is_none() {
        return Err(format!("{it} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Not quoted: this one would print the password back.
        return Err("the URL must not contain a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err(format!("{it} must not have a #fragment"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Resolves `path` against `base` unless it is absolute.
pub(crate) fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The known key closest to a misspelt one, when it is close enough to be a typo.
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("deploy-prod", &['-'], 63));
        assert!(!is_name("Deploy", &['-'], 63));
        assert!(!is_name("1abc", &['-'], 63));
        assert!(!is_name("", &['-'], 63));
        assert!(!is_name("a_b", &['-'], 63));
        assert!(!is_name(&"a".repeat(64), &['-'], 63));
    }

    #[test]
    fn urls() {
        assert!(check_url("https://x.example.com", false, true).is_ok());
        assert!(check_url("http://localhost:8080", false, true).is_ok());
        assert!(check_url("http://127.0.0.1:8080", false, true).is_ok());
        assert!(check_url("http://[::1]:8080", false, true).is_ok());
        assert!(check_url("http://x.example.com", false, true).is_err());
        assert!(check_url("http://x.example.com", true, true).is_ok());
        assert!(check_url("ftp://x.example.com", true, true).is_err());
        assert!(check_url("https://u:p@x.example.com", true, true).is_err());
        assert!(check_url("not a url", true, true).is_err());
        let e = check_url("https://u:pass-1234@x.example.com", true, true).unwrap_err();
        assert!(!e.contains("pass-1234"), "{e}");
        let e = check_url("ftp://x.example.com/token-5678", true, false).unwrap_err();
        assert!(!e.contains("token-5678"), "{e}");
        assert!(
            check_url(
                "https://login.microsoftonline.com/{tenantid}/v2.0",
                false,
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn remembered_secrets_are_scrubbed() {
        let mut ctx = Ctx::default();
        let file = ctx.add_file("c.toml".into());
        ctx.remember_secret("sekrit-value");
        ctx.remember_secret("ab");
        ctx.report(
            &Origin::File { file, line: 3 },
            "k",
            "'sekrit-value' is wrong, ab",
        );
        let e = ctx.into_errors();
        assert_eq!(e.0[0].message, "'[redacted]' is wrong, ab");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("aprovers", &["approvers", "name"]),
            Some("approvers")
        );
        assert_eq!(suggest("zzz", &["approvers", "name"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
