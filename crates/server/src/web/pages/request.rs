//! The request page (`/requests/{id}`): what is asked, the rules with who approved and who
//! still can, the history and the digest; Approve / Reject with a comment (the digest the page
//! showed is posted back), with fresh authentication first when the sign-in is older than
//! `server.approval_max_auth_age`; cancel and revoke.

use axum::extract::{Path, RawForm, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use countersign_core::request::ApprovalPath;
use countersign_core::{Digest, PrincipalKind, Request, RequestId, State as RequestState, Verdict};

use super::{layout, request_id, require};
use crate::session::Session;
use crate::state::AppState;
use crate::web::WebError;
use crate::web::format::{absolute, ago, left, span, value, who, who_detail, with_query};
use crate::web::login::{param, params};
use crate::web::return_to::local_path;
use crate::web::templates::{ApprovalView, DecisionView, Live, RequestPage, RuleView, render};

/// The longest comment carried through a fresh sign-in in the return URL.
const MAX_CARRIED_COMMENT: usize = 500;

/// What a request page shows besides the request.
#[derive(Debug, Default)]
struct Extras {
    confirm: &'static str,
    comment: String,
    notice: &'static str,
    error: String,
}

fn verdict_name(raw: Option<&str>) -> &'static str {
    match raw {
        Some("approve") => "approve",
        Some("reject") => "reject",
        _ => "",
    }
}

fn notice(done: Option<&str>) -> &'static str {
    match done {
        Some("created") => "Your request is created. It now waits for the approvals below.",
        Some("approve") => "Your approval is recorded.",
        Some("reject") => "Your rejection is recorded.",
        Some("cancel") => "The request is cancelled.",
        Some("revoke") => "The approval is revoked.",
        _ => "",
    }
}

/// `GET /requests/{id}`.
pub(crate) async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let id = request_id(&id)?;
    let pairs = params(query.unwrap_or_default().as_bytes())?;
    let extras = Extras {
        confirm: verdict_name(param(&pairs, "confirm")),
        comment: param(&pairs, "comment").unwrap_or_default().to_owned(),
        notice: notice(param(&pairs, "done")),
        error: String::new(),
    };
    let request = state.engine.get(session.principal(), &id).await?;
    Ok(render(&request_page(&state, &session, &request, extras)))
}

fn request_page(state: &AppState, session: &Session, r: &Request, extras: Extras) -> RequestPage {
    let engine = &state.engine;
    let now = engine.now();
    let me = session.principal();
    let gate = engine.gates().get(&r.gate).cloned();
    let evaluation = engine.evaluate(r);
    let waiting = evaluation
        .as_ref()
        .map(|e| e.waiting_for())
        .unwrap_or_default();
    let decided = r.decided_at.map(|t| ago(now, t)).unwrap_or_default();
    let summary = match r.state {
        RequestState::Pending if waiting.is_empty() => {
            format!("Waiting for approval · {}", left(now, r.expires_at))
        }
        RequestState::Pending => format!(
            "Waiting for {} · {}",
            waiting.join(" and "),
            left(now, r.expires_at)
        ),
        RequestState::Approved => match r.approval {
            Some(ApprovalPath::AutoApproved) => format!("Approved automatically {decided}"),
            Some(ApprovalPath::BreakGlass) => format!("Approved by break-glass {decided}"),
            _ => format!("Approved {decided}"),
        },
        RequestState::Rejected => format!("Rejected {decided}"),
        RequestState::Expired => format!("Expired {decided} without enough approvals"),
        RequestState::Cancelled => format!("Cancelled by the requester {decided}"),
        RequestState::Revoked => format!("Approved, then revoked {decided}"),
    };
    let (deadline, deadline_abs) = match (r.state, r.decided_at) {
        (RequestState::Pending, _) => (
            "Expires".to_owned(),
            format!("{} ({})", left(now, r.expires_at), absolute(r.expires_at)),
        ),
        (_, Some(t)) => ("Decided".to_owned(), absolute(t)),
        (_, None) => ("Updated".to_owned(), absolute(r.updated_at)),
    };
    let rules = match (&gate, &evaluation) {
        (Some(gate), Some(ev)) => ev
            .rules
            .iter()
            .map(|status| {
                let (css, label) = if status.satisfied {
                    ("met", "met")
                } else if status.open {
                    ("waiting", "waiting")
                } else {
                    ("later", "later stage")
                };
                RuleView {
                    name: status.name.clone(),
                    stage: status.stage,
                    needed: status.min_approvals,
                    have: status.approvals.len(),
                    status: css,
                    status_label: label,
                    who_can: gate
                        .rules
                        .iter()
                        .find(|rule| rule.name == status.name)
                        .map(|rule| rule.approvers.source().to_owned())
                        .unwrap_or_default(),
                    approvals: status
                        .approvals
                        .iter()
                        .filter_map(|&i| r.decisions.get(i))
                        .map(|d| ApprovalView {
                            who: who(&d.approver),
                            who_detail: who_detail(&d.approver),
                            comment: d.comment.clone().unwrap_or_default(),
                            at: ago(now, d.at),
                        })
                        .collect(),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let history = r
        .decisions
        .iter()
        .enumerate()
        .map(|(i, d)| DecisionView {
            who: who(&d.approver),
            who_detail: who_detail(&d.approver),
            verdict: d.verdict.as_str(),
            comment: d.comment.clone().unwrap_or_default(),
            rule: evaluation
                .as_ref()
                .and_then(|e| e.rule_of(i))
                .unwrap_or_default()
                .to_owned(),
            at: ago(now, d.at),
            at_abs: absolute(d.at),
        })
        .collect();
    let can_decide = engine.can_decide_now(me, r);
    let max_age = state.settings.server.approval_max_auth_age;
    let needs_fresh = can_decide && !session.authenticated_within(max_age, now);
    let fresh_note = match me.auth_time() {
        Some(t) => format!(
            "You signed in {} at your provider; deciding needs a sign-in within the last {}, so you will be asked to sign in again first.",
            ago(now, t),
            span(max_age)
        ),
        None => format!(
            "Deciding needs a sign-in within the last {}; you will be asked to sign in again first.",
            span(max_age)
        ),
    };
    let own_decision = r
        .decision_of(me)
        .map(|d| {
            format!(
                "You {} this request {}.",
                match d.verdict {
                    Verdict::Approve => "approved",
                    Verdict::Reject => "rejected",
                },
                ago(now, d.at)
            )
        })
        .unwrap_or_default();
    let mine = r.requester.same_person_as(me);
    let eligible = me.kind() == PrincipalKind::Human
        && gate.as_ref().is_some_and(|g| {
            countersign_core::policy::approver_checks(g, r, me, now)
                .iter()
                .any(|c| c.eligible)
        });
    RequestPage {
        layout: layout(
            session,
            &format!("{} {}", r.gate, r.state.as_str()),
            "",
            Some(Live {
                events: format!("/api/v1/requests/{}/events", r.id),
                version: r.version,
            }),
        ),
        id: r.id.to_string(),
        gate: r.gate.clone(),
        gate_description: gate
            .as_ref()
            .map(|g| g.description.clone())
            .unwrap_or_default(),
        state: r.state.as_str(),
        state_label: r.state.as_str().to_owned(),
        summary,
        params: r
            .params
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
        reason: r.reason.clone().unwrap_or_default(),
        ticket: r.ticket.clone().unwrap_or_default(),
        requester: who(&r.requester),
        requester_detail: who_detail(&r.requester),
        created: ago(now, r.created_at),
        created_abs: absolute(r.created_at),
        deadline,
        deadline_abs,
        duration: span(chrono::Duration::seconds(r.duration_secs)),
        digest: r.digest.to_string(),
        rules,
        history,
        can_decide,
        needs_fresh_sign_in: needs_fresh,
        fresh_sign_in_note: fresh_note,
        confirm: if can_decide { extras.confirm } else { "" },
        comment: extras.comment,
        can_cancel: mine && r.state == RequestState::Pending,
        can_revoke: (mine || eligible) && r.state == RequestState::Approved,
        notice: extras.notice.to_owned(),
        error: extras.error,
        own_decision,
    }
}

/// Renders the request page with an error banner, with the error's status.
async fn request_with_error(
    state: &AppState,
    session: &Session,
    id: &RequestId,
    error: WebError,
    extras: Extras,
) -> Result<Response, WebError> {
    let status = error.status();
    if status == StatusCode::NOT_FOUND || status.is_server_error() {
        return Err(error);
    }
    let request = state.engine.get(session.principal(), id).await?;
    let page = request_page(
        state,
        session,
        &request,
        Extras {
            error: error.message().to_owned(),
            ..extras
        },
    );
    Ok((status, render(&page)).into_response())
}

/// `POST /requests/{id}/decide`: approve or reject with the digest the page showed.
pub(crate) async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawForm(form): RawForm,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let id = request_id(&id)?;
    let pairs = params(&form)?;
    state
        .sessions
        .check_form(&session, &headers, param(&pairs, "csrf"))?;
    let verdict = match param(&pairs, "verdict") {
        Some("approve") => Verdict::Approve,
        Some("reject") => Verdict::Reject,
        _ => {
            return Err(WebError::new(
                StatusCode::BAD_REQUEST,
                "No decision",
                "choose Approve or Reject",
            ));
        }
    };
    let comment = param(&pairs, "comment")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let extras = || Extras {
        confirm: verdict.as_str(),
        comment: comment.clone().unwrap_or_default(),
        ..Default::default()
    };
    let Some(digest) = param(&pairs, "digest").and_then(|d| d.parse::<Digest>().ok()) else {
        let e = WebError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Please check the form",
            "the form did not say which version of the request you saw; reload the page and decide again",
        );
        return request_with_error(&state, &session, &id, e, extras()).await;
    };
    let now = state.engine.now();
    let max_age = state.settings.server.approval_max_auth_age;
    if !session.authenticated_within(max_age, now) {
        // Fresh authentication first; then back to this request to confirm the same choice.
        let carried: String = comment
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(MAX_CARRIED_COMMENT)
            .collect();
        let mut query = vec![("confirm", verdict.as_str())];
        if !carried.is_empty() {
            query.push(("comment", carried.as_str()));
        }
        let back = with_query(&format!("/requests/{id}"), &query);
        let issuer = session.principal().identity().issuer.clone();
        return crate::web::login::start(
            &state,
            &headers,
            &issuer,
            local_path(&back).unwrap_or("/"),
            Some(max_age.num_seconds()),
        )
        .await;
    }
    match state
        .engine
        .decide(session.principal(), &id, verdict, &digest, comment.clone())
        .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("/requests/{id}?done={}", verdict.as_str())).into_response())
        }
        Err(e) => request_with_error(&state, &session, &id, WebError::from(e), extras()).await,
    }
}

async fn finish_request(
    state: AppState,
    headers: HeaderMap,
    uri: Uri,
    id: String,
    form: axum::body::Bytes,
    action: &'static str,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let id = request_id(&id)?;
    let pairs = params(&form)?;
    state
        .sessions
        .check_form(&session, &headers, param(&pairs, "csrf"))?;
    let who = session.principal();
    let result = match action {
        "cancel" => state.engine.cancel(who, &id, None).await,
        _ => state.engine.revoke(who, &id, None).await,
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/requests/{id}?done={action}")).into_response()),
        Err(e) => {
            request_with_error(&state, &session, &id, WebError::from(e), Extras::default()).await
        }
    }
}

/// `POST /requests/{id}/cancel` (the requester).
pub(crate) async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawForm(form): RawForm,
) -> Result<Response, WebError> {
    finish_request(state, headers, uri, id, form, "cancel").await
}

/// `POST /requests/{id}/revoke` (the requester, or an eligible approver).
pub(crate) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawForm(form): RawForm,
) -> Result<Response, WebError> {
    finish_request(state, headers, uri, id, form, "revoke").await
}
