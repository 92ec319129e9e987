//! Requests and decisions: the records the engine keeps, and the state machine they move
//! through. Terminal states are final; every change bumps `version`, and stores apply a change
//! only if the version they hold is the one the change was computed from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::condition::{CelValue, cel_integer, cel_json_map, cel_map, cel_string};
use crate::ids::{Digest, RequestId};
use crate::principal::Principal;
use crate::time::Timestamp;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for decisions.
    Pending,
    /// Every rule is met (or auto-approved); a grant may be obtained.
    Approved,
    /// Vetoed by an eligible approver.
    Rejected,
    /// Not decided within the gate's `pending_ttl`.
    Expired,
    /// Withdrawn by the requester.
    Cancelled,
    /// Approved, then revoked.
    Revoked,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 6] = [
        State::Pending,
        State::Approved,
        State::Rejected,
        State::Expired,
        State::Cancelled,
        State::Revoked,
    ];

    /// The lowercase name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
            State::Revoked => "revoked",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True when no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Rejected | State::Expired | State::Cancelled | State::Revoked
        )
    }

    /// The transitions the state machine allows.
    pub fn can_move_to(self, next: State) -> bool {
        matches!(
            (self, next),
            (State::Pending, State::Approved)
                | (State::Pending, State::Rejected)
                | (State::Pending, State::Expired)
                | (State::Pending, State::Cancelled)
                | (State::Approved, State::Revoked)
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approver's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Counts toward the rules the approver is eligible for.
    Approve,
    /// A veto (or a vote toward a rule's `reject_threshold`).
    Reject,
}

impl Verdict {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

/// How an approved request came to be approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPath {
    /// Every rule met by distinct eligible approvers.
    Quorum,
    /// The gate's `auto_approve` condition held at creation.
    AutoApproved,
    /// The requester used break-glass.
    BreakGlass,
}

/// One approver's decision on one request. It serializes but does not deserialize (its
/// approver is a [`Principal`]): the store reads decisions back through its own row types.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Who decided (claims dropped; identity, name, e-mail and groups kept).
    pub approver: Principal,
    /// Approve or reject.
    pub verdict: Verdict,
    /// The approver's comment.
    pub comment: Option<String>,
    /// The digest of what the approver saw; always equal to the request's.
    pub digest: Digest,
    /// When.
    pub at: Timestamp,
    /// The rules the approver was eligible for at that moment (by name).
    pub eligible_rules: Vec<String>,
}

/// A request, with its decisions in the order they were made. It serializes but does not
/// deserialize (its requester is a [`Principal`]): the store reads requests back through its
/// own row types.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    /// `req_…`.
    pub id: RequestId,
    /// The gate's name.
    pub gate: String,
    /// Validated parameters, canonical values.
    pub params: BTreeMap<String, Value>,
    /// Why, in the requester's words.
    pub reason: Option<String>,
    /// A ticket reference.
    pub ticket: Option<String>,
    /// Who asked, as verified when they asked.
    pub requester: Principal,
    /// The grant window asked for, in seconds.
    pub duration_secs: i64,
    /// SHA-256 of the canonical content (see [`content_digest`]).
    pub digest: Digest,
    /// Where it stands.
    pub state: State,
    /// How it was approved, once approved.
    pub approval: Option<ApprovalPath>,
    /// Bumped by every change.
    pub version: i64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires if still pending.
    pub expires_at: Timestamp,
    /// When it left `pending`.
    pub decided_at: Option<Timestamp>,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// Decisions, oldest first.
    pub decisions: Vec<Decision>,
}

impl Request {
    /// The decision `principal` made on this request, if any (same identity).
    pub fn decision_of(&self, principal: &Principal) -> Option<&Decision> {
        self.decisions
            .iter()
            .find(|d| d.approver.identity() == principal.identity())
    }

    /// The value conditions see as `request`, built as CEL directly, borrowing from `self`:
    /// what [`Self::to_condition_value`] converts to, without the JSON copy.
    pub fn to_cel(&self) -> Result<CelValue<'_>, String> {
        Ok(cel_map([
            ("gate", cel_string(&self.gate)),
            ("params", cel_json_map(&self.params)?),
            (
                "reason",
                cel_string(self.reason.as_deref().unwrap_or_default()),
            ),
            (
                "ticket",
                cel_string(self.ticket.as_deref().unwrap_or_default()),
            ),
            ("duration_seconds", cel_integer(self.duration_secs)),
            ("requester", self.requester.to_cel()?),
        ]))
    }

    /// The value conditions see as `request`.
    pub fn to_condition_value(&self) -> Value {
        content_value(
            &self.gate,
            &self.params,
            self.reason.as_deref(),
            self.ticket.as_deref(),
            self.duration_secs,
            &self.requester,
        )
    }
}

/// What the content digest covers, and what conditions see as `request`: gate, parameters,
/// reason, ticket, grant window and requester.
pub fn content_value(
    gate: &str,
    params: &BTreeMap<String, Value>,
    reason: Option<&str>,
    ticket: Option<&str>,
    duration_secs: i64,
    requester: &Principal,
) -> Value {
    // Built directly: `json!` would serialize the requester's value (claims and all) again.
    let mut value = Map::new();
    value.insert("gate".into(), Value::String(gate.to_owned()));
    value.insert(
        "params".into(),
        Value::Object(params.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    );
    value.insert(
        "reason".into(),
        Value::String(reason.unwrap_or_default().to_owned()),
    );
    value.insert(
        "ticket".into(),
        Value::String(ticket.unwrap_or_default().to_owned()),
    );
    value.insert("duration_seconds".into(), Value::from(duration_secs));
    value.insert("requester".into(), requester.to_condition_value());
    Value::Object(value)
}

/// The content digest: SHA-256 over the canonical JSON of gate, parameters, reason, ticket,
/// window and the requester's identity. Claims are left out on purpose: they describe the
/// requester, not what was asked for.
pub fn content_digest(
    gate: &str,
    params: &BTreeMap<String, Value>,
    reason: Option<&str>,
    ticket: Option<&str>,
    duration_secs: i64,
    requester: &Principal,
) -> Digest {
    Digest::of_json(&json!({
        "gate": gate,
        "params": params,
        "reason": reason,
        "ticket": ticket,
        "duration_seconds": duration_secs,
        "requester": {"issuer": requester.identity().issuer, "subject": requester.identity().subject},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The condition value is exactly what the `json!` form it replaced made.
    #[test]
    fn content_value_is_the_json_form() {
        let mut requester = Principal::human("https://idp.example", "alice");
        requester
            .testing_mut()
            .claims
            .insert("team".into(), json!("payments"));
        let params: BTreeMap<String, Value> = [
            ("service".to_owned(), json!("api")),
            ("replicas".to_owned(), json!(3)),
        ]
        .into();
        for (reason, ticket) in [(Some("hotfix"), Some("INC-1")), (None, None)] {
            let expected = json!({
                "gate": "deploy-prod",
                "params": params,
                "reason": reason.unwrap_or_default(),
                "ticket": ticket.unwrap_or_default(),
                "duration_seconds": 900,
                "requester": requester.to_condition_value(),
            });
            let value = content_value("deploy-prod", &params, reason, ticket, 900, &requester);
            assert_eq!(value, expected);
        }
    }

    fn sample_request(requester: Principal, params: BTreeMap<String, Value>) -> Request {
        let at = crate::time::from_millis(1_000).expect("time");
        Request {
            id: RequestId::generate(at),
            gate: "deploy-prod".into(),
            digest: content_digest("deploy-prod", &params, None, None, 900, &requester),
            params,
            reason: None,
            ticket: Some("INC-1".into()),
            requester,
            duration_secs: 900,
            state: State::Pending,
            approval: None,
            version: 1,
            created_at: at,
            expires_at: at,
            decided_at: None,
            updated_at: at,
            decisions: Vec::new(),
        }
    }

    /// `Request::to_cel` builds exactly the CEL value its JSON form converts to: equal under
    /// CEL equality, map by map, with the same number types.
    #[test]
    fn cel_value_is_the_json_form_converted() {
        use crate::condition::{Bindings, Condition};
        let mut human = Principal::human("https://idp.example", "alice");
        human.testing_mut().name = Some("Alice \"Al\"".into());
        human.testing_mut().email = Some("alice@example.com".into());
        human.testing_mut().groups = vec!["dev".into(), "sre".into()];
        for (k, v) in [
            ("team", json!("payments")),
            ("level", json!(-3)),
            ("weights", json!([0.5, 1e-7, u64::MAX])),
            ("nested", json!({"a": [null, true, {"b": "c"}]})),
        ] {
            human.testing_mut().claims.insert(k.into(), v);
        }
        let mut workload = Principal::human("https://ci.example", "repo:acme/app");
        workload.testing_mut().kind = crate::principal::PrincipalKind::Workload;
        workload.testing_mut().actor = Some(crate::principal::Identity::new(
            "https://idp.example",
            "alice",
        ));
        let params: BTreeMap<String, Value> = [
            ("service".to_owned(), json!("api")),
            ("replicas".to_owned(), json!(3)),
            ("ratio".to_owned(), json!(-0.25)),
            ("tags".to_owned(), json!(["a", {"b": 1}])),
        ]
        .into();
        let same = Condition::compile(
            "a == b && a.params == b.params && a.requester == b.requester \
             && a.requester.claims == b.requester.claims && a.requester.actor == b.requester.actor \
             && type(a.duration_seconds) == type(b.duration_seconds) \
             && size(a) == size(b) && size(a.requester) == size(b.requester)",
            &["a", "b"],
        )
        .expect("compiles");
        let mut requests = Vec::new();
        for (requester, reason, duration) in [
            (&human, Some("hotfix"), 900),
            (&workload, None, 0),
            (&human, None, -5),
        ] {
            let mut r = sample_request(requester.clone(), params.clone());
            r.reason = reason.map(str::to_owned);
            r.duration_secs = duration;
            requests.push(r);
        }
        for (i, a) in requests.iter().enumerate() {
            for (j, b) in requests.iter().enumerate() {
                let json = b.to_condition_value();
                let bindings = Bindings::new(&[("b", &json)]);
                let r = same.evaluate_with(&bindings.with_value("a", a.to_cel()));
                assert_eq!(r.error, None);
                assert_eq!(r.value, i == j, "request {i} against the JSON of {j}");
            }
        }
    }

    #[test]
    fn terminal_states_are_final() {
        for from in State::ALL {
            for to in State::ALL {
                if from.is_terminal() {
                    assert!(!from.can_move_to(to), "{from} -> {to}");
                }
            }
        }
        assert!(State::Pending.can_move_to(State::Approved));
        assert!(!State::Approved.can_move_to(State::Rejected));
    }

    #[test]
    fn digest_changes_with_content() {
        let who = Principal::human("okta", "alice");
        let mut params = BTreeMap::new();
        params.insert("service".to_string(), Value::from("api"));
        let a = content_digest("deploy", &params, Some("x"), None, 900, &who);
        let b = content_digest("deploy", &params, Some("y"), None, 900, &who);
        let c = content_digest("deploy", &params, Some("x"), None, 901, &who);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            content_digest("deploy", &params, Some("x"), None, 900, &who)
        );
    }
}
