//! Ending a request other than by decision: cancelled by its requester, revoked by its
//! requester or an eligible approver, expired by time (when read, or by the sweeper).

use std::sync::Arc;

use serde_json::json;

use super::create::{MAX_REASON, text_field};
use super::{Attempt, Engine};
use crate::audit::{Actor, AuditAction, NewAuditEvent};
use crate::error::EngineError;
use crate::gate::Requirement;
use crate::ids::RequestId;
use crate::policy;
use crate::ports::{StoreError, Transition, TransitionParts};
use crate::principal::{Principal, PrincipalKind};
use crate::request::{Request, State};
use crate::time::Timestamp;

impl Engine {
    /// The requester withdraws a pending request.
    #[tracing::instrument(skip_all, fields(request_id = %id))]
    pub async fn cancel(
        &self,
        who: &Principal,
        id: &RequestId,
        reason: Option<String>,
    ) -> Result<Request, EngineError> {
        let reason = text_field("reason", reason, Requirement::Optional, MAX_REASON, true)?;
        self.finish(who, id, State::Cancelled, reason, |engine, request| {
            if request.requester.same_person_as(who) {
                Ok(())
            } else {
                Err(engine.forbid("only the requester can cancel a request"))
            }
        })
        .await
    }

    /// Revokes an approved request: its requester, or anyone eligible to approve it now.
    #[tracing::instrument(skip_all, fields(request_id = %id))]
    pub async fn revoke(
        &self,
        who: &Principal,
        id: &RequestId,
        reason: Option<String>,
    ) -> Result<Request, EngineError> {
        let reason = text_field("reason", reason, Requirement::Optional, MAX_REASON, true)?;
        self.finish(who, id, State::Revoked, reason, |engine, request| {
            if request.requester.same_person_as(who) {
                return Ok(());
            }
            let eligible = who.kind() == PrincipalKind::Human
                && engine.gates.get(&request.gate).is_some_and(|g| {
                    policy::approver_checks(g, request, who, engine.clock.now())
                        .iter()
                        .any(|c| c.eligible)
                });
            if eligible {
                Ok(())
            } else {
                Err(engine.forbid("only the requester or an eligible approver can revoke"))
            }
        })
        .await
    }

    fn forbid(&self, message: &str) -> EngineError {
        EngineError::forbidden("not_allowed", message)
    }

    /// Moves a request to a terminal state chosen by a person (cancel, revoke).
    async fn finish(
        &self,
        who: &Principal,
        id: &RequestId,
        target: State,
        reason: Option<String>,
        authorize: impl Fn(&Self, &Request) -> Result<(), EngineError>,
    ) -> Result<Request, EngineError> {
        let action = AuditAction::reaching(target).ok_or(EngineError::WrongState(target))?;
        let (reason, authorize) = (&reason, &authorize);
        self.retry(|| async move {
            let request = self.visible(who, id, action.as_str()).await?;
            if let Err(e) = authorize(self, &request) {
                self.audit_refusal(
                    who,
                    action.as_str(),
                    Some(&request),
                    None,
                    e.code(),
                    json!({}),
                )
                .await?;
                return Err(e);
            }
            let now = self.clock.now();
            let state = policy::effective_state(&request, now);
            if state == State::Expired && request.state == State::Pending {
                self.expire(&request, now).await?;
                return Err(EngineError::WrongState(State::Expired));
            }
            if !state.can_move_to(target) {
                return Err(EngineError::WrongState(state));
            }
            let mut transition = Transition::checked(TransitionParts {
                request_id: request.id,
                expected_version: request.version,
                state: target,
                approval: request.approval,
                decided_at: request.decided_at.or(Some(now)),
                at: now,
                decision: None,
                events: vec![NewAuditEvent {
                    at: now,
                    actor: Actor::from(who.identity()),
                    action,
                    request_id: Some(request.id),
                    digest: Some(request.digest.clone()),
                    detail: json!({"gate": request.gate, "reason": reason}),
                }],
                outbox: Vec::new(),
            });
            let by_requester = request.requester.same_person_as(who);
            let before = Arc::clone(&request);
            let next = transition.apply_to(Arc::unwrap_or_clone(request));
            transition.set_outbox(self.announce(action, &next, None, now));
            transition.set_notices(self.notices_on_change(&before, &next, None, by_requester, now));
            match self.store.apply(&transition).await {
                Ok(()) => {
                    self.changed(&next);
                    Ok(Attempt::Done(next))
                }
                Err(StoreError::Conflict) => Ok(Attempt::Lost),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Records the expiry of a pending request past its time. Losing the race to another
    /// writer is fine: whoever won decided the request first.
    pub(super) async fn expire(
        &self,
        request: &Request,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        let mut transition = Transition::checked(TransitionParts {
            request_id: request.id,
            expected_version: request.version,
            state: State::Expired,
            approval: None,
            decided_at: Some(now),
            at: now,
            decision: None,
            events: vec![NewAuditEvent {
                at: now,
                actor: Actor::system(),
                action: AuditAction::RequestExpired,
                request_id: Some(request.id),
                digest: Some(request.digest.clone()),
                detail: json!({"gate": request.gate, "expires_at": crate::time::rfc3339(&request.expires_at)}),
            }],
            outbox: Vec::new(),
        });
        let next = transition.apply_to(request.clone());
        transition.set_outbox(self.announce(AuditAction::RequestExpired, &next, None, now));
        transition.set_notices(self.notices_on_change(request, &next, None, false, now));
        match self.store.apply(&transition).await {
            Ok(()) => {
                self.changed(&next);
                Ok(true)
            }
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The sweeper's one pass: expires pending requests past their time. Returns how many it
    /// expired. Correctness never depends on it (every transition checks expiry itself); it
    /// makes the state visible and fires the events.
    pub async fn expire_due(&self) -> Result<usize, EngineError> {
        let now = self.clock.now();
        let mut done = 0;
        for id in self.store.due_for_expiry(now, 200).await? {
            if let Some(request) = self.store.get_request(&id).await?
                && policy::effective_state(&request, now) == State::Expired
                && request.state == State::Pending
                && self.expire(&request, now).await?
            {
                done += 1;
            }
        }
        Ok(done)
    }
}
