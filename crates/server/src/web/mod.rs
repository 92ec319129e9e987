//! The web UI: server-rendered pages (askama) for approvers and requesters, browser sign-in as
//! an OpenID Connect relying party, server-side sessions, and the small script that keeps the
//! inbox and request pages live.
//!
//! - [`login`]: `/login`, `/auth/callback`, `/logout`, `/auth/backchannel-logout`;
//! - [`pages`]: the inbox, a request, my requests, new requests, the audit trail;
//! - [`assets`]: the stylesheet and the script, with the headers every page gets.
//!
//! Sessions themselves (cookies, timeouts, claim renewal, CSRF) live in
//! [`crate::session`], which the API's callers share; the live pages follow the API's event
//! streams.
//!
//! The pages work without JavaScript; every form is a POST with a CSRF token, checked together
//! with `Origin`; every page carries a CSP that allows only our own script and style.

mod assets;
mod error;
mod format;
mod login;
mod pages;
mod return_to;
mod templates;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

pub(crate) use error::WebError;

use crate::state::AppState;

/// The content security policy of every page: our own script and style only (no inline
/// script), no plugins, no `<base>`, never framed.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; object-src 'none'; \
     frame-ancestors 'none'";

/// HSTS for sites served over https: a year, subdomains included (D13).
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The web UI's routes; the server's router merges them (its layers add nosniff,
/// `Referrer-Policy: no-referrer` and `Cache-Control: no-store` where a handler set none).
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let previews = state
        .settings
        .notifications
        .channels
        .iter()
        .any(|c| matches!(c.kind, countersign_core::channel::ChannelKind::Preview));
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
        .route("/static/live.js", get(assets::script));
    if previews {
        router = router.route("/dev/notifications", get(pages::dev_notifications));
    }
    let mut router = router
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
