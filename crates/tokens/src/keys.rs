//! Signing keys: generation (ES256, EdDSA, RS256), the public JWK with its RFC 7638 thumbprint
//! as `kid`, and turning a stored record back into a key to sign with (parsed once, see
//! [`PrivateKey`]) and one jsonwebtoken verifies with.
//!
//! Private keys are kept as PKCS#8 v1 DER, sealed with the KEK. jsonwebtoken's aws-lc backend
//! reads ECDSA and Ed25519 keys as PKCS#8 directly (Ed25519 only as v1: its JWK code expects
//! the 48-byte v1 encoding), but RSA keys only as PKCS#1, so those go in through a PEM wrapper
//! whose parser unwraps the PKCS#8 envelope.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use countersign_core::grant::SigningKeyRecord;
use countersign_core::time::{Timestamp, truncate};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Map, Value};

use crate::kek::{Kek, open, seal};

/// The JWK members a public key may carry; everything else (notably `d`, `p`, `q`, `dp`, `dq`,
/// `qi`) is dropped before a key is published, whatever the stored record says.
const PUBLIC_MEMBERS: [&str; 9] = ["kty", "crv", "x", "y", "n", "e", "kid", "alg", "use"];

/// The algorithms our grant tokens are signed with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// ECDSA over P-256 with SHA-256: the default, understood by every JWT library.
    #[default]
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys: for verifiers that know nothing else.
    Rs256,
}

impl SigningAlg {
    /// The JOSE name: `ES256`, `EdDSA` or `RS256`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
            SigningAlg::Rs256 => "RS256",
        }
    }

    pub(crate) fn jwt_algorithm(self) -> Algorithm {
        match self {
            SigningAlg::Es256 => Algorithm::ES256,
            SigningAlg::EdDsa => Algorithm::EdDSA,
            SigningAlg::Rs256 => Algorithm::RS256,
        }
    }
}

impl FromStr for SigningAlg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256]
            .into_iter()
            .find(|alg| alg.as_str() == text)
            .ok_or_else(|| {
                format!("'{text}' is not a supported signing algorithm (use ES256, EdDSA or RS256)")
            })
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Generates a signing key and seals its private part under `kek`.
///
/// The `kid` is the key's RFC 7638 thumbprint (base64url SHA-256), so it is stable and unique
/// without coordination between replicas. `public_jwk` carries the public members, `kid`,
/// `alg` and `use: "sig"`, nothing private. The key is published from `now` and signs from
/// `signs_from`.
///
/// # Panics
///
/// If the system random source or aws-lc fails to produce a key, which leaves nothing safe to
/// do; [`KeyRing`](crate::KeyRing) uses a fallible variant and reports the error instead.
pub fn generate_key(
    alg: SigningAlg,
    kek: &Kek,
    now: Timestamp,
    signs_from: Timestamp,
) -> SigningKeyRecord {
    try_generate_key(alg, kek, now, signs_from).expect("signing key generation failed")
}

/// [`generate_key`], reporting failures.
pub(crate) fn try_generate_key(
    alg: SigningAlg,
    kek: &Kek,
    now: Timestamp,
    signs_from: Timestamp,
) -> Result<SigningKeyRecord, String> {
    let failed = |_| format!("cannot generate an {alg} signing key");
    let pkcs8: Vec<u8> = match alg {
        SigningAlg::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        SigningAlg::EdDsa => Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        SigningAlg::Rs256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
            let der: Pkcs8V1Der<'static> = pair.as_der().map_err(failed)?;
            der.as_ref().to_vec()
        }
    };
    let encoding = encoding_key(alg, &pkcs8)?;
    let (kid, public_jwk) = derive_public_jwk(alg, &encoding)?;
    Ok(SigningKeyRecord {
        sealed_private: seal(kek, kid.as_bytes(), &pkcs8),
        kid,
        alg: alg.as_str().to_string(),
        public_jwk,
        created_at: truncate(now),
        signs_from: truncate(signs_from),
        publish_until: None,
    })
}

/// The jsonwebtoken signing key for a PKCS#8 v1 private key.
pub(crate) fn encoding_key(alg: SigningAlg, pkcs8: &[u8]) -> Result<EncodingKey, String> {
    match alg {
        SigningAlg::Es256 => Ok(EncodingKey::from_ec_der(pkcs8)),
        SigningAlg::EdDsa => Ok(EncodingKey::from_ed_der(pkcs8)),
        SigningAlg::Rs256 => {
            // The aws-lc backend signs RSA with a PKCS#1 key; its PEM reader unwraps PKCS#8.
            let body = base64::engine::general_purpose::STANDARD.encode(pkcs8);
            let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
            for line in body.as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END PRIVATE KEY-----\n");
            EncodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|_| "the private key is not a valid RSA key".to_string())
        }
    }
}

/// The public JWK of a private key and its RFC 7638 thumbprint.
fn derive_public_jwk(alg: SigningAlg, encoding: &EncodingKey) -> Result<(String, Value), String> {
    let mut jwk = Jwk::from_encoding_key(encoding, alg.jwt_algorithm())
        .map_err(|_| format!("cannot derive the public key of an {alg} private key"))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| "cannot compute the key thumbprint".to_string())?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let value =
        serde_json::to_value(&jwk).map_err(|_| "cannot encode the public key".to_string())?;
    let public = public_members(&value, &kid, alg);
    Ok((kid, public))
}

/// Only the public members of `jwk`, with `kid`, `alg` and `use` set from what we know.
fn public_members(jwk: &Value, kid: &str, alg: SigningAlg) -> Value {
    let mut out = Map::new();
    for name in PUBLIC_MEMBERS {
        if let Some(v) = jwk.get(name) {
            out.insert(name.to_string(), v.clone());
        }
    }
    out.insert("kid".into(), Value::String(kid.to_string()));
    out.insert("alg".into(), Value::String(alg.as_str().to_string()));
    out.insert("use".into(), Value::String("sig".into()));
    Value::Object(out)
}

/// A private key parsed once, to sign tokens with. jsonwebtoken's `encode` takes the PKCS#8
/// document and parses it again for every token, and for ES256 the parse (which checks the
/// public point: a scalar multiplication) costs about as much as the signature; so the key
/// ring signs with this and lays the token out as `encode` does ([`crate::ring`]).
pub(crate) enum PrivateKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

impl PrivateKey {
    fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<Self, String> {
        let parsed = match alg {
            SigningAlg::Es256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map(Self::Es256)
            }
            SigningAlg::EdDsa => Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map(Self::EdDsa),
            SigningAlg::Rs256 => RsaKeyPair::from_pkcs8(pkcs8).map(Self::Rs256),
        };
        parsed.map_err(|_| format!("the private key is not a valid {alg} key"))
    }

    /// The JWS signature of `message`: for ES256 the fixed-width `r || s` JWS asks for.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = SystemRandom::new();
        match self {
            Self::Es256(key) => key.sign(&rng, message).map(|s| s.as_ref().to_vec()),
            Self::EdDsa(key) => Ok(key.sign(message).as_ref().to_vec()),
            Self::Rs256(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map(|()| signature)
            }
        }
    }
}

/// A stored key made usable: its verification key always, its signing key when it was
/// unsealed (keys that can no longer sign are never unsealed).
pub(crate) struct LoadedKey {
    pub(crate) kid: String,
    pub(crate) alg: SigningAlg,
    /// The published JWK (public members only).
    pub(crate) public_jwk: Value,
    pub(crate) created_at: Timestamp,
    pub(crate) signs_from: Timestamp,
    pub(crate) publish_until: Option<Timestamp>,
    pub(crate) decoding: DecodingKey,
    pub(crate) signing: Option<PrivateKey>,
}

impl LoadedKey {
    /// Reads a stored record; with `unseal`, also opens its private part under `kek` and
    /// checks it belongs to the published public key.
    pub(crate) fn from_record(
        record: &SigningKeyRecord,
        kek: &Kek,
        unseal: bool,
    ) -> Result<LoadedKey, String> {
        let kid = &record.kid;
        let alg: SigningAlg = record
            .alg
            .parse()
            .map_err(|e| format!("signing key {kid}: {e}"))?;
        let public_jwk = public_members(&record.public_jwk, kid, alg);
        let jwk: Jwk = serde_json::from_value(public_jwk.clone())
            .map_err(|_| format!("signing key {kid}: the stored public key is not a valid JWK"))?;
        // The kid is the public key's thumbprint; a mismatch means the row was edited.
        if jwk.thumbprint(ThumbprintHash::SHA256).ok().as_deref() != Some(kid.as_str()) {
            return Err(format!(
                "signing key {kid}: the stored public key does not match its key id"
            ));
        }
        let decoding = DecodingKey::from_jwk(&jwk)
            .map_err(|_| format!("signing key {kid}: the stored public key is unusable"))?;
        let signing = if unseal {
            let pkcs8 = open(kek, kid.as_bytes(), &record.sealed_private)
                .map_err(|e| e.replacen("signing key", &format!("signing key {kid}"), 1))?;
            let encoding =
                encoding_key(alg, &pkcs8).map_err(|e| format!("signing key {kid}: {e}"))?;
            let (derived_kid, _) =
                derive_public_jwk(alg, &encoding).map_err(|e| format!("signing key {kid}: {e}"))?;
            if &derived_kid != kid {
                return Err(format!(
                    "signing key {kid}: the private key does not match the published public key"
                ));
            }
            Some(
                PrivateKey::from_pkcs8(alg, &pkcs8)
                    .map_err(|e| format!("signing key {kid}: {e}"))?,
            )
        } else {
            None
        };
        Ok(LoadedKey {
            kid: kid.clone(),
            alg,
            public_jwk,
            created_at: record.created_at,
            signs_from: record.signs_from,
            publish_until: record.publish_until,
            decoding,
            signing,
        })
    }

    /// Whether the key is in the JWKS at `now`.
    pub(crate) fn published_at(&self, now: Timestamp) -> bool {
        self.created_at <= now && self.publish_until.is_none_or(|until| until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn algorithms_parse_by_their_jose_names() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
            assert_eq!(alg.as_str().parse::<SigningAlg>().unwrap(), alg);
            assert_eq!(alg.to_string(), alg.as_str());
        }
        let err = "HS256".parse::<SigningAlg>().unwrap_err();
        assert!(err.contains("'HS256'") && err.contains("ES256"), "{err}");
        assert!("es256".parse::<SigningAlg>().is_err());
        assert!("none".parse::<SigningAlg>().is_err());
    }

    #[test]
    fn generated_keys_publish_only_public_members_and_reload() {
        let kek = Kek::generate();
        for (alg, members) in [
            (SigningAlg::Es256, &["kty", "crv", "x", "y"][..]),
            (SigningAlg::EdDsa, &["kty", "crv", "x"][..]),
            (SigningAlg::Rs256, &["kty", "n", "e"][..]),
        ] {
            let key = generate_key(alg, &kek, t0(), t0());
            assert_eq!(key.alg, alg.as_str());
            let jwk = key.public_jwk.as_object().unwrap();
            for m in members {
                assert!(jwk.contains_key(*m), "{alg}: missing {m}");
            }
            for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
                assert!(!jwk.contains_key(private), "{alg}: has {private}");
            }
            assert_eq!(jwk["kid"], key.kid.as_str());
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["use"], "sig");
            // base64url SHA-256: 43 characters, no padding.
            assert_eq!(key.kid.len(), 43, "{}", key.kid);
            assert!(!key.kid.contains(['=', '+', '/']));
            let loaded = LoadedKey::from_record(&key, &kek, true).unwrap();
            assert!(loaded.signing.is_some());
            assert!(LoadedKey::from_record(&key, &Kek::generate(), false).is_ok());
            let err = LoadedKey::from_record(&key, &Kek::generate(), true)
                .err()
                .unwrap();
            assert!(
                err.starts_with(&format!("cannot unseal signing key {}", key.kid)),
                "{err}"
            );
        }
    }

    #[test]
    fn a_record_whose_public_key_was_swapped_is_refused() {
        let kek = Kek::generate();
        let a = generate_key(SigningAlg::Es256, &kek, t0(), t0());
        let b = generate_key(SigningAlg::Es256, &kek, t0(), t0());
        let mut forged = a.clone();
        forged.public_jwk = b.public_jwk.clone();
        let err = LoadedKey::from_record(&forged, &kek, false).err().unwrap();
        assert!(err.contains("does not match its key id"), "{err}");
    }

    #[test]
    fn ed25519_private_keys_are_pkcs8_v1() {
        let kek = Kek::generate();
        let key = generate_key(SigningAlg::EdDsa, &kek, t0(), t0());
        let der = open(&kek, key.kid.as_bytes(), &key.sealed_private).unwrap();
        assert_eq!(
            der.len(),
            48,
            "PKCS#8 v1 Ed25519 is 16 bytes of header and a 32-byte seed"
        );
    }
}
