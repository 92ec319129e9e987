//! Deciding a request: the approver authorized by [`policy::authorize_decision`], the decision
//! recorded by [`policy::decide`], refusals audited.

use serde_json::{Value, json};

use super::create::{MAX_COMMENT, text_field};
use super::{Attempt, Engine};
use crate::audit::AuditAction;
use crate::error::EngineError;
use crate::gate::Requirement;
use crate::ids::{Digest, RequestId};
use crate::policy::{self, Evaluation, Refusal};
use crate::ports::StoreError;
use crate::principal::Principal;
use crate::request::{Request, State, Verdict};

/// A request as a decision left it.
#[derive(Clone, Debug)]
pub struct DecidedRequest {
    /// The request after the decision.
    pub request: Request,
    /// Its rule standing after the decision (what [`policy::decide`] worked out).
    pub evaluation: Evaluation,
}

impl Engine {
    /// Whether `who` could decide `request` right now (the inbox test).
    pub fn can_decide_now(&self, who: &Principal, request: &Request) -> bool {
        self.may_approve(&policy::Approver::new(who, self.clock.now()), request)
    }

    /// [`Self::can_decide_now`] for an approver prepared once (the inbox checks many requests).
    pub(super) fn may_approve(&self, who: &policy::Approver<'_>, request: &Request) -> bool {
        self.gates
            .get(&request.gate)
            .is_some_and(|gate| who.may_approve(gate, request))
    }

    /// Approves or rejects. The digest must be the one the approver was shown. Returns the
    /// request as decided with the rule standing the decision left it in.
    #[tracing::instrument(skip_all, fields(request_id = %id, approver = %who.identity(), verdict = verdict.as_str()))]
    pub async fn decide(
        &self,
        who: &Principal,
        id: &RequestId,
        verdict: Verdict,
        digest: &Digest,
        comment: Option<String>,
    ) -> Result<DecidedRequest, EngineError> {
        let comment = text_field("comment", comment, Requirement::Optional, MAX_COMMENT, true)?;
        let attempted = &format!("decision.{}", verdict.as_str());
        let comment = &comment;
        self.retry(|| async move {
            let request = self.visible(who, id, attempted).await?;
            let gate = self.gate_of(&request)?;
            let now = self.clock.now();
            let permit = match policy::authorize_decision(&gate, &request, who, verdict, now) {
                Ok(p) => p,
                Err((Refusal::NotPending(State::Expired), _))
                    if request.state == State::Pending =>
                {
                    self.expire(&request, now).await?;
                    return Err(EngineError::WrongState(State::Expired));
                }
                Err((refusal, checks)) => {
                    return Err(self
                        .refuse_decision(who, &request, verdict, refusal, &checks)
                        .await?);
                }
            };
            let Ok(mut decided) = policy::decide(&gate, &request, permit, digest, comment.clone())
            else {
                self.audit_refusal(
                    who,
                    attempted,
                    Some(&request),
                    None,
                    "digest_mismatch",
                    json!({"posted_digest": digest.to_string()}),
                )
                .await?;
                return Err(EngineError::DigestMismatch);
            };
            if let Some(event) = AuditAction::reaching(decided.request.state) {
                let outbox = self.announce(event, &decided.request, Some(&decided.evaluation), now);
                decided.transition.set_outbox(outbox);
            }
            let notices = self.notices_on_change(
                &request,
                &decided.request,
                Some(&decided.evaluation),
                false,
                now,
            );
            decided.transition.set_notices(notices);
            match self.store.apply(&decided.transition).await {
                Ok(()) => {
                    self.changed(&decided.request);
                    Ok(Attempt::Done(DecidedRequest {
                        request: decided.request,
                        evaluation: decided.evaluation,
                    }))
                }
                Err(StoreError::Conflict) => Ok(Attempt::Lost),
                Err(StoreError::Duplicate(_)) => Err(EngineError::AlreadyDecided),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn refuse_decision(
        &self,
        who: &Principal,
        request: &Request,
        verdict: Verdict,
        refusal: Refusal,
        checks: &[policy::RuleCheck],
    ) -> Result<EngineError, EngineError> {
        let action = format!("decision.{}", verdict.as_str());
        let error = match &refusal {
            Refusal::NotPending(s) => EngineError::WrongState(*s),
            Refusal::AlreadyDecided => EngineError::AlreadyDecided,
            other => EngineError::forbidden(other.code(), other.message()),
        };
        // Refusals on authority are audited; a late click on a decided request is not an
        // authorization failure, but it is recorded too, so the trail shows every attempt.
        let checks: Vec<Value> = checks
            .iter()
            .map(|c| json!({"rule": c.rule, "eligible": c.eligible, "error": c.error}))
            .collect();
        self.audit_refusal(
            who,
            &action,
            Some(request),
            None,
            refusal.code(),
            json!({"checks": checks}),
        )
        .await?;
        Ok(error)
    }
}
