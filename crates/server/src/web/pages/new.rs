//! New requests: the gates the person may request (`/new`) and a gate's form (`/new/{gate}`)
//! with a typed input per parameter; the POST creates the request through the engine.

use axum::extract::{Path, RawForm, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use countersign_core::engine::NewRequest;
use countersign_core::{EngineError, ParamType};
use serde_json::{Map, Value};

use super::{layout, require};
use crate::session::Session;
use crate::state::AppState;
use crate::web::WebError;
use crate::web::format::{span, value};
use crate::web::login::{param, params};
use crate::web::templates::{FieldView, GateChoice, GateFormPage, NewPage, render};

/// `GET /new`: the gates the signed-in person may request.
pub(crate) async fn new_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let gates = state
        .engine
        .gate_access(session.principal())
        .into_iter()
        .filter(|a| a.can_request)
        .map(|a| GateChoice {
            name: a.gate.name.clone(),
            description: a.gate.description.clone(),
            approvals: if a.gate.auto_approve.is_some() {
                format!(
                    "approved by {} (or automatically when its condition holds)",
                    rule_names(&a.gate)
                )
            } else {
                format!("approved by {}", rule_names(&a.gate))
            },
        })
        .collect();
    Ok(render(&NewPage {
        layout: layout(&session, "New request", "new", None),
        gates,
    }))
}

fn rule_names(gate: &countersign_core::Gate) -> String {
    gate.rules
        .iter()
        .map(|r| {
            if r.min_approvals > 1 {
                format!("{} ×{}", r.name, r.min_approvals)
            } else {
                r.name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// What the form was filled in with, to show it again after a refusal.
#[derive(Debug, Default)]
struct Filled {
    params: Map<String, Value>,
    reason: String,
    ticket: String,
    duration: String,
}

fn gate_form_page(
    session: &Session,
    gate: &countersign_core::Gate,
    filled: &Filled,
    error: String,
) -> GateFormPage {
    let fields = gate
        .params
        .values()
        .map(|p| {
            let current = filled.params.get(&p.name).map(value).unwrap_or_default();
            let mut hint = p.description.clone().unwrap_or_default();
            let mut add = |text: String| {
                if !hint.is_empty() {
                    hint.push_str(" · ");
                }
                hint.push_str(&text);
            };
            let (kind, options, min, max) = match &p.ty {
                ParamType::String { pattern, .. } => {
                    if let Some(re) = pattern {
                        // The core anchors patterns as ^(?:…)$; show them as written.
                        let written = re
                            .as_str()
                            .strip_prefix("^(?:")
                            .and_then(|p| p.strip_suffix(")$"))
                            .unwrap_or(re.as_str());
                        add(format!("must match {written}"));
                    }
                    ("text", Vec::new(), String::new(), String::new())
                }
                ParamType::Int { min, max } => (
                    "number",
                    Vec::new(),
                    min.map(|m| m.to_string()).unwrap_or_default(),
                    max.map(|m| m.to_string()).unwrap_or_default(),
                ),
                ParamType::Bool => (
                    "select",
                    vec!["true".to_owned(), "false".to_owned()],
                    String::new(),
                    String::new(),
                ),
                ParamType::Enum { values } => {
                    ("select", values.clone(), String::new(), String::new())
                }
            };
            FieldView {
                name: p.name.clone(),
                label: p.name.replace('_', " "),
                kind,
                required: p.required,
                value: current,
                options,
                min,
                max,
                hint,
            }
        })
        .collect();
    GateFormPage {
        layout: layout(session, &format!("Request {}", gate.name), "new", None),
        gate: gate.name.clone(),
        description: gate.description.clone(),
        fields,
        reason_required: gate.reason == countersign_core::Requirement::Required,
        reason: filled.reason.clone(),
        ticket_required: gate.ticket == countersign_core::Requirement::Required,
        ticket: filled.ticket.clone(),
        duration: filled.duration.clone(),
        duration_hint: format!(
            "How long the approval lasts once granted: {} unless you say otherwise, at most {}.",
            span(gate.grant.ttl),
            span(gate.grant.max_ttl)
        ),
        error,
    }
}

/// `GET /new/{gate}`: the gate's form, with an input per parameter.
pub(crate) async fn gate_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(gate): Path<String>,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let gate = state
        .engine
        .gates()
        .get(&gate)
        .cloned()
        .ok_or_else(|| WebError::not_found("there is no gate of that name"))?;
    Ok(render(&gate_form_page(
        &session,
        &gate,
        &Filled::default(),
        String::new(),
    )))
}

/// `POST /new/{gate}`: creates the request and shows it.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(gate): Path<String>,
    RawForm(form): RawForm,
) -> Result<Response, WebError> {
    let session = session_or_return!(state, headers, uri);
    let pairs = params(&form)?;
    state
        .sessions
        .check_form(&session, &headers, param(&pairs, "csrf"))?;
    let gate = state
        .engine
        .gates()
        .get(&gate)
        .cloned()
        .ok_or_else(|| WebError::not_found("there is no gate of that name"))?;
    let mut filled = Filled::default();
    for (k, v) in &pairs {
        if let Some(name) = k.strip_prefix("p.")
            && !v.is_empty()
        {
            filled
                .params
                .insert(name.to_owned(), Value::String(v.clone()));
        }
    }
    let text = |name: &str| param(&pairs, name).unwrap_or_default().trim().to_owned();
    filled.reason = text("reason");
    filled.ticket = text("ticket");
    filled.duration = text("duration");
    let optional = |s: &String| (!s.is_empty()).then(|| s.clone());
    let input = NewRequest {
        gate: gate.name.clone(),
        params: filled.params.clone(),
        reason: optional(&filled.reason),
        ticket: optional(&filled.ticket),
        duration: optional(&filled.duration),
    };
    match state.engine.create(session.principal(), input).await {
        Ok(request) => {
            Ok(Redirect::to(&format!("/requests/{}?done=created", request.id)).into_response())
        }
        Err(e @ (EngineError::Invalid { .. } | EngineError::Forbidden { .. })) => {
            let error = WebError::from(e);
            let page = gate_form_page(&session, &gate, &filled, error.message().to_owned());
            Ok((error.status(), render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
