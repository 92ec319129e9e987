//! The channel layer: a [`Notice`] rendered for each kind of channel and sent over it.
//!
//! - [`slack`]: Block Kit, by incoming webhook or bot token (post, then update and reply).
//! - [`teams`]: an Adaptive Card to a Workflows webhook.
//! - [`email`]: multipart mail over SMTP, threaded under the first one.
//! - [`webhook`]: the notice as JSON, signed like the gates' webhooks.
//! - the preview channel keeps what the others would send in the [`Sender`].
//!
//! The renderers are pure functions of the notice. [`Sender::send`] sends one notice once:
//! pacing, retries and remembering the returned [`ThreadRef`] are the caller's (the outbox
//! worker's). Errors never carry a URL or a token: webhook URLs are credentials.

pub mod email;
pub mod slack;
pub mod teams;
mod text;
pub mod webhook;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Serialize;

use countersign_core::Timestamp;
use countersign_core::channel::{ChannelKind, ChannelSpec};
use countersign_core::ports::Clock;

use crate::client::try_http_client;
use crate::deliver::transport_error;
use crate::notice::{DecisionLine, Notice, NoticeKind, Person, SendError, ThreadRef};

/// How many previews a [`Sender`] keeps.
pub const PREVIEWS_KEPT: usize = 100;

/// The most of a response body read (Slack's answers are small; anything else is not ours
/// to keep).
const BODY_LIMIT: usize = 64 * 1024;

/// The longest `Retry-After` honoured: a receiver asking for more is asking for a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// One notice to send on one channel.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// What to say.
    pub notice: &'a Notice,
    /// What this channel posted first about the request (Slack bot: channel+ts; e-mail:
    /// Message-ID).
    pub thread: Option<&'a ThreadRef>,
    /// E-mail only: verified addresses of the people who could approve (used when the
    /// channel has `to_eligible`), or the requester's address when `to_requester`.
    pub recipients: &'a [String],
    /// E-mail only: send to `recipients` alone (the requester's outcome mail), not the
    /// channel's `to`.
    pub to_requester: bool,
    /// Host for Message-IDs, e.g. "approvals.example.com" (the public URL's host).
    pub mail_domain: &'a str,
}

/// What a preview channel was sent, rendered for every kind of channel.
#[derive(Clone, Debug, Serialize)]
pub struct Preview {
    /// The preview channel's name.
    pub channel: String,
    /// The request it is about.
    pub request_id: String,
    /// The notice kind (`created`, `progress`, …).
    pub kind: String,
    /// The request's version it was rendered at.
    pub at_version: i64,
    /// What Slack would get ([`slack::message`]).
    pub slack: serde_json::Value,
    /// What a Teams workflow would get ([`teams::body`]).
    pub teams: serde_json::Value,
    /// The mail's subject.
    pub email_subject: String,
    /// The mail's plain-text part.
    pub email_text: String,
    /// The mail's HTML part.
    pub email_html: String,
}

impl Preview {
    /// Renders `notice` for every channel kind.
    pub fn of(channel: &str, notice: &Notice) -> Self {
        Self {
            channel: channel.to_owned(),
            request_id: notice.request_id.clone(),
            kind: notice.kind.as_str().to_owned(),
            at_version: notice.version,
            slack: slack::message(notice),
            teams: teams::body(notice),
            email_subject: email::subject(notice),
            email_text: email::text(notice),
            email_html: email::html(notice),
        }
    }
}

/// Sends notices over channels. Cheap to clone: the HTTP client, the SMTP pools (one per
/// e-mail channel name) and the previews are shared.
#[derive(Clone, Debug)]
pub struct Sender {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: Http,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    mailers: email::Mailers,
    previews: Mutex<VecDeque<Preview>>,
}

impl Sender {
    /// `timeout` bounds each HTTP exchange / SMTP command (redirects are never followed);
    /// `clock` gives the signed webhooks' `webhook-timestamp`.
    pub fn new(timeout: Duration, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let client = try_http_client(timeout)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http: Http { client },
                timeout,
                clock,
                mailers: email::Mailers::default(),
                previews: Mutex::new(VecDeque::new()),
            }),
        })
    }

    /// Sends one notice. Returns Some(ThreadRef) when this send created the thread root that
    /// later sends must update/reply to (Slack bot `chat.postMessage`, the first e-mail),
    /// else None.
    #[tracing::instrument(skip_all, fields(
        channel = %spec.name,
        request_id = %out.notice.request_id,
        kind = out.notice.kind.as_str(),
    ))]
    pub async fn send(
        &self,
        spec: &ChannelSpec,
        out: Outgoing<'_>,
    ) -> Result<Option<ThreadRef>, SendError> {
        let inner = &self.inner;
        let sent = match &spec.kind {
            ChannelKind::Slack(slack) => slack::send(&inner.http, slack, &out).await,
            ChannelKind::Teams(teams) => teams::send(&inner.http, teams, &out).await,
            ChannelKind::Email(mail) => {
                email::send(&inner.mailers, &spec.name, mail, &out, inner.timeout).await
            }
            ChannelKind::Webhook(hook) => {
                let now = inner.clock.now();
                webhook::send(&inner.http, &spec.name, hook, &out, now).await
            }
            ChannelKind::Preview => {
                self.keep_preview(Preview::of(&spec.name, out.notice));
                Ok(None)
            }
        };
        match &sent {
            Ok(_) => tracing::debug!("notice sent"),
            Err(error) => tracing::debug!(%error, "notice not sent"),
        }
        sent
    }

    /// The last previews (newest first, at most 100 kept) sent to `ChannelKind::Preview`
    /// channels.
    pub fn previews(&self) -> Vec<Preview> {
        let previews = self
            .inner
            .previews
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        previews.iter().cloned().collect()
    }

    fn keep_preview(&self, preview: Preview) {
        let mut previews = self
            .inner
            .previews
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        previews.push_front(preview);
        previews.truncate(PREVIEWS_KEPT);
    }
}

/// A realistic sample notice for `countersign notify test CHANNEL` (request id
/// "req_sample…", gate "sample", link to `{public_url}/requests/…`), with hostile-looking
/// text that every renderer must show as text: a mention, a spoofed link, markup, a script.
pub fn sample_notice(public_url: &str, now: Timestamp) -> Notice {
    let request_id = "req_sample00000000000000000".to_owned();
    let expires = now + chrono::Duration::hours(1);
    Notice {
        kind: NoticeKind::Created,
        url: format!("{}/requests/{request_id}", public_url.trim_end_matches('/')),
        request_id,
        gate: "sample".into(),
        gate_description: "A sample gate: this message tests the channel".into(),
        requester: Person {
            name: Some("Alice Example".into()),
            email: Some("alice@example.com".into()),
            subject: "alice".into(),
            issuer: "sample-idp".into(),
        },
        params: vec![
            ("service".into(), "api".into()),
            ("version".into(), "1.4.2".into()),
            (
                "note".into(),
                "*bold* _italic_ ~strike~ `code` # heading & <b>tags</b>".into(),
            ),
        ],
        reason: Some(
            "Testing the channel. This text must show as written, with nothing clickable: \
             <!channel> <https://evil.example|Approve> [Approve](https://evil.example) \
             <script>alert(1)</script> \"><img src=x onerror=alert(1)> &amp;"
                .into(),
        ),
        ticket: Some("SAMPLE-1".into()),
        state: "pending".into(),
        needs: vec!["1 more from sample-approvers".into()],
        progress: Some("0 of 1 approvals".into()),
        decisions: Vec::<DecisionLine>::new(),
        latest: None,
        expires_at: countersign_core::time::rfc3339(&expires),
        expires_at_unix: expires.timestamp(),
        digest: "sha256:5a3f0c9e1b7d24680aceb13579bdf02468ace13579bdf02468ace13579bdf024".into(),
        version: 1,
    }
}

// ------------------------------------------------------------------------------ plumbing

/// The HTTP client, with the calls the channels make.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
}

impl Http {
    /// POSTs JSON, with a bearer token when given.
    async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        bearer: Option<&str>,
    ) -> Result<reqwest::Response, SendError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            SendError::Permanent(format!("the message could not be serialized: {e}"))
        })?;
        let mut request = self
            .client
            .post(url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .body(bytes);
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                SendError::Permanent("the token is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        request.send().await.map_err(request_error)
    }

    /// POSTs JSON bytes with extra headers.
    async fn post_bytes(
        &self,
        url: &str,
        body: Vec<u8>,
        headers: &[(&'static str, HeaderValue)],
    ) -> Result<reqwest::Response, SendError> {
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        request.send().await.map_err(request_error)
    }
}

/// A request that got no response: a bad URL cannot get better; the rest may.
fn request_error(e: reqwest::Error) -> SendError {
    if e.is_builder() {
        SendError::Permanent("the url is invalid".into())
    } else {
        SendError::Retry {
            error: transport_error(&e),
            after: None,
        }
    }
}

/// `Retry-After` in seconds, when the receiver sent one.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// The first [`BODY_LIMIT`] bytes of a response.
async fn capped_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
        let room = BODY_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= BODY_LIMIT {
            break;
        }
    }
    Ok(body)
}

/// A response body as JSON.
async fn json_body(response: reqwest::Response) -> Result<serde_json::Value, String> {
    let body = capped_body(response).await?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// What an error response said, as a short code-like text (`invalid_payload`,
/// `channel_is_archived`): word characters only, at most 100.
async fn short_body(response: reqwest::Response) -> Option<String> {
    let body = capped_body(response).await.ok()?;
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ' | '.' | ':'))
        .take(100)
        .collect();
    let text = text.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
