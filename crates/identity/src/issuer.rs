//! One configured issuer at run time: lazy discovery, the cached key set, and the limits that keep
//! a dead issuer or a flood of made-up key ids from turning into a flood of fetches.
//!
//! Discovery happens on first use rather than at start-up because the server may trust an issuer
//! that it serves itself (the dev sandbox), which cannot answer before the server listens.
//! All fetches of one issuer go through one async lock, so concurrent requests that need keys
//! share a single fetch (single flight); a fetch counter lets waiters see that somebody else
//! already fetched while they waited.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::header::ACCEPT;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use crate::error::{AuthError, AuthReason};
use crate::keys::KeySet;
use crate::settings::{IssuerSettings, check_fetchable, normalize_type};

/// After a failed fetch, requests fail fast for this long instead of fetching again.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// An unknown `kid` refetches the key set at most once per this interval (J18).
pub const KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Discovery documents and key sets larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// The state of one issuer for `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuerStatus {
    /// The configured name.
    pub name: String,
    /// The configured issuer URL.
    pub url: String,
    /// True when we hold keys for it, so its tokens can be verified now.
    pub ready: bool,
    /// Why the last discovery or key fetch failed, if it did.
    pub error: Option<String>,
}

/// What we remember between fetches.
#[derive(Debug, Default)]
struct Cache {
    jwks_uri: Option<Url>,
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    last_failure: Option<Instant>,
    last_error: Option<String>,
    last_kid_refetch: Option<Instant>,
    /// Completed fetch attempts, successful or not.
    attempts: u64,
}

impl Cache {
    fn fresh(&self, ttl: Duration) -> bool {
        self.keys.is_some() && self.fetched_at.is_some_and(|t| t.elapsed() < ttl)
    }

    fn in_backoff(&self) -> bool {
        self.last_failure
            .is_some_and(|t| t.elapsed() < FAILURE_BACKOFF)
    }
}

/// A failed discovery or key fetch.
struct Failure {
    message: String,
    /// The issuer's own metadata is wrong (not merely unreachable): drop any keys we hold.
    unusable: bool,
}

impl Failure {
    fn transient(message: String) -> Self {
        Self {
            message,
            unusable: false,
        }
    }
}

/// A configured issuer with its caches.
#[derive(Debug)]
pub(crate) struct Issuer {
    pub(crate) settings: IssuerSettings,
    /// `settings.token_types`, normalized for comparison.
    pub(crate) token_types: Vec<String>,
    discovery_url: String,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    fetch: tokio::sync::Mutex<()>,
}

impl Issuer {
    pub(crate) fn new(settings: IssuerSettings, http: reqwest::Client) -> Self {
        // OIDC Discovery §4: a terminating `/` of the issuer is removed before appending.
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            settings.url.trim_end_matches('/')
        );
        let token_types = settings
            .token_types
            .iter()
            .map(|t| normalize_type(t))
            .collect();
        Self {
            settings,
            token_types,
            discovery_url,
            http,
            cache: Mutex::new(Cache::default()),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // Nothing panics while holding this lock, and the cache is valid after any partial
        // update, so a poisoned lock is safe to keep using.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unavailable(&self) -> AuthError {
        AuthError::new(
            AuthReason::IssuerUnavailable,
            format!(
                "the keys of issuer {} are not available at the moment",
                self.settings.url
            ),
        )
    }

    /// The current keys, fetching them if we have none or they are older than the TTL. Stale
    /// keys are still used while the issuer cannot be reached.
    pub(crate) async fn keys(&self) -> Result<Arc<KeySet>, AuthError> {
        let seen = {
            let cache = self.cache();
            if let Some(keys) = &cache.keys
                && (cache.fresh(self.settings.jwks_ttl) || cache.in_backoff())
            {
                return Ok(keys.clone());
            }
            if cache.in_backoff() {
                return Err(self.unavailable());
            }
            cache.attempts
        };
        let _flight = self.fetch.lock().await;
        if self.cache().attempts == seen {
            self.refresh_locked().await;
        }
        self.cache().keys.clone().ok_or_else(|| self.unavailable())
    }

    /// Refetches the key set because a token named a `kid` that `seen` lacks. Returns the new
    /// key set if there is one, or `None` when the rate limit says not now.
    pub(crate) async fn refetch_for_unknown_kid(&self, seen: &Arc<KeySet>) -> Option<Arc<KeySet>> {
        let newer = |cache: &Cache| {
            cache
                .keys
                .as_ref()
                .filter(|keys| !Arc::ptr_eq(keys, seen))
                .cloned()
        };
        let limited = |cache: &Cache| {
            cache
                .last_kid_refetch
                .is_some_and(|t| t.elapsed() < KID_REFETCH_INTERVAL)
        };
        {
            let cache = self.cache();
            if let Some(keys) = newer(&cache) {
                return Some(keys);
            }
            if limited(&cache) {
                return None;
            }
        }
        let _flight = self.fetch.lock().await;
        {
            let mut cache = self.cache();
            if let Some(keys) = newer(&cache) {
                return Some(keys);
            }
            if limited(&cache) {
                return None;
            }
            cache.last_kid_refetch = Some(Instant::now());
        }
        tracing::debug!(issuer = %self.settings.name, "unknown key id, fetching the key set again");
        self.refresh_locked().await;
        newer(&self.cache())
    }

    /// Fetches keys unless they are fresh or the issuer just failed; for start-up and `/readyz`.
    pub(crate) async fn refresh_if_needed(&self) {
        let _flight = self.fetch.lock().await;
        {
            let cache = self.cache();
            if cache.fresh(self.settings.jwks_ttl) || cache.in_backoff() {
                return;
            }
        }
        self.refresh_locked().await;
    }

    pub(crate) fn status(&self) -> IssuerStatus {
        let cache = self.cache();
        IssuerStatus {
            name: self.settings.name.clone(),
            url: self.settings.url.clone(),
            ready: cache.keys.is_some(),
            error: cache.last_error.clone(),
        }
    }

    /// Discovers (when needed) and fetches the key set, recording the outcome. Callers hold
    /// `self.fetch`.
    async fn refresh_locked(&self) {
        let jwks_uri = self.cache().jwks_uri.clone();
        let result = self.fetch_keys(jwks_uri).await;
        let mut cache = self.cache();
        cache.attempts += 1;
        match result {
            Ok((jwks_uri, keys)) => {
                tracing::info!(
                    issuer = %self.settings.name,
                    keys = keys.len(),
                    "fetched the issuer's signing keys"
                );
                cache.jwks_uri = Some(jwks_uri);
                cache.keys = Some(Arc::new(keys));
                cache.fetched_at = Some(Instant::now());
                cache.last_failure = None;
                cache.last_error = None;
            }
            Err(failure) => {
                tracing::warn!(
                    issuer = %self.settings.name,
                    error = %failure.message,
                    "issuer discovery or key fetch failed"
                );
                // Discover again next time: the key set may have moved.
                cache.jwks_uri = None;
                if failure.unusable {
                    cache.keys = None;
                    cache.fetched_at = None;
                }
                cache.last_failure = Some(Instant::now());
                cache.last_error = Some(failure.message);
            }
        }
    }

    async fn fetch_keys(&self, jwks_uri: Option<Url>) -> Result<(Url, KeySet), Failure> {
        let jwks_uri = match jwks_uri {
            Some(uri) => uri,
            None => self.discover().await?,
        };
        let doc = self
            .fetch_json(jwks_uri.as_str(), "key set")
            .await
            .map_err(Failure::transient)?;
        let keys = KeySet::from_jwks(&doc)
            .map_err(|e| Failure::transient(format!("{e} (at {jwks_uri})")))?;
        Ok((jwks_uri, keys))
    }

    /// Reads the discovery document and returns its `jwks_uri`, after checking that its
    /// `issuer` is byte for byte the configured URL (OIDC Discovery §4.3).
    async fn discover(&self) -> Result<Url, Failure> {
        let doc = self
            .fetch_json(&self.discovery_url, "discovery document")
            .await
            .map_err(Failure::transient)?;
        let unusable = |message: String| Failure {
            message,
            unusable: true,
        };
        let expected = &self.settings.url;
        match doc.get("issuer") {
            Some(Value::String(issuer)) if issuer == expected => {}
            Some(Value::String(issuer)) => {
                return Err(unusable(format!(
                    "the discovery document at {} names issuer \"{}\", which is not the configured \"{expected}\"",
                    self.discovery_url,
                    shorten(issuer)
                )));
            }
            _ => {
                return Err(unusable(format!(
                    "the discovery document at {} has no issuer",
                    self.discovery_url
                )));
            }
        }
        let Some(raw) = doc.get("jwks_uri").and_then(Value::as_str) else {
            return Err(unusable(format!(
                "the discovery document at {} has no jwks_uri",
                self.discovery_url
            )));
        };
        let uri = Url::parse(raw).map_err(|_| {
            unusable(format!(
                "the discovery document at {} has a jwks_uri that is not a url",
                self.discovery_url
            ))
        })?;
        check_fetchable(&uri).map_err(|why| {
            unusable(format!(
                "the jwks_uri \"{}\" of {} {why}",
                shorten(raw),
                self.settings.url
            ))
        })?;
        Ok(uri)
    }

    /// GETs a JSON document with a size limit. Redirects and timeouts are the client's.
    async fn fetch_json(&self, url: &str, what: &str) -> Result<Value, String> {
        let mut response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("could not fetch the {what} from {url}: {}", describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!(
                "the {what} at {url} answered with status {}",
                status.as_u16()
            ));
        }
        let too_large = || format!("the {what} at {url} is larger than {MAX_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("could not read the {what} from {url}: {}", describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| format!("the {what} at {url} is not valid json"))
    }
}

/// A transport error with its causes ("connection refused"), without repeating the URL.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Text from a remote document, cut to a length fit for a status line.
fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
