//! The JSON shapes the API answers with. They are the contract clients rely on, so they are
//! built explicitly here rather than derived from domain types.

use countersign_core::policy::Evaluation;
use countersign_core::time::{format_duration, rfc3339};
use countersign_core::{AuditEvent, Gate, ParamType, Request};
use serde_json::{Value, json};

/// A request with its rule standing (the shape is shared with webhook payloads).
pub fn request(r: &Request, evaluation: Option<&Evaluation>) -> Value {
    countersign_core::view::request(r, evaluation)
}

/// A gate as shown to a caller, with what they may do.
pub fn gate(g: &Gate, can_request: bool, can_approve: bool) -> Value {
    let params: serde_json::Map<String, Value> = g
        .params
        .values()
        .map(|p| {
            let mut v = json!({"type": p.type_name(), "required": p.required, "description": p.description});
            match &p.ty {
                ParamType::String { pattern, max_length } => {
                    v["pattern"] = json!(pattern.as_ref().map(|r| r.as_str()));
                    v["max_length"] = json!(max_length);
                }
                ParamType::Int { min, max } => {
                    v["min"] = json!(min);
                    v["max"] = json!(max);
                }
                ParamType::Enum { values } => v["values"] = json!(values),
                ParamType::Bool => {}
            }
            (p.name.clone(), v)
        })
        .collect();
    json!({
        "name": g.name,
        "description": g.description,
        "can_request": can_request,
        "can_approve": can_approve,
        "reason": requirement(g.reason),
        "ticket": requirement(g.ticket),
        "pending_ttl": format_duration(g.pending_ttl),
        "grant": {
            "audience": g.grant.audience,
            "ttl": format_duration(g.grant.ttl),
            "max_ttl": format_duration(g.grant.max_ttl),
            "single_use": g.grant.single_use,
        },
        "params": params,
        "rules": g.rules.iter().map(|r| json!({
            "name": r.name,
            "approvers": r.approvers.source(),
            "min_approvals": r.min_approvals,
            "stage": r.stage,
            "reject_threshold": r.reject_threshold,
        })).collect::<Vec<_>>(),
        "auto_approve": g.auto_approve.as_ref().map(|c| c.source()),
    })
}

fn requirement(r: countersign_core::Requirement) -> &'static str {
    match r {
        countersign_core::Requirement::Required => "required",
        countersign_core::Requirement::Optional => "optional",
    }
}

/// One audit event.
pub fn audit_event(e: &AuditEvent) -> Value {
    json!({
        "seq": e.seq,
        "at": rfc3339(&e.at),
        "actor": {"issuer": e.actor.issuer, "subject": e.actor.subject},
        "action": e.action,
        "request_id": e.request_id,
        "digest": e.digest,
        "detail": e.detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}
