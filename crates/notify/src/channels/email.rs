//! E-mail: a multipart/alternative message (plain text first, then HTML) per notice, sent over
//! SMTP with lettre, threaded under the first mail about the request.
//!
//! The first mail's `Message-ID` is `<{request_id}.{channel}@{mail_domain}>`, so every later
//! mail can name it in `In-Reply-To` and `References` even when the reference was not kept.
//! Every mail says it is automatic (`Auto-Submitted: auto-generated`, and Exchange's
//! `X-Auto-Response-Suppress: All`) so vacation replies stay away. The HTML escapes every
//! user-controlled value and carries one link, the request page: mail scanners open links,
//! and opening that page changes nothing.
//!
//! STARTTLS is required when configured (never a plaintext fallback), implicit TLS is TLS
//! from the first byte, and plain SMTP is only for a loopback server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use countersign_core::channel::{EmailSpec, SmtpSecurity};
use countersign_core::secret::Secret;

use super::Outgoing;
use super::text::{self, Esc, escape_within, html_char, plain_char};
use crate::notice::{Notice, SendError, ThreadRef};

/// The longest reason a mail shows.
const REASON_LIMIT: usize = 5000;
/// The longest parameter value a mail shows.
const VALUE_LIMIT: usize = 1000;
/// How many parameters a mail lists.
const PARAMS_SHOWN: usize = 50;
/// How many decisions a mail lists.
const DECISIONS_SHOWN: usize = 20;

fn plain(raw: &str, limit: usize) -> String {
    escape_within(raw, limit, plain_char)
}

fn h(raw: &str, limit: usize) -> String {
    escape_within(raw, limit, html_char)
}

/// The subject: the first mail's, or `Re: ` and the same for a later one (created and
/// escalated notices announce; the rest follow up). It keeps the gate and the request id so
/// mails about one request sort together.
pub fn subject(n: &Notice) -> String {
    subject_for(n, text::is_announcement(&n.kind))
}

/// The subject of the first mail (`root`) or of a reply.
pub fn subject_for(n: &Notice, root: bool) -> String {
    let gate: String = plain(&n.gate, 100).replace(['\n', '\t'], " ");
    let base = format!(
        "[countersign] Approval needed: {gate} ({})",
        plain(&n.request_id, 60)
    );
    if root { base } else { format!("Re: {base}") }
}

/// The `Message-ID` of the first mail about a request on a channel.
pub fn root_message_id(request_id: &str, channel: &str, mail_domain: &str) -> String {
    format!(
        "<{}.{}@{}>",
        id_part(request_id),
        id_part(channel),
        domain_part(mail_domain)
    )
}

/// The `Message-ID` of a later mail: one per request, channel, version and kind (and
/// reminder or escalation schedule), so a retried send keeps its id and two reminders do not
/// share one.
pub fn message_id(n: &Notice, channel: &str, mail_domain: &str) -> String {
    format!(
        "<{}.{}.{}.{}@{}>",
        id_part(&n.request_id),
        id_part(channel),
        n.version,
        text::kind_key(&n.kind),
        domain_part(mail_domain)
    )
}

/// Keeps the characters a `Message-ID` may carry unquoted.
fn id_part(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect()
}

fn domain_part(raw: &str) -> String {
    let host = id_part(raw);
    if host.is_empty() {
        "countersign.invalid".into()
    } else {
        host
    }
}

/// The plain-text part.
pub fn text(n: &Notice) -> String {
    let esc: Esc<'_> = &plain;
    let mut out = String::new();
    out.push_str(&plain(&text::headline(n), 200));
    out.push_str("\n\n");
    if let Some(d) = text::latest_decision(n) {
        out.push_str(&text::decision_line(d, esc));
        out.push('\n');
    }
    out.push_str(&text::state_line(n, esc));
    if let Some(note) = text::kind_note(&n.kind) {
        out.push_str(&format!(" · {note}"));
    }
    out.push_str("\n\n");
    for (label, value) in facts(n, esc) {
        out.push_str(&format!("{label}: {value}\n"));
    }
    if !n.decisions.is_empty() {
        out.push_str("\nDecisions:\n");
        for line in decision_lines(n, esc) {
            out.push_str(&format!("- {line}\n"));
        }
    }
    let action = if n.state == "pending" {
        "Review and decide"
    } else {
        "Open the request"
    };
    out.push_str(&format!("\n{action}: {}\n\n", n.url));
    out.push_str(&format!(
        "Request {} · digest {}\n-- \nAn automatic message from countersign. Deciding happens on \
         the request page, after signing in; replies to this mail are not read.\n",
        plain(&n.request_id, 100),
        plain(&text::digest_prefix(&n.digest), 100)
    ));
    out
}

/// The HTML part: every user value escaped, one link (the request page).
pub fn html(n: &Notice) -> String {
    let esc: Esc<'_> = &h;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"color-scheme\" content=\"light dark\"></head>\n\
         <body style=\"font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; \
         font-size: 14px; line-height: 1.4;\">\n",
    );
    out.push_str(&format!(
        "<h2 style=\"margin: 0 0 8px 0;\">{} {}</h2>\n",
        text::state_emoji(&n.state),
        h(&text::headline(n), 200)
    ));
    if let Some(d) = text::latest_decision(n) {
        out.push_str(&format!(
            "<p style=\"margin: 0 0 4px 0;\">{}</p>\n",
            text::decision_line(d, esc)
        ));
    }
    let mut status = text::state_line(n, esc);
    if let Some(note) = text::kind_note(&n.kind) {
        status.push_str(&format!(" · {note}"));
    }
    out.push_str(&format!(
        "<p style=\"margin: 0 0 12px 0;\"><strong>{status}</strong></p>\n"
    ));
    out.push_str(
        "<table cellpadding=\"4\" cellspacing=\"0\" style=\"border-collapse: collapse;\">\n",
    );
    for (label, value) in facts(n, esc) {
        out.push_str(&format!(
            "<tr><th align=\"left\" valign=\"top\" style=\"padding-right: 16px;\">{label}</th>\
             <td style=\"white-space: pre-wrap;\">{value}</td></tr>\n"
        ));
    }
    out.push_str("</table>\n");
    if !n.decisions.is_empty() {
        out.push_str("<h3 style=\"margin: 16px 0 4px 0;\">Decisions</h3>\n<ul>\n");
        for line in decision_lines(n, esc) {
            out.push_str(&format!("<li>{line}</li>\n"));
        }
        out.push_str("</ul>\n");
    }
    let action = if n.state == "pending" {
        "Review and decide"
    } else {
        "Open the request"
    };
    out.push_str(&format!(
        "<p style=\"margin: 16px 0;\"><a href=\"{}\" style=\"font-weight: bold;\">{action}</a></p>\n",
        h(&n.url, 3000)
    ));
    out.push_str(&format!(
        "<p style=\"color: #6e7781; font-size: 12px;\">Request <code>{}</code> · digest \
         <code>{}</code><br>An automatic message from countersign. Deciding happens on the \
         request page, after signing in; replies to this mail are not read.</p>\n",
        h(&n.request_id, 100),
        h(&text::digest_prefix(&n.digest), 100)
    ));
    out.push_str("</body></html>\n");
    out
}

/// The facts both parts list, escaped with `esc`: (label, value).
fn facts(n: &Notice, esc: Esc<'_>) -> Vec<(String, String)> {
    let mut facts = vec![
        ("Requester".to_owned(), text::person(&n.requester, esc)),
        ("Gate".to_owned(), {
            let gate = esc(&n.gate, 200);
            if n.gate_description.trim().is_empty() {
                gate
            } else {
                format!("{gate} — {}", esc(&n.gate_description, 300))
            }
        }),
    ];
    for (name, value) in n.params.iter().take(PARAMS_SHOWN) {
        facts.push((esc(name, 100), esc(value, VALUE_LIMIT)));
    }
    if n.params.len() > PARAMS_SHOWN {
        facts.push((
            "More parameters".to_owned(),
            format!(
                "{} more{}",
                n.params.len() - PARAMS_SHOWN,
                text::TRUNCATED.trim_start_matches(" …")
            ),
        ));
    }
    if let Some(reason) = n.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        facts.push(("Reason".to_owned(), esc(reason, REASON_LIMIT)));
    }
    if let Some(ticket) = n.ticket.as_deref().filter(|t| !t.trim().is_empty()) {
        facts.push(("Ticket".to_owned(), esc(ticket, 300)));
    }
    if !n.needs.is_empty() {
        let needs: Vec<String> = n.needs.iter().take(10).map(|l| esc(l, 200)).collect();
        facts.push(("Needs".to_owned(), needs.join("; ")));
    }
    facts.push(("Expires".to_owned(), esc(&text::expiry(n), 100)));
    facts
}

fn decision_lines(n: &Notice, esc: Esc<'_>) -> Vec<String> {
    let mut lines: Vec<String> = n
        .decisions
        .iter()
        .take(DECISIONS_SHOWN)
        .map(|d| format!("{} · {}", text::decision_line(d, esc), esc(&d.at, 40)))
        .collect();
    if n.decisions.len() > DECISIONS_SHOWN {
        lines.push(format!("{} more", n.decisions.len() - DECISIONS_SHOWN));
    }
    lines
}

// ------------------------------------------------------------------------------ headers

/// `Auto-Submitted: auto-generated` (RFC 3834): no vacation replies to this.
#[derive(Clone, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// `X-Auto-Response-Suppress: All`: Exchange's way of saying the same.
#[derive(Clone, Debug)]
struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".into())
    }
}

// ------------------------------------------------------------------------------ sending

type Mailer = AsyncSmtpTransport<Tokio1Executor>;

/// What a pooled transport was built from: a changed configuration builds a new one.
#[derive(Clone, PartialEq)]
struct MailerKey {
    host: String,
    port: u16,
    security: SmtpSecurity,
    username: Option<String>,
    password: Option<Secret>,
    ca_pem: Option<String>,
}

impl MailerKey {
    fn of(spec: &EmailSpec) -> Self {
        Self {
            host: spec.host.clone(),
            port: spec.port,
            security: spec.security,
            username: spec.username.clone(),
            password: spec.password.clone(),
            ca_pem: spec.ca_pem.clone(),
        }
    }
}

/// One SMTP transport (a connection pool) per channel name.
#[derive(Clone, Default)]
pub(crate) struct Mailers(Arc<Mutex<HashMap<String, (MailerKey, Mailer)>>>);

impl std::fmt::Debug for Mailers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Mailers")
            .field("channels", &map.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Mailers {
    /// The channel's transport, built on first use and again when its settings changed.
    fn get(&self, channel: &str, spec: &EmailSpec, timeout: Duration) -> Result<Mailer, SendError> {
        let key = MailerKey::of(spec);
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built_from, mailer)) = map.get(channel)
            && *built_from == key
        {
            return Ok(mailer.clone());
        }
        let mailer = build_mailer(spec, timeout)?;
        map.insert(channel.to_owned(), (key, mailer.clone()));
        Ok(mailer)
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn build_mailer(spec: &EmailSpec, timeout: Duration) -> Result<Mailer, SendError> {
    let tls_parameters = || -> Result<TlsParameters, SendError> {
        let mut builder = TlsParameters::builder(spec.host.clone());
        if let Some(pem) = &spec.ca_pem {
            let cert = Certificate::from_pem(pem.as_bytes()).map_err(|_| {
                SendError::Permanent(
                    "the e-mail channel's ca_pem holds no valid certificate".into(),
                )
            })?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build().map_err(|e| {
            SendError::Permanent(format!(
                "the e-mail channel's tls settings are unusable ({e})"
            ))
        })
    };
    let tls = match spec.security {
        SmtpSecurity::StartTls => Tls::Required(tls_parameters()?),
        SmtpSecurity::ImplicitTls => Tls::Wrapper(tls_parameters()?),
        SmtpSecurity::Plain => {
            if !is_loopback(&spec.host) {
                return Err(SendError::Permanent(format!(
                    "plain smtp (no tls) is only allowed to a loopback server, not '{}'",
                    spec.host
                )));
            }
            Tls::None
        }
    };
    let mut builder = Mailer::builder_dangerous(spec.host.clone())
        .port(spec.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(user) = &spec.username {
        let password = spec
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}

/// The recipients, each with whether it goes in `To` (the channel's fixed addresses, and the
/// requester for their own mail) or in `Bcc` (the eligible people: nobody sees who else could
/// approve); only `recipients` for the requester's mail. Duplicates (ignoring case) once.
fn recipients(spec: &EmailSpec, out: &Outgoing<'_>) -> Result<Vec<(Mailbox, bool)>, SendError> {
    let mut wanted: Vec<(&str, bool)> = Vec::new();
    if out.to_requester {
        wanted.extend(out.recipients.iter().map(|r| (r.as_str(), false)));
        let mut only = Vec::new();
        for raw in out.recipients {
            if let Ok(mailbox) = raw.trim().parse::<Mailbox>() {
                only.push((mailbox, true));
            }
        }
        if only.is_empty() {
            return Err(SendError::Permanent(
                "no recipients: the requester has no usable e-mail address".into(),
            ));
        }
        return Ok(only);
    } else {
        wanted.extend(spec.to.iter().map(|r| (r.as_str(), true)));
        if spec.to_eligible {
            wanted.extend(out.recipients.iter().map(|r| (r.as_str(), false)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut mailboxes = Vec::new();
    for (raw, fixed) in wanted {
        match raw.trim().parse::<Mailbox>() {
            Ok(mailbox) => {
                if seen.insert(mailbox.email.to_string().to_ascii_lowercase()) {
                    mailboxes.push((mailbox, fixed));
                }
            }
            // A configured address is the configuration's to fix; a person's odd address
            // must not keep the others from hearing about the request.
            Err(_) if fixed => {
                return Err(SendError::Permanent(format!(
                    "the e-mail channel's to address '{}' is invalid",
                    plain(raw, 100)
                )));
            }
            Err(_) => {
                tracing::warn!(address = %plain(raw, 100), "skipping an invalid recipient address")
            }
        }
    }
    if mailboxes.is_empty() {
        return Err(SendError::Permanent(if out.to_requester {
            "no recipients: the requester has no usable e-mail address".into()
        } else {
            "no recipients: the channel has no to addresses and nobody eligible has a verified \
             e-mail address"
                .into()
        }));
    }
    Ok(mailboxes)
}

/// Builds and sends one mail. Returns the thread root's reference when this mail is it.
pub(crate) async fn send(
    mailers: &Mailers,
    channel: &str,
    spec: &EmailSpec,
    out: &Outgoing<'_>,
    timeout: Duration,
) -> Result<Option<ThreadRef>, SendError> {
    let n = out.notice;
    let to = recipients(spec, out)?;
    let from: Mailbox = spec.from.trim().parse().map_err(|_| {
        SendError::Permanent(format!(
            "the e-mail channel's from address '{}' is invalid",
            plain(&spec.from, 100)
        ))
    })?;
    let root_id = match out.thread {
        Some(ThreadRef::Email { message_id }) => message_id.clone(),
        _ => root_message_id(&n.request_id, channel, out.mail_domain),
    };
    let is_root = text::is_announcement(&n.kind) && out.thread.is_none() && !out.to_requester;
    let id = if is_root {
        root_id.clone()
    } else if out.to_requester {
        // The requester's copy is another message than the approvers' one of the same kind.
        let approvers = message_id(n, channel, out.mail_domain);
        approvers.replacen('@', ".requester@", 1)
    } else {
        message_id(n, channel, out.mail_domain)
    };
    let mut builder = Message::builder()
        .from(from)
        .subject(subject_for(n, is_root))
        .message_id(Some(id))
        .header(AutoSubmitted)
        .header(AutoResponseSuppress);
    for (mailbox, visible) in to {
        builder = if visible {
            builder.to(mailbox)
        } else {
            builder.bcc(mailbox)
        };
    }
    if !is_root {
        builder = builder
            .in_reply_to(root_id.clone())
            .references(root_id.clone());
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(text(n), html(n)))
        .map_err(|e| SendError::Permanent(format!("the mail could not be built ({e})")))?;

    let mailer = mailers.get(channel, spec, timeout)?;
    let secret = spec.password.as_ref().map(Secret::expose);
    match mailer.send(message).await {
        Ok(_) => Ok(is_root.then_some(ThreadRef::Email {
            message_id: root_id,
        })),
        Err(e) => Err(smtp_error(&e, secret)),
    }
}

/// A short description of an SMTP failure, without the password (whatever the server said).
fn smtp_error(e: &lettre::transport::smtp::Error, password: Option<&str>) -> SendError {
    let said = server_text(e, password);
    if let Some(code) = e.status() {
        let code = code.to_string();
        if e.is_permanent() {
            let what = match code.as_str() {
                "530" | "534" | "535" | "538" => "refused the login",
                _ => "refused the mail",
            };
            return SendError::Permanent(format!("the mail server {what} ({code}{said})"));
        }
        return SendError::Retry {
            error: format!("the mail server deferred the mail ({code}{said})"),
            after: None,
        };
    }
    if e.is_timeout() {
        return SendError::Retry {
            error: "the mail server did not answer in time".into(),
            after: None,
        };
    }
    if e.is_client() {
        // STARTTLS missing with `Tls::Required` ends here: never a plaintext fallback.
        return SendError::Permanent(format!("the mail was not sent{said}"));
    }
    if e.is_tls() {
        return SendError::Permanent(format!("tls with the mail server failed{said}"));
    }
    SendError::Retry {
        error: format!("could not reach the mail server{said}"),
        after: None,
    }
}

/// `: what the error says`, printable ASCII, capped, with the password cut out.
fn server_text(e: &lettre::transport::smtp::Error, password: Option<&str>) -> String {
    let mut source = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default();
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        source = source.replace(password, "[redacted]");
    }
    let cleaned: String = source
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .take(160)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        String::new()
    } else {
        format!(": {cleaned}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_deterministic_and_clean() {
        assert_eq!(
            root_message_id("req_01abc", "ops-mail", "approvals.example.com"),
            "<req_01abc.ops-mail@approvals.example.com>"
        );
        assert_eq!(
            root_message_id("req_<x>", "a b", ""),
            "<req_x.ab@countersign.invalid>"
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("mail.example.com"));
        assert!(!is_loopback("10.0.0.1"));
    }
}
