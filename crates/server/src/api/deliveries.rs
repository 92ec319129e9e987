//! `/api/v1/webhooks/deliveries`: what the webhook worker could not deliver, and a manual
//! retry. For audit readers (operators) only.

use axum::Json;
use axum::extract::{Path, State};
use countersign_api::{DeliveryPage, DeliveryRetry, ErrorBody, ListDeliveriesQuery};
use countersign_core::audit::AuditAction;
use countersign_core::grant::DeliveryState;
use serde_json::json;

use super::extract::Query;
use super::{ApiError, AppState, Caller, operator, views};

/// List webhook deliveries
///
/// Webhook messages and their delivery progress, for operators (the audit reader role).
/// URLs are shown without their query or credentials.
#[utoipa::path(
    get, path = "/api/v1/webhooks/deliveries", operation_id = "listWebhookDeliveries",
    tag = "webhooks", security(("bearer" = [])),
    params(ListDeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryPage),
        (status = 400, description = "`invalid_query`: an unknown parameter, a bad `state` or a non-integer `limit`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: the caller is not an operator (audited).", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(p): Query<ListDeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    operator(&state, &who, "webhooks.list", "webhook deliveries").await?;
    let filter = p
        .state
        .as_deref()
        .map(|s| {
            DeliveryState::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "state must be pending, delivered or failed",
                )
            })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(50).clamp(1, 200);
    let items = state
        .outbox
        .list_deliveries(filter, p.cursor.as_deref(), limit)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let next = (items.len() as u32 == limit)
        .then(|| items.last().map(|d| d.message.id.clone()))
        .flatten();
    Ok(Json(DeliveryPage {
        items: items.iter().map(views::delivery).collect(),
        next_cursor: next,
    }))
}

/// Retry a failed webhook delivery
///
/// Puts a failed delivery back to `pending` for the worker, for operators (the audit reader
/// role). The retry is audited. No body is read.
#[utoipa::path(
    post, path = "/api/v1/webhooks/deliveries/{id}/retry", operation_id = "retryWebhookDelivery",
    tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "The delivery's id (`msg_` and a ULID).")),
    responses(
        (status = 200, description = "Queued again.", body = DeliveryRetry),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: the caller is not an operator (audited).", body = ErrorBody),
        (status = 404, description = "`not_found`: no failed delivery with that id.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn retry(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryRetry>, ApiError> {
    operator(&state, &who, "webhooks.retry", "webhook deliveries").await?;
    let now = state.engine.now();
    let done = state
        .outbox
        .retry_delivery(&id, now)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if !done {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "no failed delivery with that id",
        ));
    }
    state
        .engine
        .record_operator_action(&who, AuditAction::WebhookRetry, json!({"delivery": id}))
        .await?;
    Ok(Json(DeliveryRetry {
        id,
        state: views::delivery_state(DeliveryState::Pending),
    }))
}
