//! `GET /api/v1/audit`: audit events, ascending by sequence number.

use axum::Json;
use axum::extract::State;
use countersign_core::RequestId;
use countersign_core::ports::AuditQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::Query;
use super::{ApiError, AppState, Caller, views};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Params {
    request_id: Option<String>,
    after_seq: Option<i64>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(p): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let request_id = p
        .request_id
        .map(|s| s.parse::<RequestId>())
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let query = AuditQuery {
        request_id,
        after_seq: p.after_seq.unwrap_or(0).max(0),
        limit: p.limit.unwrap_or(100),
    };
    let events = state.engine.audit(&who, query).await?;
    let next = events.last().map(|e| e.seq);
    Ok(Json(json!({
        "items": events.iter().map(views::audit_event).collect::<Vec<_>>(),
        "next_after_seq": next,
    })))
}
