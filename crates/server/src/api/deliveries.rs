//! `/api/v1/webhooks/deliveries`: what the webhook worker could not deliver, and a manual
//! retry. For audit readers (operators) only.

use axum::Json;
use axum::extract::{Path, State};
use countersign_core::audit::AuditAction;
use countersign_core::grant::{Delivery, DeliveryState};
use countersign_core::time::rfc3339;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::Query;
use super::{ApiError, AppState, Caller};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Params {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

fn view(d: &Delivery) -> Value {
    json!({
        "id": d.message.id,
        "gate": d.message.gate,
        "url": redact_url(&d.message.url),
        "event": d.message.event,
        "request_id": d.message.request_id,
        "state": d.state.as_str(),
        "attempts": d.attempts,
        "next_attempt_at": rfc3339(&d.next_attempt_at),
        "last_error": d.last_error,
        "created_at": rfc3339(&d.message.created_at),
        "updated_at": rfc3339(&d.updated_at),
    })
}

/// Webhook URLs often carry tokens in their query or credentials; show where, not how.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path()
        }
        Err(_) => "(invalid url)".into(),
    }
}

async fn operator(
    state: &AppState,
    who: &countersign_core::Principal,
    attempted: &str,
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
        message: "webhook deliveries are for operators (the audit reader role)".into(),
    }))
}

pub(super) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(p): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    operator(&state, &who, "webhooks.list").await?;
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
    Ok(Json(
        json!({"items": items.iter().map(view).collect::<Vec<_>>(), "next_cursor": next}),
    ))
}

pub(super) async fn retry(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    operator(&state, &who, "webhooks.retry").await?;
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
    Ok(Json(json!({"id": id, "state": "pending"})))
}
