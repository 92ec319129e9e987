//! Server-side sessions: the cookie holds 256 random bits, the store keeps their SHA-256.
//! A session ends after `server.session_idle_timeout` without a page view and
//! `server.session_max_lifetime` after sign-in, whatever happens; every sign-in gets a new id
//! and ends the session the browser had (no fixation). The provider's refresh token stays
//! here, sealed with the key-encryption key, and renews the claims once the ID token expires.
//! Forms carry the session's CSRF token; a POST also needs a same-origin `Origin` when the
//! browser sends one.

use axum::http::header::{ORIGIN, REFERER};
use axum::http::{HeaderMap, HeaderName};
use countersign_core::audit::AuditAction;
use countersign_core::ports::WebSession;
use countersign_core::secret::Secret;
use countersign_core::{Principal, Timestamp};
use countersign_identity::SignedIn;
use serde_json::json;

use super::WebError;
use super::cookies::{self, random_token};
use crate::api::AppState;

/// A signed-in browser session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The stored record.
    pub record: WebSession,
}

impl Session {
    /// Who is signed in.
    pub fn principal(&self) -> &Principal {
        &self.record.principal
    }

    /// The CSRF token for this session's forms.
    pub fn csrf(&self) -> &str {
        self.record.csrf_token.expose()
    }

    /// Whether the person authenticated at their provider within `max_age` (fresh enough to
    /// decide). Without an `auth_time` it is never fresh.
    pub fn authenticated_within(&self, max_age: chrono::Duration, now: Timestamp) -> bool {
        self.record
            .principal
            .auth_time()
            .is_some_and(|t| now - t <= max_age)
    }
}

/// Whether reading the session counts as activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// A page view: extends the idle timeout and may renew the claims.
    Page,
    /// An API read or an event stream: checks the session, changes nothing (an open tab
    /// must not keep a session alive forever).
    Peek,
}

/// The session of this request, if it has a live one. An expired session is deleted.
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
    usage: Use,
) -> Result<Option<Session>, WebError> {
    let web = &state.web;
    let Some(cookie) = web.cookies().session(headers) else {
        return Ok(None);
    };
    let id_hash = cookies::hash(&cookie);
    let Some(mut record) = web
        .sessions()
        .get_session(&id_hash)
        .await
        .map_err(|e| WebError::internal(&e))?
    else {
        return Ok(None);
    };
    let now = state.engine.now();
    let ended = if now - record.last_seen_at > web.0.idle_timeout {
        Some("idle_timeout")
    } else if now - record.created_at > web.0.max_lifetime {
        Some("session_lifetime")
    } else {
        None
    };
    if let Some(reason) = ended {
        end(state, &record, reason).await?;
        return Ok(None);
    }
    if usage == Use::Peek {
        return Ok(Some(Session { record }));
    }
    record.last_seen_at = now;
    if let Some(refreshed) = renew_claims(state, &record, now).await? {
        match refreshed {
            Renewal::Renewed(updated) => record = *updated,
            Renewal::Ended => return Ok(None),
        }
    }
    web.sessions()
        .update_session(&record)
        .await
        .map_err(|e| WebError::internal(&e))?;
    Ok(Some(Session { record }))
}

enum Renewal {
    Renewed(Box<WebSession>),
    Ended,
}

/// Once the ID token has expired, renews the claims with the refresh token (if there is one).
/// A provider that refuses the refresh token ends the session: the person may have been
/// signed out or disabled there.
async fn renew_claims(
    state: &AppState,
    record: &WebSession,
    now: Timestamp,
) -> Result<Option<Renewal>, WebError> {
    let web = &state.web;
    let expired = record
        .id_token
        .as_ref()
        .and_then(|t| countersign_identity::rp::id_token_expiry(t.expose()))
        .is_some_and(|exp| exp <= now);
    let Some(sealed) = record.refresh_token.as_deref().filter(|_| expired) else {
        return Ok(None);
    };
    let refresh_token = match countersign_tokens::open(&web.0.kek, &aad(&record.id_hash), sealed)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    {
        Some(t) => Secret::new(t),
        None => {
            tracing::warn!("a session's refresh token does not unseal; ending the session");
            end(state, record, "refresh_token_unreadable").await?;
            return Ok(Some(Renewal::Ended));
        }
    };
    let issuer = record.principal.identity().issuer.clone();
    match web
        .rp()
        .refresh(&issuer, &refresh_token, &record.principal, now)
        .await
    {
        Ok(refreshed) => {
            let mut updated = record.clone();
            match refreshed.principal {
                Some(principal) => updated.principal = principal,
                // Claims cannot be renewed this way; keep them and stop trying.
                None => updated.refresh_token = None,
            }
            if let Some((id_token, _)) = refreshed.id_token {
                updated.id_token = Some(id_token);
            }
            if let Some(rotated) = refreshed.refresh_token
                && updated.refresh_token.is_some()
            {
                updated.refresh_token = Some(seal(state, &record.id_hash, &rotated));
            }
            Ok(Some(Renewal::Renewed(Box::new(updated))))
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(
                reason = e.reason(),
                "claims renewal failed; keeping the session"
            );
            Ok(None)
        }
        Err(e) => {
            tracing::info!(
                reason = e.reason(),
                "claims renewal refused; ending the session"
            );
            end(state, record, "refresh_refused").await?;
            Ok(Some(Renewal::Ended))
        }
    }
}

/// Associated data binding a sealed refresh token to its session.
fn aad(id_hash: &str) -> Vec<u8> {
    format!("countersign web session {id_hash}").into_bytes()
}

fn seal(state: &AppState, id_hash: &str, token: &Secret) -> Vec<u8> {
    countersign_tokens::seal(&state.web.0.kek, &aad(id_hash), token.expose().as_bytes())
}

/// Ends a session server-side and audits why.
pub async fn end(state: &AppState, record: &WebSession, reason: &str) -> Result<(), WebError> {
    state
        .web
        .sessions()
        .delete_session(&record.id_hash)
        .await
        .map_err(|e| WebError::internal(&e))?;
    audit(
        state,
        &record.principal,
        AuditAction::AuthLogout,
        json!({"reason": reason, "sid": record.sid}),
    )
    .await;
    Ok(())
}

/// Starts a session for a completed sign-in. Any session the browser had is ended first, and
/// the new one gets a new id: a cookie planted before sign-in is dead afterwards. Returns the
/// cookie value.
pub async fn start(
    state: &AppState,
    headers: &HeaderMap,
    signed_in: SignedIn,
    now: Timestamp,
) -> Result<String, WebError> {
    let web = &state.web;
    if let Some(old) = web.cookies().session(headers) {
        web.sessions()
            .delete_session(&cookies::hash(&old))
            .await
            .map_err(|e| WebError::internal(&e))?;
    }
    let cookie = random_token();
    let id_hash = cookies::hash(&cookie);
    let refresh_token = signed_in
        .refresh_token
        .as_ref()
        .map(|t| seal(state, &id_hash, t));
    let record = WebSession {
        id_hash,
        principal: signed_in.principal,
        sid: signed_in.sid,
        id_token: Some(signed_in.id_token),
        refresh_token,
        csrf_token: Secret::new(random_token()),
        created_at: now,
        last_seen_at: now,
    };
    web.sessions()
        .insert_session(&record)
        .await
        .map_err(|e| WebError::internal(&e))?;
    Ok(cookie)
}

/// Checks a state-changing form: the session's CSRF token (constant-time), and that the
/// browser, where it says where the form came from, says this site. Pages are served with
/// `Referrer-Policy: no-referrer`, under which browsers send `Origin: null` on form posts; they
/// then also send `Sec-Fetch-Site`, which must say `same-origin`.
pub fn check_form(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<(), WebError> {
    let ours = state.web.0.origin.as_str();
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let site = text(HeaderName::from_static("sec-fetch-site"));
    let origin = text(ORIGIN);
    if site.is_some_and(|s| !matches!(s, "same-origin" | "none")) {
        return Err(WebError::forged_form());
    }
    match origin {
        Some("null") if site != Some("same-origin") => return Err(WebError::forged_form()),
        Some("null") => {}
        Some(o) if o != ours => return Err(WebError::forged_form()),
        Some(_) => {}
        None => {
            if let Some(referer) = text(REFERER)
                && !referer.starts_with(&format!("{ours}/"))
            {
                return Err(WebError::forged_form());
            }
        }
    }
    match token {
        Some(t) if session.record.csrf_token.ct_eq(t) => Ok(()),
        _ => Err(WebError::forged_form()),
    }
}

/// Appends an audit event for `who`; a failure to audit is logged (the page still answers).
pub async fn audit(
    state: &AppState,
    who: &Principal,
    action: AuditAction,
    detail: serde_json::Value,
) {
    if let Err(e) = state
        .engine
        .record_operator_action(who, action, detail)
        .await
    {
        tracing::error!(error = %e, action = action.as_str(), "could not audit a sign-in event");
    }
}

/// Audits a refused sign-in or logout token (`auth.failed` with the reason).
pub async fn audit_failure(state: &AppState, reason: &str, detail: serde_json::Value) {
    if let Err(e) = state.engine.record_auth_failure(reason, detail).await {
        tracing::error!(error = %e, "could not audit a refused sign-in");
    }
}

/// The principal of a live session for the API's `Caller` (GET and event streams only):
/// checked, not extended.
pub async fn api_principal(state: &AppState, headers: &HeaderMap) -> Option<Principal> {
    match current(state, headers, Use::Peek).await {
        Ok(Some(session)) => Some(session.record.principal),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e.message(), "session lookup failed for an api call");
            None
        }
    }
}
