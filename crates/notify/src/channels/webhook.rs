//! The generic webhook channel: the notice as JSON, signed like the gates' webhooks (Standard
//! Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! The `webhook-id` is the same for every attempt at one message (request, channel, version,
//! kind), so a receiver that saw it already can drop the repeat.

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value, json};

use countersign_core::Timestamp;
use countersign_core::channel::WebhookChannelSpec;

use super::text;
use super::{Http, Outgoing};
use crate::notice::{Notice, NoticeKind, SendError, ThreadRef};
use crate::signature::sign;

/// The body: `{"type": "notification.<kind>", "data": {channel, the notice's fields}}`.
/// [`body_at`] adds the `timestamp`; the sender sends that, signed.
pub fn body(n: &Notice, channel: &str) -> Value {
    let mut data = Map::new();
    data.insert("channel".into(), json!(channel));
    data.insert("kind".into(), json!(n.kind.as_str()));
    match &n.kind {
        NoticeKind::Reminder { expires_in_secs } => {
            data.insert("expires_in_secs".into(), json!(expires_in_secs));
        }
        NoticeKind::Escalated { after_secs } => {
            data.insert("after_secs".into(), json!(after_secs));
        }
        _ => {}
    }
    data.insert("request_id".into(), json!(n.request_id));
    data.insert("gate".into(), json!(n.gate));
    data.insert("gate_description".into(), json!(n.gate_description));
    data.insert("requester".into(), json!(n.requester));
    let params: Map<String, Value> = n
        .params
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    data.insert("params".into(), Value::Object(params));
    data.insert("reason".into(), json!(n.reason));
    data.insert("ticket".into(), json!(n.ticket));
    data.insert("state".into(), json!(n.state));
    data.insert("needs".into(), json!(n.needs));
    data.insert("progress".into(), json!(n.progress));
    data.insert("decisions".into(), json!(n.decisions));
    data.insert("latest".into(), json!(n.latest));
    data.insert("expires_at".into(), json!(n.expires_at));
    data.insert("digest".into(), json!(n.digest));
    data.insert("url".into(), json!(n.url));
    data.insert("version".into(), json!(n.version));
    json!({
        "type": format!("notification.{}", n.kind.as_str()),
        "data": data,
    })
}

/// [`body`] with `"timestamp"` (RFC 3339) set to `at`, the instant it is sent and signed.
pub fn body_at(n: &Notice, channel: &str, at: Timestamp) -> Value {
    let mut body = body(n, channel);
    body["timestamp"] = json!(countersign_core::time::rfc3339(&at));
    body
}

/// The `webhook-id` of a notice on a channel: stable across attempts.
pub fn message_id(n: &Notice, channel: &str) -> String {
    let raw = format!(
        "ntf_{}.{}.{}.{}",
        n.request_id,
        channel,
        n.version,
        text::kind_key(&n.kind)
    );
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect()
}

/// Signs and posts one notice.
pub(crate) async fn send(
    http: &Http,
    channel: &str,
    spec: &WebhookChannelSpec,
    out: &Outgoing<'_>,
    now: Timestamp,
) -> Result<Option<ThreadRef>, SendError> {
    // The URL itself stays out of errors and logs: webhook URLs often embed a token.
    let url = url::Url::parse(&spec.url)
        .map_err(|e| SendError::Permanent(format!("the webhook channel's url is invalid ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SendError::Permanent(format!(
            "the webhook channel's url is '{}'; only http and https are supported",
            url.scheme()
        )));
    }
    let body = serde_json::to_vec(&body_at(out.notice, channel, now))
        .map_err(|e| SendError::Permanent(format!("the notice could not be serialized: {e}")))?;
    let id = message_id(out.notice, channel);
    let timestamp = now.timestamp();
    let signature =
        sign(spec.secret.expose(), &id, timestamp, &body).map_err(SendError::Permanent)?;
    let mut signature = HeaderValue::from_str(&signature)
        .map_err(|_| SendError::Permanent("the signature is not a valid header value".into()))?;
    signature.set_sensitive(true);
    let id = HeaderValue::from_str(&id)
        .map_err(|_| SendError::Permanent("the message id is not a valid header value".into()))?;
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", HeaderValue::from(timestamp)),
        ("webhook-signature", signature),
    ];
    let response = http.post_bytes(url.as_str(), body, &headers).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(None);
    }
    let after = super::retry_after(&response);
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => SendError::Retry {
            error: format!("the webhook answered http {}", status.as_u16()),
            after,
        },
        s if s.is_redirection() => SendError::Retry {
            error: format!("http {} (redirects are not followed)", s.as_u16()),
            after: None,
        },
        s if s.is_client_error() => SendError::Permanent(format!(
            "the webhook refused the notice (http {})",
            s.as_u16()
        )),
        s => SendError::Retry {
            error: format!("the webhook answered http {}", s.as_u16()),
            after,
        },
    })
}
