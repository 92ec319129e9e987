//! `GET /api/v1/audit`: audit events, ascending by sequence number.

use axum::Json;
use axum::extract::State;
use countersign_api::{AuditPage, AuditQuery, ErrorBody};
use countersign_core::RequestId;
use countersign_core::ports::AuditQuery as StoreQuery;

use super::extract::Query;
use super::{ApiError, AppState, Caller, views};

/// Read the audit log
///
/// Audit events in ascending `seq` order. With `request_id`: that request's trail, for
/// whoever may see the request. Without: the whole log, for audit readers only.
#[utoipa::path(
    get, path = "/api/v1/audit", operation_id = "listAuditEvents", tag = "audit",
    security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of events.", body = AuditPage),
        (status = 400, description = "`invalid_query`: an unknown parameter, a malformed `request_id`, or a non-integer `after_seq` or `limit`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: the whole log needs the audit reader role (audited).", body = ErrorBody),
        (status = 404, description = "`not_found`: `request_id` names a request the caller may not see, or none (audit readers get an empty page instead).", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(p): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let request_id = p
        .request_id
        .map(|s| s.parse::<RequestId>())
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let query = StoreQuery {
        request_id,
        after_seq: p.after_seq.unwrap_or(0).max(0),
        limit: p.limit.unwrap_or(100),
    };
    let events = state.engine.audit(&who, query).await?;
    Ok(Json(AuditPage {
        next_after_seq: events.last().map(|e| e.seq),
        items: events.iter().map(views::audit_event).collect(),
    }))
}
