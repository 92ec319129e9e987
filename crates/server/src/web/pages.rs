//! The pages: the approver inbox (`/`), a request (`/requests/{id}`) with Approve / Reject,
//! my requests (`/requests`), new requests (`/new`, `/new/{gate}`) and a request's audit
//! trail. Every page needs a session (else: sign in and come back); every POST checks the
//! form's CSRF token. Decisions go through the same `engine.decide` as the API, with the
//! digest the page showed; an approver whose sign-in is older than
//! `server.approval_max_auth_age` is sent to sign in again (`max_age`) and brought back to
//! confirm the same decision.
//!
//! Here: the frame every page shares, the inbox, my requests and the audit trail;
//! [`request`] is the request page and its forms, [`new`] the new-request pages.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use countersign_core::engine::{ListRequests, Role};
use countersign_core::ports::AuditQuery;
use countersign_core::{Request, RequestId, State as RequestState};
use serde_json::Value;

use super::WebError;
use super::format::{absolute, ago, left, urgency, who, who_detail, with_query};
use super::login::{param, params};
use super::return_to::local_path;
use super::templates::{
    AuditPage, DevNotificationsPage, EventView, InboxPage, Layout, ListItem, Live, MinePage,
    PreviewView, UserView, render,
};
use crate::session::{Session, Use};
use crate::state::AppState;

/// The header the live script sends when it refreshes a page after an event.
const LIVE_REFRESH: &str = "x-countersign-live";

/// Returns the page's session, or from the handler the redirect to sign in.
macro_rules! session_or_return {
    ($state:expr, $headers:expr, $uri:expr) => {
        match require(&$state, &$headers, &$uri).await {
            Ok(s) => s,
            Err(response) => return Ok(response),
        }
    };
}

mod new;
mod request;

pub(super) use new::{create, gate_form, new_request};
pub(super) use request::{cancel, decide, request, revoke};

/// The frame of a page for a signed-in person.
pub(super) fn layout(
    session: &Session,
    title: &str,
    nav: &'static str,
    live: Option<Live>,
) -> Layout {
    let p = session.principal();
    Layout {
        title: title.to_owned(),
        user: Some(UserView {
            name: who(p),
            detail: who_detail(p),
        }),
        csrf: session.csrf().to_owned(),
        nav,
        live,
    }
}

/// The session of a page view, or a redirect to sign in and come back here.
pub(super) async fn require(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Session, Response> {
    // The live script's refreshes follow other people's changes, not this person's activity:
    // they must not keep an idle session alive.
    let usage = if headers.contains_key(LIVE_REFRESH) {
        Use::Peek
    } else {
        Use::Page
    };
    match state.sessions.current(&state.engine, headers, usage).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => {
            let here = uri
                .path_and_query()
                .map(|p| p.as_str())
                .and_then(local_path)
                .unwrap_or("/");
            let to = if here == "/" {
                "/login".to_owned()
            } else {
                with_query("/login", &[("return_to", here)])
            };
            let mut response = Redirect::to(&to).into_response();
            // A dead session cookie is of no use to anyone.
            if state.sessions.cookies().session(headers).is_some() {
                state
                    .sessions
                    .cookies()
                    .clear_session(response.headers_mut());
            }
            Err(response)
        }
        Err(e) => Err(WebError::from(e).into_response()),
    }
}

pub(super) fn list_item(state: &AppState, r: &Request) -> ListItem {
    let now = state.engine.now();
    let pending = r.state == RequestState::Pending;
    let waiting = if pending {
        state
            .engine
            .evaluate(r)
            .map(|e| e.waiting_for().join(", "))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let reason: String = r
        .reason
        .clone()
        .unwrap_or_default()
        .chars()
        .take(240)
        .collect();
    ListItem {
        id: r.id.to_string(),
        gate: r.gate.clone(),
        state: r.state.as_str(),
        reason,
        requester: who(&r.requester),
        age: ago(now, r.created_at),
        created_abs: absolute(r.created_at),
        left: if pending {
            left(now, r.expires_at)
        } else {
            String::new()
        },
        left_abs: absolute(r.expires_at),
        urgency: if pending {
            urgency(now, r.expires_at)
        } else {
            ""
        },
        waiting,
    }
}

/// `GET /`: what the signed-in person can still decide, oldest first, and their own open
/// requests.
pub(super) async fn inbox(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let who = session.principal().clone();
    let inbox = state
        .engine
        .list(
            &who,
            ListRequests {
                role: Some(Role::Approver),
                limit: Some(100),
                ..Default::default()
            },
        )
        .await?;
    let mine = state
        .engine
        .list(
            &who,
            ListRequests {
                role: Some(Role::Requester),
                state: Some(RequestState::Pending),
                limit: Some(20),
                ..Default::default()
            },
        )
        .await?;
    let live = Live {
        events: "/api/v1/inbox/events".into(),
        version: 0,
    };
    Ok(render(&InboxPage {
        layout: layout(&session, "Inbox", "inbox", Some(live)),
        items: inbox.items.iter().map(|r| list_item(&state, r)).collect(),
        mine: mine.items.iter().map(|r| list_item(&state, r)).collect(),
    }))
}

/// `GET /requests`: the signed-in person's requests, newest first.
pub(super) async fn mine(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let pairs = params(query.unwrap_or_default().as_bytes())?;
    let cursor = param(&pairs, "cursor")
        .map(|c| {
            c.parse::<RequestId>().map_err(|_| {
                WebError::new(
                    StatusCode::BAD_REQUEST,
                    "Bad link",
                    "this page link is not valid",
                )
            })
        })
        .transpose()?;
    let page = state
        .engine
        .list(
            session.principal(),
            ListRequests {
                role: Some(Role::Requester),
                limit: Some(50),
                cursor,
                ..Default::default()
            },
        )
        .await?;
    let live = Live {
        events: "/api/v1/inbox/events".into(),
        version: 0,
    };
    Ok(render(&MinePage {
        layout: layout(&session, "My requests", "mine", Some(live)),
        items: page.items.iter().map(|r| list_item(&state, r)).collect(),
        next: page.next_cursor.map(|c| c.to_string()),
    }))
}

pub(super) fn request_id(raw: &str) -> Result<RequestId, WebError> {
    raw.parse()
        .map_err(|_| WebError::not_found("there is no such request"))
}

/// `GET /requests/{id}/audit`: the request's audit trail.
pub(super) async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let id = request_id(&id)?;
    let request = state.engine.get(session.principal(), &id).await?;
    let events = state
        .engine
        .audit(
            session.principal(),
            AuditQuery {
                request_id: Some(id),
                after_seq: 0,
                limit: 1000,
            },
        )
        .await?;
    let events = events
        .iter()
        .map(|e| EventView {
            seq: e.seq,
            at: absolute(e.at),
            actor: if e.actor.issuer.is_empty() && e.actor.subject.is_empty() {
                "countersign".to_owned()
            } else {
                format!("{}: {}", e.actor.issuer, e.actor.subject)
            },
            action: e.action.clone(),
            detail: match &e.detail {
                Value::Null => String::new(),
                Value::Object(m) if m.is_empty() => String::new(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            },
            hash: e.hash.clone(),
        })
        .collect();
    Ok(render(&AuditPage {
        layout: layout(&session, "Audit trail", "", None),
        id: id.to_string(),
        gate: request.gate.clone(),
        events,
    }))
}

/// `/dev/notifications`: the sandbox's outbox viewer (mounted only when a `preview` channel is
/// configured, which only a loopback server may have): what every channel kind would send.
pub(super) async fn dev_notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let previews = state
        .notifier
        .sender()
        .map(|s| s.previews())
        .unwrap_or_default()
        .into_iter()
        .map(|p| PreviewView {
            slack: pretty(&p.slack),
            teams: pretty(&p.teams),
            channel: p.channel,
            request_id: p.request_id,
            kind: p.kind,
            version: p.at_version,
            email_subject: p.email_subject,
            email_text: p.email_text,
            email_html: p.email_html,
        })
        .collect();
    Ok(render(&DevNotificationsPage {
        layout: layout(&session, "Notifications", "", None),
        previews,
    }))
}
