//! Server-sent events for live pages (and any client that prefers a stream to polling):
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
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::api::{ApiError, AppState, Caller, views};

/// How long one stream stays open before the client is asked to reconnect.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(300);
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
    let data = views::request(r, state.engine.evaluate(r).as_ref());
    Event::default()
        .event("request")
        .id(r.version.to_string())
        .retry(Duration::from_millis(RETRY_MS))
        .data(data.to_string())
}

/// `GET /api/v1/requests/{id}/events`.
pub async fn request_events(
    State(state): State<AppState>,
    Caller(who): Caller,
    crate::api::PathId(id): crate::api::PathId,
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
        .data(json!({"id": id, "version": version}).to_string())
}

/// `GET /api/v1/inbox/events`.
pub async fn inbox_events(State(state): State<AppState>, Caller(who): Caller) -> EventStream {
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
