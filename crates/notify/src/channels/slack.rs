//! Slack: Block Kit messages (pure renderers), and sending them by incoming webhook or with a
//! bot token (`chat.postMessage`, then `chat.update` of the same message and replies in its
//! thread).
//!
//! Every user-controlled string is escaped for mrkdwn (`&`, `<`, `>` as entities) before it
//! is cut to Block Kit's limits, so a reason such as `<!channel>` or
//! `<https://evil|Approve>` shows as text. The link to the request page is an mrkdwn link,
//! not a button: a URL button still sends an interaction payload to the app, and with no
//! endpoint to answer it Slack shows a warning next to it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use countersign_core::channel::SlackSpec;

use super::text::{self, Esc, escape_within, mrkdwn_char};
use super::{Http, Outgoing};
use crate::notice::{Notice, NoticeKind, SendError, ThreadRef};

/// The most blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// The longest `header` text.
pub const HEADER_LIMIT: usize = 150;
/// The most fields in one section.
pub const MAX_FIELDS: usize = 10;
/// The longest section field.
pub const FIELD_LIMIT: usize = 2000;
/// The longest section text.
pub const SECTION_LIMIT: usize = 3000;

/// The longest parameter value shown in a field (well under [`FIELD_LIMIT`]: Slack refuses
/// messages long before every limit is reached).
const VALUE_LIMIT: usize = 500;
/// The longest parameter name shown.
const NAME_LIMIT: usize = 100;
/// The longest top-level `text` (the notification and screen-reader fallback).
const FALLBACK_LIMIT: usize = 1000;
/// The longest context line.
const CONTEXT_LIMIT: usize = 2000;
/// How many decisions a message lists.
const DECISIONS_SHOWN: usize = 10;

/// Escapes user text for mrkdwn and cuts it to `limit` characters.
pub fn escape(raw: &str, limit: usize) -> String {
    escape_within(raw, limit, mrkdwn_char)
}

fn esc(raw: &str, limit: usize) -> String {
    escape(raw, limit)
}

/// The request page as the target of an mrkdwn link: `|` and `>` would end it early.
fn link_target(url: &str) -> String {
    escape(url, 3000).replace('|', "%7C").replace(' ', "%20")
}

/// `<url|label>`.
fn link(n: &Notice) -> String {
    let label = if n.state == "pending" {
        "Review and decide"
    } else {
        "Open the request"
    };
    format!("<{}|{label}>", link_target(&n.url))
}

/// A `block_id`, new for every version of a message (Slack asks for that on update).
fn block_id(n: &Notice, name: &str) -> String {
    let id = format!(
        "{}.v{}.{}.{name}",
        n.request_id,
        n.version,
        text::kind_key(&n.kind)
    );
    id.chars().take(255).collect()
}

fn field(title: &str, body: &str) -> Value {
    let text = format!("*{title}*\n{body}");
    json!({"type": "mrkdwn", "text": truncate_escaped(&text, FIELD_LIMIT)})
}

/// Cuts text that is already escaped (made only of our own pieces, each within its limit) to
/// `limit` characters as a last guard; pieces are sized so that this does not happen.
fn truncate_escaped(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_owned();
    }
    // Back off to before the last `&`, so an entity is never cut.
    let mut cut: String = s.chars().take(limit.saturating_sub(1)).collect();
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push('…');
    cut
}

/// The context line: state, request id and digest prefix.
fn context_line(n: &Notice) -> String {
    let mut line = text::state_line(n, &esc);
    if let Some(note) = text::kind_note(&n.kind) {
        line.push_str(" · ");
        line.push_str(&note);
    }
    line.push_str(&format!(
        " · request `{}` · digest `{}`",
        esc(&n.request_id, 100),
        esc(&text::digest_prefix(&n.digest), 100)
    ));
    truncate_escaped(&line, CONTEXT_LIMIT)
}

/// `<!date^…|fallback>`: the expiry in each reader's own time zone.
fn expiry_field(n: &Notice) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        n.expires_at_unix,
        esc(&text::expiry(n), 100)
    )
}

/// The top-level `text`: what a notification shows.
fn fallback(n: &Notice) -> String {
    let mut raw = format!("{} by {}", text::headline(n), n.requester.label());
    if !n.params.is_empty() {
        let params: Vec<String> = n.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        raw.push_str(&format!(" ({})", params.join(" ")));
    }
    escape(&raw, FALLBACK_LIMIT)
}

/// The whole message for a notice: header, the facts as section fields (Requester, Gate, each
/// parameter, Expires, Needs; parameters that do not fit in the ten fields go to one more
/// section), the reason, the ticket, the decisions so far, the link, and a context line with
/// the state, the request id and the digest prefix. Top-level `text` is always set and
/// unfurling is off. Add `channel` (and `ts` or `thread_ts`) to send it with the Web API.
pub fn message(n: &Notice) -> Value {
    let mut blocks = Vec::new();
    blocks.push(json!({
        "type": "header",
        "block_id": block_id(n, "header"),
        "text": {"type": "plain_text", "text": escape(&text::headline(n), HEADER_LIMIT), "emoji": true},
    }));

    let mut fields = vec![
        field("Requester", &text::person(&n.requester, &esc)),
        field("Gate", &gate_text(n, &esc)),
    ];
    let fixed_after = 1 + usize::from(!n.needs.is_empty());
    let room = MAX_FIELDS - fields.len() - fixed_after;
    let (in_fields, rest) = n.params.split_at(n.params.len().min(room));
    for (name, value) in in_fields {
        fields.push(field(&esc(name, NAME_LIMIT), &esc(value, VALUE_LIMIT)));
    }
    fields.push(field("Expires", &expiry_field(n)));
    if !n.needs.is_empty() {
        let needs: Vec<String> = n.needs.iter().take(10).map(|l| esc(l, 200)).collect();
        fields.push(field("Needs", &needs.join("\n")));
    }
    blocks.push(json!({"type": "section", "block_id": block_id(n, "facts"), "fields": fields}));

    if !rest.is_empty() {
        blocks.push(section(n, "params", &more_params(rest)));
    }
    if let Some(reason) = n.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        let title = "*Reason*\n";
        let body = escape(reason, SECTION_LIMIT - title.len());
        blocks.push(section(n, "reason", &format!("{title}{body}")));
    }
    if let Some(ticket) = n.ticket.as_deref().filter(|t| !t.trim().is_empty()) {
        blocks.push(section(
            n,
            "ticket",
            &format!("*Ticket*\n{}", escape(ticket, 500)),
        ));
    }
    if !n.decisions.is_empty() {
        blocks.push(section(n, "decisions", &decisions(n)));
    }
    blocks.push(section(n, "link", &link(n)));
    blocks.push(json!({
        "type": "context",
        "block_id": block_id(n, "context"),
        "elements": [{"type": "mrkdwn", "text": context_line(n)}],
    }));
    blocks.truncate(MAX_BLOCKS);

    json!({
        "text": fallback(n),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// A short message about a request announced before: what changed (the decision, the
/// reminder), where it stands, and the link. What an incoming webhook posts for progress,
/// decisions and reminders, since it cannot edit the first message.
pub fn follow_up(n: &Notice) -> Value {
    let mut lines = vec![format!(
        "*{}* · `{}`",
        escape(&text::headline(n), HEADER_LIMIT),
        esc(&n.request_id, 100)
    )];
    if let Some(d) = text::latest_decision(n).filter(|_| n.kind == NoticeKind::Progress) {
        lines.push(text::decision_line(d, &esc));
    }
    lines.push(text::state_line(n, &esc));
    if let Some(note) = text::kind_note(&n.kind) {
        lines.push(format!("⏰ {note}"));
    }
    if !n.needs.is_empty() && n.state == "pending" {
        let needs: Vec<String> = n.needs.iter().take(10).map(|l| esc(l, 200)).collect();
        lines.push(format!("Needs: {}", needs.join("; ")));
    }
    lines.push(link(n));
    let body = truncate_escaped(&lines.join("\n"), SECTION_LIMIT);
    json!({
        "text": escape(&format!("{} ({})", text::headline(n), n.request_id), FALLBACK_LIMIT),
        "blocks": [
            {"type": "section", "block_id": block_id(n, "follow-up"), "text": {"type": "mrkdwn", "text": body}},
            {"type": "context", "block_id": block_id(n, "context"),
             "elements": [{"type": "mrkdwn", "text": format!("digest `{}`", esc(&text::digest_prefix(&n.digest), 100))}]},
        ],
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// The reply in the first message's thread (bot mode): the decision ("bob approved for sre:
/// lgtm"), the outcome, or the reminder. Add `channel` and `thread_ts` to send it.
pub fn thread_reply(n: &Notice) -> Value {
    let line = match (&n.kind, text::latest_decision(n)) {
        (NoticeKind::Progress | NoticeKind::Decided, Some(d)) => {
            let mut line = text::decision_line(d, &esc);
            if n.kind == NoticeKind::Decided {
                line.push('\n');
                line.push_str(&text::state_line(n, &esc));
            } else if let Some(progress) = &n.progress {
                line.push_str(&format!(" ({})", esc(progress, 200)));
            }
            line
        }
        (NoticeKind::Reminder { .. } | NoticeKind::Escalated { .. }, _) => {
            let mut line = format!("⏰ {}", escape(&text::headline(n), HEADER_LIMIT));
            if let Some(note) = text::kind_note(&n.kind) {
                line.push_str(&format!(" · {note}"));
            }
            if !n.needs.is_empty() {
                let needs: Vec<String> = n.needs.iter().take(10).map(|l| esc(l, 200)).collect();
                line.push_str(&format!("\nNeeds: {}", needs.join("; ")));
            }
            line.push_str(&format!("\n{}", link(n)));
            line
        }
        _ => text::state_line(n, &esc),
    };
    json!({
        "text": truncate_escaped(&line, SECTION_LIMIT),
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

fn gate_text(n: &Notice, esc: Esc<'_>) -> String {
    let gate = esc(&n.gate, 200);
    if n.gate_description.trim().is_empty() {
        gate
    } else {
        format!("{gate} — {}", esc(&n.gate_description, 300))
    }
}

fn section(n: &Notice, name: &str, text: &str) -> Value {
    json!({
        "type": "section",
        "block_id": block_id(n, name),
        "text": {"type": "mrkdwn", "text": truncate_escaped(text, SECTION_LIMIT)},
    })
}

/// The parameters that did not fit in the fields, one per line, within one section.
fn more_params(rest: &[(String, String)]) -> String {
    let mut out = String::from("*More parameters*");
    let budget = SECTION_LIMIT - text::TRUNCATED.chars().count() - 1;
    let mut used = out.chars().count();
    for (i, (name, value)) in rest.iter().enumerate() {
        let line = format!("\n*{}*: {}", esc(name, NAME_LIMIT), esc(value, 300));
        let len = line.chars().count();
        if used + len > budget {
            out.push_str(&format!(
                "\n{} more{}",
                rest.len() - i,
                text::TRUNCATED.trim_start_matches(" …")
            ));
            break;
        }
        used += len;
        out.push_str(&line);
    }
    out
}

fn decisions(n: &Notice) -> String {
    let mut lines = vec!["*Decisions*".to_owned()];
    for d in n.decisions.iter().take(DECISIONS_SHOWN) {
        let mark = if d.verdict == "approve" { "✅" } else { "❌" };
        lines.push(format!("{mark} {}", text::decision_line(d, &esc)));
    }
    if n.decisions.len() > DECISIONS_SHOWN {
        lines.push(format!(
            "… and {} more",
            n.decisions.len() - DECISIONS_SHOWN
        ));
    }
    truncate_escaped(&lines.join("\n"), SECTION_LIMIT)
}

// ------------------------------------------------------------------------------ sending

/// Sends by incoming webhook or with the bot token.
pub(crate) async fn send(
    http: &Http,
    spec: &SlackSpec,
    out: &Outgoing<'_>,
) -> Result<Option<ThreadRef>, SendError> {
    match spec {
        SlackSpec::Webhook { url } => {
            let n = out.notice;
            let body = if text::is_announcement(&n.kind) {
                message(n)
            } else {
                follow_up(n)
            };
            post_webhook(http, url.expose(), &body).await.map(|()| None)
        }
        SlackSpec::Bot {
            token,
            channel,
            api_url,
        } => {
            let bot = Bot {
                http,
                token: token.expose(),
                api_url: api_url.trim_end_matches('/'),
            };
            bot.send(channel, out).await
        }
    }
}

/// An incoming webhook: 2xx (`ok`) is sent; 429 waits; other 4xx say what Slack said.
async fn post_webhook(http: &Http, url: &str, body: &Value) -> Result<(), SendError> {
    let response = http.post_json(url, body, None).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let after = super::retry_after(&response);
    let said = super::short_body(response).await;
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS => SendError::Retry {
            error: "slack is rate limiting this webhook (http 429)".into(),
            after,
        },
        s if s.is_client_error() => SendError::Permanent(format!(
            "slack refused the message (http {}{})",
            s.as_u16(),
            said.map(|t| format!(": {t}")).unwrap_or_default()
        )),
        s => SendError::Retry {
            error: format!("slack answered http {}", s.as_u16()),
            after,
        },
    })
}

/// The Web API with a bot token.
struct Bot<'a> {
    http: &'a Http,
    token: &'a str,
    api_url: &'a str,
}

/// How a Web API call failed.
enum ApiError {
    /// `ok:false` with this error code.
    Slack(String),
    /// Anything else, already classified.
    Send(SendError),
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        ApiError::Send(e)
    }
}

impl Bot<'_> {
    async fn send(
        &self,
        channel: &str,
        out: &Outgoing<'_>,
    ) -> Result<Option<ThreadRef>, SendError> {
        let n = out.notice;
        let thread = match out.thread {
            Some(ThreadRef::Slack { channel, ts }) => Some((channel.as_str(), ts.as_str())),
            _ => None,
        };
        let Some((root_channel, ts)) = thread else {
            // No message to edit or reply to yet: post the whole message, whatever the kind.
            return self.post_root(channel, n).await.map(Some);
        };
        match &n.kind {
            NoticeKind::Reminder { .. } => {
                self.reply(root_channel, ts, n).await?;
                Ok(None)
            }
            kind => {
                match self.update(root_channel, ts, n).await {
                    Ok(()) => {}
                    Err(ApiError::Slack(code))
                        if matches!(
                            code.as_str(),
                            "message_not_found" | "cant_update_message" | "edit_window_closed"
                        ) =>
                    {
                        // The first message is gone or frozen: a new one takes its place.
                        return self.post_root(channel, n).await.map(Some);
                    }
                    Err(e) => return Err(classify(e, "chat.update")),
                }
                if matches!(
                    kind,
                    NoticeKind::Progress | NoticeKind::Decided | NoticeKind::Escalated { .. }
                ) {
                    self.reply(root_channel, ts, n).await?;
                }
                Ok(None)
            }
        }
    }

    async fn post_root(&self, channel: &str, n: &Notice) -> Result<ThreadRef, SendError> {
        let mut body = message(n);
        body["channel"] = json!(channel);
        let answer = self
            .call("chat.postMessage", &body)
            .await
            .map_err(|e| classify(e, "chat.postMessage"))?;
        let ts = answer["ts"].as_str().ok_or_else(|| SendError::Retry {
            error: "slack's chat.postMessage answer has no ts".into(),
            after: None,
        })?;
        let channel = answer["channel"].as_str().unwrap_or(channel);
        Ok(ThreadRef::Slack {
            channel: channel.to_owned(),
            ts: ts.to_owned(),
        })
    }

    async fn update(&self, channel: &str, ts: &str, n: &Notice) -> Result<(), ApiError> {
        let mut body = message(n);
        body["channel"] = json!(channel);
        body["ts"] = json!(ts);
        self.call("chat.update", &body).await.map(|_| ())
    }

    async fn reply(&self, channel: &str, ts: &str, n: &Notice) -> Result<(), SendError> {
        let mut body = thread_reply(n);
        body["channel"] = json!(channel);
        body["thread_ts"] = json!(ts);
        self.call("chat.postMessage", &body)
            .await
            .map(|_| ())
            .map_err(|e| classify(e, "chat.postMessage"))
    }

    /// One Web API call; `Ok` is the `ok:true` answer.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        let url = format!("{}/{method}", self.api_url);
        let response = self.http.post_json(&url, body, Some(self.token)).await?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ApiError::Send(SendError::Retry {
                error: format!("slack is rate limiting {method} (http 429)"),
                after: super::retry_after(&response),
            }));
        }
        if !status.is_success() {
            let error = format!("slack answered {method} with http {}", status.as_u16());
            return Err(ApiError::Send(if status.is_client_error() {
                SendError::Permanent(error)
            } else {
                SendError::Retry { error, after: None }
            }));
        }
        let after = super::retry_after(&response);
        let answer: Value = super::json_body(response).await.map_err(|e| {
            ApiError::Send(SendError::Retry {
                error: format!("slack's {method} answer is not JSON ({e})"),
                after: None,
            })
        })?;
        if answer["ok"].as_bool() == Some(true) {
            return Ok(answer);
        }
        let code = answer["error"]
            .as_str()
            .map_or_else(|| "unknown_error".to_owned(), error_code);
        if code == "ratelimited" {
            return Err(ApiError::Send(SendError::Retry {
                error: format!("slack is rate limiting {method} (ratelimited)"),
                after,
            }));
        }
        Err(ApiError::Slack(code))
    }
}

/// Slack error codes are lowercase words with underscores; anything else is cut out so an
/// answer cannot put arbitrary text in our errors.
fn error_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .take(64)
        .collect()
}

/// What an `ok:false` error means for trying again.
fn classify(e: ApiError, method: &str) -> SendError {
    match e {
        ApiError::Send(e) => e,
        ApiError::Slack(code) => {
            let permanent = matches!(
                code.as_str(),
                "invalid_auth"
                    | "not_authed"
                    | "channel_not_found"
                    | "not_in_channel"
                    | "is_archived"
                    | "account_inactive"
                    | "token_revoked"
                    | "token_expired"
                    | "no_permission"
                    | "missing_scope"
                    | "msg_too_long"
                    | "msg_blocks_too_long"
                    | "invalid_blocks"
                    | "invalid_blocks_format"
                    | "invalid_arguments"
                    | "restricted_action"
            );
            let error = format!("slack refused {method}: {code}");
            if permanent {
                SendError::Permanent(error)
            } else {
                SendError::Retry { error, after: None }
            }
        }
    }
}
