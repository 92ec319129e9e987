//! Grants and signing keys as stored.

use countersign_core::grant::{GrantRecord, SigningKeyRecord};
use countersign_core::{RequestId, StoreError};

use super::{from_json, instant, millis, to_json, unreadable};

/// The columns of `grants` read back, in the order of [`crate::sql::INSERT_GRANT`] (which adds
/// `single_use_request`).
#[derive(Debug)]
pub(crate) struct GrantRow {
    pub jti: String,
    pub request_id: String,
    pub kid: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// The columns of `signing_keys`, in the order of [`crate::sql::INSERT_KEY`].
#[derive(Debug)]
pub(crate) struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub sealed_private: Vec<u8>,
    pub created_at: i64,
    pub signs_from: i64,
    pub publish_until: Option<i64>,
}

impl GrantRow {
    pub fn encode(g: &GrantRecord) -> Self {
        Self {
            jti: g.jti.clone(),
            request_id: g.request_id.to_string(),
            kid: g.kid.clone(),
            issued_at: millis(&g.issued_at),
            expires_at: millis(&g.expires_at),
            revoked_at: g.revoked_at.as_ref().map(millis),
        }
    }

    pub fn decode(self) -> Result<GrantRecord, StoreError> {
        const WHAT: &str = "grant";
        // The jti is a random token id, not a secret (it is shown in the audit trail), so it
        // may name the row.
        let id = self.jti.as_str();
        Ok(GrantRecord {
            request_id: self
                .request_id
                .parse::<RequestId>()
                .map_err(|_| unreadable(WHAT, id, "request_id is not a request id"))?,
            kid: self.kid,
            issued_at: instant(WHAT, id, "issued_at", self.issued_at)?,
            expires_at: instant(WHAT, id, "expires_at", self.expires_at)?,
            revoked_at: match self.revoked_at {
                None => None,
                Some(ms) => Some(instant(WHAT, id, "revoked_at", ms)?),
            },
            jti: self.jti,
        })
    }
}

impl KeyRow {
    pub fn encode(k: &SigningKeyRecord) -> Result<Self, StoreError> {
        Ok(Self {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            public_jwk: to_json("public jwk", &k.public_jwk)?,
            sealed_private: k.sealed_private.clone(),
            created_at: millis(&k.created_at),
            signs_from: millis(&k.signs_from),
            publish_until: k.publish_until.as_ref().map(millis),
        })
    }

    pub fn decode(self) -> Result<SigningKeyRecord, StoreError> {
        const WHAT: &str = "signing key";
        let id = self.kid.as_str();
        Ok(SigningKeyRecord {
            alg: self.alg.clone(),
            public_jwk: from_json(WHAT, id, "public_jwk", &self.public_jwk)?,
            created_at: instant(WHAT, id, "created_at", self.created_at)?,
            signs_from: instant(WHAT, id, "signs_from", self.signs_from)?,
            publish_until: match self.publish_until {
                None => None,
                Some(ms) => Some(instant(WHAT, id, "publish_until", ms)?),
            },
            sealed_private: self.sealed_private,
            kid: self.kid,
        })
    }
}
