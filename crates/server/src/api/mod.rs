//! The HTTP API (`/api/v1`), the health endpoints, and the layers every response passes
//! through (body limit, security headers).

mod audit;
mod auth;
mod deliveries;
mod error;
mod extract;
mod gates;
mod health;
mod oauth;
mod requests;
pub mod views;
mod wellknown;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use countersign_config::Settings;
use countersign_core::{Engine, OutboxStore};
use countersign_identity::Verifier;
use countersign_tokens::KeyRing;
use tower_http::set_header::SetResponseHeaderLayer;

pub use auth::Caller;
pub use error::ApiError;
pub use extract::PathId;

use crate::changes::Changes;

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler can reach: [`Shared`], behind one reference count. Every request
/// takes a copy, which costs one count, not one for each of its parts.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state made of `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// The use cases.
    pub engine: Engine,
    /// Bearer-token verification.
    pub verifier: Verifier,
    /// Our signing keys: grant tokens, JWKS, verification for introspection.
    pub keys: KeyRing,
    /// The webhook outbox.
    pub outbox: Arc<dyn OutboxStore>,
    /// Change announcements, for long polls.
    pub changes: Changes,
    /// The resolved configuration.
    pub settings: Arc<Settings>,
    /// The web UI: sign-in, sessions, pages.
    pub web: crate::web::Web,
}

impl Shared {
    /// Our issuer identifier: the public URL without a trailing slash.
    pub fn issuer(&self) -> String {
        self.settings
            .server
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_string()
    }
}

/// The OpenAPI document describing `/api/v1`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/auth/config", get(health::auth_config))
        .route("/gates", get(gates::list))
        .route("/requests", post(requests::create).get(requests::list))
        .route("/requests/{id}", get(requests::get))
        .route("/requests/{id}/approve", post(requests::approve))
        .route("/requests/{id}/reject", post(requests::reject))
        .route("/requests/{id}/cancel", post(requests::cancel))
        .route("/requests/{id}/revoke", post(requests::revoke))
        .route("/requests/{id}/token", post(requests::token))
        .route(
            "/requests/{id}/events",
            get(crate::web::live::request_events),
        )
        .route("/inbox/events", get(crate::web::live::inbox_events))
        .route("/webhooks/deliveries", get(deliveries::list))
        .route("/webhooks/deliveries/{id}/retry", post(deliveries::retry))
        .route("/audit", get(audit::list));
    Router::new()
        .nest("/api/v1", api)
        .route(
            "/.well-known/openid-configuration",
            get(wellknown::discovery),
        )
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(crate::web::router(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::REFERRER_POLICY, "no-referrer"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .layer(header_layer(header::CACHE_CONTROL, "no-store"))
        .with_state(state)
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn not_found(
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    // A browser asking for a page gets a page; API clients get the API's error.
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && !uri.path().starts_with("/api/") {
        return crate::web::WebError::not_found("there is no page at this address").into_response();
    }
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint",
    )
    .into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
