//! `/api/v1/requests`: create, list, read (with long-poll), decide, cancel, revoke.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use countersign_core::engine::{ListRequests, NewRequest, Role};
use countersign_core::view::RequestView;
use countersign_core::{Digest, Request, RequestId, State as RequestState, Verdict};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::extract::{Body, PathId, Query};
use super::{ApiError, AppState, Caller};

/// The request's view as the response body, serialized straight from the request.
fn view(state: &AppState, r: &Request) -> Response {
    let evaluation = state.engine.evaluate(r);
    Json(RequestView::new(r, evaluation.as_ref())).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    gate: String,
    #[serde(default)]
    params: Map<String, Value>,
    reason: Option<String>,
    ticket: Option<String>,
    duration: Option<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    Caller(who): Caller,
    Body(body): Body<CreateBody>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    state: Option<String>,
    gate: Option<String>,
    role: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A page of requests.
#[derive(serde::Serialize)]
struct ListBody<'a> {
    items: Vec<RequestView<'a>>,
    next_cursor: Option<RequestId>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(p): Query<ListParams>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GetParams {
    wait: Option<String>,
    version: Option<i64>,
}

pub(super) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
    Query(p): Query<GetParams>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionBody {
    digest: String,
    comment: Option<String>,
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

pub(super) async fn approve(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
    Body(body): Body<DecisionBody>,
) -> Result<Response, ApiError> {
    decide(state, who, id, Verdict::Approve, body).await
}

pub(super) async fn reject(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
    Body(body): Body<DecisionBody>,
) -> Result<Response, ApiError> {
    decide(state, who, id, Verdict::Reject, body).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    reason: Option<String>,
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

/// `POST /requests/{id}/token`: the grant token, for the requester of an approved request.
pub(super) async fn token(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let grant = state.engine.issue_grant(&who, &id, &state.keys).await?;
    Ok(Json(json!({
        "token": grant.token.expose(),
        "token_type": "Bearer",
        "expires_at": countersign_core::time::rfc3339(&grant.expires_at),
        "jti": grant.jti,
        "request_id": grant.request.id,
    })))
}
