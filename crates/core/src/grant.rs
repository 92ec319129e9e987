//! Grants: what an approved request yields, and the records that make grants verifiable and
//! revocable — signing keys (sealed private parts), issued grant tokens, and webhook
//! deliveries waiting in the outbox. Signing and sealing happen in adapters; the rules about
//! *what* a grant says and *when* one may be issued live here.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::AuditAction;
use crate::gate::Gate;
use crate::ids::RequestId;
use crate::request::Request;
use crate::time::Timestamp;

/// A signing key as stored: the public JWK, and the private key sealed with the
/// key-encryption key (never stored in the clear).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// The key id published in the JWKS and in token headers.
    pub kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    pub alg: String,
    /// The public JWK (with `kid`, `alg`, `use: "sig"`).
    pub public_jwk: Value,
    /// The private key (PKCS#8 DER), sealed: nonce ‖ AES-256-GCM ciphertext.
    pub sealed_private: Vec<u8>,
    /// When the key was created (and published).
    pub created_at: Timestamp,
    /// From when it signs. Published before then, so verifiers learn it first.
    pub signs_from: Timestamp,
    /// When it stops being published: after every token it signed has expired. `None` while
    /// it may still sign.
    pub publish_until: Option<Timestamp>,
}

/// A grant token that was issued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The token's `jti`.
    pub jti: String,
    /// The approved request it proves.
    pub request_id: RequestId,
    /// The signing key's id.
    pub kid: String,
    /// `iat`.
    pub issued_at: Timestamp,
    /// `exp`.
    pub expires_at: Timestamp,
    /// Set when the token (or its request) was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// Where a webhook delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Gave up after the configured number of attempts (can be retried by hand).
    Failed,
}

impl DeliveryState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A webhook message to deliver, written to the outbox in the same transaction as the change
/// it announces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// `msg_` + ULID; the Standard Webhooks `webhook-id`, the same on every attempt.
    pub id: String,
    /// The gate whose webhook this is.
    pub gate: String,
    /// The webhook's index in the gate's `webhooks` list (its URL and secret are read from
    /// the configuration at delivery time, so secrets never sit in the database).
    pub webhook: u32,
    /// The URL at the time of writing (shown in listings).
    pub url: String,
    /// The event type, e.g. `request.approved`.
    pub event: String,
    /// The request concerned.
    pub request_id: RequestId,
    /// The exact JSON body to send.
    pub payload: Value,
    /// When it was written; also the first attempt time.
    pub created_at: Timestamp,
}

/// A delivery's progress, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message.
    pub message: OutboxMessage,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Timestamp,
    /// What went wrong last, if anything (status code or error, never the secret).
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Builds the outbox messages for `event` on `request`, one per subscribed webhook of the
/// gate. `payload_data` is the request as the API shows it.
pub fn outbox_for(
    gate: &Gate,
    event: AuditAction,
    request: &Request,
    payload_data: &Value,
    at: Timestamp,
) -> Vec<OutboxMessage> {
    gate.webhooks
        .iter()
        .enumerate()
        .filter(|(_, w)| w.events.contains(&event))
        .map(|(i, w)| OutboxMessage {
            id: format!("msg_{}", RequestId::generate(at).to_string().trim_start_matches("req_")),
            gate: gate.name.clone(),
            webhook: u32::try_from(i).unwrap_or(u32::MAX),
            url: w.url.clone(),
            event: event.as_str().to_owned(),
            request_id: request.id,
            payload: json!({"type": event.as_str(), "timestamp": crate::time::rfc3339(&at), "data": payload_data}),
            created_at: at,
        })
        .collect()
}

/// The end of the approved window, if the request was decided.
pub fn window_end(gate: &Gate, request: &Request) -> Option<Timestamp> {
    let start = request.decided_at?;
    let asked = chrono::Duration::seconds(request.duration_secs);
    Some(start + asked.min(gate.grant.max_ttl))
}

/// Fills `{{params.NAME}}` placeholders with the validated parameter values. Unknown
/// placeholders were refused when the configuration loaded; a missing optional parameter
/// becomes the empty string.
pub fn render_scope(template: &str, params: &std::collections::BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{params.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "{{params.".len()..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                match params.get(name) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => {}
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn scope_templates_fill_from_params() {
        let mut p = BTreeMap::new();
        p.insert("service".to_string(), Value::from("api"));
        p.insert("replicas".to_string(), Value::from(3));
        assert_eq!(
            render_scope("deploy:{{params.service}}:{{params.replicas}}", &p),
            "deploy:api:3"
        );
        assert_eq!(render_scope("x:{{params.missing}}", &p), "x:");
        assert_eq!(render_scope("plain", &p), "plain");
        assert_eq!(
            render_scope("broken {{params.service", &p),
            "broken {{params.service"
        );
    }
}
