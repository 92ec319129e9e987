//! Who is calling the API: the bearer token from the `Authorization` header, verified against
//! the configured issuers. A failure is a 401 with an RFC 6750 challenge and an audit event naming
//! the reason, never the token.
//!
//! Without an `Authorization` header, a GET (reads and event streams, which change nothing)
//! may instead present a live web session cookie: the pages' live updates use it. Anything
//! that changes state needs a bearer token, so the API offers no cross-site request forgery
//! surface.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use countersign_core::Principal;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// The verified caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Arc<Principal>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (method, uri) = (&parts.method, &parts.uri);
        let audit = |reason: &'static str, issuer: Option<String>| {
            let engine = state.engine.clone();
            let detail = json!({"method": method.as_str(), "path": uri.path(), "issuer": issuer});
            async move {
                if let Err(e) = engine.record_auth_failure(reason, detail).await {
                    tracing::error!(error = %e, "could not audit an authentication failure");
                }
            }
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            if parts.method == axum::http::Method::GET
                && let Some(principal) = state
                    .sessions
                    .api_principal(&state.engine, &parts.headers)
                    .await
            {
                return Ok(Caller(Arc::new(principal)));
            }
            audit("missing_token", None).await;
            return Err(ApiError::unauthorized(
                None,
                "this endpoint needs a bearer token (Authorization: Bearer <token>)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            audit("malformed_authorization", None).await;
            return Err(ApiError::unauthorized(
                Some("invalid_request"),
                "the authorization header must be 'Bearer <token>'",
            ));
        };
        let now = state.engine.now();
        match state.verifier.verify(token, now).await {
            Ok(principal) => {
                state.directory.seen(&principal, now);
                Ok(Caller(principal))
            }
            Err(e) => {
                tracing::info!(reason = e.reason(), "bearer token refused");
                audit(e.reason(), None).await;
                Err(ApiError::unauthorized(Some("invalid_token"), e.message()))
            }
        }
    }
}
