//! A neutral tree of configuration values that remembers where every key and value came from
//! (file and line, or the environment variable that set it). TOML files and environment
//! overrides both land in this tree, so validation runs once over the merged result and every
//! problem can still point at its source.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a key or value was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A configuration file (an index into the loader's file list) and a 1-based line.
    File { file: usize, line: usize },
    /// An environment variable, by name.
    Env { var: String },
}

/// One value and where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub value: Value,
    pub origin: Origin,
    /// For values set from the environment: the text as given, so a key that expects a string
    /// accepts `COUNTERSIGN_…=12345` or `=true` instead of refusing the number or boolean that
    /// the text happens to parse as.
    pub env_text: Option<String>,
}

/// A TOML value. Integers are widened so that out-of-range numbers can still be reported as
/// such by the range checks.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    String(String),
    Integer(i128),
    Float,
    Boolean(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Table),
}

impl Value {
    /// The value's kind, as a TOML user would say it.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float => "a decimal number",
            Value::Boolean(_) => "a boolean",
            Value::Datetime => "a date",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A table with its keys in the order they were written.
#[derive(Clone, Debug, Default)]
pub(crate) struct Table {
    pub entries: Vec<Entry>,
}

/// One key of a table.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub key: String,
    pub key_origin: Origin,
    pub node: Node,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.node)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.node)
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|e| e.key != key);
    }

    /// Sets `key`, replacing an existing value in place (keeping its position).
    pub fn set(&mut self, key: &str, key_origin: Origin, node: Node) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.key == key) {
            entry.key_origin = key_origin;
            entry.node = node;
        } else {
            self.entries.push(Entry {
                key: key.to_string(),
                key_origin,
                node,
            });
        }
    }
}

/// Maps byte offsets to 1-based line numbers.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).max(1)
    }
}

/// A TOML syntax error: the line it was found on and what is wrong.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub line: Option<usize>,
    pub message: String,
}

/// Parses a whole TOML document from file number `file`.
pub(crate) fn parse_document(text: &str, file: usize) -> Result<Node, SyntaxError> {
    let lines = Lines::new(text);
    let table = DeTable::parse(text).map_err(|e| SyntaxError {
        line: e.span().map(|s| lines.line(s.start)),
        // Only the message: the rendered form quotes the offending source line, which may
        // hold a secret.
        message: one_line(e.message()),
    })?;
    let origin = |offset: usize| Origin::File {
        file,
        line: lines.line(offset),
    };
    Ok(Node {
        value: Value::Table(convert_table(table.get_ref(), &origin)),
        origin: Origin::File { file, line: 1 },
        env_text: None,
    })
}

/// Parses the text of an environment override: a TOML value when it is one (numbers,
/// booleans, arrays, inline tables, quoted strings), else the text itself as a string.
pub(crate) fn parse_env_value(text: &str, var: &str) -> Node {
    let origin = |_: usize| Origin::Env {
        var: var.to_string(),
    };
    let value = match DeValue::parse(text) {
        Ok(v) => convert_value(v.get_ref(), &origin),
        Err(_) => Value::String(text.to_string()),
    };
    Node {
        value,
        origin: origin(0),
        env_text: Some(text.to_string()),
    }
}

fn convert_table(table: &DeTable<'_>, origin: &dyn Fn(usize) -> Origin) -> Table {
    // The parser's map is ordered by key; restore the order of the file.
    let mut entries: Vec<(&Spanned<Cow<'_, str>>, &Spanned<DeValue<'_>>)> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    Table {
        entries: entries
            .into_iter()
            .map(|(k, v)| Entry {
                key: k.get_ref().to_string(),
                key_origin: origin(k.span().start),
                node: convert_node(v, origin),
            })
            .collect(),
    }
}

fn convert_node(v: &Spanned<DeValue<'_>>, origin: &dyn Fn(usize) -> Origin) -> Node {
    Node {
        value: convert_value(v.get_ref(), origin),
        origin: origin(v.span().start),
        env_text: None,
    }
}

fn convert_value(v: &DeValue<'_>, origin: &dyn Fn(usize) -> Origin) -> Value {
    match v {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => Value::Integer(
            // TOML integers fit in 64 bits; anything the parser let through that does not is
            // reported by the range checks as too large.
            i128::from_str_radix(i.as_str(), i.radix()).unwrap_or(i128::MAX),
        ),
        DeValue::Float(_) => Value::Float,
        DeValue::Boolean(b) => Value::Boolean(*b),
        DeValue::Datetime(_) => Value::Datetime,
        DeValue::Array(a) => Value::Array(a.iter().map(|e| convert_node(e, origin)).collect()),
        DeValue::Table(t) => Value::Table(convert_table(t, origin)),
    }
}

/// Collapses a multi-line message into one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_and_file_order() {
        let doc = parse_document("b = 1\n\n[t]\na = \"x\"\n", 0).unwrap();
        let Value::Table(t) = doc.value else { panic!() };
        assert_eq!(t.entries[0].key, "b");
        assert_eq!(t.entries[1].key, "t");
        assert_eq!(t.entries[1].node.origin, Origin::File { file: 0, line: 3 });
        let Value::Table(inner) = &t.entries[1].node.value else {
            panic!()
        };
        assert_eq!(
            inner.entries[0].key_origin,
            Origin::File { file: 0, line: 4 }
        );
    }

    #[test]
    fn env_values_parse_as_toml_or_stay_text() {
        assert!(matches!(
            parse_env_value("42", "V").value,
            Value::Integer(42)
        ));
        assert!(matches!(
            parse_env_value("true", "V").value,
            Value::Boolean(true)
        ));
        assert!(matches!(
            parse_env_value("[\"a\"]", "V").value,
            Value::Array(_)
        ));
        let n = parse_env_value("0.0.0.0:8080", "V");
        assert!(matches!(&n.value, Value::String(s) if s == "0.0.0.0:8080"));
        let n = parse_env_value("1 2", "V");
        assert!(matches!(&n.value, Value::String(s) if s == "1 2"));
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = parse_document("a = 1\nb = \n", 0).unwrap_err();
        assert_eq!(e.line, Some(2));
    }
}
