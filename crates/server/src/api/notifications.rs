//! `/api/v1/notifications`: what the notification worker sent, skipped or could not send, and
//! a manual retry. For audit readers (operators) only, like webhook deliveries.

use axum::Json;
use axum::extract::{Path, State};
use countersign_api::{
    ErrorBody, ListNotificationsQuery, Notification, NotificationPage, NotificationRetry,
    NotificationState as Wire,
};
use countersign_core::audit::AuditAction;
use countersign_core::notice::{NoticeState, QueuedNotice};
use countersign_core::time::rfc3339;
use serde_json::json;

use super::extract::Query;
use super::{ApiError, AppState, Caller, operator};

fn wire_state(s: NoticeState) -> Wire {
    match s {
        NoticeState::Pending => Wire::Pending,
        NoticeState::Sent => Wire::Sent,
        NoticeState::Skipped => Wire::Skipped,
        NoticeState::Failed => Wire::Failed,
    }
}

fn view(n: &QueuedNotice) -> Notification {
    Notification {
        attempts: n.attempts,
        channel: n.message.channel.clone(),
        created_at: rfc3339(&n.message.created_at),
        due_at: rfc3339(&n.message.due_at),
        id: n.message.id.clone(),
        kind: n.message.kind.as_str().to_owned(),
        last_error: n.last_error.clone(),
        next_attempt_at: rfc3339(&n.next_attempt_at),
        request_id: n.message.request_id.to_string(),
        state: wire_state(n.state),
        to_requester: n.message.to_requester,
        updated_at: rfc3339(&n.updated_at),
    }
}

/// List notifications
///
/// Slack, Teams, e-mail and notification-webhook messages and their progress, newest first,
/// for operators (the audit reader role): sent, pending, skipped (with why) and failed.
#[utoipa::path(
    get, path = "/api/v1/notifications", operation_id = "listNotifications",
    tag = "notifications", security(("bearer" = [])),
    params(ListNotificationsQuery),
    responses(
        (status = 200, description = "A page of notifications.", body = NotificationPage),
        (status = 400, description = "`invalid_query`: an unknown parameter, a bad `state` or a non-integer `limit`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: the caller is not an operator (audited).", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(p): Query<ListNotificationsQuery>,
) -> Result<Json<NotificationPage>, ApiError> {
    operator(&state, &who, "notifications.list", "notifications").await?;
    let filter = p
        .state
        .as_deref()
        .map(|s| {
            NoticeState::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "state must be pending, sent, skipped or failed",
                )
            })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(50).clamp(1, 200);
    let items = state
        .notices
        .list_notices(filter, p.cursor.as_deref(), limit)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let next = (items.len() as u32 == limit)
        .then(|| items.last().map(|n| n.message.id.clone()))
        .flatten();
    Ok(Json(NotificationPage {
        items: items.iter().map(view).collect(),
        next_cursor: next,
    }))
}

/// Retry a failed notification
///
/// Puts a failed notification back to `pending` for the worker, for operators (the audit
/// reader role). It is rendered from the request as it is then. The retry is audited. No
/// body is read.
#[utoipa::path(
    post, path = "/api/v1/notifications/{id}/retry", operation_id = "retryNotification",
    tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "The notification's id (`ntf_` and a ULID).")),
    responses(
        (status = 200, description = "Queued again.", body = NotificationRetry),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: the caller is not an operator (audited).", body = ErrorBody),
        (status = 404, description = "`not_found`: no failed notification with that id.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn retry(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<NotificationRetry>, ApiError> {
    operator(&state, &who, "notifications.retry", "notifications").await?;
    let now = state.engine.now();
    let done = state
        .notices
        .retry_notice(&id, now)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if !done {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "no failed notification with that id",
        ));
    }
    state
        .engine
        .record_operator_action(
            &who,
            AuditAction::NotificationRetry,
            json!({"notification": id}),
        )
        .await?;
    Ok(Json(NotificationRetry {
        id,
        state: Wire::Pending,
    }))
}
