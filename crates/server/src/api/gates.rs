//! `GET /api/v1/gates`: the gates, each with whether the caller may request or approve.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{AppState, Caller, views};

pub(super) async fn list(State(state): State<AppState>, Caller(who): Caller) -> Json<Value> {
    let items: Vec<Value> = state
        .engine
        .gate_access(&who)
        .iter()
        .map(|a| views::gate(&a.gate, a.can_request, a.can_approve))
        .collect();
    Json(json!({"items": items}))
}
