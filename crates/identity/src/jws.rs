//! Strict parsing of a compact JWS before anything is trusted: exactly three base64url
//! segments without padding, a bounded size, and header and payload that are JSON objects with no
//! duplicate member names.
//!
//! We parse the token ourselves instead of letting the JWT library do it, so that the bytes whose
//! signature is checked are exactly the bytes whose claims we read, and so that a duplicate
//! member (`"sub":"alice","sub":"admin"`) is refused rather than resolved to whichever value a
//! given parser keeps (RFC 8725 §2.6, J36).

use std::collections::HashSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::AuthError;

/// The largest token we look at. Real access tokens are a few KiB; a bound keeps a hostile
/// caller from making us decode and parse megabytes (J39).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A compact JWS split into its parts, header and payload parsed, signature still encoded.
#[derive(Debug)]
pub(crate) struct Compact<'a> {
    /// `base64url(header) . base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The third segment, as sent (may be empty; refused later, after the `alg` check, so that
    /// `alg: none` gets the more useful reason).
    pub signature: &'a str,
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
}

/// Splits and parses a compact JWS.
pub(crate) fn parse(token: &str) -> Result<Compact<'_>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::malformed("the token is too large"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::malformed(
            "the token is not a compact jws of three segments",
        ));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::malformed(
            "the token has an empty header or payload",
        ));
    }
    // The engine refuses `=`, `+`, `/`, whitespace and non-canonical trailing bits (J37), but
    // checking the alphabet first gives one clear error for all of them.
    if ![header, payload, signature].iter().all(|s| is_base64url(s)) {
        return Err(AuthError::malformed(
            "the token contains characters outside unpadded base64url",
        ));
    }
    let header_bytes = decode_segment(header)?;
    let payload_bytes = decode_segment(payload)?;
    let header = parse_object(&header_bytes)
        .map_err(|()| AuthError::malformed("the token header is not a valid json object"))?;
    let payload = parse_object(&payload_bytes)
        .map_err(|()| AuthError::malformed("the token payload is not a valid json object"))?;
    let signing_input = &token[..token.len() - signature.len() - 1];
    Ok(Compact {
        signing_input,
        signature,
        header,
        payload,
    })
}

/// Decodes one segment: unpadded base64url with canonical trailing bits.
pub(crate) fn decode_segment(segment: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::malformed("the token contains invalid base64url"))
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses a JSON object, refusing duplicate member names at any depth. Two passes over at most
/// 16 KiB: the first only looks for duplicates, the second builds the value with serde_json
/// (whose own nesting limit refuses absurdly deep documents).
fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ()> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    <NoDuplicates as de::Deserialize>::deserialize(&mut de).map_err(|_| ())?;
    de.end().map_err(|_| ())?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(()),
    }
}

/// A value that deserializes anything and fails on a repeated object key.
struct NoDuplicates;

impl<'de> de::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i128<E>(self, _: i128) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u128<E>(self, _: u128) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_none<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate member name"));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn accepts_a_plain_token() {
        let t = token(r#"{"alg":"ES256"}"#, r#"{"sub":"a","n":{"x":[1,{"y":2}]}}"#);
        let c = parse(&t).unwrap();
        assert_eq!(c.signature, "c2ln");
        assert_eq!(c.payload["sub"], "a");
        assert!(t.starts_with(c.signing_input));
        assert_eq!(c.signing_input.len() + 5, t.len());
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        for (h, p) in [
            (r#"{"alg":"ES256","alg":"none"}"#, r#"{"sub":"a"}"#),
            (r#"{"alg":"ES256"}"#, r#"{"sub":"alice","sub":"admin"}"#),
            (r#"{"alg":"ES256"}"#, r#"{"a":{"b":1,"b":2}}"#),
            (r#"{"alg":"ES256"}"#, r#"{"a":[{"b":1,"b":2}]}"#),
            (r#"{"alg":"ES256"}"#, r#"{"s\u0075b":"a","sub":"b"}"#),
        ] {
            assert!(parse(&token(h, p)).is_err(), "{h} {p}");
        }
    }

    #[test]
    fn refuses_bad_shapes() {
        let ok_h = b64(r#"{"alg":"ES256"}"#);
        let ok_p = b64(r#"{"sub":"a"}"#);
        for t in [
            format!("{ok_h}.{ok_p}"),
            format!("{ok_h}.{ok_p}.c2ln.c2ln"),
            format!(".{ok_p}.c2ln"),
            format!("{}.{ok_p}.c2ln", b64("[]")),
            format!("{}.{ok_p}.c2ln", b64("\"x\"")),
            format!("{}.{ok_p}.c2ln", b64("1")),
            format!("{ok_h}.{}.c2ln", b64("[1]")),
            format!("{ok_h}.{}.c2ln", b64(r#"{"sub":"a"}x"#)),
            format!("{ok_h}.{}.c2ln", b64("\u{feff}{}")),
            format!("{ok_h}.{}.c2ln", b64(r#"{"sub":"\ud800"}"#)),
            format!("{ok_h}.{ok_p}=.c2ln"),
            format!("{ok_h}.{ok_p}.c2ln="),
            format!("{ok_h} .{ok_p}.c2ln"),
            format!(
                "{ok_h}.{}.c2ln",
                b64(&format!("{{\"a\":{}}}", "[".repeat(5000)))
            ),
            format!("{ok_h}.{ok_p}.{}", "A".repeat(MAX_TOKEN_BYTES)),
        ] {
            assert!(parse(&t).is_err(), "{t:.80}");
        }
        let raw = URL_SAFE_NO_PAD.encode(b"{\"sub\":\"\xff\"}");
        assert!(parse(&format!("{ok_h}.{raw}.c2ln")).is_err());
    }
}
