//! `/api/v1/requests`: create, list, read (with long-poll), decide, cancel, revoke.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use countersign_api::{
    CreateRequest, DecisionBody, ErrorBody, GetRequestQuery, GrantToken, ListRequestsQuery,
    ReasonBody, Request as RequestBody, RequestPage,
};
use countersign_core::engine::{ListRequests, NewRequest, Role};
use countersign_core::view::RequestView;
use countersign_core::{Digest, Request, RequestId, State as RequestState, Verdict};
use tokio::sync::broadcast::error::RecvError;

use super::extract::{Body, PathId, Query};
use super::{ApiError, AppState, Caller};

/// The request's view as the response body, serialized straight from the request.
fn view(state: &AppState, r: &Request) -> Response {
    let evaluation = state.engine.evaluate(r);
    Json(RequestView::new(r, evaluation.as_ref())).into_response()
}

/// Create a request
///
/// Asks for approval through a gate. The request starts `pending`, or `approved`
/// (`approval: auto_approved`) when the gate's `auto_approve` condition holds.
#[utoipa::path(
    post, path = "/api/v1/requests", operation_id = "createRequest", tag = "requests",
    security(("bearer" = [])),
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Created.", body = RequestBody),
        (status = 400, description = "`invalid_json`: the body is not JSON, not an object of this shape, or has unknown fields.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: the caller may not request this gate (audited).", body = ErrorBody),
        (status = 404, description = "`unknown_gate`: no gate of that name.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 64 KiB.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 422, description = "`invalid_params`, `reason_required`, `invalid_duration` or `invalid_input`.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(state): State<AppState>,
    Caller(who): Caller,
    Body(body): Body<CreateRequest>,
) -> Result<(StatusCode, Response), ApiError> {
    let input = NewRequest {
        gate: body.gate,
        params: body.params,
        reason: body.reason,
        ticket: body.ticket,
        duration: body.duration,
    };
    let request = state.engine.create(&who, input).await?;
    Ok((StatusCode::CREATED, view(&state, &request)))
}

/// A page of requests.
#[derive(serde::Serialize)]
struct ListBody<'a> {
    items: Vec<RequestView<'a>>,
    next_cursor: Option<RequestId>,
}

/// List requests
///
/// A page of the requests the caller may see. Without `role`: every visible request, newest
/// first. `role=requester`: the caller's own, newest first. `role=approver`: the caller's
/// inbox — pending requests they could decide now, oldest first (with a `state` other than
/// `pending` the page is empty).
#[utoipa::path(
    get, path = "/api/v1/requests", operation_id = "listRequests", tag = "requests",
    security(("bearer" = [])),
    params(ListRequestsQuery),
    responses(
        (status = 200, description = "A page of requests.", body = RequestPage),
        (status = 400, description = "`invalid_query`: an unknown parameter, or a bad `state`, `role`, `limit` or `cursor`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 404, description = "`unknown_gate`: the `gate` filter names no gate.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(p): Query<ListRequestsQuery>,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_query", m);
    let filter_state = p
        .state
        .as_deref()
        .map(|s| {
            RequestState::parse(s).ok_or_else(|| {
                bad(
                    "state must be one of pending, approved, rejected, expired, cancelled, revoked"
                        .into(),
                )
            })
        })
        .transpose()?;
    let role = match p.role.as_deref() {
        None | Some("") => None,
        Some("requester") => Some(Role::Requester),
        Some("approver") => Some(Role::Approver),
        Some(_) => return Err(bad("role must be requester or approver".into())),
    };
    if p.limit.is_some_and(|l| l == 0 || l > 200) {
        return Err(bad("limit must be between 1 and 200".into()));
    }
    let cursor = p
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<RequestId>().map_err(|_| {
                bad("cursor is not valid; use next_cursor from a previous page".into())
            })
        })
        .transpose()?;
    let page = state
        .engine
        .list(
            &who,
            ListRequests {
                state: filter_state,
                gate: p.gate,
                role,
                limit: p.limit,
                cursor,
            },
        )
        .await?;
    // Serialized straight from the requests: a page of views is never built as JSON values.
    let evaluations: Vec<_> = page
        .items
        .iter()
        .map(|r| state.engine.evaluate(r))
        .collect();
    let items: Vec<RequestView> = page
        .items
        .iter()
        .zip(&evaluations)
        .map(|(r, evaluation)| RequestView::new(r, evaluation.as_ref()))
        .collect();
    Ok(Json(ListBody {
        items,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// Get a request, optionally waiting for a change
///
/// The request, if the caller may see it: its requester, anyone who decided it, anyone
/// eligible to decide it now, and audit readers. A pending request past its expiry is
/// recorded as expired on read. With `wait`, this long-polls: it answers at once when the
/// request's version differs from `version` (default: the current one) or the request is
/// final (`rejected`, `expired`, `cancelled`, `revoked`), and otherwise when it changes, when
/// a pending request reaches its expiry, or after `wait` (capped by the server's `max_wait`,
/// 60s by default), whichever is first. Without `wait`, `version` is ignored.
#[utoipa::path(
    get, path = "/api/v1/requests/{id}", operation_id = "getRequest", tag = "requests",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id. Anything that is not a request id answers 404 `not_found`.", pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$"), GetRequestQuery),
    responses(
        (status = 200, description = "The request.", body = RequestBody),
        (status = 400, description = "`invalid_query`: an unknown parameter, a bad `wait` or a non-integer `version`.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such request, or the caller may not see it (audited).", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
    Query(p): Query<GetRequestQuery>,
) -> Result<Response, ApiError> {
    let Some(wait) = p.wait.as_deref() else {
        let request = state.engine.get(&who, &id).await?;
        return Ok(view(&state, &request));
    };
    let wait = countersign_core::time::parse_duration(wait)
        .map_err(|m| ApiError::bad_request("invalid_query", format!("wait: {m}")))?
        .min(state.settings.server.max_wait);
    // Subscribe before reading, so a change between the read and the wait is not missed.
    let mut changes = state.changes.subscribe();
    let request = state.engine.get(&who, &id).await?;
    let seen = p.version.unwrap_or(request.version);
    if request.version != seen || request.state.is_terminal() {
        return Ok(view(&state, &request));
    }
    // Wake at the deadline, or when a pending request reaches its expiry, whichever is first.
    let mut budget = wait.to_std().unwrap_or(Duration::from_secs(30));
    if request.state == RequestState::Pending {
        let to_expiry = (request.expires_at - state.engine.now())
            .to_std()
            .unwrap_or_default();
        budget = budget.min(to_expiry + Duration::from_millis(50));
    }
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        tokio::select! {
            msg = changes.recv() => match msg {
                Ok((changed, version)) if changed == id && version != seen => break,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    let request = state.engine.get(&who, &id).await?;
    Ok(view(&state, &request))
}

async fn decide(
    state: AppState,
    who: std::sync::Arc<countersign_core::Principal>,
    id: RequestId,
    verdict: Verdict,
    body: DecisionBody,
) -> Result<Response, ApiError> {
    let digest: Digest = body
        .digest
        .parse()
        .map_err(|_| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_digest", "digest must be sha256: followed by 64 lowercase hex characters, as shown on the request"))?;
    let decided = state
        .engine
        .decide(&who, &id, verdict, &digest, body.comment)
        .await?;
    // The engine returns the standing it worked out: no second evaluation.
    Ok(Json(RequestView::new(
        &decided.request,
        Some(&decided.evaluation),
    ))
    .into_response())
}

/// Approve a request
///
/// Records an approval by an eligible approver. The approval is assigned to a rule it can
/// fill; when every rule is met the request becomes `approved` (`approval: quorum`).
#[utoipa::path(
    post, path = "/api/v1/requests/{id}/approve", operation_id = "approveRequest", tag = "requests",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id. Anything that is not a request id answers 404 `not_found`.", pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "The request after the decision.", body = RequestBody),
        (status = 400, description = "`invalid_json`: the body is not JSON, lacks `digest`, or has unknown fields.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`self_approval`, `not_eligible` or `workload_cannot_approve` (audited).", body = ErrorBody),
        (status = 404, description = "`not_found`: no such request.", body = ErrorBody),
        (status = 409, description = "`digest_mismatch`, `not_pending` (also when the request just expired) or `already_decided`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 64 KiB.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 422, description = "`invalid_digest`, `invalid_input` (the comment) or `gate_removed`.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
        (status = 503, description = "`busy`: the request changed under a concurrent decision too often; try again.", body = ErrorBody),
    )
)]
pub(super) async fn approve(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
    Body(body): Body<DecisionBody>,
) -> Result<Response, ApiError> {
    decide(state, who, id, Verdict::Approve, body).await
}

/// Reject a request
///
/// Records a rejection by an eligible approver. When a rule's `reject_threshold` is reached
/// (1 by default: a veto) the request becomes `rejected`.
#[utoipa::path(
    post, path = "/api/v1/requests/{id}/reject", operation_id = "rejectRequest", tag = "requests",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id. Anything that is not a request id answers 404 `not_found`.", pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "The request after the decision.", body = RequestBody),
        (status = 400, description = "`invalid_json`: the body is not JSON, lacks `digest`, or has unknown fields.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`self_approval`, `not_eligible` or `workload_cannot_approve` (audited).", body = ErrorBody),
        (status = 404, description = "`not_found`: no such request.", body = ErrorBody),
        (status = 409, description = "`digest_mismatch`, `not_pending` (also when the request just expired) or `already_decided`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 64 KiB.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 422, description = "`invalid_digest`, `invalid_input` (the comment) or `gate_removed`.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
        (status = 503, description = "`busy`: the request changed under a concurrent decision too often; try again.", body = ErrorBody),
    )
)]
pub(super) async fn reject(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
    Body(body): Body<DecisionBody>,
) -> Result<Response, ApiError> {
    decide(state, who, id, Verdict::Reject, body).await
}

/// Cancel and revoke take an optional body; an empty one is fine.
async fn optional_reason(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Option<String>, ApiError> {
    let body = body.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is too large",
        )
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<ReasonBody>(&body)
        .map(|b| b.reason)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("invalid request body: {}", e.to_string().replace('`', "'")),
            )
        })
}

/// Cancel a pending request
///
/// The requester withdraws a pending request; it becomes `cancelled`. The body is optional.
#[utoipa::path(
    post, path = "/api/v1/requests/{id}/cancel", operation_id = "cancelRequest", tag = "requests",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id. Anything that is not a request id answers 404 `not_found`.", pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")),
    request_body(content = Option<ReasonBody>, description = "Optional; an empty body counts as no reason."),
    responses(
        (status = 200, description = "The request, now final.", body = RequestBody),
        (status = 400, description = "`invalid_json`: the body is not JSON or has unknown fields.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: only the requester can cancel (audited).", body = ErrorBody),
        (status = 404, description = "`not_found`: no such request.", body = ErrorBody),
        (status = 409, description = "`not_pending`: the request is not in a state this applies to.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 64 KiB.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: the reason is too long or has control characters.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
        (status = 503, description = "`busy`: the request changed under a concurrent decision too often; try again.", body = ErrorBody),
    )
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let reason = optional_reason(body).await?;
    let request = state.engine.cancel(&who, &id, reason).await?;
    Ok(view(&state, &request))
}

/// Revoke an approved request
///
/// The requester, or anyone eligible to approve it now, revokes an approved request; it
/// becomes `revoked`. The body is optional.
#[utoipa::path(
    post, path = "/api/v1/requests/{id}/revoke", operation_id = "revokeRequest", tag = "requests",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id. Anything that is not a request id answers 404 `not_found`.", pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")),
    request_body(content = Option<ReasonBody>, description = "Optional; an empty body counts as no reason."),
    responses(
        (status = 200, description = "The request, now final.", body = RequestBody),
        (status = 400, description = "`invalid_json`: the body is not JSON or has unknown fields.", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: only the requester or an eligible approver can revoke (audited).", body = ErrorBody),
        (status = 404, description = "`not_found`: no such request.", body = ErrorBody),
        (status = 409, description = "`not_pending`: the request is not in a state this applies to.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 64 KiB.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: the reason is too long or has control characters.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
        (status = 503, description = "`busy`: the request changed under a concurrent decision too often; try again.", body = ErrorBody),
    )
)]
pub(super) async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let reason = optional_reason(body).await?;
    let request = state.engine.revoke(&who, &id, reason).await?;
    Ok(view(&state, &request))
}

/// Obtain the grant token of an approved request
///
/// Issues a signed grant token for an approved request: only to its requester, only inside
/// the approved window, and only while the requester may still request the gate. The grant
/// is recorded (and audited) before the token is returned. No body is read.
#[utoipa::path(
    post, path = "/api/v1/requests/{id}/token", operation_id = "issueGrantToken", tag = "requests",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id. Anything that is not a request id answers 404 `not_found`.", pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")),
    responses(
        (status = 200, description = "The grant token.", body = GrantToken),
        (status = 401, description = "`unauthenticated`: no valid bearer token.", body = ErrorBody),
        (status = 403, description = "`not_allowed`: not the requester, or no longer allowed to request the gate (audited).", body = ErrorBody),
        (status = 404, description = "`not_found`: no such request, or the caller may not see it.", body = ErrorBody),
        (status = 409, description = "`grant_unavailable`: the request is not approved, or its approved window is over; `already_redeemed`: the gate's grants are single-use and one was already issued (audited).", body = ErrorBody),
        (status = 422, description = "`gate_removed`: the request's gate is no longer configured.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
        (status = 503, description = "`busy`: the request changed under a concurrent decision too often; try again.", body = ErrorBody),
    )
)]
pub(super) async fn token(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
) -> Result<Json<GrantToken>, ApiError> {
    let grant = state.engine.issue_grant(&who, &id, &state.keys).await?;
    Ok(Json(GrantToken {
        expires_at: countersign_core::time::rfc3339(&grant.expires_at),
        jti: grant.jti,
        request_id: grant.request.id.to_string(),
        token: grant.token.expose().to_owned(),
        token_type: "Bearer".to_owned(),
    }))
}
