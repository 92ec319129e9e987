//! An issuer's published signing keys (JWKS), filtered down to the keys we are willing to verify
//! with, and the rules for picking the key for a token.
//!
//! A key is kept only if it is a public signature key we support: `use` absent or `sig`,
//! `key_ops` absent or containing `verify` (J13), RSA of at least 2048 bits (J15), EC on P-256 or
//! P-384 with coordinates of the right length, or Ed25519. Whether a kept key may verify a given
//! token then depends on the token's `alg`: the key type must fit (J12) and the JWK's own `alg`,
//! when present, must equal it (J13, RFC 8725 §3.1).

use std::collections::HashSet;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::jws::decode_segment;

/// A JWKS with more keys than this is cut short: real providers publish a handful.
const MAX_KEYS: usize = 64;

/// The kind of a usable key, with what verification needs to know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    /// RSA, with the modulus length in bytes (= signature length).
    Rsa {
        modulus_bytes: usize,
    },
    P256,
    P384,
    Ed25519,
}

/// One usable verification key.
#[derive(Debug)]
pub(crate) struct Key {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's `alg`, when it named one.
    alg: Option<String>,
    decoding: DecodingKey,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        let type_fits = match self.kind {
            KeyKind::Rsa { .. } => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyKind::P256 => alg == Algorithm::ES256,
            KeyKind::P384 => alg == Algorithm::ES384,
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        };
        type_fits && self.alg.as_deref().is_none_or(|a| a == alg_name(alg))
    }

    /// The exact signature length this key produces for its algorithm.
    pub(crate) fn signature_len(&self) -> usize {
        match self.kind {
            KeyKind::Rsa { modulus_bytes } => modulus_bytes,
            KeyKind::P256 | KeyKind::Ed25519 => 64,
            KeyKind::P384 => 96,
        }
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The result of looking for the key that should verify a token.
#[derive(Debug)]
pub(crate) enum Selection<'a> {
    /// These keys may verify it (several only when a JWKS reuses one `kid`, J25: try each).
    Found(Vec<&'a Key>),
    /// No key with that `kid` (or, without a `kid`, no key for the algorithm): maybe rotated.
    NotFound,
    /// The `kid` exists but its key may not be used with this algorithm (J12, J13).
    Mismatch,
    /// No `kid`, and more than one key could verify: we will not guess (J17).
    Ambiguous,
}

/// The usable keys of one issuer.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
    /// Every `kid` the JWKS published, usable or not, so a token naming a key we dropped is told
    /// so instead of triggering a refetch.
    all_kids: HashSet<String>,
}

impl KeySet {
    /// Reads a JWKS document, dropping the keys we will not use. Fails only when the document
    /// itself is not a JWKS or no key is usable.
    pub(crate) fn from_jwks(doc: &Value) -> Result<Self, String> {
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err("the key set has no \"keys\" array".to_owned());
        };
        let mut set = KeySet::default();
        for entry in entries.iter().take(MAX_KEYS) {
            let kid = entry.get("kid").and_then(Value::as_str);
            if let Some(kid) = kid {
                set.all_kids.insert(kid.to_owned());
            }
            match usable_key(entry) {
                Ok(key) => set.keys.push(key),
                Err(why) => {
                    tracing::debug!(kid = kid.unwrap_or(""), why, "skipping a published key");
                }
            }
        }
        if set.keys.is_empty() {
            return Err("the key set has no usable signing keys".to_owned());
        }
        Ok(set)
    }

    /// Picks the keys for a token's `kid` and `alg`. The `kid` is only ever compared as an
    /// opaque string (J19).
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection<'_> {
        match kid {
            Some(kid) => {
                let found: Vec<&Key> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid) && k.allows(alg))
                    .collect();
                if !found.is_empty() {
                    Selection::Found(found)
                } else if self.all_kids.contains(kid) {
                    Selection::Mismatch
                } else {
                    Selection::NotFound
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.allows(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Selection::Found(vec![only]),
                    (None, _) => Selection::NotFound,
                    (Some(_), Some(_)) => Selection::Ambiguous,
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Checks one JWK and builds its verification key.
fn usable_key(entry: &Value) -> Result<Key, &'static str> {
    let str_field = |name: &str| entry.get(name).and_then(Value::as_str);
    if let Some(use_) = entry.get("use")
        && use_.as_str() != Some("sig")
    {
        return Err("use is not sig");
    }
    if let Some(ops) = entry.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verify {
            return Err("key_ops does not allow verify");
        }
    }
    let kid = match entry.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("kid is not a string"),
    };
    let alg = match entry.get("alg") {
        None => None,
        Some(Value::String(alg)) => Some(alg.clone()),
        Some(_) => return Err("alg is not a string"),
    };
    let coordinate_len = |name: &str, want: usize| -> Result<(), &'static str> {
        let bytes = str_field(name)
            .map(decode_segment)
            .ok_or("a coordinate is missing")?
            .map_err(|_| "a coordinate is not base64url")?;
        if bytes.len() == want {
            Ok(())
        } else {
            Err("a coordinate has the wrong length")
        }
    };
    let kind = match (str_field("kty"), str_field("crv")) {
        (Some("RSA"), _) => {
            let n = str_field("n")
                .map(decode_segment)
                .ok_or("the modulus is missing")?
                .map_err(|_| "the modulus is not base64url")?;
            let n = match n.iter().position(|b| *b != 0) {
                Some(first) => &n[first..],
                None => return Err("the modulus is zero"),
            };
            let bits = n.len() * 8 - n[0].leading_zeros() as usize;
            if bits < 2048 {
                return Err("the rsa key is shorter than 2048 bits");
            }
            KeyKind::Rsa {
                modulus_bytes: n.len(),
            }
        }
        (Some("EC"), Some("P-256")) => {
            coordinate_len("x", 32)?;
            coordinate_len("y", 32)?;
            KeyKind::P256
        }
        (Some("EC"), Some("P-384")) => {
            coordinate_len("x", 48)?;
            coordinate_len("y", 48)?;
            KeyKind::P384
        }
        (Some("OKP"), Some("Ed25519")) => {
            coordinate_len("x", 32)?;
            KeyKind::Ed25519
        }
        _ => return Err("unsupported key type or curve"),
    };
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|_| "not a valid jwk")?;
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| "not a valid public key")?;
    Ok(Key {
        kid,
        kind,
        alg,
        decoding,
    })
}

/// The JOSE name of an algorithm.
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // A future algorithm matches no JWK `alg`, so a key that names one is not used with it.
        _ => "",
    }
}
