//! Browser sign-in state shared by the pages and the API's callers: the relying party, the
//! session store and its cookies, and the rules a session lives by.
//!
//! The cookie holds 256 random bits, the store keeps their SHA-256. A session ends after
//! `server.session_idle_timeout` without a page view and `server.session_max_lifetime` after
//! sign-in, whatever happens; every sign-in gets a new id and ends the session the browser had
//! (no fixation). The provider's refresh token stays here, sealed with the key-encryption key,
//! and renews the claims once the ID token expires. Forms carry the session's CSRF token; a
//! POST also needs a same-origin `Origin` when the browser sends one.

pub mod cookies;

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::header::{ORIGIN, REFERER};
use axum::http::{HeaderMap, HeaderName};
use countersign_config::Settings;
use countersign_core::audit::AuditAction;
use countersign_core::ports::WebSession;
use countersign_core::secret::Secret;
use countersign_core::{Engine, Principal, SessionStore, StoreError, Timestamp};
use countersign_identity::{LoginClient, LoginIssuerSettings, RelyingParty, SignedIn};
use countersign_tokens::Kek;
use serde_json::json;

use cookies::random_token;

/// How often expired logins and idle sessions are deleted.
const PURGE_EVERY: chrono::Duration = chrono::Duration::minutes(1);

/// Sign-in and sessions: the relying party, the store, the cookies and the timeouts. Cheap
/// to clone.
#[derive(Clone, Debug)]
pub struct Sessions(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    rp: RelyingParty,
    store: Arc<dyn SessionStore>,
    kek: Kek,
    cookies: cookies::CookieJar,
    public_url: String,
    origin: String,
    idle_timeout: chrono::Duration,
    max_lifetime: chrono::Duration,
    last_purge: Mutex<Option<Timestamp>>,
}

/// A form that does not come from one of our pages (a missing or wrong CSRF token, or
/// another site).
#[derive(Debug)]
pub struct ForgedForm;

impl Sessions {
    /// Builds the relying party from every human issuer that has a web `client_id`; the
    /// redirect URI is `{server.public_url}/auth/callback`, whatever the request says.
    pub(crate) fn new(
        settings: &Settings,
        store: Arc<dyn SessionStore>,
        kek: Kek,
    ) -> anyhow::Result<Self> {
        let public_url = settings
            .server
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let origin = settings.server.public_url.origin().ascii_serialization();
        let mut issuers = Vec::new();
        for config in &settings.issuers {
            let Some(client_id) = &config.client_id else {
                continue;
            };
            if config.kind != countersign_core::PrincipalKind::Human {
                continue;
            }
            issuers.push(LoginIssuerSettings {
                issuer: crate::issuers::issuer_settings(config)?,
                client: LoginClient {
                    client_id: client_id.clone(),
                    client_secret: config.client_secret.clone(),
                    scopes: config.scopes.clone(),
                },
            });
        }
        let rp = RelyingParty::new(
            issuers,
            &format!("{public_url}/auth/callback"),
            countersign_identity::http_client(),
        )
        .map_err(|e| anyhow::anyhow!("sign-in issuers: {e}"))?;
        let secure = settings.server.public_url.scheme() == "https";
        Ok(Self(Arc::new(Inner {
            rp,
            store,
            kek,
            cookies: cookies::CookieJar::new(secure),
            public_url,
            origin,
            idle_timeout: settings.server.session_idle_timeout,
            max_lifetime: settings.server.session_max_lifetime,
            last_purge: Mutex::new(None),
        })))
    }

    /// The relying party.
    pub(crate) fn rp(&self) -> &RelyingParty {
        &self.0.rp
    }

    /// The session store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.0.store
    }

    /// The cookie names and attributes.
    pub(crate) fn cookies(&self) -> &cookies::CookieJar {
        &self.0.cookies
    }

    /// The public URL without a trailing slash.
    pub(crate) fn public_url(&self) -> &str {
        &self.0.public_url
    }

    /// Deletes expired logins and idle sessions, at most once a minute (called by the
    /// sweeper).
    pub async fn purge(&self, now: Timestamp) {
        {
            let mut last = self
                .0
                .last_purge
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now - t < PURGE_EVERY) {
                return;
            }
            *last = Some(now);
        }
        match self
            .0
            .store
            .purge_sessions(now, now - self.0.idle_timeout)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "purged expired logins and idle sessions"),
            Err(e) => tracing::warn!(error = %e, "session purge failed"),
        }
    }
}

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

impl Sessions {
    /// The session of this request, if it has a live one. An expired session is deleted.
    pub(crate) async fn current(
        &self,
        engine: &Engine,
        headers: &HeaderMap,
        usage: Use,
    ) -> Result<Option<Session>, StoreError> {
        let Some(cookie) = self.cookies().session(headers) else {
            return Ok(None);
        };
        let id_hash = cookies::hash(&cookie);
        let Some(mut record) = self.store().get_session(&id_hash).await? else {
            return Ok(None);
        };
        let now = engine.now();
        let ended = if now - record.last_seen_at > self.0.idle_timeout {
            Some("idle_timeout")
        } else if now - record.created_at > self.0.max_lifetime {
            Some("session_lifetime")
        } else {
            None
        };
        if let Some(reason) = ended {
            self.end(engine, &record, reason).await?;
            return Ok(None);
        }
        if usage == Use::Peek {
            return Ok(Some(Session { record }));
        }
        record.last_seen_at = now;
        if let Some(refreshed) = self.renew_claims(engine, &record, now).await? {
            match refreshed {
                Renewal::Renewed(updated) => record = *updated,
                Renewal::Ended => return Ok(None),
            }
        }
        self.store().update_session(&record).await?;
        Ok(Some(Session { record }))
    }

    /// Once the ID token has expired, renews the claims with the refresh token (if there is
    /// one). A provider that refuses the refresh token ends the session: the person may have
    /// been signed out or disabled there.
    async fn renew_claims(
        &self,
        engine: &Engine,
        record: &WebSession,
        now: Timestamp,
    ) -> Result<Option<Renewal>, StoreError> {
        let expired = record
            .id_token
            .as_ref()
            .and_then(|t| countersign_identity::rp::id_token_expiry(t.expose()))
            .is_some_and(|exp| exp <= now);
        let Some(sealed) = record.refresh_token.as_deref().filter(|_| expired) else {
            return Ok(None);
        };
        let refresh_token =
            match countersign_tokens::open(&self.0.kek, &aad(&record.id_hash), sealed)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            {
                Some(t) => Secret::new(t),
                None => {
                    tracing::warn!("a session's refresh token does not unseal; ending the session");
                    self.end(engine, record, "refresh_token_unreadable").await?;
                    return Ok(Some(Renewal::Ended));
                }
            };
        let issuer = record.principal.identity().issuer.clone();
        match self
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
                    updated.refresh_token = Some(self.seal(&record.id_hash, &rotated));
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
                self.end(engine, record, "refresh_refused").await?;
                Ok(Some(Renewal::Ended))
            }
        }
    }

    fn seal(&self, id_hash: &str, token: &Secret) -> Vec<u8> {
        countersign_tokens::seal(&self.0.kek, &aad(id_hash), token.expose().as_bytes())
    }

    /// Ends a session server-side and audits why.
    pub(crate) async fn end(
        &self,
        engine: &Engine,
        record: &WebSession,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.store().delete_session(&record.id_hash).await?;
        audit(
            engine,
            &record.principal,
            AuditAction::AuthLogout,
            json!({"reason": reason, "sid": record.sid}),
        )
        .await;
        Ok(())
    }

    /// Starts a session for a completed sign-in. Any session the browser had is ended first,
    /// and the new one gets a new id: a cookie planted before sign-in is dead afterwards.
    /// Returns the cookie value.
    pub(crate) async fn start(
        &self,
        headers: &HeaderMap,
        signed_in: SignedIn,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        if let Some(old) = self.cookies().session(headers) {
            self.store().delete_session(&cookies::hash(&old)).await?;
        }
        let cookie = random_token();
        let id_hash = cookies::hash(&cookie);
        let refresh_token = signed_in
            .refresh_token
            .as_ref()
            .map(|t| self.seal(&id_hash, t));
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
        self.store().insert_session(&record).await?;
        Ok(cookie)
    }

    /// Checks a state-changing form: the session's CSRF token (constant-time), and that the
    /// browser, where it says where the form came from, says this site. Pages are served with
    /// `Referrer-Policy: no-referrer`, under which browsers send `Origin: null` on form posts;
    /// they then also send `Sec-Fetch-Site`, which must say `same-origin`.
    pub(crate) fn check_form(
        &self,
        session: &Session,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> Result<(), ForgedForm> {
        let ours = self.0.origin.as_str();
        let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let site = text(HeaderName::from_static("sec-fetch-site"));
        let origin = text(ORIGIN);
        if site.is_some_and(|s| !matches!(s, "same-origin" | "none")) {
            return Err(ForgedForm);
        }
        match origin {
            Some("null") if site != Some("same-origin") => return Err(ForgedForm),
            Some("null") => {}
            Some(o) if o != ours => return Err(ForgedForm),
            Some(_) => {}
            None => {
                if let Some(referer) = text(REFERER)
                    && !referer.starts_with(&format!("{ours}/"))
                {
                    return Err(ForgedForm);
                }
            }
        }
        match token {
            Some(t) if session.record.csrf_token.ct_eq(t) => Ok(()),
            _ => Err(ForgedForm),
        }
    }

    /// The principal of a live session, for an API read (GET and event streams only):
    /// checked, not extended.
    pub(crate) async fn api_principal(
        &self,
        engine: &Engine,
        headers: &HeaderMap,
    ) -> Option<Principal> {
        match self.current(engine, headers, Use::Peek).await {
            Ok(Some(session)) => Some(session.record.principal),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed for an api call");
                None
            }
        }
    }
}

enum Renewal {
    Renewed(Box<WebSession>),
    Ended,
}

/// Associated data binding a sealed refresh token to its session.
fn aad(id_hash: &str) -> Vec<u8> {
    format!("countersign web session {id_hash}").into_bytes()
}

/// Appends an audit event for `who`; a failure to audit is logged (the page still answers).
pub(crate) async fn audit(
    engine: &Engine,
    who: &Principal,
    action: AuditAction,
    detail: serde_json::Value,
) {
    if let Err(e) = engine.record_operator_action(who, action, detail).await {
        tracing::error!(error = %e, action = action.as_str(), "could not audit a sign-in event");
    }
}

/// Audits a refused sign-in or logout token (`auth.failed` with the reason).
pub(crate) async fn audit_failure(engine: &Engine, reason: &str, detail: serde_json::Value) {
    if let Err(e) = engine.record_auth_failure(reason, detail).await {
        tracing::error!(error = %e, "could not audit a refused sign-in");
    }
}
