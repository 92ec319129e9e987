//! Requests for approval: the request as the API and webhook payloads show it, the bodies
//! that create and decide one, the grant token, and the queries that list and wait.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// A request for approval, with the standing of its gate's rules. The same shape is the
/// `data` of webhook payloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Request {
    /// How the request was approved; null until then (and it stays set after a revocation).
    pub approval: Option<ApprovalPath>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it left `pending`.
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
    /// Every decision, in the order made.
    pub decisions: Vec<Decision>,
    /// SHA-256 of the canonical content (gate, params, reason, ticket, duration, requester).
    /// Approvers post it back to prove what they saw.
    #[schema(pattern = r"^sha256:[0-9a-f]{64}$")]
    pub digest: String,
    /// The grant window asked for, e.g. `1h30m`.
    #[schema(pattern = r"^([0-9]+[smhd])+$", examples("1h30m"))]
    pub duration: String,
    /// The grant window in seconds.
    #[schema(minimum = 1)]
    pub duration_seconds: i64,
    /// When the request expires if still pending.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The gate's name.
    pub gate: String,
    /// `req_` and a ULID; ids sort by creation time.
    #[schema(
        pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$",
        examples("req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3")
    )]
    pub id: String,
    /// The validated parameters, in canonical form (integers and booleans given as strings
    /// are converted).
    pub params: BTreeMap<String, Value>,
    pub reason: Option<String>,
    /// Who asked.
    pub requester: Principal,
    /// The gate's rules in order; empty when the gate is no longer configured.
    pub rules: Vec<RuleStatus>,
    /// `pending` moves to `approved`, `rejected`, `expired` or `cancelled`; `approved` moves
    /// to `revoked`; the others are final.
    pub state: RequestState,
    pub ticket: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Bumped by every change; pass it to `GET /requests/{id}?wait=` to wait for the next
    /// change.
    #[schema(minimum = 1)]
    pub version: i64,
    /// Names of the rules not yet met; empty unless pending.
    pub waiting_for: Vec<String>,
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Rejected,
    Expired,
    Cancelled,
    Revoked,
}

impl RequestState {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Revoked => "revoked",
        }
    }

    /// Whether nothing can happen to the request any more (`approved` can still be revoked).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Approved)
    }
}

/// How an approved request came to be approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPath {
    /// Every rule met by distinct eligible approvers.
    Quorum,
    /// The gate's `auto_approve` condition held at creation.
    AutoApproved,
    /// The requester used break-glass.
    BreakGlass,
}

/// A person or workload as verified from their token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Principal {
    /// The e-mail address, only when the issuer marked it verified.
    pub email: Option<String>,
    /// The configured name of the issuer (not its URL), e.g. `okta`.
    pub issuer: String,
    pub kind: PrincipalKind,
    /// A display name, if the token had one.
    pub name: Option<String>,
    /// The stable subject under that issuer.
    pub subject: String,
}

/// A person, or a workload such as a CI job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    Human,
    Workload,
}

/// One approver's decision, in the order made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub approver: Approver,
    #[schema(format = DateTime)]
    pub at: String,
    pub comment: Option<String>,
    /// The rule this approval is assigned to; null for rejections, for approvals no rule
    /// needed, and when the gate is no longer configured.
    pub rule: Option<String>,
    pub verdict: Verdict,
}

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

/// Who made a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approver {
    pub issuer: String,
    pub name: Option<String>,
    pub subject: String,
}

/// Where one rule of the request's gate stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleStatus {
    /// The approvals assigned to this rule (each approval counts for one rule at most).
    pub approvals: Vec<Approval>,
    #[schema(minimum = 1)]
    pub min_approvals: u32,
    pub name: String,
    /// Every lower stage is met.
    pub open: bool,
    /// It has `min_approvals` approvals assigned to it.
    pub satisfied: bool,
    /// Rules of a stage open only when every rule of lower stages is met.
    #[schema(minimum = 1)]
    pub stage: u32,
}

/// An approval counted toward a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    #[schema(format = DateTime)]
    pub at: String,
    pub comment: Option<String>,
    pub issuer: String,
    pub name: Option<String>,
    pub subject: String,
}

/// A page of requests, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestPage {
    pub items: Vec<Request>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub next_cursor: Option<String>,
}

/// The body of `POST /requests`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The gate's name.
    pub gate: String,
    /// Values for the gate's declared parameters (absent: none). Integers and booleans may
    /// also be given as strings; null counts as absent.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Why. Trimmed; blank counts as absent. Required when the gate says so.
    #[schema(max_length = 2000)]
    pub reason: Option<String>,
    /// A ticket reference. Trimmed; blank counts as absent; no control characters. Required
    /// when the gate says so.
    #[schema(max_length = 200)]
    pub ticket: Option<String>,
    /// The grant window, e.g. `2h` or `1h30m`, at most the gate's `grant.max_ttl`; absent,
    /// null or empty: the gate's `grant.ttl`.
    #[schema(pattern = r"^(([0-9]+[smhd])+)?$", examples("2h"))]
    pub duration: Option<String>,
}

/// The body of `POST /requests/{id}/approve` and `/reject`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// The `digest` of the request as the approver saw it. Malformed: 422 `invalid_digest`;
    /// different from the request's: 409 `digest_mismatch`.
    #[schema(pattern = r"^sha256:[0-9a-f]{64}$")]
    pub digest: String,
    /// Trimmed; blank counts as absent.
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

/// The optional body of `POST /requests/{id}/cancel` and `/revoke`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Trimmed; blank counts as absent.
    #[schema(max_length = 2000)]
    pub reason: Option<String>,
}

/// A grant token for an approved request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GrantToken {
    /// The token's `exp`: the end of the approved window.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The token's id.
    #[schema(pattern = r"^[0-9a-f]{32}$")]
    pub jti: String,
    #[schema(pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub request_id: String,
    /// The signed grant token (a compact JWT).
    pub token: String,
    /// Always `Bearer`.
    #[schema(examples("Bearer"))]
    pub token_type: String,
}

/// The `data` of an inbox stream's `changed` event: a request that concerns the caller
/// changed; both null when the stream fell behind and the reader should reload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboxChange {
    #[schema(pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub id: Option<String>,
    pub version: Option<i64>,
}

/// The query of `GET /requests`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRequestsQuery {
    /// Only requests in this state (kept as text so that a wrong one is answered with the
    /// states to choose from).
    #[param(value_type = Option<RequestState>, inline)]
    pub state: Option<String>,
    /// Only requests of this gate; an unknown gate is 404 `unknown_gate`.
    pub gate: Option<String>,
    /// `requester`: my requests; `approver`: my inbox. Empty counts as absent.
    #[param(pattern = "^(requester|approver)?$")]
    pub role: Option<String>,
    /// Page size; outside 1..200 is 400 `invalid_query`.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub cursor: Option<String>,
}

/// The query of `GET /requests/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetRequestQuery {
    /// How long to wait for a change, e.g. `30s` (units s, m, h, d).
    #[param(pattern = r"^([0-9]+[smhd])+$", example = "30s")]
    pub wait: Option<String>,
    /// The version already seen; with `wait`, answers as soon as the request's version is
    /// another one.
    pub version: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_the_wire_names() {
        use RequestState::*;
        for state in [Pending, Approved, Rejected, Expired, Cancelled, Revoked] {
            let wire = serde_json::to_value(state).expect("a state serializes");
            assert_eq!(wire, state.as_str());
            let terminal = !matches!(state, Pending | Approved);
            assert_eq!(state.is_terminal(), terminal, "{}", state.as_str());
        }
    }

    #[test]
    fn bodies_refuse_unknown_fields_and_default_what_is_optional() {
        let body: CreateRequest =
            serde_json::from_str(r#"{"gate": "deploy"}"#).expect("a gate is enough");
        assert_eq!(body.gate, "deploy");
        assert!(body.params.is_empty());
        assert!(serde_json::from_str::<CreateRequest>(r#"{"gate": "x", "gates": 1}"#).is_err());
        assert!(serde_json::from_str::<DecisionBody>(r#"{"comment": "ok"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ReasonBody>("{}").expect("every field is optional"),
            ReasonBody::default()
        );
    }
}
