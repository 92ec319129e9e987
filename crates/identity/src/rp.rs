//! Browser sign-in: countersign as an OpenID Connect relying party (authorization code + PKCE
//! S256 + `state` + `nonce`, `openidconnect` for the protocol and the ID-token checks), token
//! refresh to renew claims, the end-session URL for RP-initiated logout, and back-channel
//! logout tokens.
//!
//! What this module does not do is remember anything per browser: the caller stores the
//! `state`, `nonce` and PKCE verifier of a login in flight (bound to the browser that started
//! it) and hands them back to [`RelyingParty::finish`]. The checks here follow
//! `research/anchor-security.md` (C1–C23, D14–D15, B.8):
//!
//! - discovery with the issuer compared byte for byte, endpoints https (or loopback http);
//! - RFC 9207: the callback's `iss` must be the issuer the login was sent to, and must be there
//!   when the provider says it sends it — checked before the code is redeemed;
//! - ID tokens: signature with a per-issuer algorithm allow-list (never `none` or HMAC), `iss`,
//!   `aud` (no untrusted extra audiences), `azp`, `exp`, `iat` near now, `nonce`, `auth_time`
//!   within `max_age` when one was asked for, no duplicate JSON members, no key-carrying
//!   headers; an unknown `kid` refetches the key set once (rate-limited);
//! - logout tokens: `typ: logout+jwt`, the same signature rules, `aud`, `iat`, `jti`, the
//!   back-channel event, no `nonce`, `sub` or `sid`.
//!
//! [`provider`] holds one issuer at run time (discovery, the `openidconnect` client, ID-token
//! verification); [`logout`] verifies logout tokens. The HTTP client is the crate's
//! [`crate::http_client`]: rustls, redirects off.

mod logout;
mod provider;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use countersign_core::secret::Secret;
use countersign_core::{Principal, Timestamp};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse as _,
};
use serde_json::Value;
use url::Url;

use crate::issuer::Issuer;
use crate::settings::{IssuerSettings, is_hmac};
use provider::{RpIssuer, check_auth_time, core_alg};

pub use logout::{BACKCHANNEL_LOGOUT_EVENT, MAX_LOGOUT_TOKEN_AGE_SECS};

/// The longest provider error code shown back (error codes are short ASCII words).
const MAX_ERROR_CODE: usize = 64;

/// Why a sign-in, refresh or logout token was refused: a stable code for the audit log and a
/// lowercase message that is safe to show (no token, no claim value from the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpError {
    reason: &'static str,
    message: String,
}

impl RpError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// The stable reason code, e.g. `iss_mismatch`, `nonce_mismatch`, `invalid_id_token`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// One lowercase sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the provider could not be reached or answered nonsense: worth retrying
    /// later, not a reason to end a session.
    pub fn is_transient(&self) -> bool {
        matches!(self.reason, "provider_unavailable" | "token_request_failed")
    }
}

impl std::fmt::Display for RpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RpError {}

/// The web client registered at one issuer.
#[derive(Clone, Debug)]
pub struct LoginClient {
    /// The `client_id`.
    pub client_id: String,
    /// The secret (`client_secret_basic`); `None` for a public client (PKCE alone).
    pub client_secret: Option<Secret>,
    /// The scopes to ask for; `openid` is always sent.
    pub scopes: Vec<String>,
}

/// One issuer people can sign in with: its verification settings (URL, algorithms, claim
/// mapping) and the web client.
#[derive(Clone, Debug)]
pub struct LoginIssuerSettings {
    /// The issuer, as for bearer tokens.
    pub issuer: IssuerSettings,
    /// The web client.
    pub client: LoginClient,
}

/// A configured sign-in issuer, for the login page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginIssuer {
    /// The configured name.
    pub name: String,
    /// The issuer URL.
    pub url: String,
}

/// What [`RelyingParty::start`] produced: the address to send the browser to and the secrets
/// the caller must keep for the callback.
#[derive(Debug)]
pub struct AuthorizationStart {
    /// The authorization request URL.
    pub url: String,
    /// The `state` sent.
    pub state: String,
    /// The `nonce` sent.
    pub nonce: String,
    /// The PKCE verifier whose S256 challenge was sent.
    pub pkce_verifier: Secret,
}

/// The callback of a sign-in, with what the caller kept from [`RelyingParty::start`].
#[derive(Debug)]
pub struct Callback<'a> {
    /// The configured name of the issuer the login was sent to.
    pub issuer: &'a str,
    /// The `iss` parameter of the callback (RFC 9207), if any.
    pub iss: Option<&'a str>,
    /// The `code` parameter.
    pub code: Option<&'a str>,
    /// The `error` parameter.
    pub error: Option<&'a str>,
    /// The nonce sent.
    pub nonce: &'a str,
    /// The PKCE verifier.
    pub pkce_verifier: &'a Secret,
    /// The `max_age` sent, in seconds.
    pub max_age: Option<i64>,
}

/// A completed sign-in.
#[derive(Debug)]
pub struct SignedIn {
    /// Who signed in, from the verified ID token.
    pub principal: Principal,
    /// The ID token (for `id_token_hint` at logout).
    pub id_token: Secret,
    /// When the ID token expires: the claims are renewed after that.
    pub id_token_expires_at: Timestamp,
    /// The provider's session id (`sid`), for back-channel logout.
    pub sid: Option<String>,
    /// The refresh token, if the provider gave one. Keep it server-side only.
    pub refresh_token: Option<Secret>,
}

/// The outcome of a refresh.
#[derive(Debug)]
pub struct Refreshed {
    /// The principal with renewed claims (`auth_time` kept from the sign-in), or `None` when
    /// the provider returned no ID token, so the claims could not be renewed.
    pub principal: Option<Principal>,
    /// The new ID token and its expiry, with the principal.
    pub id_token: Option<(Secret, Timestamp)>,
    /// The refresh token to keep: a rotated one, or `None` to keep the old one.
    pub refresh_token: Option<Secret>,
}

/// A verified back-channel logout request: which sessions to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutNotice {
    /// The configured name of the issuer.
    pub issuer: String,
    /// The subject, as sessions know it (only when the issuer's subject claim is `sub`).
    pub subject: Option<String>,
    /// The provider session id.
    pub sid: Option<String>,
    /// The token's `jti`.
    pub jti: String,
}

/// Signs people in with the configured issuers. Cheap to clone; clones share caches.
#[derive(Clone, Debug)]
pub struct RelyingParty {
    issuers: Arc<[Arc<RpIssuer>]>,
    http: reqwest::Client,
    redirect_uri: RedirectUrl,
}

impl RelyingParty {
    /// Checks each issuer's settings; `redirect_uri` is the exact callback address registered
    /// at every provider (built from the configured public URL, never from a request).
    /// Fetches nothing: discovery happens on first use.
    pub fn new(
        issuers: Vec<LoginIssuerSettings>,
        redirect_uri: &str,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        let redirect_uri = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| format!("the sign-in redirect uri is not a url: {e}"))?;
        let mut built: Vec<Arc<RpIssuer>> = Vec::with_capacity(issuers.len());
        for LoginIssuerSettings { issuer, client } in issuers {
            issuer.validate()?;
            let name = &issuer.name;
            if built.iter().any(|i| &i.settings.name == name) {
                return Err(format!("sign-in issuer {name} is configured twice"));
            }
            if built.iter().any(|i| i.settings.url == issuer.url) {
                return Err(format!(
                    "two sign-in issuers have the url {}; RFC 9207 could not tell their responses apart",
                    issuer.url
                ));
            }
            if client.client_id.is_empty() {
                return Err(format!("issuer {name}: client_id is empty"));
            }
            let algorithms = issuer
                .algorithms
                .iter()
                .map(|a| {
                    core_alg(*a).filter(|_| !is_hmac(*a)).ok_or_else(|| {
                        format!("issuer {name}: algorithm {a:?} cannot verify id tokens")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            built.push(Arc::new(RpIssuer {
                keys: Issuer::new(issuer.clone(), http.clone()),
                settings: issuer,
                client,
                algorithms,
                metadata: tokio::sync::Mutex::new(None),
                last_jwks_refetch: Mutex::new(None),
            }));
        }
        Ok(Self {
            issuers: built.into(),
            http,
            redirect_uri,
        })
    }

    /// The sign-in issuers, in configuration order.
    pub fn issuers(&self) -> Vec<LoginIssuer> {
        self.issuers
            .iter()
            .map(|i| LoginIssuer {
                name: i.settings.name.clone(),
                url: i.settings.url.clone(),
            })
            .collect()
    }

    /// The redirect URI sent with every authorization request.
    pub fn redirect_uri(&self) -> &str {
        self.redirect_uri.as_str()
    }

    fn issuer(&self, name: &str) -> Result<&Arc<RpIssuer>, RpError> {
        self.issuers
            .iter()
            .find(|i| i.settings.name == name)
            .ok_or_else(|| RpError::new("unknown_issuer", "no such sign-in issuer"))
    }

    /// Builds the authorization request for `issuer`: code flow, fresh `state`, `nonce` and
    /// PKCE S256 verifier, the configured scopes, and `max_age` when fresh authentication is
    /// needed.
    pub async fn start(
        &self,
        issuer: &str,
        max_age: Option<i64>,
    ) -> Result<AuthorizationStart, RpError> {
        let issuer = self.issuer(issuer)?;
        let metadata = issuer.metadata(&self.http).await?;
        let client = issuer.client(&metadata, &self.redirect_uri);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in issuer.client.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(age) = max_age {
            request = request.set_max_age(Duration::from_secs(age.max(0).unsigned_abs()));
        }
        let (url, state, nonce) = request.url();
        Ok(AuthorizationStart {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: Secret::new(verifier.secret().clone()),
        })
    }

    /// Completes a sign-in: RFC 9207 `iss` check, then the code exchange with the PKCE
    /// verifier, then the ID token checks. Nothing is redeemed when the response is refused.
    pub async fn finish(
        &self,
        callback: Callback<'_>,
        now: Timestamp,
    ) -> Result<SignedIn, RpError> {
        let issuer = self.issuer(callback.issuer)?;
        let metadata = issuer.metadata(&self.http).await?;
        match callback.iss {
            Some(iss) if iss == issuer.settings.url => {}
            Some(_) => {
                return Err(RpError::new(
                    "iss_mismatch",
                    "the sign-in response names another issuer than the one the sign-in was sent to",
                ));
            }
            None if metadata
                .additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true) =>
            {
                return Err(RpError::new(
                    "iss_missing",
                    "the sign-in response has no issuer, though the provider always sends one",
                ));
            }
            None => {}
        }
        if let Some(error) = callback.error {
            return Err(RpError::new(
                "provider_refused",
                format!("the provider refused the sign-in ({})", error_code(error)),
            ));
        }
        let code = callback
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| RpError::new("missing_code", "the sign-in response has no code"))?;

        let client = issuer.client(&metadata, &self.redirect_uri);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| {
                RpError::new(
                    "provider_unavailable",
                    "the provider publishes no token endpoint",
                )
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(
                callback.pkce_verifier.expose().to_owned(),
            ))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = response.id_token().ok_or_else(|| {
            RpError::new(
                "invalid_id_token",
                "the provider returned no id token (is openid among the scopes?)",
            )
        })?;
        let expected_nonce = Nonce::new(callback.nonce.to_owned());
        let checked = issuer
            .verify_id_token(
                &self.http,
                metadata,
                &self.redirect_uri,
                &id_token.to_string(),
                |verifier| {
                    let max_age = callback.max_age;
                    verifier.set_auth_time_verifier_fn(move |auth_time| {
                        check_auth_time(auth_time, max_age, now)
                    })
                },
                &expected_nonce,
                now,
            )
            .await?;
        let refresh_token = response
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone()));
        Ok(SignedIn {
            sid: checked
                .claims
                .get("sid")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            principal: checked.principal,
            id_token: Secret::new(checked.token),
            id_token_expires_at: checked.expires_at,
            refresh_token,
        })
    }

    /// Renews the claims of a session with its refresh token (OpenID Connect Core §12). A new
    /// ID token must keep `iss`, `sub` and `aud`; `auth_time` stays the sign-in's.
    pub async fn refresh(
        &self,
        issuer: &str,
        refresh_token: &Secret,
        previous: &Principal,
        now: Timestamp,
    ) -> Result<Refreshed, RpError> {
        let issuer = self.issuer(issuer)?;
        let metadata = issuer.metadata(&self.http).await?;
        let client = issuer.client(&metadata, &self.redirect_uri);
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .map_err(|_| {
                RpError::new(
                    "provider_unavailable",
                    "the provider publishes no token endpoint",
                )
            })?
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let rotated = response
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone()));
        let Some(id_token) = response.id_token() else {
            return Ok(Refreshed {
                principal: None,
                id_token: None,
                refresh_token: rotated,
            });
        };
        // A refreshed ID token need not carry a nonce (Core §12.2); it came straight from the
        // token endpoint, authenticated with our client credentials.
        let any_nonce = |_: Option<&Nonce>| Ok::<(), String>(());
        let checked = issuer
            .verify_id_token(
                &self.http,
                metadata,
                &self.redirect_uri,
                &id_token.to_string(),
                |verifier| verifier,
                any_nonce,
                now,
            )
            .await?;
        if checked.principal.identity() != previous.identity() {
            return Err(RpError::new(
                "subject_changed",
                "the refreshed id token names another subject",
            ));
        }
        let principal = checked.principal.with_auth_time(previous.auth_time());
        Ok(Refreshed {
            principal: Some(principal),
            id_token: Some((Secret::new(checked.token), checked.expires_at)),
            refresh_token: rotated,
        })
    }

    /// The provider's end-session URL with `id_token_hint`, `client_id` and
    /// `post_logout_redirect_uri` (RP-Initiated Logout 1.0), or `None` when the provider has no
    /// end-session endpoint or cannot be reached.
    pub async fn end_session_url(
        &self,
        issuer: &str,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
    ) -> Option<String> {
        let issuer = self.issuer(issuer).ok()?;
        let metadata = issuer.metadata(&self.http).await.ok()?;
        let endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_deref()?;
        let mut url = Url::parse(endpoint).ok()?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                query.append_pair("id_token_hint", hint);
            }
            query
                .append_pair("client_id", &issuer.client.client_id)
                .append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        }
        Some(url.to_string())
    }
    /// Verifies a back-channel logout token (Back-Channel Logout 1.0 §2.6, B.8).
    pub async fn verify_logout_token(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<LogoutNotice, RpError> {
        logout::verify(&self.issuers, token, now).await
    }
}

/// Turns a token endpoint failure into a refusal: a provider's error response is final (an
/// `invalid_grant` ends a session), anything else may be transient.
fn token_error<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    e: RequestTokenError<RE, T>,
) -> RpError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let code = serde_json::to_value(&r)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(error_code))
                .unwrap_or_else(|| "unknown error".to_owned());
            RpError::new(
                "token_refused",
                format!("the provider's token endpoint refused the request ({code})"),
            )
        }
        RequestTokenError::Parse(_, _) => RpError::new(
            "invalid_id_token",
            "the provider's token response could not be read (an unsupported or malformed id token?)",
        ),
        RequestTokenError::Request(e) => {
            tracing::warn!(error = %e, "token request failed");
            RpError::new(
                "token_request_failed",
                "the provider's token endpoint could not be reached",
            )
        }
        RequestTokenError::Other(m) => RpError::new(
            "token_request_failed",
            format!(
                "the provider's token endpoint answered unexpectedly: {}",
                error_code(&m)
            ),
        ),
    }
}

/// An error code from the provider, made safe to show: printable ASCII, bounded.
fn error_code(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_ERROR_CODE)
        .collect()
}

/// When an ID token (verified earlier, stored since) expires, read without verifying again.
pub fn id_token_expiry(id_token: &str) -> Option<Timestamp> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    DateTime::from_timestamp(claims.get("exp")?.as_i64()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> Timestamp {
        DateTime::from_timestamp(NOW, 0).unwrap_or_default()
    }

    #[test]
    fn provider_error_codes_are_made_safe() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("<script>\u{7}x"), "<script>x");
        assert_eq!(error_code(&"a".repeat(500)).len(), MAX_ERROR_CODE);
    }

    #[test]
    fn id_token_expiry_reads_exp() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1800000000}"#);
        assert_eq!(id_token_expiry(&format!("e30.{payload}.c2ln")), Some(now()));
        assert_eq!(id_token_expiry("garbage"), None);
    }
}
