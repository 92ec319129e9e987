//! The standards endpoints that let anyone verify our grant tokens offline: the issuer
//! metadata (`/.well-known/openid-configuration`) and the public keys (`/.well-known/jwks.json`).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

/// How long verifiers may cache the metadata and the keys. Short, because a rotation
/// publishes the next key ahead of use by `key_rotation_delay`, which is far longer.
const CACHE: &str = "public, max-age=300";

pub(super) async fn discovery(State(state): State<AppState>) -> impl IntoResponse {
    let issuer = state.issuer();
    let alg = state.settings.server.signing_alg.clone();
    let body = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
        "id_token_signing_alg_values_supported": [alg],
        "token_endpoint_auth_signing_alg_values_supported": [alg],
        "access_token_signing_alg_values_supported": [alg],
        "subject_types_supported": ["public"],
        "response_types_supported": [],
        "grant_types_supported": [],
        "service_documentation": format!("{issuer}/api/v1/openapi.json"),
    });
    ([(header::CACHE_CONTROL, CACHE)], Json(body))
}

pub(super) async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let now = state.engine.now();
    (
        [
            (header::CACHE_CONTROL, CACHE),
            (header::CONTENT_TYPE, "application/jwk-set+json"),
        ],
        Json(state.keys.jwks(now)),
    )
}
