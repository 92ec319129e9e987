//! The provider's signing key: one ES256 (P-256) key generated at start, never persisted.

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, TokenData, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The `typ` header of access tokens (RFC 9068).
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The `typ` header of ID tokens.
pub(crate) const ID_TOKEN_TYP: &str = "JWT";

pub(crate) struct SigningKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: JwkSet,
}

impl SigningKey {
    /// A fresh key. Restarting the sandbox therefore invalidates every token it issued before.
    pub(crate) fn generate() -> Result<Self, String> {
        // jsonwebtoken's aws-lc backend reads ECDSA private keys as PKCS#8.
        let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|pair| pair.to_pkcs8v1())
            .map_err(|_| "cannot generate the P-256 signing key".to_owned())?;
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| format!("cannot derive the public key: {e}"))?;
        // The RFC 7638 thumbprint as `kid`: stable for the key, unique across restarts.
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| format!("cannot compute the key thumbprint: {e}"))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk)
            .map_err(|e| format!("cannot read back the public key: {e}"))?;
        Ok(Self {
            encoding,
            decoding,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
        })
    }

    /// The public keys, as `/jwks.json` serves them.
    pub(crate) fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// A compact JWS with `alg: ES256`, our `kid` and the given `typ`.
    pub(crate) fn sign(
        &self,
        typ: &str,
        claims: &impl Serialize,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// Verifies a token this provider signed: signature, `typ`, `iss`, and `aud` (when given);
    /// `exp` only when `check_expiry`, since an expired ID token is still a fine logout hint.
    pub(crate) fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
        audience: Option<&str>,
        check_expiry: bool,
    ) -> Result<TokenData<T>, String> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.validate_exp = check_expiry;
        let mut required = vec!["iss", "sub"];
        if check_expiry {
            required.push("exp");
        }
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<T>(token, &self.decoding, &validation)
            .map_err(|e| format!("token is not valid: {e}"))?;
        // jsonwebtoken does not look at `typ`; without this an ID token would pass as an access
        // token (RFC 9068 §4).
        if data.header.typ.as_deref() != Some(typ) {
            return Err(format!("token type is not `{typ}`"));
        }
        Ok(data)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_the_typ_checked() {
        let key = SigningKey::generate().expect("key generation");
        let claims = serde_json::json!({"iss": "https://i", "sub": "bob", "aud": "api", "exp": i64::MAX / 2});
        let token = key.sign(ACCESS_TOKEN_TYP, &claims).expect("signing");
        let data: TokenData<serde_json::Value> = key
            .verify(&token, ACCESS_TOKEN_TYP, "https://i", Some("api"), true)
            .expect("valid");
        assert_eq!(data.claims["sub"], "bob");
        assert_eq!(
            data.header.kid.as_deref(),
            key.jwks().keys[0].common.key_id.as_deref()
        );
        assert!(
            key.verify::<serde_json::Value>(&token, ID_TOKEN_TYP, "https://i", None, true)
                .is_err()
        );
        assert!(
            key.verify::<serde_json::Value>(&token, ACCESS_TOKEN_TYP, "https://x", None, true)
                .is_err()
        );
    }

    #[test]
    fn the_jwks_holds_only_public_parameters() {
        let key = SigningKey::generate().expect("key generation");
        let jwks = serde_json::to_value(key.jwks()).expect("serializable");
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none());
    }
}
