//! Webhook delivery, for operators: what the worker could not deliver, and a manual retry.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A webhook message and its delivery progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Attempts made so far.
    pub attempts: u32,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The event, e.g. `request.approved`.
    #[schema(examples("request.approved"))]
    pub event: String,
    pub gate: String,
    /// The Standard Webhooks `webhook-id`, the same on every attempt.
    #[schema(pattern = r"^msg_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub id: String,
    /// What went wrong last (a status code or an error, never the secret).
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    #[schema(pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub request_id: String,
    pub state: DeliveryState,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Where it goes: scheme, host, port and path only (query and credentials often hold
    /// tokens).
    pub url: String,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

/// A page of deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Pass as `cursor` for the next page; null when the page is not full.
    pub next_cursor: Option<String>,
}

/// A delivery queued again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryRetry {
    pub id: String,
    /// `pending` again.
    pub state: DeliveryState,
}

/// The query of `GET /webhooks/deliveries`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeliveriesQuery {
    /// Only deliveries in this state (kept as text so that a wrong one is answered with the
    /// states to choose from).
    #[param(value_type = Option<DeliveryState>, inline)]
    pub state: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
    /// Page size; values outside 1..200 are clamped.
    #[param(default = 50)]
    pub limit: Option<u32>,
}
