//! Webhook deliveries as stored, and how an attempt's outcome is written.

use countersign_core::grant::{Delivery, DeliveryState, OutboxMessage};
use countersign_core::ports::AttemptOutcome;
use countersign_core::{RequestId, StoreError, Timestamp};

use super::{from_json, instant, millis, to_json, unreadable};

/// The columns of `deliveries`, in the order of [`crate::sql::INSERT_DELIVERY`].
#[derive(Debug)]
pub(crate) struct DeliveryRow {
    pub id: String,
    pub gate: String,
    pub webhook: i64,
    pub url: String,
    pub event: String,
    pub request_id: String,
    pub payload: String,
    pub created_at: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

impl DeliveryRow {
    /// A new message: pending, due at its creation time, never attempted.
    pub fn encode_new(m: &OutboxMessage) -> Result<Self, StoreError> {
        let created_at = millis(&m.created_at);
        Ok(Self {
            id: m.id.clone(),
            gate: m.gate.clone(),
            webhook: i64::from(m.webhook),
            url: m.url.clone(),
            event: m.event.clone(),
            request_id: m.request_id.to_string(),
            payload: to_json("webhook payload", &m.payload)?,
            created_at,
            state: DeliveryState::Pending.as_str().to_string(),
            attempts: 0,
            next_attempt_at: created_at,
            last_error: None,
            updated_at: created_at,
        })
    }

    pub fn decode(self) -> Result<Delivery, StoreError> {
        const WHAT: &str = "delivery";
        let id = self.id.as_str();
        Ok(Delivery {
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| unreadable(WHAT, id, "unknown state"))?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| unreadable(WHAT, id, "attempts is out of range"))?,
            next_attempt_at: instant(WHAT, id, "next_attempt_at", self.next_attempt_at)?,
            updated_at: instant(WHAT, id, "updated_at", self.updated_at)?,
            message: OutboxMessage {
                gate: self.gate,
                webhook: u32::try_from(self.webhook)
                    .map_err(|_| unreadable(WHAT, id, "webhook is out of range"))?,
                url: self.url,
                event: self.event,
                request_id: self
                    .request_id
                    .parse::<RequestId>()
                    .map_err(|_| unreadable(WHAT, id, "request_id is not a request id"))?,
                payload: from_json(WHAT, id, "payload", &self.payload)?,
                created_at: instant(WHAT, id, "created_at", self.created_at)?,
                id: self.id,
            },
            last_error: self.last_error,
        })
    }
}

/// How an attempt's outcome is written by [`crate::sql::RECORD_ATTEMPT`]: the new state, the
/// next attempt time (kept when `None`) and the error (kept when `None`).
pub(crate) fn attempt_columns(
    outcome: &AttemptOutcome,
) -> (&'static str, Option<i64>, Option<&str>) {
    match outcome {
        AttemptOutcome::Delivered => (DeliveryState::Delivered.as_str(), None, None),
        AttemptOutcome::Retry {
            next_attempt_at,
            error,
        } => (
            DeliveryState::Pending.as_str(),
            Some(millis(next_attempt_at)),
            Some(error.as_str()),
        ),
        AttemptOutcome::Failed { error } => {
            (DeliveryState::Failed.as_str(), None, Some(error.as_str()))
        }
    }
}

/// The end of a claim's lease, in stored milliseconds.
pub(crate) fn lease_end(now: Timestamp, lease: chrono::Duration) -> Result<i64, StoreError> {
    now.checked_add_signed(lease)
        .map(|t| millis(&t))
        .ok_or_else(|| StoreError::backend("the delivery lease is out of range"))
}
