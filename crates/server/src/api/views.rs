//! The domain's values as the API's wire types (`countersign_api`). A request is the
//! exception: it is serialized straight from the domain by `countersign_core::view`, which
//! writes the same JSON as `countersign_api::Request` (the tests hold the two together).

use countersign_api as wire;
use countersign_core::grant::{Delivery, DeliveryState};
use countersign_core::time::{format_duration, rfc3339};
use countersign_core::{AuditEvent, Gate, ParamType, PrincipalKind, Requirement};

/// A gate as shown to a caller, with what they may do.
pub(super) fn gate(g: &Gate, can_request: bool, can_approve: bool) -> wire::Gate {
    let params = g
        .params
        .values()
        .map(|p| {
            let kind = match &p.ty {
                ParamType::String {
                    pattern,
                    max_length,
                } => wire::ParamKind::String {
                    max_length: *max_length as u64,
                    pattern: pattern.as_ref().map(|r| r.as_str().to_owned()),
                },
                ParamType::Int { min, max } => wire::ParamKind::Int {
                    max: *max,
                    min: *min,
                },
                ParamType::Enum { values } => wire::ParamKind::Enum {
                    values: values.clone(),
                },
                ParamType::Bool => wire::ParamKind::Bool,
            };
            let param = wire::Param {
                description: p.description.clone(),
                kind,
                required: p.required,
            };
            (p.name.clone(), param)
        })
        .collect();
    wire::Gate {
        auto_approve: g.auto_approve.as_ref().map(|c| c.source().to_owned()),
        can_approve,
        can_request,
        description: g.description.clone(),
        grant: wire::GrantSettings {
            audience: g.grant.audience.clone(),
            max_ttl: format_duration(g.grant.max_ttl),
            single_use: g.grant.single_use,
            ttl: format_duration(g.grant.ttl),
        },
        name: g.name.clone(),
        params,
        pending_ttl: format_duration(g.pending_ttl),
        reason: requirement(g.reason),
        rules: g
            .rules
            .iter()
            .map(|r| wire::GateRule {
                approvers: r.approvers.source().to_owned(),
                min_approvals: r.min_approvals,
                name: r.name.clone(),
                reject_threshold: r.reject_threshold,
                stage: r.stage,
            })
            .collect(),
        ticket: requirement(g.ticket),
    }
}

fn requirement(r: Requirement) -> wire::Requirement {
    match r {
        Requirement::Required => wire::Requirement::Required,
        Requirement::Optional => wire::Requirement::Optional,
    }
}

/// A principal's kind on the wire.
pub(super) fn kind(k: PrincipalKind) -> wire::PrincipalKind {
    match k {
        PrincipalKind::Human => wire::PrincipalKind::Human,
        PrincipalKind::Workload => wire::PrincipalKind::Workload,
    }
}

/// One audit event.
pub(super) fn audit_event(e: &AuditEvent) -> wire::AuditEvent {
    wire::AuditEvent {
        action: e.action.clone(),
        actor: wire::Actor {
            issuer: e.actor.issuer.clone(),
            subject: e.actor.subject.clone(),
        },
        at: rfc3339(&e.at),
        detail: e.detail.clone(),
        digest: e.digest.as_ref().map(ToString::to_string),
        hash: e.hash.clone(),
        prev_hash: e.prev_hash.clone(),
        request_id: e.request_id.map(|id| id.to_string()),
        seq: e.seq,
    }
}

/// A delivery's state on the wire.
pub(super) fn delivery_state(s: DeliveryState) -> wire::DeliveryState {
    match s {
        DeliveryState::Pending => wire::DeliveryState::Pending,
        DeliveryState::Delivered => wire::DeliveryState::Delivered,
        DeliveryState::Failed => wire::DeliveryState::Failed,
    }
}

/// A webhook message and where its delivery stands.
pub(super) fn delivery(d: &Delivery) -> wire::Delivery {
    wire::Delivery {
        attempts: d.attempts,
        created_at: rfc3339(&d.message.created_at),
        event: d.message.event.clone(),
        gate: d.message.gate.clone(),
        id: d.message.id.clone(),
        last_error: d.last_error.clone(),
        next_attempt_at: rfc3339(&d.next_attempt_at),
        request_id: d.message.request_id.to_string(),
        state: delivery_state(d.state),
        updated_at: rfc3339(&d.updated_at),
        url: redact_url(&d.message.url),
    }
}

/// Webhook URLs often carry tokens in their query or credentials; show where, not how.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path()
        }
        Err(_) => "(invalid url)".into(),
    }
}
