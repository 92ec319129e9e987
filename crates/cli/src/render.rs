//! How requests and gates read in a terminal. Everything here takes the server's answers (the
//! API's wire types, `countersign_api`) and returns lines; printing is the caller's.

use std::collections::BTreeMap;

use countersign_api::{
    Approver, Gate, ParamKind, Principal, Request, RequestState, Requirement, Verdict,
};
use serde_json::Value;

use crate::clock;
use crate::output::Paint;

/// A parameter's value as text, `-` when null.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An optional field as text, `-` when absent.
fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// `service=api version=1.4.2`.
pub fn params(params: &BTreeMap<String, Value>) -> String {
    if params.is_empty() {
        return "-".into();
    }
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Alice Adams (idp:alice)`, or `idp:alice`.
pub fn who(principal: &Principal) -> String {
    named(
        &principal.issuer,
        &principal.subject,
        principal.name.as_deref(),
    )
}

/// An approver as [`who`] writes a principal.
pub fn approver(approver: &Approver) -> String {
    named(
        &approver.issuer,
        &approver.subject,
        approver.name.as_deref(),
    )
}

fn named(issuer: &str, subject: &str, name: Option<&str>) -> String {
    let id = format!("{issuer}:{subject}");
    match name {
        Some(name) if !name.is_empty() => format!("{name} ({id})"),
        _ => id,
    }
}

/// A span of seconds, coarse: `42s`, `12m05s`, `3h07m`, `2d04h`.
pub fn span(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Seconds from now until an RFC 3339 time (negative when past).
pub fn seconds_until(time: &str) -> Option<i64> {
    let at = chrono::DateTime::parse_from_rfc3339(time).ok()?;
    Some(at.timestamp() - clock::now_secs())
}

/// The rules a pending request still waits for, with their counts and — when the gate is
/// known — who can fill them: `sre 0/1 ("sre" in approver.groups)`.
pub fn waiting(request: &Request, gate: Option<&Gate>) -> String {
    let parts: Vec<String> = request
        .waiting_for
        .iter()
        .map(|name| {
            let rule = request.rules.iter().find(|r| r.name == *name);
            let count = rule
                .map(|r| format!(" {}/{}", r.approvals.len(), r.min_approvals))
                .unwrap_or_default();
            let closed = if rule.is_some_and(|r| !r.open) {
                " (after earlier stages)"
            } else {
                ""
            };
            let whom = gate
                .and_then(|g| g.rules.iter().find(|r| r.name == *name))
                .map(|r| format!(" ({})", r.approvers))
                .unwrap_or_default();
            format!("{name}{count}{closed}{whom}")
        })
        .collect();
    parts.join(", ")
}

/// The full picture of a request: what is asked, by whom, where its rules stand.
pub fn request(r: &Request, url: &str, paint: Paint) -> Vec<String> {
    let label = |l: &str| paint.dim(&format!("{l:<11}"));
    let mut lines = vec![format!(
        "{}  {}  {}",
        paint.bold(&r.id),
        r.gate,
        paint.state(r.state.as_str())
    )];
    lines.push(format!("  {}{}", label("params"), params(&r.params)));
    lines.push(format!(
        "  {}{}",
        label("reason"),
        or_dash(r.reason.as_deref())
    ));
    if let Some(ticket) = &r.ticket {
        lines.push(format!("  {}{ticket}", label("ticket")));
    }
    lines.push(format!("  {}{}", label("requester"), who(&r.requester)));
    lines.push(format!("  {}{}", label("duration"), r.duration));
    lines.push(format!("  {}{}", label("created"), r.created_at));
    if r.state == RequestState::Pending {
        let left = seconds_until(&r.expires_at)
            .map(|s| format!(" (in {})", span(s)))
            .unwrap_or_default();
        lines.push(format!("  {}{}{left}", label("expires"), r.expires_at));
    } else if let Some(decided) = &r.decided_at {
        lines.push(format!("  {}{decided}", label("decided")));
    }
    lines.push(format!("  {}{}", label("digest"), r.digest));
    for (i, rule) in r.rules.iter().enumerate() {
        let have = rule.approvals.len();
        let by: Vec<String> = rule
            .approvals
            .iter()
            .map(|a| a.name.clone().unwrap_or_else(|| a.subject.clone()))
            .collect();
        let mark = if rule.satisfied {
            paint.green("met")
        } else if !rule.open {
            paint.dim("later stage")
        } else {
            paint.yellow("waiting")
        };
        let by = if by.is_empty() {
            String::new()
        } else {
            format!("  by {}", by.join(", "))
        };
        lines.push(format!(
            "  {}{:<14} {have}/{}  {mark}{by}",
            label(if i == 0 { "rules" } else { "" }),
            rule.name,
            rule.min_approvals,
        ));
    }
    for (i, d) in r.decisions.iter().enumerate() {
        let verdict = match d.verdict {
            Verdict::Approve => paint.green("approved"),
            Verdict::Reject => paint.red("rejected"),
        };
        let comment = d
            .comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        lines.push(format!(
            "  {}{} {verdict}{comment}",
            label(if i == 0 { "decisions" } else { "" }),
            approver(&d.approver),
        ));
    }
    lines.push(format!("  {}{url}", label("url")));
    lines
}

/// A page of requests as a table.
pub fn request_table(items: &[Request], paint: Paint) -> Vec<String> {
    if items.is_empty() {
        return vec!["no requests".into()];
    }
    let rows: Vec<[String; 5]> = items
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.gate.clone(),
                r.state.as_str().to_owned(),
                who(&r.requester),
                r.created_at.clone(),
            ]
        })
        .collect();
    let width = |i: usize, title: &str| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (w_gate, w_state, w_who) = (width(1, "GATE"), width(2, "STATE"), width(3, "REQUESTER"));
    let mut lines = vec![paint.dim(&format!(
        "{:<30}  {:<w_gate$}  {:<w_state$}  {:<w_who$}  CREATED",
        "ID", "GATE", "STATE", "REQUESTER"
    ))];
    for row in rows {
        let state = format!("{:<w_state$}", row[2]);
        lines.push(format!(
            "{:<30}  {:<w_gate$}  {}  {:<w_who$}  {}",
            row[0],
            row[1],
            paint.state(state.trim_end()) + &" ".repeat(state.len() - state.trim_end().len()),
            row[3],
            row[4]
        ));
    }
    lines
}

fn yes(v: bool) -> &'static str {
    if v { "yes" } else { "no" }
}

fn requirement(r: Requirement) -> &'static str {
    match r {
        Requirement::Required => "required",
        Requirement::Optional => "optional",
    }
}

/// The gates as a table: what the caller may do with each.
pub fn gate_table(items: &[Gate], paint: Paint) -> Vec<String> {
    if items.is_empty() {
        return vec!["no gates".into()];
    }
    let w = items
        .iter()
        .map(|g| g.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut lines = vec![paint.dim(&format!("{:<w$}  REQUEST  APPROVE  DESCRIPTION", "NAME"))];
    for g in items {
        lines.push(format!(
            "{:<w$}  {:<7}  {:<7}  {}",
            g.name,
            yes(g.can_request),
            yes(g.can_approve),
            g.description
        ));
    }
    lines
}

/// One gate in full: its parameters and rules.
pub fn gate(g: &Gate, paint: Paint) -> Vec<String> {
    let label = |l: &str| paint.dim(&format!("{l:<11}"));
    let mut lines = vec![format!("{}  {}", paint.bold(&g.name), g.description)];
    lines.push(format!(
        "  {}request: {}, approve: {}",
        label("you may"),
        yes(g.can_request),
        yes(g.can_approve)
    ));
    lines.push(format!(
        "  {}reason {}, ticket {}",
        label("needs"),
        requirement(g.reason),
        requirement(g.ticket)
    ));
    lines.push(format!("  {}{}", label("pending"), g.pending_ttl));
    lines.push(format!(
        "  {}{} (up to {}), audience {}{}",
        label("grant"),
        g.grant.ttl,
        g.grant.max_ttl,
        g.grant.audience,
        if g.grant.single_use {
            ", single use"
        } else {
            ""
        }
    ));
    for (i, (name, p)) in g.params.iter().enumerate() {
        let type_name = match &p.kind {
            ParamKind::String { .. } => "string",
            ParamKind::Int { .. } => "int",
            ParamKind::Bool => "bool",
            ParamKind::Enum { .. } => "enum",
        };
        let mut detail = vec![type_name.to_owned()];
        if p.required {
            detail.push("required".into());
        }
        if let ParamKind::Enum { values } = &p.kind {
            detail.push(format!("one of {}", values.join("|")));
        }
        if let ParamKind::String {
            pattern: Some(pattern),
            ..
        } = &p.kind
        {
            detail.push(format!("matching {pattern}"));
        }
        let description = p
            .description
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default();
        lines.push(format!(
            "  {}{name} ({}){description}",
            label(if i == 0 { "params" } else { "" }),
            detail.join(", ")
        ));
    }
    for (i, r) in g.rules.iter().enumerate() {
        lines.push(format!(
            "  {}{} (stage {}): {} of {}",
            label(if i == 0 { "rules" } else { "" }),
            r.name,
            r.stage,
            r.min_approvals,
            r.approvers
        ));
    }
    if let Some(auto) = &g.auto_approve {
        lines.push(format!("  {}{auto}", label("auto")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spans() {
        assert_eq!(span(42), "42s");
        assert_eq!(span(725), "12m05s");
        assert_eq!(span(3 * 3600 + 7 * 60 + 9), "3h07m");
        assert_eq!(span(-5), "0s");
    }

    /// A pending request through `gate`, as the server would write it.
    fn pending(rules: Value, waiting_for: Value) -> Request {
        serde_json::from_value(json!({
            "approval": null, "created_at": "2026-01-01T00:00:00.000Z", "decided_at": null,
            "decisions": [], "digest": format!("sha256:{}", "0".repeat(64)), "duration": "1h",
            "duration_seconds": 3600, "expires_at": "2026-01-01T01:00:00.000Z", "gate": "deploy",
            "id": "req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3", "params": {}, "reason": null,
            "requester": {"email": null, "issuer": "idp", "kind": "human", "name": null,
                          "subject": "alice"},
            "rules": rules, "state": "pending", "ticket": null,
            "updated_at": "2026-01-01T00:00:00.000Z", "version": 1, "waiting_for": waiting_for,
        }))
        .unwrap()
    }

    #[test]
    fn waiting_names_counts_and_conditions() {
        let approval = json!({"at": "2026-01-01T00:00:00.000Z", "comment": null,
                              "issuer": "idp", "name": null, "subject": "bob"});
        let request = pending(
            json!([
                {"name": "sre", "min_approvals": 1, "approvals": [approval], "open": true,
                 "satisfied": true, "stage": 1},
                {"name": "security", "min_approvals": 1, "approvals": [], "open": true,
                 "satisfied": false, "stage": 1}
            ]),
            json!(["security"]),
        );
        let gate: Gate = serde_json::from_value(json!({
            "auto_approve": null, "can_approve": false, "can_request": true,
            "description": "", "name": "deploy", "params": {}, "pending_ttl": "1h",
            "reason": "optional", "ticket": "optional",
            "grant": {"audience": "x", "max_ttl": "1h", "single_use": false, "ttl": "1h"},
            "rules": [{"name": "security", "approvers": "\"security\" in approver.groups",
                       "min_approvals": 1, "reject_threshold": 1, "stage": 1}],
        }))
        .unwrap();
        assert_eq!(
            waiting(&request, Some(&gate)),
            "security 0/1 (\"security\" in approver.groups)"
        );
        assert_eq!(waiting(&request, None), "security 0/1");
    }

    #[test]
    fn params_and_people() {
        let replicas = BTreeMap::from([("replicas".to_owned(), json!(2))]);
        assert_eq!(params(&replicas), "replicas=2");
        assert_eq!(params(&BTreeMap::new()), "-");
        let person = |name: Option<&str>| Principal {
            email: None,
            issuer: "idp".into(),
            kind: countersign_api::PrincipalKind::Human,
            name: name.map(Into::into),
            subject: "bob".into(),
        };
        assert_eq!(who(&person(Some("Bob"))), "Bob (idp:bob)");
        assert_eq!(who(&person(None)), "idp:bob");
    }
}
