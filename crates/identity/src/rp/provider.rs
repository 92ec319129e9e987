//! One sign-in issuer at run time: discovery (issuer compared byte for byte, endpoints https
//! or loopback), the `openidconnect` client built from it, and ID-token verification with the
//! issuer's algorithm allow-list, a refetch of the key set for an unknown `kid`, and strict
//! reading of the verified claims.

use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::DateTime;
use countersign_core::{Principal, Timestamp};
use jsonwebtoken::Algorithm;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, ClientId, ClientSecret, IssuerUrl, JsonWebKeySet, ProviderMetadata,
    RedirectUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

use super::logout::checked_header;
use super::{LoginClient, RpError};
use crate::claims::{LEEWAY_SECS, MAX_SUBJECT_BYTES};
use crate::issuer::{Issuer, KID_REFETCH_INTERVAL};
use crate::jws;
use crate::settings::{IssuerSettings, check_fetchable};

/// How long discovery metadata and the key set are used before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(600);
/// An ID token issued longer ago than this is refused (the suite's bound is 5 minutes; ours
/// leaves room for a slow sign-in page).
const MAX_ID_TOKEN_AGE_SECS: i64 = 10 * 60;

/// The discovery fields beyond OpenID Connect Discovery 1.0 that sign-in and logout need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub(super) struct ExtraMetadata {
    /// RP-Initiated Logout 1.0.
    pub(super) end_session_endpoint: Option<String>,
    /// RFC 9207 §3: the provider sends `iss` with every authorization response.
    pub(super) authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

pub(super) type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The `openidconnect` client of one issuer, as built from its discovery metadata.
pub(super) type WebClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Cached discovery metadata (with its key set).
#[derive(Debug)]
pub(super) struct Cached {
    metadata: Metadata,
    fetched_at: Instant,
}

/// One sign-in issuer at run time.
#[derive(Debug)]
pub(super) struct RpIssuer {
    pub(super) settings: IssuerSettings,
    pub(super) client: LoginClient,
    pub(super) algorithms: Vec<CoreJwsSigningAlgorithm>,
    /// Keys for logout tokens, with the bearer verifier's caching and rate limits.
    pub(super) keys: Issuer,
    pub(super) metadata: tokio::sync::Mutex<Option<Cached>>,
    pub(super) last_jwks_refetch: Mutex<Option<Instant>>,
}

/// `CoreJwsSigningAlgorithm` for one of our algorithms (never HMAC or `none`).
pub(super) fn core_alg(alg: Algorithm) -> Option<CoreJwsSigningAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Algorithm::RS384 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
        Algorithm::RS512 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
        Algorithm::PS256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        Algorithm::PS384 => CoreJwsSigningAlgorithm::RsaSsaPssSha384,
        Algorithm::PS512 => CoreJwsSigningAlgorithm::RsaSsaPssSha512,
        Algorithm::ES256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        Algorithm::ES384 => CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        Algorithm::EdDSA => CoreJwsSigningAlgorithm::EdDsa,
        _ => return None,
    })
}

/// The `auth_time` rule: required and recent enough when `max_age` was sent; never in the
/// future.
pub(super) fn check_auth_time(
    auth_time: Option<DateTime<chrono::Utc>>,
    max_age: Option<i64>,
    now: Timestamp,
) -> Result<(), String> {
    let now = now.timestamp();
    match (auth_time.map(|t| t.timestamp()), max_age) {
        (Some(t), _) if t > now + LEEWAY_SECS => {
            Err("the authentication time is in the future".to_owned())
        }
        (Some(t), Some(age)) if t < now - age - LEEWAY_SECS => Err(
            "the provider did not authenticate again as asked (auth_time older than max_age)"
                .to_owned(),
        ),
        (None, Some(_)) => {
            Err("the id token has no auth_time, though max_age was asked for".to_owned())
        }
        _ => Ok(()),
    }
}

/// A checked ID token.
pub(super) struct CheckedIdToken {
    pub(super) token: String,
    pub(super) claims: Map<String, Value>,
    pub(super) principal: Principal,
    pub(super) expires_at: Timestamp,
}

impl RpIssuer {
    /// Discovery metadata with its key set, fetched when absent or older than the TTL.
    pub(super) async fn metadata(&self, http: &reqwest::Client) -> Result<Metadata, RpError> {
        let mut cache = self.metadata.lock().await;
        if let Some(c) = cache.as_ref()
            && c.fetched_at.elapsed() < METADATA_TTL
        {
            return Ok(c.metadata.clone());
        }
        match self.discover(http).await {
            Ok(metadata) => {
                *cache = Some(Cached {
                    metadata: metadata.clone(),
                    fetched_at: Instant::now(),
                });
                Ok(metadata)
            }
            Err(e) => match cache.as_ref() {
                // A provider that is briefly down keeps working with what we had.
                Some(c) if e.is_transient() => Ok(c.metadata.clone()),
                _ => Err(e),
            },
        }
    }

    async fn discover(&self, http: &reqwest::Client) -> Result<Metadata, RpError> {
        let url = &self.settings.url;
        let issuer_url = IssuerUrl::new(url.clone())
            .map_err(|_| RpError::new("provider_unavailable", format!("{url} is not a url")))?;
        let metadata = Metadata::discover_async(issuer_url, http)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.settings.name, error = %e, "sign-in discovery failed");
                let message = match &e {
                    openidconnect::DiscoveryError::Validation(_) => {
                        return RpError::new(
                            "discovery_invalid",
                            format!("the discovery document of {url} names another issuer"),
                        );
                    }
                    _ => format!("the discovery document or key set of {url} could not be read"),
                };
                RpError::new("provider_unavailable", message)
            })?;
        // Byte for byte (Discovery §4.3): the library compares parsed URLs.
        if metadata.issuer().as_str() != url {
            return Err(RpError::new(
                "discovery_invalid",
                format!("the discovery document of {url} names another issuer"),
            ));
        }
        let endpoints = [
            Some(metadata.authorization_endpoint().as_str()),
            metadata.token_endpoint().map(|t| t.as_str()),
            Some(metadata.jwks_uri().as_str()),
            metadata
                .additional_metadata()
                .end_session_endpoint
                .as_deref(),
        ];
        for endpoint in endpoints.into_iter().flatten() {
            let ok = Url::parse(endpoint)
                .ok()
                .is_some_and(|u| check_fetchable(&u).is_ok());
            if !ok {
                return Err(RpError::new(
                    "discovery_invalid",
                    format!("an endpoint in the discovery document of {url} is not https"),
                ));
            }
        }
        Ok(metadata)
    }

    pub(super) fn client(&self, metadata: &Metadata, redirect_uri: &RedirectUrl) -> WebClient {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.client.client_id.clone()),
            self.client
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(redirect_uri.clone())
    }

    /// Verifies an ID token with `openidconnect` (signature with this issuer's algorithms,
    /// `iss`, `aud`, `exp`, `iat`, nonce, and whatever `tune` adds), retrying once with a
    /// refetched key set when no key matched; then reads the claims strictly and builds the
    /// principal.
    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is one check of the ID token; a struct would only rename them"
    )]
    pub(super) async fn verify_id_token<N: openidconnect::NonceVerifier + Copy>(
        &self,
        http: &reqwest::Client,
        mut metadata: Metadata,
        redirect_uri: &RedirectUrl,
        token: &str,
        tune: impl Fn(
            openidconnect::IdTokenVerifier<'_, CoreJsonWebKey>,
        ) -> openidconnect::IdTokenVerifier<'_, CoreJsonWebKey>,
        nonce: N,
        now: Timestamp,
    ) -> Result<CheckedIdToken, RpError> {
        let parsed = openidconnect::core::CoreIdToken::from_str(token)
            .map_err(|_| RpError::new("invalid_id_token", "the id token is malformed"))?;
        let mut refetched = false;
        loop {
            let client = self.client(&metadata, redirect_uri);
            let verifier = tune(
                client
                    .id_token_verifier()
                    .set_allowed_algs(self.algorithms.clone())
                    // exp is checked against now minus the leeway.
                    .set_time_fn(move || now - chrono::Duration::seconds(LEEWAY_SECS))
                    .set_issue_time_verifier_fn(move |iat| check_iat(iat, now)),
            );
            match parsed.claims(&verifier, nonce) {
                Ok(_) => break,
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                    openidconnect::SignatureVerificationError::NoMatchingKey,
                )) if !refetched && self.may_refetch_jwks() => {
                    refetched = true;
                    let jwks = JsonWebKeySet::fetch_async(metadata.jwks_uri(), http)
                        .await
                        .map_err(|_| {
                            RpError::new(
                                "provider_unavailable",
                                "the provider's key set could not be read",
                            )
                        })?;
                    metadata = metadata.set_jwks(jwks);
                    let mut cache = self.metadata.lock().await;
                    if let Some(c) = cache.as_mut() {
                        c.metadata = metadata.clone();
                    }
                }
                Err(e) => return Err(id_token_error(&e)),
            }
        }
        // The signature covers exactly these bytes; read them strictly (no duplicate members,
        // no key-carrying headers).
        let jws = jws::parse(token)
            .map_err(|_| RpError::new("invalid_id_token", "the id token is malformed"))?;
        checked_header(&jws.header)?;
        let claims = jws.payload;
        if let Some(azp) = claims.get("azp")
            && azp.as_str() != Some(self.client.client_id.as_str())
        {
            return Err(RpError::new(
                "wrong_audience",
                "the id token was issued to another client (azp)",
            ));
        }
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| RpError::new("invalid_id_token", "the id token has no valid exp"))?;
        let subject = match claims.get(&self.settings.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES => s.clone(),
            _ => {
                return Err(RpError::new(
                    "invalid_id_token",
                    format!(
                        "the id token has no usable subject claim {}",
                        self.settings.subject_claim
                    ),
                ));
            }
        };
        let principal = crate::claims::principal(&self.settings, subject, claims.clone());
        Ok(CheckedIdToken {
            token: token.to_owned(),
            claims,
            principal,
            expires_at,
        })
    }

    /// The key set is refetched for an unknown `kid` at most once per interval.
    fn may_refetch_jwks(&self) -> bool {
        let mut last = self
            .last_jwks_refetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < KID_REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// `iat` must be near now: not in the future beyond the leeway, not older than a sign-in can
/// take.
fn check_iat(iat: DateTime<chrono::Utc>, now: Timestamp) -> Result<(), String> {
    let (iat, now) = (iat.timestamp(), now.timestamp());
    if iat > now + LEEWAY_SECS {
        Err("the id token was issued in the future".to_owned())
    } else if iat < now - MAX_ID_TOKEN_AGE_SECS {
        Err("the id token was issued too long ago".to_owned())
    } else {
        Ok(())
    }
}

/// Maps the library's refusal onto our reason codes; the message names the check, never the
/// token's content.
fn id_token_error(e: &openidconnect::ClaimsVerificationError) -> RpError {
    use openidconnect::ClaimsVerificationError as E;
    let (reason, message) = match e {
        E::InvalidNonce(_) => (
            "nonce_mismatch",
            "the id token's nonce is not the one this sign-in sent",
        ),
        E::InvalidAudience(_) => (
            "wrong_audience",
            "the id token is not meant for this service",
        ),
        E::InvalidIssuer(_) => ("iss_mismatch", "the id token names another issuer"),
        E::Expired(_) => ("expired", "the id token has expired or is not current"),
        E::InvalidAuthTime(_) => (
            "stale_authentication",
            "the provider did not confirm a recent authentication (auth_time)",
        ),
        E::SignatureVerification(_) => (
            "bad_signature",
            "the id token's signature or algorithm is not acceptable",
        ),
        _ => ("invalid_id_token", "the id token is not acceptable"),
    };
    tracing::info!(reason, error = %e, "id token refused");
    RpError::new(reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> Timestamp {
        DateTime::from_timestamp(NOW, 0).unwrap_or_default()
    }

    #[test]
    fn auth_time_rules() {
        let at = |s: i64| DateTime::from_timestamp(s, 0);
        assert!(check_auth_time(None, None, now()).is_ok());
        assert!(check_auth_time(at(NOW - 3600), None, now()).is_ok());
        assert!(check_auth_time(at(NOW - 30), Some(600), now()).is_ok());
        assert!(check_auth_time(at(NOW - 3600), Some(600), now()).is_err());
        assert!(check_auth_time(None, Some(600), now()).is_err());
        assert!(check_auth_time(at(NOW + 3600), None, now()).is_err());
    }

    #[test]
    fn iat_must_be_recent() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
        assert!(check_iat(at(NOW - 5), now()).is_ok());
        assert!(check_iat(at(NOW + 600), now()).is_err());
        assert!(check_iat(at(NOW - 7 * 86_400), now()).is_err());
    }
}
