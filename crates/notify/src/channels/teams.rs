//! Microsoft Teams: an Adaptive Card (version 1.4, the only action an `Action.OpenUrl` to the
//! request page) posted to a Workflows webhook ("When a Teams webhook request is received").
//!
//! A workflow answers 202 and returns no message id, so nothing posted can be edited: every
//! notice is a new card, the announcement in full, later ones short. User text is escaped
//! for Teams Markdown (a backslash before each character that could start a link, emphasis
//! or a heading), and the whole body is kept under 20 KB whatever the parameters and the
//! reason: Teams refuses about 28 KB, and clients have measured less in practice.

use reqwest::StatusCode;
use serde_json::{Value, json};

use countersign_core::channel::TeamsSpec;

use super::text::{self, escape_within, teams_char};
use super::{Http, Outgoing};
use crate::notice::{Notice, SendError, ThreadRef};

/// The Adaptive Card schema version sent (Teams renders up to 1.5).
pub const CARD_VERSION: &str = "1.4";
/// The largest body sent, in bytes of JSON.
pub const MAX_BODY_BYTES: usize = 20_000;

/// How much of each field a card shows: tried in order until the body fits.
struct Detail {
    reason: usize,
    value: usize,
    params: usize,
    decisions: usize,
}

const DETAILS: [Detail; 5] = [
    Detail {
        reason: 3000,
        value: 500,
        params: 30,
        decisions: 10,
    },
    Detail {
        reason: 1500,
        value: 200,
        params: 15,
        decisions: 5,
    },
    Detail {
        reason: 600,
        value: 100,
        params: 8,
        decisions: 3,
    },
    Detail {
        reason: 200,
        value: 50,
        params: 4,
        decisions: 1,
    },
    Detail {
        reason: 80,
        value: 30,
        params: 0,
        decisions: 0,
    },
];

/// Escapes user text for Teams Markdown and cuts it to `limit` characters.
pub fn escape(raw: &str, limit: usize) -> String {
    escape_within(raw, limit, teams_char)
}

fn esc(raw: &str, limit: usize) -> String {
    escape(raw, limit)
}

/// The whole Workflows POST body: one Adaptive Card attachment. The full card for an
/// announcement (created, escalated), a short one otherwise. At most [`MAX_BODY_BYTES`].
pub fn body(n: &Notice) -> Value {
    let mut last = Value::Null;
    for detail in &DETAILS {
        let card = if text::is_announcement(&n.kind) {
            full_card(n, detail)
        } else {
            short_card(n, detail)
        };
        last = envelope(card);
        if serde_json::to_vec(&last).map_or(0, |b| b.len()) <= MAX_BODY_BYTES {
            break;
        }
    }
    last
}

/// The card inside [`body`].
pub fn card(n: &Notice) -> Value {
    body(n)["attachments"][0]["content"].clone()
}

fn envelope(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

fn adaptive_card(body: Vec<Value>, n: &Notice) -> Value {
    let title = if n.state == "pending" {
        "Review and decide"
    } else {
        "Open the request"
    };
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": title, "url": n.url}],
    })
}

fn text_block(text: String) -> Value {
    json!({"type": "TextBlock", "text": text, "wrap": true})
}

fn title_block(n: &Notice) -> Value {
    json!({
        "type": "TextBlock",
        "size": "Large",
        "weight": "Bolder",
        "wrap": true,
        "text": format!("{} {}", text::state_emoji(&n.state), esc(&text::headline(n), 200)),
    })
}

fn fact(title: &str, value: String) -> Value {
    json!({"title": title, "value": value})
}

fn status_block(n: &Notice) -> Value {
    let mut line = text::state_line(n, &esc);
    if let Some(note) = text::kind_note(&n.kind) {
        line.push_str(" · ");
        line.push_str(&note);
    }
    text_block(line)
}

fn footer(n: &Notice) -> Value {
    json!({
        "type": "TextBlock",
        "isSubtle": true,
        "size": "Small",
        "wrap": true,
        "text": format!(
            "Request {} · digest {}",
            esc(&n.request_id, 100),
            esc(&text::digest_prefix(&n.digest), 100)
        ),
    })
}

fn full_card(n: &Notice, detail: &Detail) -> Value {
    let mut facts = vec![
        fact("Requester", text::person(&n.requester, &esc)),
        fact("Gate", gate_text(n)),
    ];
    for (name, value) in n.params.iter().take(detail.params) {
        facts.push(fact(&esc(name, 100), esc(value, detail.value)));
    }
    if n.params.len() > detail.params {
        facts.push(fact(
            "More parameters",
            format!(
                "{} more{}",
                n.params.len() - detail.params,
                text::TRUNCATED.trim_start_matches(" …")
            ),
        ));
    }
    if let Some(reason) = n.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        facts.push(fact("Reason", esc(reason, detail.reason)));
    }
    if let Some(ticket) = n.ticket.as_deref().filter(|t| !t.trim().is_empty()) {
        facts.push(fact("Ticket", esc(ticket, 300)));
    }
    if !n.needs.is_empty() {
        let needs: Vec<String> = n.needs.iter().take(10).map(|l| esc(l, 200)).collect();
        facts.push(fact("Needs", needs.join("; ")));
    }
    facts.push(fact("Expires", esc(&text::expiry(n), 100)));
    let mut body = vec![
        title_block(n),
        status_block(n),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(block) = decisions_block(n, detail) {
        body.push(block);
    }
    body.push(footer(n));
    adaptive_card(body, n)
}

fn short_card(n: &Notice, detail: &Detail) -> Value {
    let mut body = vec![title_block(n)];
    if let Some(d) = text::latest_decision(n) {
        body.push(text_block(text::decision_line(d, &esc)));
    }
    body.push(status_block(n));
    let mut facts = vec![fact("Gate", gate_text(n))];
    if !n.needs.is_empty() && n.state == "pending" {
        let needs: Vec<String> = n.needs.iter().take(10).map(|l| esc(l, 200)).collect();
        facts.push(fact("Needs", needs.join("; ")));
        facts.push(fact("Expires", esc(&text::expiry(n), 100)));
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    if n.state != "pending"
        && let Some(block) = decisions_block(n, detail)
    {
        body.push(block);
    }
    body.push(footer(n));
    adaptive_card(body, n)
}

fn gate_text(n: &Notice) -> String {
    let gate = esc(&n.gate, 200);
    if n.gate_description.trim().is_empty() {
        gate
    } else {
        format!("{gate} — {}", esc(&n.gate_description, 300))
    }
}

fn decisions_block(n: &Notice, detail: &Detail) -> Option<Value> {
    if n.decisions.is_empty() || detail.decisions == 0 {
        return None;
    }
    let mut lines: Vec<String> = n
        .decisions
        .iter()
        .take(detail.decisions)
        .map(|d| {
            let mark = if d.verdict == "approve" { "✅" } else { "❌" };
            format!("- {mark} {}", text::decision_line(d, &esc))
        })
        .collect();
    if n.decisions.len() > detail.decisions {
        lines.push(format!(
            "- {} more decisions",
            n.decisions.len() - detail.decisions
        ));
    }
    Some(text_block(lines.join("\n")))
}

// ------------------------------------------------------------------------------ sending

/// Whether the URL is an Office 365 connector's (retired; only Workflows URLs work).
fn is_connector_url(url: &url::Url) -> bool {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    host == "webhook.office.com"
        || host.ends_with(".webhook.office.com")
        || (host == "outlook.office.com" && url.path().starts_with("/webhook"))
}

/// Posts the card. 2xx (a workflow answers 202) is sent; 429 waits; 413 and other 4xx need
/// a configuration change.
pub(crate) async fn send(
    http: &Http,
    spec: &TeamsSpec,
    out: &Outgoing<'_>,
) -> Result<Option<ThreadRef>, SendError> {
    // The URL stays out of errors: its `sig=` parameter is the credential.
    let url = url::Url::parse(spec.url.expose())
        .map_err(|e| SendError::Permanent(format!("the teams url is invalid ({e})")))?;
    if is_connector_url(&url) {
        return Err(SendError::Permanent(
            "the teams url is an Office 365 connector (webhook.office.com); connectors are \
             retired: create a Workflows webhook (\"When a Teams webhook request is received\") \
             and use its url"
                .into(),
        ));
    }
    let response = http
        .post_json(url.as_str(), &body(out.notice), None)
        .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(None);
    }
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS => SendError::Retry {
            error: "teams is rate limiting this workflow (http 429)".into(),
            after: super::retry_after(&response),
        },
        StatusCode::PAYLOAD_TOO_LARGE => {
            SendError::Permanent("teams refused the card as too large (http 413)".into())
        }
        s if s.is_client_error() => {
            SendError::Permanent(format!("teams refused the card (http {})", s.as_u16()))
        }
        s => SendError::Retry {
            error: format!("teams answered http {}", s.as_u16()),
            after: super::retry_after(&response),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_urls_are_recognised() {
        for url in [
            "https://acme.webhook.office.com/webhookb2/abc@def/IncomingWebhook/x/y",
            "https://webhook.office.com/webhookb2/abc",
            "https://outlook.office.com/webhook/abc",
        ] {
            assert!(is_connector_url(&url::Url::parse(url).unwrap()), "{url}");
        }
        let workflow = "https://prod-12.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=x";
        assert!(!is_connector_url(&url::Url::parse(workflow).unwrap()));
    }
}
