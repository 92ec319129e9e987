//! `/.well-known/openid-configuration` and `/jwks.json`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::provider::Shared;

/// The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414).
pub(crate) async fn metadata(State(provider): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({
        "issuer": provider.config.issuer,
        "authorization_endpoint": provider.endpoint("/authorize"),
        "token_endpoint": provider.endpoint("/token"),
        "jwks_uri": provider.endpoint("/jwks.json"),
        "userinfo_endpoint": provider.endpoint("/userinfo"),
        "end_session_endpoint": provider.endpoint("/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "subject_types_supported": ["public"],
        "scopes_supported": crate::authorize::SUPPORTED_SCOPES,
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nbf", "auth_time", "nonce", "sid", "at_hash",
            "azp", "name", "preferred_username", "email", "email_verified", "groups", "team",
        ],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "none",
        ],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
}

/// The public signing keys.
pub(crate) async fn jwks(State(provider): State<Shared>) -> Response {
    let mut response = Json(provider.key.jwks()).into_response();
    // The key changes on every start; a short cache keeps a restarted sandbox working.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}
