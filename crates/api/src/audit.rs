//! The hash-chained audit log, as the API pages through it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// One event of the hash-chained audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// What happened, e.g. `request.created`, `decision.approve`, `auth.failed`.
    pub action: String,
    /// Who did it; issuer `countersign` for the service itself, `anonymous` when no
    /// identity could be verified.
    pub actor: Actor,
    #[schema(format = DateTime)]
    pub at: String,
    /// Anything else, by action.
    pub detail: Value,
    #[schema(pattern = r"^sha256:[0-9a-f]{64}$")]
    pub digest: Option<String>,
    /// SHA-256 over seq, time, actor, action, request id, digest, detail and the previous
    /// hash (canonical JSON).
    #[schema(pattern = r"^[0-9a-f]{64}$")]
    pub hash: String,
    /// The previous event's hash (64 zeros for the first).
    #[schema(pattern = r"^[0-9a-f]{64}$")]
    pub prev_hash: String,
    #[schema(pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub request_id: Option<String>,
    /// 1, 2, 3, … with no gaps.
    #[schema(minimum = 1)]
    pub seq: i64,
}

/// Who did something: an issuer's name and a subject there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    pub issuer: String,
    pub subject: String,
}

/// A page of audit events, ascending by sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// The `seq` of the last item, to pass as `after_seq`; null when `items` is empty. A page
    /// shorter than `limit` is the end for now.
    pub next_after_seq: Option<i64>,
}

/// The query of `GET /audit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the events of this request.
    #[param(pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub request_id: Option<String>,
    /// Only events after this sequence number (`next_after_seq` of the previous page);
    /// negative counts as 0.
    #[param(default = 0)]
    pub after_seq: Option<i64>,
    /// Page size; values outside 1..1000 are clamped.
    #[param(default = 100)]
    pub limit: Option<u32>,
}
