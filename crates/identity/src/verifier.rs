//! Bearer-token verification: from the compact JWS to a [`Principal`], in an order that never
//! trusts what has not been checked.
//!
//! 1. parse strictly ([`crate::jws`]);
//! 2. refuse dangerous or unsupported header parameters before any I/O (`jku`, `x5u`, `jwk`,
//!    `x5c` are never fetched or used: keys come only from the configured issuer's JWKS);
//! 3. use the unverified `iss` only to *select* the configured issuer whose URL equals it;
//! 4. check `alg` against that issuer's allow-list and `typ` against its token types;
//! 5. pick the key by `kid` from that issuer's keys only, refetching once (rate-limited) for an
//!    unknown `kid`, and verify the signature with `jsonwebtoken`;
//! 6. check the verified claims ([`crate::claims`]) and build the principal.
//!
//! A token that passed is remembered ([`crate::cache`]) until its `exp`, keyed by its hash,
//! for as long as its issuer's key set stays the one that verified it; the next call with the
//! same token skips the checks above.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use countersign_core::{Principal, Timestamp};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::cache::{self, TokenCache, Verified};
use crate::claims;
use crate::error::{AuthError, AuthReason};
use crate::issuer::{Issuer, IssuerStatus};
use crate::jws::{self, decode_segment};
use crate::keys::Selection;
use crate::settings::{IssuerSettings, is_hmac, normalize_type};

/// Header parameters whose presence refuses the token. Key-carrying and key-locating headers
/// would let the token choose its own key (RFC 8725 §3.10, ASVS 9.1.3); `crit` asks for
/// extensions we do not implement (RFC 7515 §4.1.11); `cty` announces a nested token; `b64`,
/// `zip` and `enc` belong to unencoded payloads and JWE.
const FORBIDDEN_HEADERS: [&str; 9] = [
    "jku", "x5u", "jwk", "x5c", "crit", "cty", "b64", "zip", "enc",
];

/// Connect timeout of the client returned by [`http_client`].
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout of the client returned by [`http_client`].
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client for discovery and key fetches: rustls, no redirects (an issuer's documents
/// must be where it says they are), and short timeouts so a slow issuer cannot hold requests.
///
/// # Panics
/// Only if the TLS backend cannot be initialised, which is a broken build rather than a
/// run-time condition; use [`try_http_client`] to handle that as an error.
pub fn http_client() -> reqwest::Client {
    #[expect(
        clippy::expect_used,
        reason = "the TLS backend is compiled in; failing to start it is a broken build, not an input"
    )]
    try_http_client().expect("the tls backend of the http client failed to initialise")
}

/// [`http_client`], returning the (practically impossible) build failure as an error.
pub fn try_http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(HTTP_CONNECT_TIMEOUT)
        .timeout(HTTP_TIMEOUT)
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("could not build the http client for issuer discovery: {e}"))
}

/// Verifies bearer JWTs from the configured issuers. Cheap to clone; clones share caches.
#[derive(Clone, Debug)]
pub struct Verifier {
    issuers: Arc<[Arc<Issuer>]>,
    cache: Arc<TokenCache>,
}

/// The parts of the header we act on, once checked.
struct Header<'a> {
    alg: Algorithm,
    kid: Option<&'a str>,
    typ: String,
}

impl Verifier {
    /// Checks every issuer's settings and that names and URLs are unique and every
    /// `actor_issuer` names a configured issuer. Fetches nothing: discovery is lazy.
    pub fn new(issuers: Vec<IssuerSettings>, http: reqwest::Client) -> Result<Self, String> {
        for (i, settings) in issuers.iter().enumerate() {
            settings.validate()?;
            let earlier = &issuers[..i];
            if earlier.iter().any(|o| o.name == settings.name) {
                return Err(format!("issuer name {} is configured twice", settings.name));
            }
            if let Some(other) = earlier.iter().find(|o| o.url == settings.url) {
                return Err(format!(
                    "issuers {} and {} have the same url {}; a token could not be told apart",
                    other.name, settings.name, settings.url
                ));
            }
        }
        for settings in &issuers {
            if let Some(actor_issuer) = &settings.actor_issuer
                && !issuers.iter().any(|o| &o.name == actor_issuer)
            {
                return Err(format!(
                    "issuer {}: actor_issuer {actor_issuer} is not a configured issuer",
                    settings.name
                ));
            }
        }
        let issuers = issuers
            .into_iter()
            .map(|settings| Arc::new(Issuer::new(settings, http.clone())))
            .collect();
        Ok(Self {
            issuers,
            cache: Arc::new(TokenCache::new(cache::DEFAULT_CAPACITY)),
        })
    }

    /// Remembers at most `capacity` verified tokens (0: none, every call verifies in full).
    #[must_use]
    pub fn with_token_cache(mut self, capacity: usize) -> Self {
        self.cache = Arc::new(TokenCache::new(capacity));
        self
    }

    /// Verifies a bearer token at time `now`. The token is never logged or echoed; the reason
    /// for a refusal is logged at debug level. The principal is shared with the token cache:
    /// a cached token costs a reference count, not a copy of its claims.
    pub async fn verify(&self, token: &str, now: Timestamp) -> Result<Arc<Principal>, AuthError> {
        let key = TokenCache::key(token);
        if let Some(principal) = self.cached(&key, now).await {
            return Ok(principal);
        }
        let result = self.verify_inner(token, now, key).await;
        if let Err(e) = &result {
            tracing::debug!(
                reason = e.reason(),
                message = e.message(),
                "bearer token refused"
            );
        }
        result
    }

    /// Discovers and fetches keys for every issuer that has no fresh keys, concurrently. An
    /// issuer that failed within the last few seconds is not retried yet, so polling this from
    /// `/readyz` does not hammer providers. Failures are recorded in [`Verifier::statuses`].
    pub async fn refresh_all(&self) {
        let mut tasks = tokio::task::JoinSet::new();
        for issuer in self.issuers.iter() {
            let issuer = issuer.clone();
            tasks.spawn(async move { issuer.refresh_if_needed().await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "an issuer refresh task failed");
            }
        }
    }

    /// The state of every configured issuer, in configuration order.
    pub fn statuses(&self) -> Vec<IssuerStatus> {
        self.issuers.iter().map(|i| i.status()).collect()
    }

    /// The principal of a token verified before, if it may still be used at `now`.
    async fn cached(&self, key: &cache::Key, now: Timestamp) -> Option<Arc<Principal>> {
        let (principal, issuer, verified_with) = self.cache.get(key, now)?;
        let current = self.issuers.get(issuer)?.keys().await.ok()?;
        if std::ptr::eq(Arc::as_ptr(&current), verified_with.as_ptr()) {
            Some(principal)
        } else {
            // The issuer's keys changed since: verify in full (and cache again) once.
            self.cache.remove(key);
            None
        }
    }

    async fn verify_inner(
        &self,
        token: &str,
        now: Timestamp,
        key: cache::Key,
    ) -> Result<Arc<Principal>, AuthError> {
        let jws = jws::parse(token)?;
        let header = check_header(&jws.header)?;

        // Unverified, used only to choose whose keys to try; re-checked after verification.
        let iss = jws.payload.get("iss").and_then(Value::as_str);
        let Some((position, issuer)) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| Some(i.settings.url.as_str()) == iss)
        else {
            return Err(AuthError::new(
                AuthReason::UnknownIssuer,
                "the token's issuer is not a configured issuer",
            ));
        };
        let url = &issuer.settings.url;
        if !issuer.settings.algorithms.contains(&header.alg) {
            return Err(AuthError::new(
                AuthReason::UnsupportedAlg,
                format!("the token's algorithm is not allowed for issuer {url}"),
            ));
        }
        if !issuer.token_types.contains(&header.typ) {
            return Err(AuthError::new(
                AuthReason::WrongType,
                format!("the token's type (typ) is not accepted from issuer {url}"),
            ));
        }
        if jws.signature.is_empty() {
            return Err(AuthError::new(
                AuthReason::BadSignature,
                "the token has no signature",
            ));
        }
        let signature = decode_segment(jws.signature)?;

        let mut keys = issuer.keys().await?;
        let mut refetched = false;
        loop {
            match keys.select(header.kid, header.alg) {
                Selection::Found(candidates) => {
                    let valid = candidates.iter().any(|key| {
                        signature.len() == key.signature_len()
                            && jsonwebtoken::crypto::verify(
                                jws.signature,
                                jws.signing_input.as_bytes(),
                                key.decoding_key(),
                                header.alg,
                            )
                            .unwrap_or(false)
                    });
                    if !valid {
                        return Err(AuthError::new(
                            AuthReason::BadSignature,
                            "the token's signature is not valid",
                        ));
                    }
                    break;
                }
                Selection::Mismatch => {
                    return Err(AuthError::new(
                        AuthReason::KeyMismatch,
                        format!(
                            "the key the token names cannot verify its algorithm at issuer {url}"
                        ),
                    ));
                }
                Selection::Ambiguous => {
                    return Err(AuthError::new(
                        AuthReason::UnknownKid,
                        format!(
                            "the token names no key id and issuer {url} has several keys for its algorithm"
                        ),
                    ));
                }
                // Perhaps the issuer rotated its keys: look once more (rate-limited).
                Selection::NotFound if !refetched => {
                    refetched = true;
                    match issuer.refetch_for_unknown_kid(&keys).await {
                        Some(newer) => keys = newer,
                        None => return Err(unknown_kid(url, header.kid)),
                    }
                }
                Selection::NotFound => return Err(unknown_kid(url, header.kid)),
            }
        }

        let payload: Map<String, Value> = jws.payload;
        let subject = claims::check(&issuer.settings, &payload, now)?;
        // `check` accepted them, so `exp` is an integer and `nbf`/`iat` are absent or integers.
        let expires = payload.get("exp").and_then(Value::as_i64);
        let not_before = ["nbf", "iat"]
            .iter()
            .filter_map(|c| payload.get(*c).and_then(Value::as_i64))
            .max();
        let principal = Arc::new(claims::principal(&issuer.settings, subject, payload));
        if let Some(expires) = expires {
            self.cache.insert(
                key,
                Verified {
                    principal: &principal,
                    issuer: position,
                    keys: &keys,
                    expires,
                    not_before,
                },
                now,
            );
        }
        Ok(principal)
    }
}

fn unknown_kid(url: &str, kid: Option<&str>) -> AuthError {
    let message = match kid {
        Some(_) => format!("the token's key id is not among the keys of issuer {url}"),
        None => format!("issuer {url} has no key for the token's algorithm"),
    };
    AuthError::new(AuthReason::UnknownKid, message)
}

/// Checks the protected header and extracts what verification needs.
fn check_header(header: &Map<String, Value>) -> Result<Header<'_>, AuthError> {
    if let Some(name) = FORBIDDEN_HEADERS.iter().find(|h| header.contains_key(**h)) {
        return Err(AuthError::new(
            AuthReason::ForbiddenHeader,
            format!("the token's header carries {name}, which is not accepted"),
        ));
    }
    // `Algorithm::from_str` matches exact spellings only, so `None`, `nOnE` and `none ` fail
    // like `none` itself (J02); HMAC is refused for every issuer (J03–J05).
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|alg| Algorithm::from_str(alg).ok())
        .filter(|alg| !is_hmac(*alg))
        .ok_or_else(|| {
            AuthError::new(
                AuthReason::UnsupportedAlg,
                "the token's algorithm (alg) is not supported",
            )
        })?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => {
            return Err(AuthError::malformed(
                "the token's key id (kid) is not a string",
            ));
        }
    };
    // RFC 9068 and RFC 7515 §4.1.9: a media type, compared case-insensitively, with the
    // `application/` prefix optional. No `typ` is a plain JWT.
    let typ = match header.get("typ") {
        None => "jwt".to_owned(),
        Some(Value::String(typ)) => normalize_type(typ),
        Some(_) => {
            return Err(AuthError::new(
                AuthReason::WrongType,
                "the token's type (typ) is not a string",
            ));
        }
    };
    Ok(Header { alg, kid, typ })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_is_shareable() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Verifier>();
    }
}
