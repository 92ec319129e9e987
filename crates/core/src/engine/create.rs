//! Creating a request: the input checked against its gate, the requester against the gate's
//! `requesters`, and the request stored pending, or approved when `auto_approve` holds.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Engine;
use crate::audit::{Actor, AuditAction, NewAuditEvent};
use crate::condition::Condition;
use crate::error::EngineError;
use crate::gate::{Gate, Requirement};
use crate::ids::RequestId;
use crate::policy;
use crate::principal::Principal;
use crate::request::{ApprovalPath, Request, State, content_digest, content_value};

/// Longest reason accepted, in characters.
pub const MAX_REASON: usize = 2000;
/// Longest comment accepted, in characters.
pub const MAX_COMMENT: usize = 2000;
/// Longest ticket reference accepted, in characters.
pub const MAX_TICKET: usize = 200;

/// What a requester asks for.
#[derive(Clone, Debug, Default)]
pub struct NewRequest {
    /// The gate's name.
    pub gate: String,
    /// Parameters as supplied (validated against the gate).
    pub params: Map<String, Value>,
    /// Why.
    pub reason: Option<String>,
    /// A ticket reference.
    pub ticket: Option<String>,
    /// The grant window asked for, e.g. `30m`; the gate's default when absent.
    pub duration: Option<String>,
}

impl Engine {
    /// Creates a request. It starts pending, or approved when the gate's auto-approve holds.
    #[tracing::instrument(skip_all, fields(gate = %input.gate, requester = %who.identity()))]
    pub async fn create(&self, who: &Principal, input: NewRequest) -> Result<Request, EngineError> {
        let now = self.clock.now();
        let gate = self
            .gates
            .get(&input.gate)
            .ok_or_else(|| EngineError::UnknownGate(clip(&input.gate)))?
            .clone();
        let params = validate_params(&gate, &input.params)?;
        let reason = text_field("reason", input.reason, gate.reason, MAX_REASON, true)?;
        let ticket = text_field("ticket", input.ticket, gate.ticket, MAX_TICKET, false)?;
        let duration = match input.duration.as_deref() {
            None | Some("") => gate.grant.ttl,
            Some(text) => crate::time::parse_duration(text)
                .map_err(|m| EngineError::invalid("invalid_duration", format!("duration: {m}")))?,
        };
        if duration > gate.grant.max_ttl {
            return Err(EngineError::invalid(
                "invalid_duration",
                format!(
                    "duration {} is longer than this gate allows ({})",
                    crate::time::format_duration(duration),
                    crate::time::format_duration(gate.grant.max_ttl)
                ),
            ));
        }
        let duration_secs = duration.num_seconds();
        let content = content_value(
            &gate.name,
            &params,
            reason.as_deref(),
            ticket.as_deref(),
            duration_secs,
            who,
        );
        let allowed = policy::may_request(&gate, who, &content, now);
        if !allowed.value {
            self.audit_refusal(
                who,
                "request.create",
                None,
                None,
                "not_allowed",
                json!({"gate": gate.name, "condition_error": allowed.error}),
            )
            .await?;
            return Err(EngineError::forbidden(
                "not_allowed",
                format!("you may not request '{}'", gate.name),
            ));
        }
        let digest = content_digest(
            &gate.name,
            &params,
            reason.as_deref(),
            ticket.as_deref(),
            duration_secs,
            who,
        );
        let id = RequestId::generate(now);
        let auto = policy::auto_approves(&gate, who, &content, now);
        let actor = Actor::from(who.identity());
        let mut events = vec![NewAuditEvent {
            at: now,
            actor: actor.clone(),
            action: AuditAction::RequestCreated,
            request_id: Some(id),
            digest: Some(digest.clone()),
            detail: json!({
                "gate": gate.name,
                "params": params,
                "reason": reason,
                "ticket": ticket,
                "duration_seconds": duration_secs,
                "requester_kind": who.kind().as_str(),
                "requester_actor": who.actor(),
            }),
        }];
        if auto {
            events.push(NewAuditEvent {
                at: now,
                actor,
                action: AuditAction::RequestApproved,
                request_id: Some(id),
                digest: Some(digest.clone()),
                detail: json!({"gate": gate.name, "path": "auto_approved",
                    "condition": gate.auto_approve.as_ref().map(Condition::source)}),
            });
        }
        let request = Request {
            id,
            gate: gate.name.clone(),
            params,
            reason,
            ticket,
            requester: who.clone(),
            duration_secs,
            digest,
            state: if auto {
                State::Approved
            } else {
                State::Pending
            },
            approval: auto.then_some(ApprovalPath::AutoApproved),
            version: 1,
            created_at: now,
            expires_at: now + gate.pending_ttl,
            decided_at: auto.then_some(now),
            updated_at: now,
            decisions: Vec::new(),
        };
        let mut outbox = self.announce(AuditAction::RequestCreated, &request, None, now);
        if auto {
            outbox.extend(self.announce(AuditAction::RequestApproved, &request, None, now));
        }
        let notices = self.notices_on_create(&gate, &request, now);
        self.store
            .insert_request(&request, &events, &outbox, &notices)
            .await?;
        self.changed(&request);
        Ok(request)
    }
}

/// Validates supplied parameters against the gate: no unknown names, every required one
/// present, each value of its type.
fn validate_params(
    gate: &Gate,
    supplied: &Map<String, Value>,
) -> Result<BTreeMap<String, Value>, EngineError> {
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for name in supplied.keys() {
        if !gate.params.contains_key(name) {
            let known: Vec<&str> = gate.params.keys().map(String::as_str).collect();
            problems.push(format!(
                "unknown parameter '{}' (this gate takes: {})",
                clip(name),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    for (name, spec) in &gate.params {
        match supplied.get(name) {
            None | Some(Value::Null) => {
                if spec.required {
                    problems.push(format!("parameter '{name}' is required"));
                }
            }
            Some(v) => match spec.validate(v) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(m) => problems.push(m),
            },
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(EngineError::invalid("invalid_params", problems.join("; ")))
    }
}

/// Normalizes a free-text field: trims, treats blank as absent, enforces the requirement,
/// the length and the absence of control characters (newlines and tabs allowed where
/// `multiline`).
pub(super) fn text_field(
    name: &str,
    value: Option<String>,
    requirement: Requirement,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, EngineError> {
    let value = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let code = if name == "reason" {
        "reason_required"
    } else {
        "invalid_input"
    };
    match value {
        None if requirement == Requirement::Required => Err(EngineError::invalid(
            code,
            format!("a {name} is required for this gate"),
        )),
        None => Ok(None),
        Some(v) if v.chars().count() > max => Err(EngineError::invalid(
            "invalid_input",
            format!("the {name} is longer than {max} characters"),
        )),
        Some(v)
            if v.chars()
                .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t'))) =>
        {
            Err(EngineError::invalid(
                "invalid_input",
                format!("the {name} contains a control character"),
            ))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// Shortens user-supplied text before echoing it in an error.
pub(super) fn clip(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}
