//! The public JSON shape of a request: what the API answers and what webhook payloads carry
//! as `data`. It is a contract, so it is written out field by field.
//!
//! [`RequestView`] serializes straight from the request (a listing writes fifty of them per
//! page), in the key order a JSON object value writes: [`request`] and
//! `serde_json::to_string(&RequestView)` give the same text.

use serde::ser::{Serialize, Serializer};
use serde_json::Value;

use crate::Principal;
use crate::ids::{Digest, RequestId};
use crate::policy::Evaluation;
use crate::request::{ApprovalPath, Decision, Request, State};
use crate::time::{format_duration, rfc3339};

/// A principal as shown to others.
pub fn principal(p: &Principal) -> Value {
    to_value(PrincipalView(p))
}

/// A request with its rule standing, as a JSON value.
pub fn request(r: &Request, evaluation: Option<&Evaluation>) -> Value {
    to_value(RequestView::new(r, evaluation))
}

/// The views only hold strings, numbers and string-keyed maps, which always convert.
fn to_value(view: impl Serialize) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// A request with its rule standing (`evaluation`, when its gate still exists), to serialize.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    request: &'a Request,
    evaluation: Option<&'a Evaluation>,
}

impl<'a> RequestView<'a> {
    /// The view of `request`, with its rule standing if there is one.
    pub fn new(request: &'a Request, evaluation: Option<&'a Evaluation>) -> Self {
        Self {
            request,
            evaluation,
        }
    }
}

/// The fields of a request's view. Here and below, fields are declared in byte order of
/// their names, the order a JSON object value keeps its keys in.
#[derive(serde::Serialize)]
struct RequestFields<'a> {
    approval: Option<ApprovalPath>,
    created_at: String,
    decided_at: Option<String>,
    decisions: Decisions<'a>,
    digest: &'a Digest,
    duration: String,
    duration_seconds: i64,
    expires_at: String,
    gate: &'a str,
    id: RequestId,
    params: &'a std::collections::BTreeMap<String, Value>,
    reason: Option<&'a str>,
    requester: PrincipalView<'a>,
    rules: Rules<'a>,
    state: &'static str,
    ticket: Option<&'a str>,
    updated_at: String,
    version: i64,
    waiting_for: WaitingFor<'a>,
}

impl Serialize for RequestView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        RequestFields {
            approval: r.approval,
            created_at: rfc3339(&r.created_at),
            decided_at: r.decided_at.as_ref().map(rfc3339),
            decisions: Decisions(*self),
            digest: &r.digest,
            duration: format_duration(chrono::Duration::seconds(r.duration_secs)),
            duration_seconds: r.duration_secs,
            expires_at: rfc3339(&r.expires_at),
            gate: &r.gate,
            id: r.id,
            params: &r.params,
            reason: r.reason.as_deref(),
            requester: PrincipalView(&r.requester),
            rules: Rules(*self),
            state: r.state.as_str(),
            ticket: r.ticket.as_deref(),
            updated_at: rfc3339(&r.updated_at),
            version: r.version,
            waiting_for: WaitingFor(*self),
        }
        .serialize(serializer)
    }
}

/// `{email, issuer, kind, name, subject}`.
#[derive(Clone, Copy)]
struct PrincipalView<'a>(&'a Principal);

#[derive(serde::Serialize)]
struct PrincipalFields<'a> {
    email: Option<&'a str>,
    issuer: &'a str,
    kind: &'static str,
    name: Option<&'a str>,
    subject: &'a str,
}

impl Serialize for PrincipalView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        PrincipalFields {
            email: p.email(),
            issuer: &p.identity().issuer,
            kind: p.kind().as_str(),
            name: p.name(),
            subject: &p.identity().subject,
        }
        .serialize(serializer)
    }
}

/// Every decision, with the rule its approval counts for.
struct Decisions<'a>(RequestView<'a>);

#[derive(serde::Serialize)]
struct DecisionFields<'a> {
    approver: ApproverFields<'a>,
    at: String,
    comment: Option<&'a str>,
    rule: Option<&'a str>,
    verdict: &'static str,
}

/// `{issuer, name, subject}`.
#[derive(serde::Serialize)]
struct ApproverFields<'a> {
    issuer: &'a str,
    name: Option<&'a str>,
    subject: &'a str,
}

impl<'a> ApproverFields<'a> {
    fn of(d: &'a Decision) -> Self {
        Self {
            issuer: &d.approver.identity().issuer,
            name: d.approver.name(),
            subject: &d.approver.identity().subject,
        }
    }
}

impl Serialize for Decisions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let RequestView {
            request,
            evaluation,
        } = self.0;
        serializer.collect_seq(
            request
                .decisions
                .iter()
                .enumerate()
                .map(|(i, d)| DecisionFields {
                    approver: ApproverFields::of(d),
                    at: rfc3339(&d.at),
                    comment: d.comment.as_deref(),
                    rule: evaluation.and_then(|ev| ev.rule_of(i)),
                    verdict: d.verdict.as_str(),
                }),
        )
    }
}

/// Each rule's standing, with the approvals counted for it.
struct Rules<'a>(RequestView<'a>);

#[derive(serde::Serialize)]
struct RuleFields<'a> {
    approvals: Approvals<'a>,
    min_approvals: u32,
    name: &'a str,
    open: bool,
    satisfied: bool,
    stage: u32,
}

/// The decisions counted for one rule: `{at, comment, issuer, name, subject}` each.
struct Approvals<'a> {
    request: &'a Request,
    decisions: &'a [usize],
}

#[derive(serde::Serialize)]
struct ApprovalFields<'a> {
    at: String,
    comment: Option<&'a str>,
    issuer: &'a str,
    name: Option<&'a str>,
    subject: &'a str,
}

impl Serialize for Rules<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let RequestView {
            request,
            evaluation,
        } = self.0;
        let rules = evaluation.map(|ev| ev.rules.as_slice()).unwrap_or_default();
        serializer.collect_seq(rules.iter().map(|rule| RuleFields {
            approvals: Approvals {
                request,
                decisions: &rule.approvals,
            },
            min_approvals: rule.min_approvals,
            name: &rule.name,
            open: rule.open,
            satisfied: rule.satisfied,
            stage: rule.stage,
        }))
    }
}

impl Serialize for Approvals<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.decisions.iter().map(|&i| {
            let d = &self.request.decisions[i];
            ApprovalFields {
                at: rfc3339(&d.at),
                comment: d.comment.as_deref(),
                issuer: &d.approver.identity().issuer,
                name: d.approver.name(),
                subject: &d.approver.identity().subject,
            }
        }))
    }
}

/// The names of the rules not yet met, while the request is pending.
struct WaitingFor<'a>(RequestView<'a>);

impl Serialize for WaitingFor<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rules = match (self.0.request.state, self.0.evaluation) {
            (State::Pending, Some(ev)) => ev.rules.as_slice(),
            _ => &[],
        };
        serializer.collect_seq(
            rules
                .iter()
                .filter(|rule| !rule.satisfied)
                .map(|rule| &rule.name),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::policy::evaluate;
    use crate::request::Verdict;
    use crate::time::from_millis;
    use crate::{Condition, Rule};

    /// The view as first written, with `json!`: the contract the serialized view must keep.
    fn reference(r: &Request, evaluation: Option<&Evaluation>) -> Value {
        let person = |p: &Principal| {
            json!({"issuer": p.identity().issuer, "subject": p.identity().subject, "name": p.name(),
                   "email": p.email(), "kind": p.kind().as_str()})
        };
        let rules: Vec<Value> = evaluation
            .map(|ev| {
                ev.rules
                    .iter()
                    .map(|rule| {
                        json!({
                            "name": rule.name, "stage": rule.stage,
                            "min_approvals": rule.min_approvals, "satisfied": rule.satisfied,
                            "open": rule.open,
                            "approvals": rule.approvals.iter().map(|&i| {
                                let d = &r.decisions[i];
                                json!({"issuer": d.approver.identity().issuer,
                                       "subject": d.approver.identity().subject,
                                       "name": d.approver.name(), "comment": d.comment,
                                       "at": rfc3339(&d.at)})
                            }).collect::<Vec<_>>(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let decisions: Vec<Value> = r
            .decisions
            .iter()
            .enumerate()
            .map(|(i, d)| {
                json!({
                    "approver": {"issuer": d.approver.identity().issuer,
                                 "subject": d.approver.identity().subject, "name": d.approver.name()},
                    "verdict": d.verdict.as_str(), "comment": d.comment,
                    "rule": evaluation.and_then(|ev| ev.rule_of(i)), "at": rfc3339(&d.at),
                })
            })
            .collect();
        let waiting_for: Vec<String> = match (r.state, evaluation) {
            (State::Pending, Some(ev)) => ev.waiting_for(),
            _ => Vec::new(),
        };
        json!({
            "id": r.id, "gate": r.gate, "state": r.state.as_str(), "approval": r.approval,
            "params": r.params, "reason": r.reason, "ticket": r.ticket,
            "duration": format_duration(chrono::Duration::seconds(r.duration_secs)),
            "duration_seconds": r.duration_secs, "requester": person(&r.requester),
            "digest": r.digest, "created_at": rfc3339(&r.created_at),
            "expires_at": rfc3339(&r.expires_at),
            "decided_at": r.decided_at.as_ref().map(rfc3339),
            "updated_at": rfc3339(&r.updated_at), "rules": rules, "decisions": decisions,
            "waiting_for": waiting_for, "version": r.version,
        })
    }

    #[test]
    fn the_serialized_view_is_the_contract_byte_for_byte() {
        let at = from_millis(1_767_225_600_123).unwrap();
        let mut alice = Principal::human("okta", "alice");
        alice.testing_mut().name = Some("Alice \"A\" Adams".into());
        alice.testing_mut().email = Some("alice@example.com".into());
        alice
            .testing_mut()
            .claims
            .insert("groups".into(), json!(["dev"]));
        let bob = Principal::human("okta", "bob");
        let carol = Principal::human("google", "carol");
        let digest = Digest::of_json(&json!({"gate": "deploy"}));
        let rule = |name: &str, stage: u32| Rule {
            name: name.into(),
            approvers: Condition::compile("true", &[]).unwrap(),
            min_approvals: 1,
            stage,
            reject_threshold: 2,
            notify: Vec::new(),
        };
        let rules = vec![rule("leads", 1), rule("security", 2)];
        let decision = |who: &Principal, verdict, comment: Option<&str>| Decision {
            approver: who.clone(),
            verdict,
            comment: comment.map(Into::into),
            digest: digest.clone(),
            at,
            eligible_rules: vec!["leads".into()],
        };
        let mut params = BTreeMap::new();
        params.insert("service".to_string(), json!("api"));
        params.insert("replicas".to_string(), json!(3));
        params.insert("b".to_string(), json!({"z": [1, 2.5], "a": null}));
        let mut request = Request {
            id: RequestId::generate(at),
            gate: "deploy".into(),
            params,
            reason: Some("release\n1.2".into()),
            ticket: None,
            requester: alice,
            duration_secs: 5400,
            digest: digest.clone(),
            state: State::Pending,
            approval: None,
            version: 3,
            created_at: at,
            expires_at: at,
            decided_at: None,
            updated_at: at,
            decisions: vec![
                decision(&bob, Verdict::Approve, Some("ok")),
                decision(&carol, Verdict::Reject, None),
            ],
        };
        let evaluation = evaluate(&rules, &request.decisions);
        let same = |r: &Request, ev: Option<&Evaluation>| {
            let text = serde_json::to_string(&RequestView::new(r, ev)).unwrap();
            assert_eq!(text, reference(r, ev).to_string());
            assert_eq!(super::request(r, ev), reference(r, ev));
        };
        same(&request, Some(&evaluation));
        same(&request, None);
        request.state = State::Approved;
        request.approval = Some(ApprovalPath::Quorum);
        request.decided_at = Some(at);
        same(&request, Some(&evaluation));
        assert_eq!(
            principal(&request.requester),
            json!({"email": "alice@example.com", "issuer": "okta", "kind": "human",
                   "name": "Alice \"A\" Adams", "subject": "alice"})
        );
    }
}
