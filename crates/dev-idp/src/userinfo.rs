//! `/userinfo`: the claims of the person (or workload) an access token was issued for.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use crate::keys::ACCESS_TOKEN_TYP;
use crate::oauth_error::BearerError;
use crate::provider::Shared;

/// Claims that describe the token rather than its subject; userinfo leaves them out.
const TOKEN_CLAIMS: [&str; 10] = [
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "auth_time",
    "sid",
];

/// GET or POST `/userinfo` with `Authorization: Bearer <access token>` (RFC 6750 §2.1).
pub(crate) async fn userinfo(
    State(provider): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Map<String, Value>>, BearerError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(BearerError { description: None })?;
    let data = provider
        .key
        .verify::<Map<String, Value>>(
            token,
            ACCESS_TOKEN_TYP,
            &provider.config.issuer,
            Some(&provider.config.api_audience),
            true,
        )
        .map_err(|problem| BearerError {
            description: Some(problem),
        })?;
    let mut claims = data.claims;
    claims.retain(|name, _| !TOKEN_CLAIMS.contains(&name.as_str()));
    Ok(Json(claims))
}
