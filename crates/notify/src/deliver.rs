//! The delivery worker: claims due outbox deliveries, POSTs each to its webhook, and records
//! what happened.
//!
//! The database holds only *which* webhook a message is for (gate name and index); the URL
//! and the secret are read from the configuration at delivery time, so secrets never sit in
//! the database and a rotated secret signs the very next attempt.

use std::sync::Arc;
use std::time::Duration;

use countersign_core::grant::{Delivery, OutboxMessage};
use countersign_core::ports::{AttemptOutcome, Clock, OutboxStore};
use countersign_core::secret::Secret;
use countersign_core::{GateSet, Timestamp};
use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT as USER_AGENT_HEADER};
use tracing::Instrument as _;

use crate::client::{USER_AGENT, try_http_client};
use crate::retry::{RetryPolicy, backoff};
use crate::signature::sign;

/// The most deliveries one pass claims. They are sent concurrently, so one pass takes about
/// one timeout at worst, whatever the batch.
pub const BATCH_SIZE: u32 = 32;

/// What a claim's lease adds to the request timeout: time to sign, to record the outcome, and
/// for clocks that disagree a little between replicas. Past the lease another worker may take
/// the delivery again (and the receiver sees it twice, with the same `webhook-id`).
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The longest lease taken, whatever the timeout: a longer one would only delay redelivery
/// after a crash.
const MAX_LEASE: chrono::Duration = chrono::Duration::days(1);

/// The shortest pause between passes of [`Deliverer::spawn`]: a zero period would spin.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// The webhook delivery worker. Cheap to clone (shared handles); several may run, in one
/// process or many, since the store leases what each one claims.
#[derive(Clone, Debug)]
pub struct Deliverer {
    outbox: Arc<dyn OutboxStore>,
    gates: Arc<GateSet>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    // Kept as a result so that an unusable client makes each pass fail with the reason
    // instead of panicking or quietly sending with different settings.
    client: Result<reqwest::Client, String>,
}

/// How one attempt ended, before the retry policy turns it into an [`AttemptOutcome`].
#[derive(Debug)]
enum Attempt {
    /// The receiver answered 2xx.
    Delivered,
    /// Worth trying again: a status, a timeout, a network error.
    Transient(String),
    /// Trying again cannot help until the configuration changes.
    Permanent(String),
}

/// Where and with what a message goes, resolved from the configuration.
struct Target<'a> {
    url: url::Url,
    secret: &'a Secret,
}

impl Deliverer {
    /// A worker over `outbox`, looking webhooks up in `gates`, reading time from `clock`.
    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        gates: Arc<GateSet>,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
    ) -> Self {
        let client = try_http_client(policy.timeout);
        if let Err(error) = &client {
            tracing::error!(%error, "webhook deliveries are disabled");
        }
        Self {
            outbox,
            gates,
            clock,
            policy,
            client,
        }
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// One pass: claims up to [`BATCH_SIZE`] due deliveries (leased for the timeout plus
    /// [`LEASE_MARGIN`]), attempts them concurrently, and records each outcome. Returns how
    /// many were attempted, counting those failed at once for a configuration problem.
    ///
    /// Fails only when nothing could be claimed (the store failed, or the HTTP client could
    /// not be built). An outcome that cannot be recorded is logged; the lease then runs out
    /// and the delivery is attempted again.
    pub async fn run_once(&self) -> Result<usize, String> {
        if let Err(error) = &self.client {
            return Err(error.clone());
        }
        let now = self.clock.now();
        let deliveries = self
            .outbox
            .claim_deliveries(now, BATCH_SIZE, self.lease())
            .await
            .map_err(|e| format!("could not claim webhook deliveries: {e}"))?;
        let count = deliveries.len();
        if count > 0 {
            tracing::debug!(count, "claimed webhook deliveries");
        }
        // Concurrently, so that one slow receiver costs one timeout rather than holding up
        // every delivery behind it past its lease.
        let mut tasks = tokio::task::JoinSet::new();
        for delivery in deliveries {
            let this = self.clone();
            tasks.spawn(async move { this.deliver(delivery).await });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                // The delivery stays leased and is retried when the lease runs out.
                tracing::error!(%error, "a webhook delivery task ended abnormally");
            }
        }
        Ok(count)
    }

    /// Runs [`run_once`](Self::run_once) every `every` (pausing `every` after each pass, at
    /// least 10 ms; straight away again when a pass claimed a full batch) until the returned
    /// handle is aborted. Must be called within a Tokio runtime.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        let every = every.max(MIN_PERIOD);
        tokio::spawn(async move {
            loop {
                match self.run_once().await {
                    // A full batch means more may be due: catch up before pausing.
                    Ok(count) if count >= BATCH_SIZE as usize => continue,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "webhook delivery pass failed"),
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// The claim lease: one attempt plus a margin.
    fn lease(&self) -> chrono::Duration {
        self.policy
            .timeout
            .checked_add(LEASE_MARGIN)
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map_or(MAX_LEASE, |d| d.min(MAX_LEASE))
    }

    /// Attempts one delivery and records the outcome.
    async fn deliver(&self, delivery: Delivery) {
        let message = &delivery.message;
        let attempt_no = delivery.attempts.saturating_add(1);
        let span = tracing::info_span!(
            "webhook_delivery",
            message_id = %message.id,
            gate = %message.gate,
            webhook = message.webhook,
            event = %message.event,
            attempt = attempt_no,
        );
        async {
            let attempt = match self.target(message) {
                Ok(target) => self.attempt(message, &target).await,
                Err(error) => Attempt::Permanent(error),
            };
            let now = self.clock.now();
            let outcome = self.outcome(attempt, delivery.attempts, now);
            match &outcome {
                AttemptOutcome::Delivered => tracing::info!("webhook delivered"),
                AttemptOutcome::Retry {
                    next_attempt_at,
                    error,
                } => {
                    let next = countersign_core::time::rfc3339(next_attempt_at);
                    tracing::warn!(%error, %next, "webhook attempt failed, will retry");
                }
                AttemptOutcome::Failed { error } => {
                    tracing::error!(%error, "webhook delivery failed for good");
                }
            }
            let recorded = self.outbox.record_attempt(&message.id, &outcome, now).await;
            if let Err(error) = recorded {
                // Nothing lost: the lease runs out and the delivery is attempted again.
                tracing::error!(%error, "could not record the webhook attempt");
            }
        }
        .instrument(span)
        .await;
    }

    /// Finds the webhook a message is for in the current configuration.
    fn target(&self, message: &OutboxMessage) -> Result<Target<'_>, String> {
        let gate_name = &message.gate;
        let gate = self
            .gates
            .get(gate_name)
            .ok_or_else(|| format!("gate '{gate_name}' is no longer configured"))?;
        let index = message.webhook;
        let spec = usize::try_from(index)
            .ok()
            .and_then(|i| gate.webhooks.get(i))
            .ok_or_else(|| format!("gate '{gate_name}' has no webhook #{index} any more"))?;
        // Webhooks are referenced by position: if the list was reordered, the one now at this
        // position may never have asked for this event, and must not receive it.
        if !spec.events.iter().any(|e| e.as_str() == message.event) {
            return Err(format!(
                "webhook #{index} of gate '{gate_name}' no longer subscribes to '{}'",
                message.event
            ));
        }
        let secret = spec
            .secret
            .as_ref()
            .ok_or_else(|| format!("webhook #{index} of gate '{gate_name}' has no secret"))?;
        // The URL itself stays out of errors and logs: webhook URLs often embed a token.
        let url = url::Url::parse(&spec.url).map_err(|e| {
            format!("webhook #{index} of gate '{gate_name}' has an invalid url ({e})")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "webhook #{index} of gate '{gate_name}' has a '{}' url; only http and https are supported",
                url.scheme()
            ));
        }
        Ok(Target { url, secret })
    }

    /// Signs and POSTs one message.
    async fn attempt(&self, message: &OutboxMessage, target: &Target<'_>) -> Attempt {
        let client = match &self.client {
            Ok(client) => client,
            Err(error) => return Attempt::Transient(error.clone()),
        };
        // Serialized once: these exact bytes are both signed and sent.
        let body = match serde_json::to_vec(&message.payload) {
            Ok(body) => body,
            Err(e) => {
                return Attempt::Permanent(format!("the payload could not be serialized: {e}"));
            }
        };
        let Ok(id) = HeaderValue::from_str(&message.id) else {
            return Attempt::Permanent("the message id is not a valid header value".into());
        };
        let timestamp = self.clock.now().timestamp();
        let signature = match sign(target.secret.expose(), &message.id, timestamp, &body) {
            Ok(signature) => signature,
            Err(error) => return Attempt::Permanent(error),
        };
        let Ok(mut signature) = HeaderValue::from_str(&signature) else {
            return Attempt::Permanent("the signature is not a valid header value".into());
        };
        // Keeps it out of any debug output of the request.
        signature.set_sensitive(true);
        let sent = client
            .post(target.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT))
            .header("webhook-id", id)
            .header("webhook-timestamp", HeaderValue::from(timestamp))
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            // The response body is never read: it is the receiver's, and has no place in
            // what we record.
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) if response.status().is_redirection() => Attempt::Transient(format!(
                "http {} (redirects are not followed)",
                response.status().as_u16()
            )),
            Ok(response) => Attempt::Transient(format!("http {}", response.status().as_u16())),
            Err(e) if e.is_builder() => Attempt::Permanent("the request could not be built".into()),
            Err(e) => Attempt::Transient(transport_error(&e)),
        }
    }

    /// Applies the retry policy to an attempt that was the `attempts_before + 1`-th.
    fn outcome(&self, attempt: Attempt, attempts_before: u32, now: Timestamp) -> AttemptOutcome {
        match attempt {
            Attempt::Delivered => AttemptOutcome::Delivered,
            Attempt::Permanent(error) => AttemptOutcome::Failed { error },
            Attempt::Transient(error) => {
                let made = attempts_before.saturating_add(1);
                if made >= self.policy.max_attempts {
                    AttemptOutcome::Failed {
                        error: format!("{error} (gave up after {made} attempts)"),
                    }
                } else {
                    let wait = backoff(made, &self.policy, rand::random::<f64>());
                    AttemptOutcome::Retry {
                        next_attempt_at: later(now, wait),
                        error,
                    }
                }
            }
        }
    }
}

/// `now + wait` in the store's millisecond precision, saturating instead of overflowing.
pub(crate) fn later(now: Timestamp, wait: Duration) -> Timestamp {
    let next = chrono::Duration::from_std(wait)
        .ok()
        .and_then(|wait| now.checked_add_signed(wait))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    countersign_core::time::truncate(next)
}

/// A short, stable description of a transport failure. Never reqwest's own message: it names
/// the URL, which may embed a token.
pub(crate) fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timeout".into();
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            let text = match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused",
                ErrorKind::ConnectionReset => "connection reset",
                ErrorKind::ConnectionAborted => "connection aborted",
                ErrorKind::TimedOut => "timeout",
                ErrorKind::UnexpectedEof => "connection closed early",
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "host unreachable",
                ErrorKind::AddrNotAvailable => "address not available",
                _ => other_io_error(io),
            };
            return text.into();
        }
        if cause.to_string().starts_with("dns error") {
            return "dns lookup failed".into();
        }
        source = cause.source();
    }
    if error.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

/// Names the io errors that are not about the connection itself.
fn other_io_error(io: &std::io::Error) -> &'static str {
    // rustls reports certificate and handshake problems as invalid data.
    if io.kind() == std::io::ErrorKind::InvalidData {
        "tls handshake failed"
    } else {
        "connection failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates_and_truncates() {
        let now = countersign_core::time::from_millis(1_800_000_000_123).unwrap();
        assert_eq!(
            later(now, Duration::from_micros(5_500)),
            countersign_core::time::from_millis(1_800_000_000_128).unwrap()
        );
        assert!(later(now, Duration::MAX) > now);
        assert!(
            later(
                chrono::DateTime::<chrono::Utc>::MAX_UTC,
                Duration::from_secs(1)
            ) > now
        );
    }
}
