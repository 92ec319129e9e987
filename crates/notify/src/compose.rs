//! From the domain to a [`Notice`]: the request as it is now, its gate and its rule standing,
//! with every raw string kept raw (the renderers escape).

use countersign_core::notice::NoticeKind;
use countersign_core::policy::Evaluation;
use countersign_core::{Gate, Principal, Request};
use serde_json::Value;

use crate::notice::{DecisionLine, Notice, Person};

/// The notice for `kind` about `request` (as it is now) on `gate`, linking to the request
/// page under `public_url`.
pub fn notice(
    kind: &NoticeKind,
    gate: &Gate,
    request: &Request,
    evaluation: &Evaluation,
    public_url: &str,
) -> Notice {
    let params = request
        .params
        .iter()
        .map(|(name, value)| {
            let shown = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), shown)
        })
        .collect();
    let pending = request.state == countersign_core::State::Pending;
    let needs = if pending {
        evaluation
            .rules
            .iter()
            .filter(|r| r.open && !r.satisfied)
            .map(|r| {
                let missing = r
                    .min_approvals
                    .saturating_sub(u32::try_from(r.approvals.len()).unwrap_or(u32::MAX));
                format!("{missing} more from {}", r.name)
            })
            .collect()
    } else {
        Vec::new()
    };
    let decisions: Vec<DecisionLine> = request
        .decisions
        .iter()
        .enumerate()
        .map(|(i, d)| DecisionLine {
            who: person(&d.approver),
            verdict: d.verdict.as_str().to_owned(),
            rule: evaluation.rule_of(i).map(str::to_owned),
            comment: d.comment.clone(),
            at: countersign_core::time::rfc3339(&d.at),
        })
        .collect();
    // Progress is about the newest decision; an outcome is, when a decision brought it
    // (not an expiry, a cancellation or a revocation).
    let last = request.decisions.last();
    let latest = match kind {
        NoticeKind::Progress => last.map(|_| decisions.len() - 1),
        NoticeKind::Decided => last
            .filter(|d| Some(d.at) == request.decided_at)
            .map(|_| decisions.len() - 1),
        _ => None,
    };
    let progress = progress_line(kind, evaluation, latest);
    Notice {
        kind: kind.clone(),
        request_id: request.id.to_string(),
        gate: gate.name.clone(),
        gate_description: gate.description.clone(),
        requester: person(&request.requester),
        params,
        reason: request.reason.clone(),
        ticket: request.ticket.clone(),
        state: request.state.as_str().to_owned(),
        needs,
        progress,
        decisions,
        latest,
        expires_at: countersign_core::time::rfc3339(&request.expires_at),
        expires_at_unix: request.expires_at.timestamp(),
        digest: request.digest.to_string(),
        url: format!(
            "{}/requests/{}",
            public_url.trim_end_matches('/'),
            request.id
        ),
        version: request.version,
    }
}

/// "1 of 2 from sre" about the latest decision's rule, else "1 of 3 approvals" overall.
fn progress_line(
    kind: &NoticeKind,
    evaluation: &Evaluation,
    latest: Option<usize>,
) -> Option<String> {
    if let (NoticeKind::Progress, Some(i)) = (kind, latest)
        && let Some(rule) = evaluation.rules.iter().find(|r| r.approvals.contains(&i))
    {
        return Some(format!(
            "{} of {} from {}",
            rule.approvals.len(),
            rule.min_approvals,
            rule.name
        ));
    }
    let needed: u32 = evaluation.rules.iter().map(|r| r.min_approvals).sum();
    let have: usize = evaluation
        .rules
        .iter()
        .map(|r| r.approvals.len().min(r.min_approvals as usize))
        .sum();
    (needed > 0).then(|| format!("{have} of {needed} approvals"))
}

fn person(p: &Principal) -> Person {
    Person {
        name: p.name().map(str::to_owned),
        email: p.email().map(str::to_owned),
        subject: p.identity().subject.clone(),
        issuer: p.identity().issuer.clone(),
    }
}
