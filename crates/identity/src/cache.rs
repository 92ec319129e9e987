//! The verified-token cache: a bearer token that verified once is not verified again while it
//! stays valid, which saves the signature check (the most expensive step) on every call a
//! client makes with the same token.
//!
//! - Entries are keyed by the SHA-256 of the whole token, so a token that differs in any byte
//!   (another signature, another claim) is a different entry; the token itself is not kept.
//! - Only accepted tokens are cached. A refused token is checked in full every time.
//! - An entry is used only while `now < exp` — never in the leeway after `exp`, where the
//!   full check decides — and while `nbf`/`iat` are still acceptable at `now` (a clock that
//!   moved back is noticed).
//! - An entry is used only while its issuer still has the very key set that verified it: a
//!   JWKS refetch (rotation, a key withdrawn) makes every entry of that issuer verify again.
//! - The cache holds at most `capacity` entries; when full, expired entries go first, then
//!   arbitrary ones. A capacity of 0 turns it off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use countersign_core::{Principal, Timestamp};
use sha2::{Digest as _, Sha256};

use crate::claims::LEEWAY_SECS;
use crate::keys::KeySet;

/// The default number of tokens remembered.
pub const DEFAULT_CAPACITY: usize = 4096;

/// One accepted token.
#[derive(Debug)]
struct Entry {
    principal: Arc<Principal>,
    /// The issuer's position in the verifier's list.
    issuer: usize,
    /// The key set that verified the token.
    keys: Weak<KeySet>,
    /// `exp`, in seconds.
    expires: i64,
    /// The later of `nbf` and `iat`, in seconds, if either was present.
    not_before: Option<i64>,
}

/// What the cache needs to know about a freshly verified token.
#[derive(Debug)]
pub(crate) struct Verified<'a> {
    pub principal: &'a Arc<Principal>,
    pub issuer: usize,
    pub keys: &'a Arc<KeySet>,
    pub expires: i64,
    pub not_before: Option<i64>,
}

/// A token's cache key.
pub(crate) type Key = [u8; 32];

/// Bounded map from token hash to the principal it verified as.
#[derive(Debug)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<Key, Entry>>,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The cache key of `token`.
    pub(crate) fn key(token: &str) -> Key {
        Sha256::digest(token.as_bytes()).into()
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // The map is consistent after every operation, so a panic elsewhere cannot leave it
        // half-changed.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached principal of a token, if it is still usable at `now`. Returns the issuer's
    /// position and the key set to compare with the issuer's current one.
    pub(crate) fn get(
        &self,
        key: &Key,
        now: Timestamp,
    ) -> Option<(Arc<Principal>, usize, Weak<KeySet>)> {
        if self.capacity == 0 {
            return None;
        }
        let now = now.timestamp();
        let mut entries = self.entries();
        let entry = entries.get(key)?;
        if now >= entry.expires {
            entries.remove(key);
            return None;
        }
        if entry
            .not_before
            .is_some_and(|nb| nb > now.saturating_add(LEEWAY_SECS))
        {
            return None;
        }
        Some((
            Arc::clone(&entry.principal),
            entry.issuer,
            entry.keys.clone(),
        ))
    }

    /// Forgets a token (its issuer's keys changed since it was cached).
    pub(crate) fn remove(&self, key: &Key) {
        self.entries().remove(key);
    }

    /// Remembers a token that was just verified at `now`, unless it expires by then.
    pub(crate) fn insert(&self, key: Key, token: Verified<'_>, now: Timestamp) {
        let now = now.timestamp();
        if self.capacity == 0 || now >= token.expires {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| now < e.expires);
            // Still full: make room for an eighth of the capacity at once, so that a stream
            // of new tokens does not pay for a sweep on every insert.
            if entries.len() >= self.capacity {
                let excess = entries.len() + 1 - self.capacity + self.capacity / 8;
                let victims: Vec<Key> = entries.keys().take(excess).copied().collect();
                for victim in victims {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                principal: Arc::clone(token.principal),
                issuer: token.issuer,
                keys: Arc::downgrade(token.keys),
                expires: token.expires,
                not_before: token.not_before,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn principal(sub: &str) -> Arc<Principal> {
        Arc::new(Principal::human("https://idp.example", sub))
    }

    fn keys() -> Arc<KeySet> {
        Arc::new(KeySet::default())
    }

    fn verified<'a>(p: &'a Arc<Principal>, keys: &'a Arc<KeySet>, exp: i64) -> Verified<'a> {
        Verified {
            principal: p,
            issuer: 0,
            keys,
            expires: exp,
            not_before: Some(90),
        }
    }

    #[test]
    fn a_hit_until_exp_and_never_after() {
        let cache = TokenCache::new(8);
        let (p, k) = (principal("alice"), keys());
        let key = TokenCache::key("token-a");
        cache.insert(key, verified(&p, &k, 200), at(100));
        assert_eq!(cache.get(&key, at(199)).unwrap().0, p);
        assert!(cache.get(&key, at(200)).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped when found");
        // Not even remembered when it expires at the moment of verification (leeway).
        cache.insert(key, verified(&p, &k, 100), at(100));
        assert!(cache.get(&key, at(99)).is_none());
    }

    #[test]
    fn a_clock_moved_back_before_nbf_misses() {
        let cache = TokenCache::new(8);
        let (p, k) = (principal("alice"), keys());
        let key = TokenCache::key("token-a");
        cache.insert(key, verified(&p, &k, 1000), at(100));
        assert!(cache.get(&key, at(30)).is_some(), "within the leeway");
        assert!(cache.get(&key, at(29)).is_none());
    }

    #[test]
    fn tokens_differing_in_one_byte_are_different_entries() {
        let cache = TokenCache::new(8);
        let (p, k) = (principal("alice"), keys());
        cache.insert(
            TokenCache::key("aaa.bbb.ccc"),
            verified(&p, &k, 1000),
            at(100),
        );
        assert!(
            cache
                .get(&TokenCache::key("aaa.bbb.ccd"), at(100))
                .is_none()
        );
    }

    #[test]
    fn the_size_stays_bounded() {
        let cache = TokenCache::new(16);
        let k = keys();
        for i in 0..1000 {
            let p = principal(&format!("user{i}"));
            cache.insert(
                TokenCache::key(&format!("t{i}")),
                verified(&p, &k, 1000),
                at(100),
            );
            assert!(cache.len() <= 16);
        }
        // The newest is always kept.
        assert!(cache.get(&TokenCache::key("t999"), at(100)).is_some());
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let cache = TokenCache::new(0);
        let (p, k) = (principal("alice"), keys());
        let key = TokenCache::key("token-a");
        cache.insert(key, verified(&p, &k, 1000), at(100));
        assert!(cache.get(&key, at(100)).is_none());
    }
}
