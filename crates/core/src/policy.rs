//! Policy evaluation, as pure functions of the gate, the request, the principal and the time.
//!
//! Two questions are answered here:
//! - *may this principal decide this request now?* — [`authorize_decision`] returns a
//!   [`DecisionPermit`] (the only way to build one) or a [`Refusal`] with its reason;
//! - *what do the decisions so far add up to?* — [`evaluate`] assigns approvals to rule slots
//!   by maximum bipartite matching, so one person fills at most one slot, and reports each
//!   rule's status and the outcome.
//!
//! Every condition result is kept with its reasons so callers can audit them.

use serde_json::{Value, json};

use crate::condition::Bindings;
use crate::gate::{Gate, Rule};
use crate::ids::Digest;
use crate::principal::{Principal, PrincipalKind};
use crate::request::{ApprovalPath, Decision, Request, State, Verdict};
use crate::time::{Timestamp, rfc3339};

/// The outcome of one condition for one rule.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleCheck {
    /// The rule's name.
    pub rule: String,
    /// The rule's stage.
    pub stage: u32,
    /// Whether the approver condition held.
    pub eligible: bool,
    /// Why the condition failed to evaluate (and so counted as false), if it did.
    pub error: Option<String>,
}

/// The variables every condition sees for `now`.
fn now_value(now: &Timestamp) -> Value {
    Value::String(rfc3339(now))
}

/// Evaluates every rule's `approvers` condition for `approver` on `request`, with the
/// approver's claims as they are now.
pub fn approver_checks(
    gate: &Gate,
    request: &Request,
    approver: &Principal,
    now: Timestamp,
) -> Vec<RuleCheck> {
    Approver::new(approver, now).checks(gate, request)
}

/// An approver at one moment, prepared for checking many requests (an inbox listing): the
/// values conditions see as `approver` (with every claim) and `now` are built and converted
/// into CEL values once, not once per request; each request is bound in an inner scope.
#[derive(Debug)]
pub struct Approver<'p> {
    principal: &'p Principal,
    now: Timestamp,
    bindings: Bindings<'static>,
}

impl<'p> Approver<'p> {
    /// Prepares `principal`, with its claims as they are now, for checks at `now`.
    pub fn new(principal: &'p Principal, now: Timestamp) -> Self {
        Self {
            principal,
            now,
            bindings: Bindings::owned(&[
                ("approver", &principal.to_condition_value()),
                ("now", &now_value(&now)),
            ]),
        }
    }

    /// The approver.
    pub fn principal(&self) -> &'p Principal {
        self.principal
    }

    /// The moment the checks are made at.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Every rule's `approvers` condition on `request`: see [`approver_checks`].
    pub fn checks(&self, gate: &Gate, request: &Request) -> Vec<RuleCheck> {
        let bindings = self.bindings.with_value("request", request.to_cel());
        gate.rules
            .iter()
            .map(|rule| {
                let r = rule.approvers.evaluate_with(&bindings);
                if let Some(e) = &r.error {
                    tracing::warn!(gate = %gate.name, rule = %rule.name, error = %e, "approver condition failed to evaluate; counted as false");
                }
                RuleCheck { rule: rule.name.clone(), stage: rule.stage, eligible: r.value, error: r.error }
            })
            .collect()
    }

    /// Whether [`authorize_decision`] would admit this approver's approval of `request` now
    /// (the inbox test): the same checks in the same order, without building a permit.
    pub fn may_approve(&self, gate: &Gate, request: &Request) -> bool {
        if precheck(request, self.principal, self.now).is_err() {
            return false;
        }
        let checks = self.checks(gate, request);
        checks.iter().any(|c| c.eligible)
            && counting(gate, request, Verdict::Approve, &checks)
                .next()
                .is_some()
    }
}

/// Whether `principal` may request on `gate` with the given request content (the value
/// conditions see as `request`).
pub fn may_request(
    gate: &Gate,
    principal: &Principal,
    request: &Value,
    now: Timestamp,
) -> crate::condition::Evaluated {
    let r = gate.requesters.evaluate(&[
        ("principal", &principal.to_condition_value()),
        ("request", request),
        ("now", &now_value(&now)),
    ]);
    if let Some(e) = &r.error {
        tracing::warn!(gate = %gate.name, error = %e, "requesters condition failed to evaluate; counted as false");
    }
    r
}

/// Whether the gate's auto-approve condition holds for this new request.
pub fn auto_approves(gate: &Gate, principal: &Principal, request: &Value, now: Timestamp) -> bool {
    gate.auto_approve.as_ref().is_some_and(|c| {
        let r = c.evaluate(&[
            ("principal", &principal.to_condition_value()),
            ("request", request),
            ("now", &now_value(&now)),
        ]);
        if let Some(e) = &r.error {
            tracing::warn!(gate = %gate.name, error = %e, "auto_approve condition failed to evaluate; counted as false");
        }
        r.value
    })
}

/// One rule's standing.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleStatus {
    /// The rule's name.
    pub name: String,
    /// Its stage.
    pub stage: u32,
    /// Approvals it needs.
    pub min_approvals: u32,
    /// Whether its stage is open (every lower stage met).
    pub open: bool,
    /// Whether it has `min_approvals` assigned approvals.
    pub satisfied: bool,
    /// Indices (into the request's decisions) of the approvals assigned to it.
    pub approvals: Vec<usize>,
    /// Rejections by people eligible for it.
    pub rejections: u32,
}

/// Where the decisions leave a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Some rule still waits.
    Pending,
    /// Every rule is met.
    Approved,
    /// A rule's reject threshold was reached.
    Rejected {
        /// The rule whose threshold was reached.
        rule: String,
    },
}

/// The standing of every rule and the outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// In the gate's rule order (by stage).
    pub rules: Vec<RuleStatus>,
    /// For each decision: the index of the rule its approval is assigned to, if any.
    pub assignment: Vec<Option<usize>>,
    /// The outcome.
    pub outcome: Outcome,
}

impl Evaluation {
    /// Names of the rules not yet met, in order.
    pub fn waiting_for(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| !r.satisfied)
            .map(|r| r.name.clone())
            .collect()
    }

    /// The lowest stage that still has an unmet rule (every stage up to it is open).
    pub fn current_stage(&self) -> Option<u32> {
        self.rules
            .iter()
            .filter(|r| !r.satisfied)
            .map(|r| r.stage)
            .min()
    }

    /// The name of the rule decision `index` is assigned to.
    pub fn rule_of(&self, index: usize) -> Option<&str> {
        self.assignment
            .get(index)
            .copied()
            .flatten()
            .map(|r| self.rules[r].name.as_str())
    }
}

/// Adds up the decisions: assigns approvals to rule slots by maximum bipartite matching
/// (each approval fills at most one slot, a rule with `min_approvals = N` has N slots, an
/// approval can go only to a rule its approver was eligible for when deciding), counts
/// rejections per rule, and derives the outcome.
pub fn evaluate(rules: &[Rule], decisions: &[Decision]) -> Evaluation {
    let eligible: Vec<Vec<usize>> = decisions
        .iter()
        .map(|d| {
            rules
                .iter()
                .enumerate()
                .filter(|(_, r)| d.eligible_rules.iter().any(|n| n == &r.name))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();

    let mut slots: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
    for (d, decision) in decisions.iter().enumerate() {
        if decision.verdict == Verdict::Approve {
            let mut visited = vec![false; rules.len()];
            augment(d, &eligible, rules, &mut slots, &mut visited);
        }
    }

    let mut assignment = vec![None; decisions.len()];
    for (r, holders) in slots.iter().enumerate() {
        for &d in holders {
            assignment[d] = Some(r);
        }
    }

    let mut statuses: Vec<RuleStatus> = rules
        .iter()
        .enumerate()
        .map(|(r, rule)| {
            let mut approvals = slots[r].clone();
            approvals.sort_unstable();
            let rejections = decisions
                .iter()
                .enumerate()
                .filter(|(d, dec)| dec.verdict == Verdict::Reject && eligible[*d].contains(&r))
                .count();
            RuleStatus {
                name: rule.name.clone(),
                stage: rule.stage,
                min_approvals: rule.min_approvals,
                open: false,
                satisfied: approvals.len() >= rule.min_approvals as usize,
                approvals,
                rejections: u32::try_from(rejections).unwrap_or(u32::MAX),
            }
        })
        .collect();

    let current = statuses
        .iter()
        .filter(|s| !s.satisfied)
        .map(|s| s.stage)
        .min();
    for s in &mut statuses {
        s.open = current.is_none_or(|c| s.stage <= c);
    }

    let vetoed = rules
        .iter()
        .zip(&statuses)
        .find(|(rule, s)| s.rejections >= rule.reject_threshold.max(1));
    let outcome = if let Some((rule, _)) = vetoed {
        Outcome::Rejected {
            rule: rule.name.clone(),
        }
    } else if statuses.iter().all(|s| s.satisfied) {
        Outcome::Approved
    } else {
        Outcome::Pending
    };
    Evaluation {
        rules: statuses,
        assignment,
        outcome,
    }
}

/// Tries to place decision `d` in a slot, moving earlier placements along augmenting paths.
fn augment(
    d: usize,
    eligible: &[Vec<usize>],
    rules: &[Rule],
    slots: &mut [Vec<usize>],
    visited: &mut [bool],
) -> bool {
    for &r in &eligible[d] {
        if visited[r] {
            continue;
        }
        visited[r] = true;
        if slots[r].len() < rules[r].min_approvals as usize {
            slots[r].push(d);
            return true;
        }
        for i in 0..slots[r].len() {
            let holder = slots[r][i];
            if augment(holder, eligible, rules, slots, visited) {
                slots[r][i] = d;
                return true;
            }
        }
    }
    false
}

/// Why a decision is refused. Each maps to a stable code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Workload principals never approve or reject.
    WorkloadCannotDecide,
    /// The approver is the requester, under this or another identity.
    SelfApproval,
    /// The request is not pending (or has just expired).
    NotPending(State),
    /// The approver (or the same person under another identity) already decided.
    AlreadyDecided,
    /// No rule open now admits this approver.
    NotEligible {
        /// Whether a rule of a later stage would admit them once it opens.
        later_stage: bool,
    },
}

impl Refusal {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::WorkloadCannotDecide => "workload_cannot_approve",
            Refusal::SelfApproval => "self_approval",
            Refusal::NotPending(_) => "not_pending",
            Refusal::AlreadyDecided => "already_decided",
            Refusal::NotEligible { .. } => "not_eligible",
        }
    }

    /// A sentence for the caller.
    pub fn message(&self) -> String {
        match self {
            Refusal::WorkloadCannotDecide => "workload identities can request but never approve or reject".into(),
            Refusal::SelfApproval => "you cannot decide your own request (also not under another identity of yours)".into(),
            Refusal::NotPending(s) => format!("the request is {s}, not pending"),
            Refusal::AlreadyDecided => "you already decided this request".into(),
            Refusal::NotEligible { later_stage: true } => {
                "you are eligible only for a later stage of this request, which opens when the current stage is met".into()
            }
            Refusal::NotEligible { later_stage: false } => "you are not an eligible approver for this request".into(),
        }
    }
}

/// Proof that [`authorize_decision`] admitted a decision. Only that function builds one, and
/// [`decide`] needs one, so a decision cannot be recorded without the checks.
#[derive(Debug)]
pub struct DecisionPermit {
    approver: Principal,
    verdict: Verdict,
    eligible_rules: Vec<String>,
    checks: Vec<RuleCheck>,
    expected_version: i64,
    now: Timestamp,
}

impl DecisionPermit {
    /// The condition results that admitted the approver.
    pub fn checks(&self) -> &[RuleCheck] {
        &self.checks
    }
}

/// The checks, in order: workload, self-approval, state (with expiry evaluated now),
/// one decision per person, eligibility with the approver's current claims. An approval
/// counts only toward rules whose stage is open; a rejection counts toward every rule the
/// approver is eligible for.
pub fn authorize_decision(
    gate: &Gate,
    request: &Request,
    approver: &Principal,
    verdict: Verdict,
    now: Timestamp,
) -> Result<DecisionPermit, (Refusal, Vec<RuleCheck>)> {
    precheck(request, approver, now).map_err(|refusal| (refusal, Vec::new()))?;
    let checks = Approver::new(approver, now).checks(gate, request);
    let eligible_rules: Vec<String> = counting(gate, request, verdict, &checks)
        .map(|c| c.rule.clone())
        .collect();
    if eligible_rules.is_empty() {
        let later_stage = checks.iter().any(|c| c.eligible);
        return Err((Refusal::NotEligible { later_stage }, checks));
    }
    Ok(DecisionPermit {
        approver: approver.clone(),
        verdict,
        eligible_rules,
        checks,
        expected_version: request.version,
        now,
    })
}

/// The checks that come before eligibility: workload, self-approval, state (with expiry
/// evaluated now), one decision per person.
fn precheck(request: &Request, approver: &Principal, now: Timestamp) -> Result<(), Refusal> {
    if approver.kind() == PrincipalKind::Workload {
        return Err(Refusal::WorkloadCannotDecide);
    }
    if request.requester.same_person_as(approver) {
        return Err(Refusal::SelfApproval);
    }
    let state = effective_state(request, now);
    if state != State::Pending {
        return Err(Refusal::NotPending(state));
    }
    if request
        .decisions
        .iter()
        .any(|d| d.approver.same_person_as(approver))
    {
        return Err(Refusal::AlreadyDecided);
    }
    Ok(())
}

/// The eligible rules a `verdict` counts toward: a rejection, every one; an approval, those
/// whose stage is open.
fn counting<'c>(
    gate: &Gate,
    request: &Request,
    verdict: Verdict,
    checks: &'c [RuleCheck],
) -> impl Iterator<Item = &'c RuleCheck> {
    let current = match verdict {
        Verdict::Reject => None,
        Verdict::Approve => evaluate(&gate.rules, &request.decisions).current_stage(),
    };
    checks
        .iter()
        .filter(move |c| c.eligible && current.is_none_or(|s| c.stage <= s))
}

/// The state a request is in at `now`: a pending request past its expiry is expired, whether
/// or not the sweeper has recorded it yet.
pub fn effective_state(request: &Request, now: Timestamp) -> State {
    if request.state == State::Pending && now >= request.expires_at {
        State::Expired
    } else {
        request.state
    }
}

/// A decision applied: the transition to store and the request as it will then be.
#[derive(Debug)]
pub struct Decided {
    /// What to store (compare-and-set on the permit's version); the engine stores it.
    pub(crate) transition: crate::ports::Transition,
    /// The request after the transition.
    pub request: Request,
    /// The evaluation after the decision.
    pub evaluation: Evaluation,
}

/// Records a permitted decision. The digest must be the request's (what the approver saw).
/// Returns the evaluation it works out with the new decision, so that no caller needs to
/// work it out again.
pub fn decide(
    gate: &Gate,
    request: &Request,
    permit: DecisionPermit,
    digest: &Digest,
    comment: Option<String>,
) -> Result<Decided, DigestRefusal> {
    if !digest.ct_eq(&request.digest) {
        return Err(DigestRefusal);
    }
    let decision = Decision {
        approver: permit.approver.summary(),
        verdict: permit.verdict,
        comment: comment.clone(),
        digest: request.digest.clone(),
        at: permit.now,
        eligible_rules: permit.eligible_rules.clone(),
    };
    let mut next = request.clone();
    next.decisions.push(decision.clone());
    let evaluation = evaluate(&gate.rules, &next.decisions);
    let index = next.decisions.len() - 1;
    let actor = crate::audit::Actor::from(permit.approver.identity());
    let mut events = vec![crate::audit::NewAuditEvent {
        at: permit.now,
        actor: actor.clone(),
        action: crate::audit::AuditAction::deciding(permit.verdict),
        request_id: Some(request.id),
        digest: Some(request.digest.clone()),
        detail: json!({
            "gate": gate.name,
            "rule": evaluation.rule_of(index),
            "eligible_rules": permit.eligible_rules,
            "comment": comment,
            "approver_name": permit.approver.name(),
            "approver_email": permit.approver.email(),
        }),
    }];
    let (state, approval) = match &evaluation.outcome {
        Outcome::Pending => (State::Pending, None),
        Outcome::Approved => (State::Approved, Some(ApprovalPath::Quorum)),
        Outcome::Rejected { .. } => (State::Rejected, None),
    };
    if let Some(action) = crate::audit::AuditAction::reaching(state) {
        let detail = match &evaluation.outcome {
            Outcome::Rejected { rule } => json!({"gate": gate.name, "rule": rule}),
            _ => json!({
                "gate": gate.name,
                "path": "quorum",
                "rules": evaluation.rules.iter().map(|r| json!({
                    "name": r.name,
                    "approvers": r.approvals.iter().map(|&i| {
                        let a = &next.decisions[i].approver.identity();
                        json!({"issuer": a.issuer, "subject": a.subject})
                    }).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
        };
        events.push(crate::audit::NewAuditEvent {
            at: permit.now,
            actor,
            action,
            request_id: Some(request.id),
            digest: Some(request.digest.clone()),
            detail,
        });
    }
    let decided_at = (state != State::Pending).then_some(permit.now);
    next.state = state;
    next.approval = approval;
    next.version = permit.expected_version + 1;
    next.decided_at = decided_at;
    next.updated_at = permit.now;
    Ok(Decided {
        transition: crate::ports::Transition::checked(crate::ports::TransitionParts {
            request_id: request.id,
            expected_version: permit.expected_version,
            state,
            approval,
            decided_at,
            at: permit.now,
            decision: Some(decision),
            events,
            outbox: Vec::new(),
        }),
        request: next,
        evaluation,
    })
}

/// The digest posted does not match the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestRefusal;

#[cfg(test)]
mod tests;
