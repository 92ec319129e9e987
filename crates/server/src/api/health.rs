//! `/healthz` (the process answers), `/readyz` (the database answers and every issuer is
//! usable; the body says what is not), and `/api/v1/auth/config` (how clients sign in).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = match state.engine.store().ping().await {
        Ok(()) => json!({"ready": true}),
        Err(e) => json!({"ready": false, "error": e.to_string()}),
    };
    if state.verifier.statuses().iter().any(|s| !s.ready) {
        state.verifier.refresh_all().await;
    }
    let issuers: Vec<Value> = state
        .verifier
        .statuses()
        .iter()
        .map(|s| json!({"name": s.name, "url": s.url, "ready": s.ready, "error": s.error}))
        .collect();
    let ready = database["ready"] == true && issuers.iter().all(|i| i["ready"] == true);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "database": database, "issuers": issuers})),
    )
}

/// What a client needs to sign in, without signing in: each issuer's URL, kind, the public
/// client id for the command line, and the audience and scopes to ask for.
pub(super) async fn auth_config(State(state): State<AppState>) -> Json<Value> {
    let issuers: Vec<Value> = state
        .settings
        .issuers
        .iter()
        .map(|i| {
            json!({
                "name": i.name,
                "issuer": i.url,
                "kind": i.kind.as_str(),
                "cli_client_id": i.cli_client_id,
                "audience": i.audiences.first(),
                "scopes": i.scopes,
            })
        })
        .collect();
    Json(json!({"issuer": state.issuer(), "issuers": issuers}))
}
