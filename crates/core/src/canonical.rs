//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace.
//! Digests and audit hashes are computed over this form, so the same value always hashes the
//! same whatever map type or key order produced it.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Writes `value` canonically.
pub fn to_string(value: &Value) -> String {
    let mut out = Vec::new();
    write(value, &mut out);
    // Only JSON text (valid UTF-8) was written.
    String::from_utf8(out).unwrap_or_default()
}

/// SHA-256 of the canonical form, lowercase hex.
pub fn sha256_hex(value: &Value) -> String {
    let mut out = Vec::new();
    write(value, &mut out);
    hex::encode(Sha256::digest(&out))
}

/// Appends the canonical form of `value` to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            // Maps usually iterate in key order already; sort only when they do not.
            if map.keys().is_sorted() {
                for (i, (key, item)) in map.iter().enumerate() {
                    entry(i, key, item, out);
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    entry(i, key, item, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        scalar => json_into(scalar, out),
    }
}

/// Appends a string as a JSON string literal (escaped exactly as `serde_json` does).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    json_into(s, out);
}

/// Appends `value` as `serde_json` writes it (the same text as `to_string`, without the
/// intermediate String). Writing into a Vec cannot fail, and strings and scalars always
/// serialize.
fn json_into<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, value);
}

fn entry(i: usize, key: &str, item: &Value, out: &mut Vec<u8>) {
    if i > 0 {
        out.push(b',');
    }
    write_str(key, out);
    out.push(b':');
    write(item, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a = json!({"b": 1, "a": {"y": [1, "x"], "x": null}});
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#).unwrap();
        assert_eq!(to_string(&a), r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#);
        assert_eq!(sha256_hex(&a), sha256_hex(&b));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(to_string(&json!({"k": "a\"\n"})), r#"{"k":"a\"\n"}"#);
    }
}
