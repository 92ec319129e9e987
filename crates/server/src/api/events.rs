//! Server-sent events for the live pages and any client that prefers a stream to polling:
//!
//! - `GET /api/v1/requests/{id}/events`: `event: request` with the request (the API's JSON
//!   shape) now and after every change, until it reaches a final state;
//! - `GET /api/v1/inbox/events`: `event: changed` with `{"id", "version"}` whenever a request
//!   changes that the caller requested, decided, or may decide.
//!
//! Both follow the in-process change fan-out. A stream ends after [`STREAM_LIFETIME`] (the
//! browser reconnects, and so authenticates again); a reader that falls behind is told to
//! reload. Sessions authenticate streams without extending them.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use countersign_core::{Principal, PrincipalKind, Request, RequestId, State as RequestState};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::extract::PathId;
use countersign_api::{ErrorBody, InboxChange};
use countersign_core::view::RequestView;

use super::{ApiError, AppState, Caller};

/// How long one stream stays open before the client is asked to reconnect.
const STREAM_LIFETIME: Duration = Duration::from_secs(300);
/// How long a browser waits before reconnecting, in milliseconds.
const RETRY_MS: u64 = 2000;

type EventStream =
    Sse<KeepAliveStream<std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>>>;

/// A stream fed by a task; the task stops when the client goes away.
fn stream(rx: mpsc::Receiver<Event>) -> EventStream {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(Box::pin(events) as std::pin::Pin<Box<_>>).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    )
}

fn request_event(state: &AppState, r: &Request) -> Event {
    let evaluation = state.engine.evaluate(r);
    let data = serde_json::to_string(&RequestView::new(r, evaluation.as_ref()))
        .unwrap_or_else(|_| "{}".to_owned());
    Event::default()
        .event("request")
        .id(r.version.to_string())
        .retry(Duration::from_millis(RETRY_MS))
        .data(data)
}

/// Follow a request as server-sent events
///
/// A `text/event-stream` of the request, if the caller may see it (same rule as
/// `getRequest`): an `event: request` whose `data` is the request (the `Request` schema) and
/// whose `id` is its version, at once and after every change, including reaching its expiry.
/// The stream ends once the request is final (`rejected`, `expired`, `cancelled`, `revoked`)
/// or after five minutes; clients reconnect (`retry` is sent). Comments keep the connection
/// alive. Besides a bearer token, a browser may authenticate with its countersign session
/// cookie (GET only; the stream does not extend the session).
#[utoipa::path(
    get, path = "/api/v1/requests/{id}/events", operation_id = "streamRequestEvents",
    tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path, description = "The request id. Anything that is not a request id answers 404 `not_found`.", pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")),
    responses(
        (status = 200, description = "The event stream; each event's `data` is a `Request`.", content_type = "text/event-stream", body = String),
        (status = 401, description = "`unauthenticated`: no valid bearer token or session.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such request, or the caller may not see it (audited).", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn request_events(
    State(state): State<AppState>,
    Caller(who): Caller,
    PathId(id): PathId,
) -> Result<EventStream, ApiError> {
    // Subscribe before the first read so no change slips between them.
    let mut changes = state.changes.subscribe();
    let first = state.engine.get(&who, &id).await?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
        let mut seen = first.version;
        let mut current = first;
        if tx.send(request_event(&state, &current)).await.is_err() {
            return;
        }
        loop {
            if current.state.is_terminal() {
                return;
            }
            // A pending request also changes when it reaches its expiry.
            let wake = if current.state == RequestState::Pending {
                let to_expiry = (current.expires_at - state.engine.now())
                    .to_std()
                    .unwrap_or_default()
                    + Duration::from_millis(50);
                deadline.min(tokio::time::Instant::now() + to_expiry)
            } else {
                deadline
            };
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return;
                    }
                }
                msg = changes.recv() => match msg {
                    Ok((changed, _)) if changed != id => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
            }
            match state.engine.get(&who, &id).await {
                Ok(r) => current = r,
                Err(e) => {
                    tracing::debug!(error = %e, "request stream ends");
                    return;
                }
            }
            if current.version != seen {
                seen = current.version;
                if tx.send(request_event(&state, &current)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(stream(rx))
}

/// Whether a change to `request` concerns `who`'s inbox or list: they requested it, decided
/// it, or are (by their claims) an approver of one of its rules. Read without auditing, and
/// only ids and versions are sent.
fn concerns(state: &AppState, who: &Principal, request: &Request) -> bool {
    if request.requester.same_person_as(who) || request.decision_of(who).is_some() {
        return true;
    }
    who.kind() == PrincipalKind::Human
        && state.engine.gates().get(&request.gate).is_some_and(|gate| {
            countersign_core::policy::approver_checks(gate, request, who, state.engine.now())
                .iter()
                .any(|c| c.eligible)
        })
}

fn changed_event(id: Option<RequestId>, version: Option<i64>) -> Event {
    Event::default()
        .event("changed")
        .retry(Duration::from_millis(RETRY_MS))
        .data(
            serde_json::to_string(&InboxChange {
                id: id.map(|id| id.to_string()),
                version,
            })
            .unwrap_or_else(|_| "{}".to_owned()),
        )
}

/// Follow changes to your requests and your inbox as server-sent events
///
/// A `text/event-stream`: first `event: ready`, then an `event: changed` whose `data` is an
/// `InboxChange`, `{"id", "version"}`, whenever a request changes that the caller requested,
/// decided, or is eligible to decide by their claims (so a new request appears in, and a
/// decided one leaves, their inbox). When the server could not keep up, `data` is
/// `{"id": null, "version": null}`: re-read the list. Fetch the request itself with
/// `getRequest`. The stream ends after five minutes; clients reconnect (`retry` is sent).
/// Besides a bearer token, a browser may authenticate with its countersign session cookie
/// (GET only; the stream does not extend the session).
#[utoipa::path(
    get, path = "/api/v1/inbox/events", operation_id = "streamInboxEvents", tag = "requests",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event stream; each `changed` event's `data` is an `InboxChange`.", content_type = "text/event-stream", body = String),
        (status = 401, description = "`unauthenticated`: no valid bearer token or session.", body = ErrorBody),
        (status = 500, description = "`internal`: the server log has details.", body = ErrorBody),
    )
)]
pub(super) async fn inbox_events(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> EventStream {
    let mut changes = state.changes.subscribe();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let ready = Event::default()
            .event("ready")
            .retry(Duration::from_millis(RETRY_MS))
            .data("{}");
        if tx.send(ready).await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
        loop {
            let event = tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep_until(deadline) => return,
                msg = changes.recv() => match msg {
                    Ok((id, version)) => {
                        match state.engine.store().get_request(&id).await {
                            Ok(Some(r)) if concerns(&state, &who, &r) => changed_event(Some(id), Some(version)),
                            Ok(_) => continue,
                            Err(e) => {
                                tracing::warn!(error = %e, "inbox stream could not read a request");
                                continue;
                            }
                        }
                    }
                    // Fell behind: the page should reload what it shows.
                    Err(RecvError::Lagged(_)) => changed_event(None, None),
                    Err(RecvError::Closed) => return,
                },
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    stream(rx)
}
