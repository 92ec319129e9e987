//! The OAuth pieces both sign-in flows share: the server's sign-in configuration, the issuer's
//! discovery document, the token endpoint, PKCE (RFC 7636, S256) and random values.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::failure::Failure;
use crate::http::{self, CALL_TIMEOUT};

use countersign_api::AuthConfig;
/// One issuer, as the server describes it to clients (`GET /api/v1/auth/config`).
pub use countersign_api::AuthIssuer as IssuerInfo;

/// The RFC 8707 resource to ask for: the audience, when it is an absolute URI (the parameter
/// must be one).
pub fn resource(info: &IssuerInfo) -> Option<&str> {
    info.audience
        .as_deref()
        .filter(|a| url::Url::parse(a).is_ok())
}

/// Reads the server's sign-in configuration (a public endpoint).
pub async fn auth_config(http: &reqwest::Client, server: &str) -> Result<AuthConfig, Failure> {
    let url = format!("{server}/api/v1/auth/config");
    let response = http
        .get(&url)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            http::unreachable(
                "the server",
                server,
                &e,
                "check --server or COUNTERSIGN_SERVER",
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::error(format!(
            "{server} answered {status} for its sign-in configuration; is it a countersign server?"
        )));
    }
    response.json().await.map_err(|_| {
        Failure::error(format!(
            "{server} sent a sign-in configuration that is not countersign's; is it a countersign server?"
        ))
    })
}

/// The parts of an issuer's discovery document the command line uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// Must equal the issuer URL byte for byte.
    pub issuer: String,
    /// Where the browser signs in.
    pub authorization_endpoint: Option<String>,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// RFC 8628; absent: no device flow.
    pub device_authorization_endpoint: Option<String>,
    /// RFC 7009; used by `logout`.
    pub revocation_endpoint: Option<String>,
    /// Scopes the issuer knows.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// RFC 9207: the issuer names itself in the redirect back.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Reads `{issuer}/.well-known/openid-configuration` and checks that it names itself.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, Failure> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let response = http
        .get(&url)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            http::unreachable(
                "the identity provider",
                issuer,
                &e,
                "is it up, and reachable from here?",
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::error(format!(
            "the identity provider {issuer} answered {status} for its discovery document"
        )));
    }
    let metadata: Metadata = response.json().await.map_err(|_| {
        Failure::error(format!(
            "the identity provider {issuer} sent a discovery document that is not valid"
        ))
    })?;
    if metadata.issuer != issuer {
        return Err(Failure::error(format!(
            "the identity provider at {issuer} calls itself '{}'; the server's issuer setting must match it exactly",
            metadata.issuer
        )));
    }
    Ok(metadata)
}

/// The scopes to ask for: the server's list (OpenID's basics when it has none), plus
/// `offline_access` where the issuer offers it, so the login can be refreshed.
pub fn scopes(info: &IssuerInfo, metadata: &Metadata) -> String {
    let mut scopes: Vec<String> = if info.scopes.is_empty() {
        ["openid", "profile", "email"].map(String::from).to_vec()
    } else {
        info.scopes.clone()
    };
    if metadata
        .scopes_supported
        .iter()
        .any(|s| s == "offline_access")
        && !scopes.iter().any(|s| s == "offline_access")
    {
        scopes.push("offline_access".into());
    }
    scopes.join(" ")
}

/// A token endpoint's successful answer.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The bearer token for the server.
    pub access_token: String,
    /// For refreshing without the user.
    pub refresh_token: Option<String>,
    /// Lifetime of the access token, in seconds.
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a token request failed.
#[derive(Debug)]
pub enum TokenError {
    /// The issuer refused with an OAuth error (`authorization_pending`, `invalid_grant`…).
    OAuth {
        /// The error code.
        error: String,
        /// Its description, if any.
        description: Option<String>,
    },
    /// It could not be asked, or answered nonsense.
    Failed(Failure),
}

impl TokenError {
    /// `error: description` for messages.
    pub fn describe(&self) -> String {
        match self {
            TokenError::OAuth {
                error,
                description: Some(d),
            } => format!("{error}: {d}"),
            TokenError::OAuth { error, .. } => error.clone(),
            TokenError::Failed(f) => f.message.clone(),
        }
    }
}

/// POSTs a form to a token (or device authorization) endpoint and reads the JSON answer.
pub async fn post_form<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    endpoint: &str,
    form: &[(&str, &str)],
) -> Result<T, TokenError> {
    let response = http
        .post(endpoint)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            TokenError::Failed(http::unreachable(
                "the identity provider",
                endpoint,
                &e,
                "try again",
            ))
        })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return serde_json::from_value(body).map_err(|_| {
            TokenError::Failed(Failure::error(format!(
                "the identity provider's {} sent an answer that is not valid",
                http::strip_query(endpoint)
            )))
        });
    }
    match body.get("error").and_then(Value::as_str) {
        Some(error) => Err(TokenError::OAuth {
            error: error.to_string(),
            description: body
                .get("error_description")
                .and_then(Value::as_str)
                .map(str::to_string),
        }),
        None => Err(TokenError::Failed(Failure::error(format!(
            "the identity provider's {} answered {status}",
            http::strip_query(endpoint)
        )))),
    }
}

/// 32 random bytes, base64url: PKCE verifiers and `state`.
pub fn random_string() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The S256 challenge of a PKCE verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The claims of a JWT, *not verified*: only for display (who logged in) and for knowing when
/// a token we were handed expires. The server verifies every token it is given.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// The `exp` of a JWT, unverified (see [`unverified_claims`]).
pub fn unverified_expiry(token: &str) -> Option<i64> {
    unverified_claims(token)?.get("exp")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_strings_differ() {
        let (a, b) = (random_string(), random_string());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn claims_of_a_jwt() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","exp":1700000000}"#);
        let token = format!("e30.{payload}.sig");
        assert_eq!(unverified_expiry(&token), Some(1_700_000_000));
        assert!(unverified_claims("not a jwt").is_none());
    }

    #[test]
    fn scopes_add_offline_access_when_offered() {
        let info = IssuerInfo {
            name: "idp".into(),
            issuer: "https://idp".into(),
            kind: countersign_api::PrincipalKind::Human,
            cli_client_id: Some("cli".into()),
            audience: Some("api://countersign".into()),
            scopes: vec![],
        };
        let mut metadata = Metadata {
            issuer: "https://idp".into(),
            authorization_endpoint: None,
            token_endpoint: "https://idp/token".into(),
            device_authorization_endpoint: None,
            revocation_endpoint: None,
            scopes_supported: vec![],
            authorization_response_iss_parameter_supported: false,
        };
        assert_eq!(scopes(&info, &metadata), "openid profile email");
        metadata.scopes_supported = vec!["openid".into(), "offline_access".into()];
        assert_eq!(
            scopes(&info, &metadata),
            "openid profile email offline_access"
        );
        assert_eq!(resource(&info), Some("api://countersign"));
    }
}
