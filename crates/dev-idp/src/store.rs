//! The in-memory state: pending authorization codes and live refresh tokens.
//!
//! Both are keyed by the SHA-256 of the secret value. Every method takes `now` so expiry can be
//! tested without waiting.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::secrets::sha256;
use crate::users::DemoUser;

/// How long an authorization code lives (seconds).
pub(crate) const CODE_TTL: i64 = 60;
/// How long a refresh-token chain lives from the login (seconds); rotation does not extend it.
pub(crate) const REFRESH_TTL: i64 = 8 * 3600;

/// What a browser login established; an authorization code or a refresh token carries it on.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) client_id: String,
    pub(crate) user: &'static DemoUser,
    pub(crate) scope: String,
    pub(crate) auth_time: i64,
    /// The session id (`sid`), so that logout can end the refresh tokens of that login.
    pub(crate) sid: String,
}

#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    pub(crate) login: Login,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) nonce: Option<String>,
    pub(crate) expires_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub(crate) login: Login,
    pub(crate) expires_at: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    codes: HashMap<[u8; 32], PendingCode>,
    refresh: HashMap<[u8; 32], RefreshGrant>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves two maps that are each still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert_code(&self, code: &str, pending: PendingCode, now: i64) {
        let mut inner = self.lock();
        // Sweeping on insert keeps memory bounded without a background task.
        inner.codes.retain(|_, c| c.expires_at > now);
        inner.codes.insert(sha256(code), pending);
    }

    /// Removes and returns the code: a second use finds nothing. An expired code is gone too.
    pub(crate) fn take_code(&self, code: &str, now: i64) -> Option<PendingCode> {
        self.lock()
            .codes
            .remove(&sha256(code))
            .filter(|c| c.expires_at > now)
    }

    pub(crate) fn insert_refresh(&self, token: &str, grant: RefreshGrant, now: i64) {
        let mut inner = self.lock();
        inner.refresh.retain(|_, g| g.expires_at > now);
        inner.refresh.insert(sha256(token), grant);
    }

    /// Removes and returns the refresh grant if it is live and belongs to `client_id`; a token
    /// presented by another client stays where it is, so nobody can burn someone else's.
    pub(crate) fn take_refresh(
        &self,
        token: &str,
        client_id: &str,
        now: i64,
    ) -> Option<RefreshGrant> {
        let mut inner = self.lock();
        let key = sha256(token);
        let grant = inner.refresh.get(&key)?;
        if grant.login.client_id != client_id {
            return None;
        }
        inner.refresh.remove(&key).filter(|g| g.expires_at > now)
    }

    /// Ends every refresh token of the login with this `sid` (RP-initiated logout).
    pub(crate) fn end_session(&self, sid: &str) {
        self.lock().refresh.retain(|_, g| g.login.sid != sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::demo_users;

    fn login(client_id: &str, sid: &str) -> Login {
        Login {
            client_id: client_id.into(),
            user: &demo_users()[0],
            scope: "openid".into(),
            auth_time: 0,
            sid: sid.into(),
        }
    }

    fn pending(expires_at: i64) -> PendingCode {
        PendingCode {
            login: login("cli", "s1"),
            redirect_uri: "http://127.0.0.1/callback".into(),
            code_challenge: "c".into(),
            nonce: None,
            expires_at,
        }
    }

    #[test]
    fn a_code_is_single_use() {
        let store = Store::default();
        store.insert_code("abc", pending(100), 0);
        assert!(store.take_code("abc", 1).is_some());
        assert!(store.take_code("abc", 1).is_none());
    }

    #[test]
    fn an_expired_code_is_refused() {
        let store = Store::default();
        store.insert_code("abc", pending(CODE_TTL), 0);
        assert!(store.take_code("abc", CODE_TTL).is_none());
    }

    #[test]
    fn a_refresh_token_belongs_to_its_client_and_rotates_out() {
        let store = Store::default();
        store.insert_refresh(
            "r",
            RefreshGrant {
                login: login("cli", "s1"),
                expires_at: 100,
            },
            0,
        );
        assert!(store.take_refresh("r", "other", 1).is_none());
        assert!(store.take_refresh("r", "cli", 1).is_some());
        assert!(store.take_refresh("r", "cli", 1).is_none());
    }

    #[test]
    fn ending_a_session_drops_its_refresh_tokens_only() {
        let store = Store::default();
        store.insert_refresh(
            "a",
            RefreshGrant {
                login: login("cli", "s1"),
                expires_at: 100,
            },
            0,
        );
        store.insert_refresh(
            "b",
            RefreshGrant {
                login: login("cli", "s2"),
                expires_at: 100,
            },
            0,
        );
        store.end_session("s1");
        assert!(store.take_refresh("a", "cli", 1).is_none());
        assert!(store.take_refresh("b", "cli", 1).is_some());
    }
}
