//! The web UI: server-rendered pages (askama) for approvers and requesters, browser sign-in as
//! an OpenID Connect relying party, server-side sessions, and the small script that keeps the
//! inbox and request pages live.
//!
//! - [`login`]: `/login`, `/auth/callback`, `/logout`, `/auth/backchannel-logout`;
//! - [`session`]: session cookies, timeouts, claim renewal, CSRF;
//! - [`pages`]: the inbox, a request, my requests, new requests, the audit trail;
//! - [`live`]: the server-sent event streams the API serves;
//! - [`assets`]: the stylesheet and the script, with the headers every page gets.
//!
//! The pages work without JavaScript; every form is a POST with a CSRF token, checked together
//! with `Origin`; every page carries a CSP that allows only our own script and style.

pub mod assets;
pub mod cookies;
mod error;
pub mod format;
pub mod live;
pub mod login;
pub mod pages;
pub mod return_to;
pub mod session;
mod templates;

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use countersign_config::Settings;
use countersign_core::{SessionStore, Timestamp};
use countersign_identity::{LoginClient, LoginIssuerSettings, RelyingParty};
use countersign_tokens::Kek;
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::WebError;

use crate::api::AppState;

/// The content security policy of every page: our own script and style only (no inline
/// script), no plugins, no `<base>`, never framed.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; object-src 'none'; \
     frame-ancestors 'none'";

/// HSTS for sites served over https: a year, subdomains included (D13).
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// How often expired logins and idle sessions are deleted.
const PURGE_EVERY: chrono::Duration = chrono::Duration::minutes(1);

/// What the web UI needs beyond the API's state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Web(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    rp: RelyingParty,
    sessions: Arc<dyn SessionStore>,
    kek: Kek,
    cookies: cookies::CookieJar,
    public_url: String,
    origin: String,
    idle_timeout: chrono::Duration,
    max_lifetime: chrono::Duration,
    last_purge: Mutex<Option<Timestamp>>,
}

impl Web {
    /// Builds the relying party from every human issuer that has a web `client_id`; the
    /// redirect URI is `{server.public_url}/auth/callback`, whatever the request says.
    pub fn new(
        settings: &Settings,
        sessions: Arc<dyn SessionStore>,
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
                issuer: crate::app::issuer_settings(config)?,
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
            sessions,
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
    pub fn rp(&self) -> &RelyingParty {
        &self.0.rp
    }

    /// The session store.
    pub fn sessions(&self) -> &Arc<dyn SessionStore> {
        &self.0.sessions
    }

    /// The cookie names and attributes.
    pub fn cookies(&self) -> &cookies::CookieJar {
        &self.0.cookies
    }

    /// The public URL without a trailing slash.
    pub fn public_url(&self) -> &str {
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
            .sessions
            .purge_sessions(now, now - self.0.idle_timeout)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "purged expired logins and idle sessions"),
            Err(e) => tracing::warn!(error = %e, "session purge failed"),
        }
    }
}

/// The web UI's routes; the API router merges them (its layers add nosniff,
/// `Referrer-Policy: no-referrer` and `Cache-Control: no-store` where a handler set none).
pub fn router(state: &AppState) -> Router<AppState> {
    let mut router = Router::new()
        .route("/", get(pages::inbox))
        .route("/requests", get(pages::mine))
        .route("/requests/{id}", get(pages::request))
        .route("/requests/{id}/decide", post(pages::decide))
        .route("/requests/{id}/cancel", post(pages::cancel))
        .route("/requests/{id}/revoke", post(pages::revoke))
        .route("/requests/{id}/audit", get(pages::audit))
        .route("/new", get(pages::new_request))
        .route("/new/{gate}", get(pages::gate_form).post(pages::create))
        .route("/login", get(login::login))
        .route("/auth/callback", get(login::callback))
        .route("/logout", get(login::logout_page).post(login::logout))
        .route("/auth/backchannel-logout", post(login::backchannel_logout))
        .route("/static/app.css", get(assets::stylesheet))
        .route("/static/live.js", get(assets::script))
        .layer(header_layer(header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .layer(header_layer(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ));
    if state.settings.server.public_url.scheme() == "https" {
        router = router.layer(header_layer(header::STRICT_TRANSPORT_SECURITY, HSTS));
    }
    router
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}
