//! RFC 7662 token introspection and RFC 7009 token revocation for resource servers: the
//! services that receive our grant tokens. A caller authenticates as a configured
//! `[[resource_servers]]` client (HTTP Basic) or with a bearer JWT from a configured workload
//! issuer. Failures are 401 and audited.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use countersign_core::{Actor, PrincipalKind, State as RequestState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub(super) struct TokenForm {
    token: Option<String>,
    #[expect(
        dead_code,
        reason = "accepted per RFC 7662/7009; we issue one kind of token, so the hint changes nothing"
    )]
    token_type_hint: Option<String>,
}

/// Who is calling, once authenticated.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<Actor, Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (scheme, rest) = auth.split_once(' ').unwrap_or(("", ""));
    let outcome: Result<Actor, &'static str> = if scheme.eq_ignore_ascii_case("basic") {
        basic(state, rest.trim())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        match state.verifier.verify(rest.trim(), state.engine.now()).await {
            Ok(p) if p.kind() == PrincipalKind::Workload => Ok(Actor::from(p.identity())),
            Ok(_) => Err("not_a_workload"),
            Err(e) => Err(e.reason()),
        }
    } else {
        Err("missing_credentials")
    };
    match outcome {
        Ok(actor) => Ok(actor),
        Err(reason) => {
            let detail = json!({"endpoint": endpoint});
            if let Err(e) = state.engine.record_auth_failure(reason, detail).await {
                tracing::error!(error = %e, "could not audit an authentication failure");
            }
            let mut response = (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_client", "error_description": "authenticate as a configured resource server"})),
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Basic realm=\"countersign\", Bearer realm=\"countersign\"",
                ),
            );
            Err(response)
        }
    }
}

fn basic(state: &AppState, encoded: &str) -> Result<Actor, &'static str> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "malformed_credentials")?;
    let text = String::from_utf8(decoded).map_err(|_| "malformed_credentials")?;
    let (id, secret) = text.split_once(':').ok_or("malformed_credentials")?;
    // RFC 6749 §2.3.1 says both parts are form-urlencoded inside Basic; many clients don't
    // encode. Accept either spelling.
    let matches = |c: &countersign_config::ResourceServerConfig| {
        (c.client_id == id || c.client_id == form_decode(id))
            && (c.client_secret.ct_eq(secret) || c.client_secret.ct_eq(&form_decode(secret)))
    };
    match state.settings.resource_servers.iter().find(|c| matches(c)) {
        Some(c) => Ok(Actor {
            issuer: "resource_server".into(),
            subject: c.name.clone(),
        }),
        None => Err("bad_client_credentials"),
    }
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn inactive() -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"active": false})),
    )
        .into_response()
}

pub(super) async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let caller = match authenticate(&state, &headers, "introspect").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(axum::Form(form)) = form else {
        return ApiError::bad_request(
            "invalid_request",
            "send token=… as application/x-www-form-urlencoded",
        )
        .into_response();
    };
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return ApiError::bad_request("invalid_request", "the token parameter is required")
            .into_response();
    };
    let now = state.engine.now();
    let Ok(claims) = state.keys.verify(&token, now) else {
        return inactive();
    };
    let Some(jti) = claims["jti"].as_str() else {
        return inactive();
    };
    let status = match state.engine.grant_status(jti).await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let active = matches!(&status, Some((grant, request))
        if grant.revoked_at.is_none() && request.state == RequestState::Approved && grant.expires_at > now);
    tracing::debug!(caller = %caller.subject, active, "introspection");
    if !active {
        return inactive();
    }
    let mut body = json!({"active": true, "token_type": "Bearer"});
    for key in [
        "scope",
        "client_id",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "nbf",
        "jti",
        "request_id",
        "gate",
        "digest",
    ] {
        if let Some(v) = claims.get(key).filter(|v| !v.is_null()) {
            body[key] = v.clone();
        }
    }
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json::<Value>(body),
    )
        .into_response()
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let caller = match authenticate(&state, &headers, "revoke").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(axum::Form(form)) = form else {
        return ApiError::bad_request(
            "invalid_request",
            "send token=… as application/x-www-form-urlencoded",
        )
        .into_response();
    };
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return ApiError::bad_request("invalid_request", "the token parameter is required")
            .into_response();
    };
    // RFC 7009 §2.2: an invalid, unknown or expired token is not an error (an expired one is
    // already inactive); answer 200 either way.
    if let Ok(claims) = state.keys.verify(&token, state.engine.now())
        && let Some(jti) = claims["jti"].as_str()
        && let Err(e) = state.engine.revoke_grant(caller, jti).await
    {
        return ApiError::from(e).into_response();
    }
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
}
