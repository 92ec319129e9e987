//! `GET /api/v1/gates`: the gates, each with whether the caller may request or approve.

use axum::Json;
use axum::extract::State;
use countersign_api::{ErrorBody, GatePage};

use super::{AppState, Caller, views};

/// List the gates
///
/// Every configured gate, with whether the caller may request it (`can_request`) and approve
/// its requests (`can_approve`). Query parameters are ignored.
#[utoipa::path(
    get, path = "/api/v1/gates", operation_id = "listGates", tag = "gates",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The gates.", body = GatePage),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
    )
)]
pub(super) async fn list(State(state): State<AppState>, Caller(who): Caller) -> Json<GatePage> {
    let items = state
        .engine
        .gate_access(&who)
        .iter()
        .map(|a| views::gate(&a.gate, a.can_request, a.can_approve))
        .collect();
    Json(GatePage { items })
}
