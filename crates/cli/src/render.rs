//! How requests and gates read in a terminal. Everything here takes the server's JSON (the
//! API's contract, `openapi.json`) and returns lines; printing is the caller's.

use serde_json::Value;

use crate::clock;
use crate::output::Paint;

/// A field as text, `-` when absent or null.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `service=api version=1.4.2`.
pub fn params(value: &Value) -> String {
    match value.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".into(),
    }
}

/// `Alice Adams (idp:alice)`, or `idp:alice`.
pub fn who(principal: &Value) -> String {
    let id = format!(
        "{}:{}",
        text(&principal["issuer"]),
        text(&principal["subject"])
    );
    match principal["name"].as_str() {
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
pub fn seconds_until(time: &Value) -> Option<i64> {
    let at = chrono::DateTime::parse_from_rfc3339(time.as_str()?).ok()?;
    Some(at.timestamp() - clock::now_secs())
}

/// The rules a pending request still waits for, with their counts and — when the gate is
/// known — who can fill them: `sre 0/1 ("sre" in approver.groups)`.
pub fn waiting(request: &Value, gate: Option<&Value>) -> String {
    let names: Vec<&str> = request["waiting_for"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let parts: Vec<String> = names
        .iter()
        .map(|name| {
            let rule = request["rules"]
                .as_array()
                .and_then(|rules| rules.iter().find(|r| r["name"] == *name));
            let count = rule
                .map(|r| {
                    let have = r["approvals"].as_array().map_or(0, Vec::len);
                    format!(" {have}/{}", text(&r["min_approvals"]))
                })
                .unwrap_or_default();
            let closed = if rule.is_some_and(|r| r["open"] == false) {
                " (after earlier stages)"
            } else {
                ""
            };
            let whom = gate
                .and_then(|g| g["rules"].as_array())
                .and_then(|rules| rules.iter().find(|r| r["name"] == *name))
                .and_then(|r| r["approvers"].as_str())
                .map(|condition| format!(" ({condition})"))
                .unwrap_or_default();
            format!("{name}{count}{closed}{whom}")
        })
        .collect();
    parts.join(", ")
}

/// The full picture of a request: what is asked, by whom, where its rules stand.
pub fn request(r: &Value, url: &str, paint: Paint) -> Vec<String> {
    let label = |l: &str| paint.dim(&format!("{l:<11}"));
    let mut lines = vec![format!(
        "{}  {}  {}",
        paint.bold(&text(&r["id"])),
        text(&r["gate"]),
        paint.state(&text(&r["state"]))
    )];
    lines.push(format!("  {}{}", label("params"), params(&r["params"])));
    lines.push(format!("  {}{}", label("reason"), text(&r["reason"])));
    if !r["ticket"].is_null() {
        lines.push(format!("  {}{}", label("ticket"), text(&r["ticket"])));
    }
    lines.push(format!("  {}{}", label("requester"), who(&r["requester"])));
    lines.push(format!("  {}{}", label("duration"), text(&r["duration"])));
    lines.push(format!("  {}{}", label("created"), text(&r["created_at"])));
    if r["state"] == "pending" {
        let left = seconds_until(&r["expires_at"])
            .map(|s| format!(" (in {})", span(s)))
            .unwrap_or_default();
        lines.push(format!(
            "  {}{}{left}",
            label("expires"),
            text(&r["expires_at"])
        ));
    } else if !r["decided_at"].is_null() {
        lines.push(format!("  {}{}", label("decided"), text(&r["decided_at"])));
    }
    lines.push(format!("  {}{}", label("digest"), text(&r["digest"])));
    for (i, rule) in r["rules"].as_array().into_iter().flatten().enumerate() {
        let have = rule["approvals"].as_array().map_or(0, Vec::len);
        let by: Vec<String> = rule["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                a["name"]
                    .as_str()
                    .map_or_else(|| text(&a["subject"]), str::to_string)
            })
            .collect();
        let mark = if rule["satisfied"] == true {
            paint.green("met")
        } else if rule["open"] == false {
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
            text(&rule["name"]),
            text(&rule["min_approvals"]),
        ));
    }
    for (i, d) in r["decisions"].as_array().into_iter().flatten().enumerate() {
        let verdict = match d["verdict"].as_str() {
            Some("approve") => paint.green("approved"),
            Some("reject") => paint.red("rejected"),
            _ => text(&d["verdict"]),
        };
        let comment = d["comment"]
            .as_str()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        lines.push(format!(
            "  {}{} {verdict}{comment}",
            label(if i == 0 { "decisions" } else { "" }),
            who(&d["approver"]),
        ));
    }
    lines.push(format!("  {}{url}", label("url")));
    lines
}

/// A page of requests as a table.
pub fn request_table(items: &[Value], paint: Paint) -> Vec<String> {
    if items.is_empty() {
        return vec!["no requests".into()];
    }
    let rows: Vec<[String; 5]> = items
        .iter()
        .map(|r| {
            [
                text(&r["id"]),
                text(&r["gate"]),
                text(&r["state"]),
                who(&r["requester"]),
                text(&r["created_at"]),
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

/// The gates as a table: what the caller may do with each.
pub fn gate_table(items: &[Value], paint: Paint) -> Vec<String> {
    if items.is_empty() {
        return vec!["no gates".into()];
    }
    let w = items
        .iter()
        .map(|g| text(&g["name"]).chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let yes = |v: &Value| if *v == true { "yes" } else { "no" };
    let mut lines = vec![paint.dim(&format!("{:<w$}  REQUEST  APPROVE  DESCRIPTION", "NAME"))];
    for g in items {
        lines.push(format!(
            "{:<w$}  {:<7}  {:<7}  {}",
            text(&g["name"]),
            yes(&g["can_request"]),
            yes(&g["can_approve"]),
            text(&g["description"])
        ));
    }
    lines
}

/// One gate in full: its parameters and rules.
pub fn gate(g: &Value, paint: Paint) -> Vec<String> {
    let label = |l: &str| paint.dim(&format!("{l:<11}"));
    let mut lines = vec![format!(
        "{}  {}",
        paint.bold(&text(&g["name"])),
        text(&g["description"])
    )];
    let yes = |v: &Value| if *v == true { "yes" } else { "no" };
    lines.push(format!(
        "  {}request: {}, approve: {}",
        label("you may"),
        yes(&g["can_request"]),
        yes(&g["can_approve"])
    ));
    lines.push(format!(
        "  {}reason {}, ticket {}",
        label("needs"),
        text(&g["reason"]),
        text(&g["ticket"])
    ));
    lines.push(format!("  {}{}", label("pending"), text(&g["pending_ttl"])));
    lines.push(format!(
        "  {}{} (up to {}), audience {}{}",
        label("grant"),
        text(&g["grant"]["ttl"]),
        text(&g["grant"]["max_ttl"]),
        text(&g["grant"]["audience"]),
        if g["grant"]["single_use"] == true {
            ", single use"
        } else {
            ""
        }
    ));
    for (i, (name, p)) in g["params"].as_object().into_iter().flatten().enumerate() {
        let mut detail = vec![text(&p["type"])];
        if p["required"] == true {
            detail.push("required".into());
        }
        if let Some(values) = p["values"].as_array() {
            detail.push(format!(
                "one of {}",
                values.iter().map(text).collect::<Vec<_>>().join("|")
            ));
        }
        if let Some(pattern) = p["pattern"].as_str() {
            detail.push(format!("matching {pattern}"));
        }
        let description = p["description"]
            .as_str()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default();
        lines.push(format!(
            "  {}{name} ({}){description}",
            label(if i == 0 { "params" } else { "" }),
            detail.join(", ")
        ));
    }
    for (i, r) in g["rules"].as_array().into_iter().flatten().enumerate() {
        lines.push(format!(
            "  {}{} (stage {}): {} of {}",
            label(if i == 0 { "rules" } else { "" }),
            text(&r["name"]),
            text(&r["stage"]),
            text(&r["min_approvals"]),
            text(&r["approvers"])
        ));
    }
    if let Some(auto) = g["auto_approve"].as_str() {
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

    #[test]
    fn waiting_names_counts_and_conditions() {
        let request = json!({
            "waiting_for": ["security"],
            "rules": [
                {"name": "sre", "min_approvals": 1, "approvals": [{}], "open": true},
                {"name": "security", "min_approvals": 1, "approvals": [], "open": true}
            ]
        });
        let gate = json!({"rules": [{"name": "security", "approvers": "\"security\" in approver.groups"}]});
        assert_eq!(
            waiting(&request, Some(&gate)),
            "security 0/1 (\"security\" in approver.groups)"
        );
        assert_eq!(waiting(&request, None), "security 0/1");
    }

    #[test]
    fn params_and_people() {
        assert_eq!(params(&json!({"replicas": 2})), "replicas=2");
        assert_eq!(params(&json!({})), "-");
        assert_eq!(
            who(&json!({"issuer": "idp", "subject": "bob", "name": "Bob"})),
            "Bob (idp:bob)"
        );
        assert_eq!(
            who(&json!({"issuer": "ci", "subject": "x", "name": null})),
            "ci:x"
        );
    }
}
