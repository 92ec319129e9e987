//! Signing in and out: `/login` (choose an issuer; `?issuer=NAME` starts at once),
//! `/auth/callback` (the registered redirect URI), `/logout` (RP-initiated logout) and
//! `/auth/backchannel-logout` (the provider ends sessions).
//!
//! A sign-in in flight is a stored [`LoginTransaction`] keyed by `state` and bound to the
//! browser by the SHA-256 of a pre-login cookie; the callback takes it exactly once, so a
//! replayed, foreign or forged callback finds nothing, or finds a transaction bound to another
//! browser, and signs nobody in. Every refusal is audited as `auth.failed`.

use axum::extract::{RawForm, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use countersign_core::audit::AuditAction;
use countersign_core::ports::LoginTransaction;
use countersign_core::principal::VerifiedClaims;
use countersign_core::secret::{Secret, ct_eq};
use countersign_core::{Identity, Principal, PrincipalKind};
use countersign_identity::Callback;
use serde_json::json;

use super::format::with_query;
use super::return_to::local_path;
use super::templates::{IssuerChoice, Layout, LoginPage, LogoutPage, render};
use super::{WebError, pages};
use crate::session::cookies::{self, random_token};
use crate::session::{Use, audit, audit_failure};
use crate::state::AppState;

/// How long a sign-in may take, from the click to the callback.
const LOGIN_TTL: chrono::Duration = chrono::Duration::seconds(cookies::LOGIN_COOKIE_SECS);

/// Query or form parameters; a parameter given twice is refused (which value would count is
/// exactly what an attacker would like to choose).
pub(super) fn params(raw: &[u8]) -> Result<Vec<(String, String)>, WebError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw).into_owned().collect();
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(other, _)| other == k) {
            return Err(WebError::new(
                StatusCode::BAD_REQUEST,
                "Malformed request",
                format!("the parameter {k} is given more than once"),
            ));
        }
    }
    Ok(pairs)
}

pub(super) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `GET /login`: the issuer choice, or with `?issuer=NAME` the start of a sign-in.
pub(super) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let pairs = params(query.unwrap_or_default().as_bytes())?;
    let return_to = match param(&pairs, "return_to") {
        None | Some("") => "/",
        Some(candidate) => match local_path(candidate) {
            Some(path) => path,
            None => {
                audit_failure(
                    &state.engine,
                    "return_to_refused",
                    json!({"stage": "login"}),
                )
                .await;
                return Err(WebError::new(
                    StatusCode::BAD_REQUEST,
                    "Not a page of this site",
                    "after signing in you can only be sent to a page of countersign; this link asks for somewhere else",
                ));
            }
        },
    };
    if let Some(issuer) = param(&pairs, "issuer") {
        return start(&state, &headers, issuer, return_to, None).await;
    }
    let issuers = state
        .sessions
        .rp()
        .issuers()
        .into_iter()
        .map(|i| {
            let host = url::Url::parse(&i.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            let mut query = vec![("issuer", i.name.as_str())];
            if return_to != "/" {
                query.push(("return_to", return_to));
            }
            let href = with_query("/login", &query);
            IssuerChoice {
                name: i.name,
                host,
                href,
            }
        })
        .collect();
    Ok(render(&LoginPage {
        layout: Layout {
            title: "Sign in".into(),
            ..Default::default()
        },
        issuers,
        signed_out: param(&pairs, "signed_out").is_some(),
    }))
}

/// Starts a sign-in at `issuer`: stores the transaction, sets the pre-login cookie (reusing
/// the browser's, so sign-ins in two tabs both work) and redirects to the provider.
pub(super) async fn start(
    state: &AppState,
    headers: &HeaderMap,
    issuer: &str,
    return_to: &str,
    max_age: Option<i64>,
) -> Result<Response, WebError> {
    let web = &state.sessions;
    let authorization = match web.rp().start(issuer, max_age).await {
        Ok(a) => a,
        Err(e) if e.reason() == "unknown_issuer" => {
            return Err(WebError::not_found(
                "there is no sign-in issuer of that name",
            ));
        }
        Err(e) => {
            tracing::warn!(
                issuer,
                reason = e.reason(),
                message = e.message(),
                "cannot start a sign-in"
            );
            return Err(WebError::new(
                StatusCode::BAD_GATEWAY,
                "The sign-in provider is not available",
                format!(
                    "countersign could not reach the provider to start the sign-in: {}",
                    e.message()
                ),
            ));
        }
    };
    let binding = web.cookies().login(headers).unwrap_or_else(random_token);
    let now = state.engine.now();
    let transaction = LoginTransaction {
        state: authorization.state,
        browser_binding: cookies::hash(&binding),
        issuer: issuer.to_owned(),
        nonce: authorization.nonce,
        pkce_verifier: authorization.pkce_verifier,
        return_to: return_to.to_owned(),
        max_age,
        created_at: now,
        expires_at: now + LOGIN_TTL,
    };
    web.store()
        .insert_login(&transaction)
        .await
        .map_err(|e| WebError::internal(&e))?;
    let mut response = Redirect::to(&authorization.url).into_response();
    web.cookies().set_login(response.headers_mut(), &binding);
    Ok(response)
}

/// `GET /auth/callback`: the provider sends the browser back here.
pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match finish(&state, &headers, query.unwrap_or_default()).await {
        Ok(response) => response,
        Err((reason, issuer, error)) => {
            tracing::info!(reason, message = error.message(), "sign-in refused");
            audit_failure(
                &state.engine,
                reason,
                json!({"stage": "callback", "issuer": issuer, "message": error.message()}),
            )
            .await;
            error.with_sign_in().into_response()
        }
    }
}

type Refusal = (&'static str, Option<String>, WebError);

fn refuse(reason: &'static str, issuer: Option<&str>, message: impl Into<String>) -> Refusal {
    (
        reason,
        issuer.map(str::to_owned),
        WebError::new(StatusCode::BAD_REQUEST, "Sign-in failed", message),
    )
}

async fn finish(state: &AppState, headers: &HeaderMap, query: String) -> Result<Response, Refusal> {
    let pairs = params(query.as_bytes()).map_err(|e| ("malformed_callback", None, e))?;
    // Only a code was asked for: tokens in the front channel are an injection (C11).
    if param(&pairs, "access_token").is_some() || param(&pairs, "id_token").is_some() {
        return Err(refuse(
            "token_in_callback",
            None,
            "the sign-in response carries tokens it must not carry",
        ));
    }
    let Some(state_param) = param(&pairs, "state").filter(|s| !s.is_empty()) else {
        return Err(refuse(
            "missing_state",
            None,
            "the sign-in response has no state; start the sign-in from countersign",
        ));
    };
    let web = &state.sessions;
    let transaction = web
        .store()
        .take_login(state_param)
        .await
        .map_err(|e| ("store_failed", None, WebError::internal(&e)))?
        .ok_or_else(|| {
            refuse(
                "unknown_state",
                None,
                "this sign-in link was already used, has expired, or was not started here",
            )
        })?;
    let issuer = transaction.issuer.as_str();
    let now = state.engine.now();
    if transaction.expires_at < now {
        return Err(refuse(
            "expired_state",
            Some(issuer),
            "the sign-in took too long; please start again",
        ));
    }
    let bound = web.cookies().login(headers).is_some_and(|cookie| {
        ct_eq(
            cookies::hash(&cookie).as_bytes(),
            transaction.browser_binding.as_bytes(),
        )
    });
    if !bound {
        return Err(refuse(
            "browser_mismatch",
            Some(issuer),
            "this sign-in was started in another browser; start it again here",
        ));
    }
    let signed_in = web
        .rp()
        .finish(
            Callback {
                issuer,
                iss: param(&pairs, "iss"),
                code: param(&pairs, "code"),
                error: param(&pairs, "error"),
                nonce: &transaction.nonce,
                pkce_verifier: &transaction.pkce_verifier,
                max_age: transaction.max_age,
            },
            now,
        )
        .await
        .map_err(|e| refuse(e.reason(), Some(issuer), e.message().to_owned()))?;
    let principal = signed_in.principal.clone();
    state
        .directory
        .seen(&std::sync::Arc::new(principal.clone()), state.engine.now());
    let sid = signed_in.sid.clone();
    let cookie = state
        .sessions
        .start(headers, signed_in, now)
        .await
        .map_err(|e| ("store_failed", Some(issuer.to_owned()), WebError::from(e)))?;
    audit(
        &state.engine,
        &principal,
        AuditAction::AuthLogin,
        json!({"issuer": issuer, "sid": sid, "fresh_authentication": transaction.max_age.is_some()}),
    )
    .await;
    let target = local_path(&transaction.return_to).unwrap_or("/");
    let mut response = Redirect::to(target).into_response();
    web.cookies().set_session(response.headers_mut(), &cookie);
    web.cookies().clear_login(response.headers_mut());
    Ok(response)
}

/// `GET /logout`: a confirmation form (signing out changes state, so it is a POST).
pub(super) async fn logout_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let Some(session) = state
        .sessions
        .current(&state.engine, &headers, Use::Page)
        .await?
    else {
        return Ok(Redirect::to("/login").into_response());
    };
    Ok(render(&LogoutPage {
        layout: pages::layout(&session, "Sign out", "", None),
    }))
}

/// `POST /logout`: ends the session here, then at the provider (with `id_token_hint`) when it
/// has an end-session endpoint.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawForm(form): RawForm,
) -> Result<Response, WebError> {
    let Some(current) = state
        .sessions
        .current(&state.engine, &headers, Use::Peek)
        .await?
    else {
        let mut response = Redirect::to("/login?signed_out=1").into_response();
        state
            .sessions
            .cookies()
            .clear_session(response.headers_mut());
        return Ok(response);
    };
    let pairs = params(&form)?;
    state
        .sessions
        .check_form(&current, &headers, param(&pairs, "csrf"))?;
    state
        .sessions
        .end(&state.engine, &current.record, "signed_out")
        .await?;
    let web = &state.sessions;
    let post_logout = format!("{}/login", web.public_url());
    let target = web
        .rp()
        .end_session_url(
            &current.record.principal.identity().issuer,
            current.record.id_token.as_ref().map(Secret::expose),
            &post_logout,
        )
        .await
        .unwrap_or_else(|| "/login?signed_out=1".to_owned());
    let mut response = Redirect::to(&target).into_response();
    web.cookies().clear_session(response.headers_mut());
    Ok(response)
}

/// `POST /auth/backchannel-logout`: a logout token from a provider ends the matching
/// sessions. 200 when valid (even if no session matched), 400 otherwise; never cached.
pub(super) async fn backchannel_logout(
    State(state): State<AppState>,
    RawForm(form): RawForm,
) -> Response {
    let no_store = |status: StatusCode, body: String| {
        let mut response = (status, body).into_response();
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status != StatusCode::OK {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        response
    };
    let bad = |description: &str| {
        no_store(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": description}).to_string(),
        )
    };
    let pairs = match params(&form) {
        Ok(p) => p,
        Err(e) => return bad(e.message()),
    };
    let Some(token) = param(&pairs, "logout_token") else {
        audit_failure(
            &state.engine,
            "logout_token_missing",
            json!({"stage": "backchannel_logout"}),
        )
        .await;
        return bad("the request has no logout_token");
    };
    let notice = match state
        .sessions
        .rp()
        .verify_logout_token(token, state.engine.now())
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(
                reason = e.reason(),
                message = e.message(),
                "logout token refused"
            );
            audit_failure(
                &state.engine,
                e.reason(),
                json!({"stage": "backchannel_logout", "message": e.message()}),
            )
            .await;
            return bad(e.message());
        }
    };
    let ended = match state
        .sessions
        .store()
        .delete_sessions(
            &notice.issuer,
            notice.subject.as_deref(),
            notice.sid.as_deref(),
        )
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout could not delete sessions");
            return no_store(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "server_error"}).to_string(),
            );
        }
    };
    // The logout token was verified; its issuer and subject are all it says about who.
    let who = Principal::from_verified(VerifiedClaims {
        identity: Identity::new(&notice.issuer, notice.subject.as_deref().unwrap_or("")),
        kind: PrincipalKind::Human,
        name: None,
        email: None,
        groups: Vec::new(),
        claims: serde_json::Map::new(),
        auth_time: None,
        actor: None,
    });
    audit(
        &state.engine,
        &who,
        AuditAction::AuthLogout,
        json!({"reason": "backchannel_logout", "sid": notice.sid, "sessions": ended, "jti": notice.jti}),
    )
    .await;
    no_store(StatusCode::OK, String::new())
}
