//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace.
//! Digests and audit hashes are computed over this form, so the same value always hashes the
//! same whatever map type or key order produced it.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Writes `value` canonically.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// SHA-256 of the canonical form, lowercase hex.
pub fn sha256_hex(value: &Value) -> String {
    hex::encode(Sha256::digest(to_string(value).as_bytes()))
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
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
