//! `/healthz` (the process answers), `/readyz` (the database answers and every issuer is
//! usable; the body says what is not), and `/api/v1/auth/config` (how clients sign in).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use countersign_api::{AuthConfig, AuthIssuer, DatabaseStatus, Health, IssuerStatus, Readiness};

use super::{AppState, views};

/// Liveness
///
/// The process answers. No authentication.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "Alive.", body = Health))
)]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// Readiness
///
/// The database answers and every configured issuer's keys are held (issuers that are not
/// ready are refreshed first). No authentication.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready; the body says what is not.", body = Readiness),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let database = match state.engine.store().ping().await {
        Ok(()) => DatabaseStatus {
            error: None,
            ready: true,
        },
        Err(e) => DatabaseStatus {
            error: Some(e.to_string()),
            ready: false,
        },
    };
    if state.verifier.statuses().iter().any(|s| !s.ready) {
        state.verifier.refresh_all().await;
    }
    let issuers: Vec<IssuerStatus> = state
        .verifier
        .statuses()
        .into_iter()
        .map(|s| IssuerStatus {
            error: s.error,
            name: s.name,
            ready: s.ready,
            url: s.url,
        })
        .collect();
    let ready = database.ready && issuers.iter().all(|i| i.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            database,
            issuers,
            ready,
        }),
    )
}

/// How clients sign in
///
/// The configured issuers with what a client needs to sign in to each: its URL, kind, the
/// public client id for the command line, and the audience and scopes to ask for. Needs no
/// authentication.
#[utoipa::path(
    get, path = "/api/v1/auth/config", operation_id = "getAuthConfig", tag = "meta",
    responses((status = 200, description = "The issuers.", body = AuthConfig))
)]
pub(super) async fn auth_config(State(state): State<AppState>) -> Json<AuthConfig> {
    let issuers = state
        .settings
        .issuers
        .iter()
        .map(|i| AuthIssuer {
            audience: i.audiences.first().cloned(),
            cli_client_id: i.cli_client_id.clone(),
            issuer: i.url.clone(),
            kind: views::kind(i.kind),
            name: i.name.clone(),
            scopes: i.scopes.clone(),
        })
        .collect();
    Json(AuthConfig {
        issuer: state.issuer(),
        issuers,
    })
}
