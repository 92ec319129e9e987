//! Identifiers and digests, parsed at the edge into types that cannot hold a malformed value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::Timestamp;

/// A request id: `req_` followed by a ULID (26 Crockford base32 characters), time-ordered.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(ulid::Ulid);

impl RequestId {
    /// A fresh id for a request created at `now`.
    ///
    /// Ids made in one process are strictly increasing even within one millisecond (the
    /// random part is incremented), so listing by id lists by creation order.
    pub fn generate(now: Timestamp) -> Self {
        static LAST: std::sync::Mutex<Option<ulid::Ulid>> = std::sync::Mutex::new(None);
        let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let fresh = ulid::Ulid::from_parts(ms, rand::random::<u128>());
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let id = match *last {
            Some(prev) if prev.timestamp_ms() >= ms => prev.increment().unwrap_or(fresh),
            _ => fresh,
        };
        *last = Some(id);
        Self(id)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req_{}", self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not a request id.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a request id (expected req_ followed by 26 characters)")]
pub struct BadRequestId(pub String);

impl FromStr for RequestId {
    type Err = BadRequestId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown: String = s.chars().take(64).collect();
        let rest = s
            .strip_prefix("req_")
            .ok_or_else(|| BadRequestId(shown.clone()))?;
        if rest.len() != 26 || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BadRequestId(shown));
        }
        let ulid = ulid::Ulid::from_string(rest).map_err(|_| BadRequestId(shown.clone()))?;
        // Only the canonical (upper-case) spelling is an id, so that one request has one name.
        if ulid.to_string() != rest {
            return Err(BadRequestId(shown));
        }
        Ok(Self(ulid))
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A SHA-256 content digest, written `sha256:<64 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest of the canonical JSON form of `value`.
    pub fn of_json(value: &serde_json::Value) -> Self {
        use sha2::Digest as _;
        let text = crate::canonical::to_string(value);
        Self(sha2::Sha256::digest(text.as_bytes()).into())
    }

    /// Compares in constant time: a digest posted back is attacker-controlled input.
    pub fn ct_eq(&self, other: &Digest) -> bool {
        crate::secret::ct_eq(&self.0, &other.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not a digest.
#[derive(Debug, thiserror::Error)]
#[error("not a digest (expected sha256: followed by 64 lowercase hex characters)")]
pub struct BadDigest;

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").ok_or(BadDigest)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(BadDigest);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| BadDigest)?;
        Ok(Self(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip_and_reject_junk() {
        let id = RequestId::generate(
            chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
        );
        let text = id.to_string();
        assert!(text.starts_with("req_") && text.len() == 30);
        assert_eq!(text.parse::<RequestId>().unwrap(), id);
        for bad in [
            "",
            "req_",
            "req_../../etc/passwd",
            "REQ_01H",
            &text.to_lowercase(),
            &format!("{text}x"),
        ] {
            assert!(bad.parse::<RequestId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_round_trip() {
        let d = Digest::of_json(&serde_json::json!({"a": 1}));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(d.to_string().to_uppercase().parse::<Digest>().is_err());
        assert!(d.ct_eq(&d.clone()));
    }
}
