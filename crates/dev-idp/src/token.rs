//! `/token`: the authorization-code, refresh-token and client-credentials grants (RFC 6749 §4–6).

use axum::Json;
use axum::extract::rejection::RawFormRejection;
use axum::extract::{RawForm, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::clock::now;
use crate::config::DevClient;
use crate::oauth_error::OAuthError;
use crate::params::Params;
use crate::provider::{Provider, Shared};
use crate::secrets::{constant_time_eq, is_pkce_value, pkce_s256, random_token};
use crate::store::{REFRESH_TTL, RefreshGrant};
use crate::tokens::TOKEN_TTL;

#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut response = Json(self).into_response();
        // RFC 6749 §5.1: token responses must not be cached.
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

/// POST `/token`.
pub(crate) async fn token(
    State(provider): State<Shared>,
    headers: HeaderMap,
    form: Result<RawForm, RawFormRejection>,
) -> Result<TokenResponse, OAuthError> {
    // A wrong content type gets an OAuth error body too, not axum's plain-text rejection.
    let RawForm(form) = form.map_err(|_| {
        OAuthError::invalid_request("send the parameters as application/x-www-form-urlencoded")
    })?;
    let params = Params::parse(&form).map_err(OAuthError::invalid_request)?;
    let client = authenticate(&provider, &headers, &params)?;
    let now = now();
    match params.get("grant_type") {
        Some("authorization_code") => authorization_code(&provider, client, &params, now),
        Some("refresh_token") => refresh_token(&provider, client, &params, now),
        Some("client_credentials") => client_credentials(&provider, client, &params, now),
        Some(other) => Err(OAuthError::new(
            "unsupported_grant_type",
            format!("grant_type `{other}` is not supported"),
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

/// Client authentication (RFC 6749 §2.3): `client_secret_basic` or `client_secret_post` for
/// confidential clients, `client_id` alone for public ones.
fn authenticate<'a>(
    provider: &'a Provider,
    headers: &HeaderMap,
    params: &Params,
) -> Result<&'a DevClient, OAuthError> {
    let basic = basic_credentials(headers)?;
    let (client_id, secret) = match basic {
        Some((id, secret)) => {
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method",
                ));
            }
            if params.get("client_id").is_some_and(|form_id| form_id != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the form differs from the authorization header",
                ));
            }
            (id, Some(secret).filter(|s| !s.is_empty()))
        }
        None => match params.get("client_id") {
            Some(id) => (
                id.to_owned(),
                params.get("client_secret").map(str::to_owned),
            ),
            None => {
                return Err(OAuthError::invalid_client(
                    "client authentication is required",
                ));
            }
        },
    };
    let client = provider
        .config
        .client(&client_id)
        .ok_or_else(|| OAuthError::invalid_client(format!("unknown client `{client_id}`")))?;
    match (&client.secret, secret) {
        (None, None) => Ok(client),
        (None, Some(_)) => Err(OAuthError::invalid_client(format!(
            "client `{client_id}` is public and has no secret"
        ))),
        (Some(_), None) => Err(OAuthError::invalid_client(format!(
            "client `{client_id}` must authenticate with its secret"
        ))),
        (Some(expected), Some(given))
            if constant_time_eq(expected.as_bytes(), given.as_bytes()) =>
        {
            Ok(client)
        }
        (Some(_), Some(_)) => Err(OAuthError::invalid_client(format!(
            "wrong secret for client `{client_id}`"
        ))),
    }
}

/// The `(client_id, secret)` of an `Authorization: Basic` header, form-decoded as RFC 6749
/// §2.3.1 asks; `None` without such a header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthError::invalid_client("malformed basic authorization header");
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "use basic authentication for clients",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let form_decode = |part: &str| {
        url::form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((form_decode(id), form_decode(secret))))
}

fn authorization_code(
    provider: &Provider,
    client: &DevClient,
    params: &Params,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    // Taking the code removes it, whatever happens next: a code is tried once (RFC 6749 §4.1.2).
    let pending = provider.store.take_code(code, now).ok_or_else(|| {
        OAuthError::invalid_grant("authorization code is unknown, expired or already used")
    })?;
    if pending.login.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    if pending.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the one in the authorization request",
        ));
    }
    let verifier = params.get("code_verifier").unwrap_or_default();
    if !is_pkce_value(verifier)
        || !constant_time_eq(
            pkce_s256(verifier).as_bytes(),
            pending.code_challenge.as_bytes(),
        )
    {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }

    let tokens = provider
        .minter()
        .user_tokens(&pending.login, pending.nonce.as_deref(), now)
        .map_err(|e| OAuthError::server_error(format!("cannot sign tokens: {e}")))?;
    let refresh_token = random_token();
    let scope = pending.login.scope.clone();
    tracing::info!(client_id = %client.client_id, user = pending.login.user.username, "dev provider issued tokens");
    provider.store.insert_refresh(
        &refresh_token,
        RefreshGrant {
            login: pending.login,
            expires_at: now + REFRESH_TTL,
        },
        now,
    );
    Ok(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: TOKEN_TTL,
        id_token: Some(tokens.id_token),
        refresh_token: Some(refresh_token),
        scope: Some(scope),
    })
}

fn refresh_token(
    provider: &Provider,
    client: &DevClient,
    params: &Params,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let mut grant = provider
        .store
        .take_refresh(token, &client.client_id, now)
        .ok_or_else(|| {
            OAuthError::invalid_grant("refresh token is unknown, expired or already used")
        })?;
    // RFC 6749 §6: a refresh may narrow the scope, never widen it.
    if let Some(requested) = params.get("scope") {
        let granted: Vec<&str> = grant.login.scope.split(' ').collect();
        if let Some(extra) = requested.split(' ').find(|s| !granted.contains(s)) {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("scope `{extra}` was not granted originally"),
            ));
        }
        if !requested.split(' ').any(|s| s == "openid") {
            return Err(OAuthError::new(
                "invalid_scope",
                "scope must include `openid`",
            ));
        }
        grant.login.scope = requested.to_owned();
    }

    let tokens = provider
        .minter()
        .user_tokens(&grant.login, None, now)
        .map_err(|e| OAuthError::server_error(format!("cannot sign tokens: {e}")))?;
    // Rotation: the presented token is gone; the new one keeps the chain's original expiry.
    let refresh_token = random_token();
    let scope = grant.login.scope.clone();
    provider.store.insert_refresh(&refresh_token, grant, now);
    Ok(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: TOKEN_TTL,
        id_token: Some(tokens.id_token),
        refresh_token: Some(refresh_token),
        scope: Some(scope),
    })
}

fn client_credentials(
    provider: &Provider,
    client: &DevClient,
    params: &Params,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let Some(workload) = client.workload else {
        return Err(OAuthError::new(
            "unauthorized_client",
            format!(
                "client `{}` may not use client_credentials",
                client.client_id
            ),
        ));
    };
    let scope = params.get("scope");
    let access_token = provider
        .minter()
        .workload_token(&client.client_id, workload, scope, now)
        .map_err(|e| OAuthError::server_error(format!("cannot sign the token: {e}")))?;
    tracing::info!(client_id = %client.client_id, sub = workload.sub, "dev provider issued a workload token");
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: TOKEN_TTL,
        id_token: None,
        refresh_token: None,
        scope: scope.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("ascii"),
        );
        headers
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = STANDARD.encode("demo%2Dci:a%3Ab+c");
        let credentials = basic_credentials(&basic(&format!("Basic {encoded}"))).expect("valid");
        assert_eq!(credentials, Some(("demo-ci".into(), "a:b c".into())));
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        assert!(basic_credentials(&basic("Bearer abc")).is_err());
        assert!(basic_credentials(&basic("Basic !!!")).is_err());
        assert_eq!(basic_credentials(&HeaderMap::new()).expect("absent"), None);
    }
}
