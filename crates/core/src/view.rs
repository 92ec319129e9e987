//! The public JSON shape of a request: what the API answers and what webhook payloads carry
//! as `data`. It is a contract, so it is written out field by field.

use serde_json::{Value, json};

use crate::policy::Evaluation;
use crate::request::{Request, State};
use crate::time::{format_duration, rfc3339};

/// A principal as shown to others.
pub fn principal(p: &crate::Principal) -> Value {
    json!({
        "issuer": p.identity.issuer,
        "subject": p.identity.subject,
        "name": p.name,
        "email": p.email,
        "kind": p.kind.as_str(),
    })
}

/// A request with its rule standing.
pub fn request(r: &Request, evaluation: Option<&Evaluation>) -> Value {
    let rules: Vec<Value> = evaluation
        .map(|ev| {
            ev.rules
                .iter()
                .map(|rule| {
                    json!({
                        "name": rule.name,
                        "stage": rule.stage,
                        "min_approvals": rule.min_approvals,
                        "satisfied": rule.satisfied,
                        "open": rule.open,
                        "approvals": rule.approvals.iter().map(|&i| {
                            let d = &r.decisions[i];
                            json!({
                                "issuer": d.approver.identity.issuer,
                                "subject": d.approver.identity.subject,
                                "name": d.approver.name,
                                "comment": d.comment,
                                "at": rfc3339(&d.at),
                            })
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let decisions: Vec<Value> = r
        .decisions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            json!({
                "approver": {"issuer": d.approver.identity.issuer, "subject": d.approver.identity.subject, "name": d.approver.name},
                "verdict": d.verdict.as_str(),
                "comment": d.comment,
                "rule": evaluation.and_then(|ev| ev.rule_of(i)),
                "at": rfc3339(&d.at),
            })
        })
        .collect();
    let waiting_for: Vec<String> = match (r.state, evaluation) {
        (State::Pending, Some(ev)) => ev.waiting_for(),
        _ => Vec::new(),
    };
    json!({
        "id": r.id,
        "gate": r.gate,
        "state": r.state.as_str(),
        "approval": r.approval,
        "params": r.params,
        "reason": r.reason,
        "ticket": r.ticket,
        "duration": format_duration(chrono::Duration::seconds(r.duration_secs)),
        "duration_seconds": r.duration_secs,
        "requester": principal(&r.requester),
        "digest": r.digest,
        "created_at": rfc3339(&r.created_at),
        "expires_at": rfc3339(&r.expires_at),
        "decided_at": r.decided_at.as_ref().map(rfc3339),
        "updated_at": rfc3339(&r.updated_at),
        "rules": rules,
        "decisions": decisions,
        "waiting_for": waiting_for,
        "version": r.version,
    })
}
