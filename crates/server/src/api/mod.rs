//! The HTTP API: `/api/v1` (requests, gates, audit, webhooks, the event streams, how to sign
//! in, and this API's OpenAPI document), the health endpoints, and the standards endpoints
//! resource servers use (`/.well-known/*`, `/oauth/*`).
//!
//! Every documented route is registered through [`OpenApiRouter`] with the
//! `#[utoipa::path]` of its handler, so the document served at `/api/v1/openapi.json` is
//! generated from the routes and the wire types (`countersign_api`) and cannot drift from
//! them.

mod audit;
mod deliveries;
mod events;
mod extract;
mod gates;
mod health;
mod notifications;
mod oauth;
mod requests;
mod views;
mod wellknown;

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The largest request body accepted, in bytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// What the document says besides its operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "countersign",
        description = "countersign is an approval gateway. A requester (a person or a workload such as a CI job) asks through a configured gate to do something sensitive; eligible people approve or reject it, each posting back the content digest they were shown, until every rule of the gate is met; the requester then obtains a short-lived signed grant token that the protected service verifies. Every call is authenticated with a bearer JWT from a configured issuer (a browser signed in to the web UI may instead read, with GET only, through its session cookie); every change and every refusal is written to a hash-chained audit log. Bodies are JSON (at most 64 KiB) and unknown body fields and query parameters are refused. Every error has the shape `{\"error\": {\"code\", \"message\"}}`; an unknown path is 404 `not_found` and a known path with another method is 405 `method_not_allowed`. The standards endpoints for resource servers (`/.well-known/openid-configuration`, `/.well-known/jwks.json`, `/oauth/introspect`, `/oauth/revoke`) follow their own specifications and are not described here.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "requests", description = "Requests for approval and their decisions."),
        (name = "gates", description = "The configured gates."),
        (name = "audit", description = "The hash-chained audit log."),
        (name = "webhooks", description = "Webhook delivery, for operators."),
        (name = "notifications", description = "Slack, Teams and e-mail notifications, for operators."),
        (name = "health", description = "Liveness and readiness, outside `/api/v1`."),
        (name = "meta", description = "How to sign in, and this document."),
    ),
    components(schemas(countersign_api::InboxChange, countersign_api::Request)),
    modifiers(&BearerScheme),
)]
struct Document;

/// The `bearer` security scheme the authenticated operations name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A JWT from a configured issuer: `Authorization: Bearer <token>`.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The documented routes, with the document they make.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(openapi))
        .routes(routes!(health::auth_config))
        .routes(routes!(gates::list))
        .routes(routes!(requests::create, requests::list))
        .routes(routes!(requests::get))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::reject))
        .routes(routes!(requests::cancel))
        .routes(routes!(requests::revoke))
        .routes(routes!(requests::token))
        .routes(routes!(events::request_events))
        .routes(routes!(events::inbox_events))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::retry))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::retry))
        .routes(routes!(audit::list))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The OpenAPI document of the API, as served.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    documented()
        .into_openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document does not serialize");
            "{}".to_owned()
        })
});

/// The OpenAPI document of the API.
pub(crate) fn openapi_document() -> &'static str {
    &DOCUMENT
}

/// Every route of the API: the documented ones, and the standards endpoints, which their own
/// specifications describe.
pub(crate) fn router() -> Router<AppState> {
    let (router, _) = documented().split_for_parts();
    router
        .route(
            "/.well-known/openid-configuration",
            get(wellknown::discovery),
        )
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/oauth/revoke", post(oauth::revoke))
}

/// This document
///
/// The OpenAPI 3.1 document of this API, generated from its routes and types.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", operation_id = "getOpenApi", tag = "meta",
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object))
)]
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
}

/// Lets `who` through when they are an operator (the audit reader role); otherwise records the
/// refused `attempted` action and answers 403 saying that `what` is for operators.
pub(super) async fn operator(
    state: &AppState,
    who: &countersign_core::Principal,
    attempted: &str,
    what: &str,
) -> Result<(), ApiError> {
    if state.engine.is_audit_reader(who) {
        return Ok(());
    }
    state
        .engine
        .record_denial(who, attempted, "not_allowed")
        .await?;
    Err(ApiError::from(countersign_core::EngineError::Forbidden {
        code: "not_allowed",
        message: format!("{what} are for operators (the audit reader role)"),
    }))
}
