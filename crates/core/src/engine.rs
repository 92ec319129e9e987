//! Use cases: create, read, list, decide, cancel, revoke, expire, read the audit log.
//!
//! Each use case reads through the [`Store`] port, asks [`crate::policy`] what is allowed,
//! and writes one [`Transition`] as a compare-and-set; when another writer got there first it
//! reloads and decides again, so concurrent callers can never both win. Refused
//! authorizations are audited.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::audit::{Actor, AuditEvent, NewAuditEvent};
use crate::condition::Condition;
use crate::error::EngineError;
use crate::gate::{Gate, GateSet, Requirement};
use crate::grant::{GrantRecord, OutboxMessage, grant_claims, outbox_for, window_end};
use crate::ids::{Digest, RequestId};
use crate::policy::{self, Evaluation, Refusal};
use crate::ports::{
    AuditQuery, ChangeListener, Clock, GrantSigner, Order, RequestFilter, Store, StoreError,
    Transition,
};
use crate::principal::{Principal, PrincipalKind};
use crate::request::{ApprovalPath, Request, State, Verdict, content_digest, content_value};
use crate::time::Timestamp;

/// How many times a use case re-reads and retries after losing a compare-and-set.
const MAX_ATTEMPTS: usize = 16;
/// Longest reason accepted, in characters.
pub const MAX_REASON: usize = 2000;
/// Longest comment accepted, in characters.
pub const MAX_COMMENT: usize = 2000;
/// Longest ticket reference accepted, in characters.
pub const MAX_TICKET: usize = 200;
/// Most rows one page of [`Engine::list`] reads before it stops and returns a cursor.
const LIST_SCAN_ROWS: u32 = 2000;
/// Largest batch [`Engine::list`] asks the store for after the first.
const LIST_BATCH_MAX: u32 = 100;
/// Smallest batch [`Engine::list`] asks the store for after the first.
const LIST_BATCH_MIN: u32 = 20;

/// What a requester asks for.
#[derive(Clone, Debug, Default)]
pub struct NewRequest {
    /// The gate's name.
    pub gate: String,
    /// Parameters as supplied (validated against the gate).
    pub params: Map<String, Value>,
    /// Why.
    pub reason: Option<String>,
    /// A ticket reference.
    pub ticket: Option<String>,
    /// The grant window asked for, e.g. `30m`; the gate's default when absent.
    pub duration: Option<String>,
}

/// Whose view of the request list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Requests I made.
    Requester,
    /// Pending requests I can still decide (my inbox).
    Approver,
}

/// A page request for [`Engine::list`].
#[derive(Clone, Debug, Default)]
pub struct ListRequests {
    /// Only this state.
    pub state: Option<State>,
    /// Only this gate.
    pub gate: Option<String>,
    /// Whose view; absent: everything the caller may see.
    pub role: Option<Role>,
    /// Page size (1..=200, default 50).
    pub limit: Option<u32>,
    /// Continue after this id.
    pub cursor: Option<RequestId>,
}

/// A grant token as issued.
#[derive(Clone, Debug)]
pub struct IssuedGrant {
    /// The compact JWT.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp`.
    pub expires_at: Timestamp,
    /// The request it proves.
    pub request: Arc<Request>,
}

/// A page of requests.
#[derive(Clone, Debug)]
pub struct Page {
    /// The requests.
    pub items: Vec<Request>,
    /// Where the next page starts, when there may be more.
    pub next_cursor: Option<RequestId>,
}

/// What a principal may do with a gate.
#[derive(Clone, Debug)]
pub struct GateAccess {
    /// The gate.
    pub gate: Arc<Gate>,
    /// Whether the `requesters` condition admits them (evaluated with empty parameters).
    pub can_request: bool,
    /// Whether some rule's `approvers` condition admits them.
    pub can_approve: bool,
}

/// The approval engine: the use cases over a store, a clock and the configured gates.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    gates: Arc<GateSet>,
    listener: Option<Arc<dyn ChangeListener>>,
    audit_readers: Option<Condition>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("gates", &self.gates.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, gates: Arc<GateSet>) -> Self {
        Self {
            store,
            clock,
            gates,
            listener: None,
            audit_readers: None,
        }
    }

    /// Tells `listener` after every committed change.
    pub fn with_listener(mut self, listener: Arc<dyn ChangeListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Who may read the whole audit log (a condition over `principal`).
    pub fn with_audit_readers(mut self, condition: Option<Condition>) -> Self {
        self.audit_readers = condition;
        self
    }

    /// The configured gates.
    pub fn gates(&self) -> &GateSet {
        &self.gates
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The rule standing of a request under its gate (None when the gate is gone).
    pub fn evaluate(&self, request: &Request) -> Option<Evaluation> {
        self.gates
            .get(&request.gate)
            .map(|g| policy::evaluate(&g.rules, &request.decisions))
    }

    /// Creates a request. It starts pending, or approved when the gate's auto-approve holds.
    #[tracing::instrument(skip_all, fields(gate = %input.gate, requester = %who.identity))]
    pub async fn create(&self, who: &Principal, input: NewRequest) -> Result<Request, EngineError> {
        let now = self.clock.now();
        let gate = self
            .gates
            .get(&input.gate)
            .ok_or_else(|| EngineError::UnknownGate(clip(&input.gate)))?
            .clone();
        let params = validate_params(&gate, &input.params)?;
        let reason = text_field("reason", input.reason, gate.reason, MAX_REASON, true)?;
        let ticket = text_field("ticket", input.ticket, gate.ticket, MAX_TICKET, false)?;
        let duration = match input.duration.as_deref() {
            None | Some("") => gate.grant.ttl,
            Some(text) => crate::time::parse_duration(text)
                .map_err(|m| EngineError::invalid("invalid_duration", format!("duration: {m}")))?,
        };
        if duration > gate.grant.max_ttl {
            return Err(EngineError::invalid(
                "invalid_duration",
                format!(
                    "duration {} is longer than this gate allows ({})",
                    crate::time::format_duration(duration),
                    crate::time::format_duration(gate.grant.max_ttl)
                ),
            ));
        }
        let duration_secs = duration.num_seconds();
        let content = content_value(
            &gate.name,
            &params,
            reason.as_deref(),
            ticket.as_deref(),
            duration_secs,
            who,
        );
        let allowed = policy::may_request(&gate, who, &content, now);
        if !allowed.value {
            self.audit_refusal(
                who,
                "request.create",
                None,
                None,
                "not_allowed",
                json!({"gate": gate.name, "condition_error": allowed.error}),
            )
            .await?;
            return Err(EngineError::forbidden(
                "not_allowed",
                format!("you may not request '{}'", gate.name),
            ));
        }
        let digest = content_digest(
            &gate.name,
            &params,
            reason.as_deref(),
            ticket.as_deref(),
            duration_secs,
            who,
        );
        let id = RequestId::generate(now);
        let auto = policy::auto_approves(&gate, who, &content, now);
        let actor = Actor::from(&who.identity);
        let mut events = vec![NewAuditEvent {
            at: now,
            actor: actor.clone(),
            action: "request.created".into(),
            request_id: Some(id),
            digest: Some(digest.clone()),
            detail: json!({
                "gate": gate.name,
                "params": params,
                "reason": reason,
                "ticket": ticket,
                "duration_seconds": duration_secs,
                "requester_kind": who.kind.as_str(),
                "requester_actor": who.actor,
            }),
        }];
        if auto {
            events.push(NewAuditEvent {
                at: now,
                actor,
                action: "request.approved".into(),
                request_id: Some(id),
                digest: Some(digest.clone()),
                detail: json!({"gate": gate.name, "path": "auto_approved",
                    "condition": gate.auto_approve.as_ref().map(Condition::source)}),
            });
        }
        let request = Request {
            id,
            gate: gate.name.clone(),
            params,
            reason,
            ticket,
            requester: who.clone(),
            duration_secs,
            digest,
            state: if auto {
                State::Approved
            } else {
                State::Pending
            },
            approval: auto.then_some(ApprovalPath::AutoApproved),
            version: 1,
            created_at: now,
            expires_at: now + gate.pending_ttl,
            decided_at: auto.then_some(now),
            updated_at: now,
            decisions: Vec::new(),
        };
        let mut outbox = self.announce("request.created", &request, now);
        if auto {
            outbox.extend(self.announce("request.approved", &request, now));
        }
        self.store
            .insert_request(&request, &events, &outbox)
            .await?;
        self.changed(&request);
        Ok(request)
    }

    /// Reads a request the caller may see: its requester, anyone who decided it, anyone
    /// eligible for one of its rules now, and audit readers. Others get `NotFound` (audited).
    #[tracing::instrument(skip_all, fields(request_id = %id))]
    pub async fn get(&self, who: &Principal, id: &RequestId) -> Result<Arc<Request>, EngineError> {
        let mut request = self
            .store
            .get_request(id)
            .await?
            .ok_or(EngineError::NotFound)?;
        if self.may_view(who, &request) {
            // A pending request past its time is expired whether or not the sweeper has come
            // by: record it now so every reader sees the same truth.
            let now = self.clock.now();
            if request.state == State::Pending
                && policy::effective_state(&request, now) == State::Expired
            {
                self.expire(&request, now).await?;
                request = self
                    .store
                    .get_request(id)
                    .await?
                    .ok_or(EngineError::NotFound)?;
            }
            Ok(request)
        } else {
            self.audit_refusal(
                who,
                "request.read",
                Some(&request),
                None,
                "not_visible",
                json!({}),
            )
            .await?;
            Err(EngineError::NotFound)
        }
    }

    /// Reads a request for an action by `who`: one they may not see does not exist for them
    /// (404, audited), so ids of other people's requests reveal nothing.
    async fn visible(
        &self,
        who: &Principal,
        id: &RequestId,
        attempted: &str,
    ) -> Result<Arc<Request>, EngineError> {
        let request = self
            .store
            .get_request(id)
            .await?
            .ok_or(EngineError::NotFound)?;
        if self.may_view(who, &request) {
            return Ok(request);
        }
        self.audit_refusal(
            who,
            attempted,
            Some(&request),
            None,
            "not_visible",
            json!({}),
        )
        .await?;
        Err(EngineError::NotFound)
    }

    fn may_view(&self, who: &Principal, request: &Request) -> bool {
        took_part(who, request)
            || self.is_audit_reader(who)
            || self.may_view_as_approver(&policy::Approver::new(who, self.clock.now()), request)
    }

    /// Whether `who` is eligible for one of the request's rules now (and so may see it).
    fn may_view_as_approver(&self, who: &policy::Approver<'_>, request: &Request) -> bool {
        let Some(gate) = self.gates.get(&request.gate) else {
            return false;
        };
        who.principal().kind == PrincipalKind::Human
            && who.checks(gate, request).iter().any(|c| c.eligible)
    }

    /// Records a refused operator action (an authorization failure outside a request).
    pub async fn record_denial(
        &self,
        who: &Principal,
        attempted: &str,
        code: &str,
    ) -> Result<(), EngineError> {
        self.audit_refusal(who, attempted, None, None, code, json!({}))
            .await
    }

    /// Records an operator action, e.g. a manual webhook retry.
    pub async fn record_operator_action(
        &self,
        who: &Principal,
        action: &str,
        detail: Value,
    ) -> Result<(), EngineError> {
        let event = NewAuditEvent {
            at: self.clock.now(),
            actor: Actor::from(&who.identity),
            action: action.to_string(),
            request_id: None,
            digest: None,
            detail,
        };
        Ok(self.store.append_audit(&[event]).await?)
    }

    /// Whether `who` holds the audit reader (operator) role.
    pub fn is_audit_reader(&self, who: &Principal) -> bool {
        self.audit_readers.as_ref().is_some_and(|c| {
            c.evaluate(&[("principal", &who.to_condition_value())])
                .value
        })
    }

    /// Whether `who` could decide `request` right now (the inbox test).
    pub fn can_decide_now(&self, who: &Principal, request: &Request) -> bool {
        self.may_approve(&policy::Approver::new(who, self.clock.now()), request)
    }

    /// [`Self::can_decide_now`] for an approver prepared once (the inbox checks many requests).
    fn may_approve(&self, who: &policy::Approver<'_>, request: &Request) -> bool {
        self.gates
            .get(&request.gate)
            .is_some_and(|gate| who.may_approve(gate, request))
    }

    /// Approves or rejects. The digest must be the one the approver was shown.
    #[tracing::instrument(skip_all, fields(request_id = %id, approver = %who.identity, verdict = verdict.as_str()))]
    pub async fn decide(
        &self,
        who: &Principal,
        id: &RequestId,
        verdict: Verdict,
        digest: &Digest,
        comment: Option<String>,
    ) -> Result<Request, EngineError> {
        let comment = text_field("comment", comment, Requirement::Optional, MAX_COMMENT, true)?;
        for _ in 0..MAX_ATTEMPTS {
            let request = self
                .visible(who, id, &format!("decision.{}", verdict.as_str()))
                .await?;
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
            let decided = match policy::decide(&gate, &request, permit, digest, comment.clone()) {
                Ok(d) => d,
                Err(policy::DigestRefusal) => {
                    self.audit_refusal(
                        who,
                        &format!("decision.{}", verdict.as_str()),
                        Some(&request),
                        None,
                        "digest_mismatch",
                        json!({"posted_digest": digest.to_string()}),
                    )
                    .await?;
                    return Err(EngineError::DigestMismatch);
                }
            };
            let mut decided = decided;
            if decided.request.state != State::Pending {
                let event = format!("request.{}", decided.request.state.as_str());
                decided.transition.outbox = self.announce(&event, &decided.request, now);
            }
            match self.store.apply(&decided.transition).await {
                Ok(()) => {
                    self.changed(&decided.request);
                    return Ok(decided.request);
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Duplicate(_)) => return Err(EngineError::AlreadyDecided),
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Busy)
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
            let eligible = who.kind == PrincipalKind::Human
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
        let action = format!("request.{}", target.as_str());
        for _ in 0..MAX_ATTEMPTS {
            let request = self.visible(who, id, &action).await?;
            if let Err(e) = authorize(self, &request) {
                self.audit_refusal(who, &action, Some(&request), None, e.code(), json!({}))
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
            let transition = Transition {
                request_id: request.id,
                expected_version: request.version,
                state: target,
                approval: request.approval,
                decided_at: request.decided_at.or(Some(now)),
                at: now,
                decision: None,
                events: vec![NewAuditEvent {
                    at: now,
                    actor: Actor::from(&who.identity),
                    action: action.clone(),
                    request_id: Some(request.id),
                    digest: Some(request.digest.clone()),
                    detail: json!({"gate": request.gate, "reason": reason}),
                }],
                outbox: Vec::new(),
            };
            let mut transition = transition;
            let next = transition.apply_to(Arc::unwrap_or_clone(request));
            transition.outbox = self.announce(&action, &next, now);
            match self.store.apply(&transition).await {
                Ok(()) => {
                    self.changed(&next);
                    return Ok(next);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Busy)
    }

    /// Records the expiry of a pending request past its time. Losing the race to another
    /// writer is fine: whoever won decided the request first.
    async fn expire(&self, request: &Request, now: Timestamp) -> Result<bool, EngineError> {
        let transition = Transition {
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
                action: "request.expired".into(),
                request_id: Some(request.id),
                digest: Some(request.digest.clone()),
                detail: json!({"gate": request.gate, "expires_at": crate::time::rfc3339(&request.expires_at)}),
            }],
            outbox: Vec::new(),
        };
        let mut transition = transition;
        let next = transition.apply_to(request.clone());
        transition.outbox = self.announce("request.expired", &next, now);
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

    /// A page of requests the caller may see, filtered by role.
    pub async fn list(&self, who: &Principal, query: ListRequests) -> Result<Page, EngineError> {
        let limit = query.limit.unwrap_or(50).clamp(1, 200);
        if let Some(gate) = &query.gate
            && self.gates.get(gate).is_none()
        {
            return Err(EngineError::UnknownGate(clip(gate)));
        }
        let mut filter = RequestFilter {
            state: query.state,
            gate: query.gate.clone(),
            requester: None,
            after: query.cursor,
            order: Order::OldestFirst,
            limit,
        };
        match query.role {
            Some(Role::Requester) => {
                filter.requester = Some(who.identity.clone());
                filter.order = Order::NewestFirst;
            }
            Some(Role::Approver) => {
                if query.state.is_some_and(|s| s != State::Pending) {
                    return Ok(Page {
                        items: Vec::new(),
                        next_cursor: None,
                    });
                }
                filter.state = Some(State::Pending);
            }
            None => filter.order = Order::NewestFirst,
        }
        // The caller's condition value, the time and the audit reader role are the same for
        // every request of the page: work them out once.
        let viewer = policy::Approver::new(who, self.clock.now());
        let audit_reader = query.role.is_none() && self.is_audit_reader(who);
        let mut items = Vec::new();
        // Filtering happens after reading, so scan a bounded number of rows per page. Batches
        // are sized to what the page still needs (rows are not cheap to read and decode), so
        // where the end of the scan, and so the cursor, falls does not depend on them.
        let mut budget = LIST_SCAN_ROWS;
        let mut scanned = 0u32;
        while budget > 0 {
            filter.limit = filter.limit.min(budget);
            let batch = self.store.list_requests(&filter).await?;
            let exhausted = (batch.len() as u32) < filter.limit;
            budget -= filter.limit;
            let kept_before = items.len() as u32;
            for request in batch {
                scanned += 1;
                filter.after = Some(request.id);
                let keep = match query.role {
                    Some(Role::Requester) => true,
                    Some(Role::Approver) => self.may_approve(&viewer, &request),
                    None => {
                        took_part(who, &request)
                            || audit_reader
                            || self.may_view_as_approver(&viewer, &request)
                    }
                };
                if keep {
                    items.push(request);
                    if items.len() as u32 == limit {
                        return Ok(Page {
                            items,
                            next_cursor: filter.after,
                        });
                    }
                }
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            let kept = items.len() as u32;
            filter.limit = next_batch(
                limit - kept,
                kept,
                scanned,
                filter.limit,
                kept - kept_before,
            );
        }
        Ok(Page {
            items,
            next_cursor: filter.after,
        })
    }

    /// Every gate with what `who` may do with it.
    pub fn gate_access(&self, who: &Principal) -> Vec<GateAccess> {
        let now = self.clock.now();
        self.gates
            .iter()
            .map(|gate| {
                let content = content_value(
                    &gate.name,
                    &BTreeMap::new(),
                    None,
                    None,
                    gate.grant.ttl.num_seconds(),
                    who,
                );
                let can_request = policy::may_request(gate, who, &content, now).value;
                let can_approve = who.kind == PrincipalKind::Human && {
                    let approver = who.to_condition_value();
                    let now_v = Value::String(crate::time::rfc3339(&now));
                    let bindings = crate::condition::Bindings::new(&[
                        ("approver", &approver),
                        ("request", &content),
                        ("now", &now_v),
                    ]);
                    gate.rules
                        .iter()
                        .any(|r| r.approvers.evaluate_with(&bindings).value)
                };
                GateAccess {
                    gate: gate.clone(),
                    can_request,
                    can_approve,
                }
            })
            .collect()
    }

    /// Audit events: of one request, for whoever may see that request; of everything, for
    /// audit readers only.
    pub async fn audit(
        &self,
        who: &Principal,
        query: AuditQuery,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        let query = AuditQuery {
            limit: query.limit.clamp(1, 1000),
            ..query
        };
        if !self.is_audit_reader(who) {
            match &query.request_id {
                Some(id) => {
                    self.get(who, id).await?;
                }
                None => {
                    self.audit_refusal(who, "audit.read", None, None, "not_allowed", json!({}))
                        .await?;
                    return Err(EngineError::forbidden(
                        "not_allowed",
                        "reading the whole audit log needs the audit reader role; ask for one request's trail with request_id",
                    ));
                }
            }
        }
        Ok(self.store.audit_events(&query).await?)
    }

    /// Records a failed authentication (an unverifiable bearer token, say). `detail` must not
    /// contain the credential.
    pub async fn record_auth_failure(
        &self,
        reason: &str,
        detail: Value,
    ) -> Result<(), EngineError> {
        let event = NewAuditEvent {
            at: self.clock.now(),
            actor: Actor::anonymous(),
            action: "auth.failed".into(),
            request_id: None,
            digest: None,
            detail: json!({"reason": reason, "detail": detail}),
        };
        Ok(self.store.append_audit(&[event]).await?)
    }

    async fn audit_refusal(
        &self,
        who: &Principal,
        attempted: &str,
        request: Option<&Request>,
        rule: Option<&str>,
        code: &str,
        extra: Value,
    ) -> Result<(), EngineError> {
        let event = NewAuditEvent {
            at: self.clock.now(),
            actor: Actor::from(&who.identity),
            action: "access.denied".into(),
            request_id: request.map(|r| r.id),
            digest: request.map(|r| r.digest.clone()),
            detail: json!({"attempted": attempted, "reason": code, "rule": rule, "detail": extra}),
        };
        Ok(self.store.append_audit(&[event]).await?)
    }

    fn gate_of(&self, request: &Request) -> Result<Arc<Gate>, EngineError> {
        self.gates.get(&request.gate).cloned().ok_or_else(|| {
            EngineError::invalid(
                "gate_removed",
                format!(
                    "gate '{}' is no longer configured; the request cannot be decided",
                    request.gate
                ),
            )
        })
    }

    /// Webhook messages announcing `event` about `request` (as it is after the change), one
    /// per subscribed webhook of its gate.
    fn announce(&self, event: &str, request: &Request, at: Timestamp) -> Vec<OutboxMessage> {
        let Some(gate) = self.gates.get(&request.gate) else {
            return Vec::new();
        };
        if !gate
            .webhooks
            .iter()
            .any(|w| w.events.iter().any(|e| e == event))
        {
            return Vec::new();
        }
        let evaluation = policy::evaluate(&gate.rules, &request.decisions);
        let data = crate::view::request(request, Some(&evaluation));
        outbox_for(gate, event, request, &data, at)
    }

    /// Issues a grant token for an approved request: only to its requester, only inside the
    /// approved window, only while the requester may still request the gate (claims as they
    /// are now). The grant and its audit event are stored — atomically with a check that the
    /// request is still approved at the version read, and for single-use gates that no grant
    /// was issued before — before the token is returned: no event, no token.
    #[tracing::instrument(skip_all, fields(request_id = %id))]
    pub async fn issue_grant(
        &self,
        who: &Principal,
        id: &RequestId,
        signer: &dyn GrantSigner,
    ) -> Result<IssuedGrant, EngineError> {
        for _ in 0..MAX_ATTEMPTS {
            let request = self.get(who, id).await?;
            if request.requester.identity != who.identity {
                self.audit_refusal(
                    who,
                    "grant.issue",
                    Some(&request),
                    None,
                    "not_requester",
                    json!({}),
                )
                .await?;
                return Err(EngineError::forbidden(
                    "not_allowed",
                    "only the requester can obtain the grant token",
                ));
            }
            if request.state != State::Approved {
                return Err(EngineError::GrantUnavailable(format!(
                    "the request is {}; a grant token needs an approved request",
                    request.state
                )));
            }
            let gate = self.gate_of(&request)?;
            let now = self.clock.now();
            let end = window_end(&gate, &request).unwrap_or(now);
            if now >= end {
                return Err(EngineError::GrantUnavailable(format!(
                    "the approved window ended at {}",
                    crate::time::rfc3339(&end)
                )));
            }
            let content = content_value(
                &gate.name,
                &request.params,
                request.reason.as_deref(),
                request.ticket.as_deref(),
                request.duration_secs,
                who,
            );
            let still = policy::may_request(&gate, who, &content, now);
            if !still.value {
                self.audit_refusal(
                    who,
                    "grant.issue",
                    Some(&request),
                    None,
                    "not_allowed",
                    json!({"condition_error": still.error}),
                )
                .await?;
                return Err(EngineError::forbidden(
                    "not_allowed",
                    format!("you may no longer request '{}'", gate.name),
                ));
            }
            let jti = grant_id(now);
            let client_id = ["client_id", "azp"]
                .iter()
                .find_map(|c| who.claims.get(*c).and_then(Value::as_str))
                .unwrap_or(&who.identity.subject)
                .to_string();
            let evaluation = policy::evaluate(&gate.rules, &request.decisions);
            let claims = grant_claims(&gate, &request, &evaluation, &jti, &client_id, now);
            let (token, kid) = signer.sign(&claims).await.map_err(EngineError::Signing)?;
            let grant = GrantRecord {
                jti: jti.clone(),
                request_id: request.id,
                kid: kid.clone(),
                issued_at: now,
                expires_at: end,
                revoked_at: None,
            };
            let events = [NewAuditEvent {
                at: now,
                actor: Actor::from(&who.identity),
                action: "grant.issued".into(),
                request_id: Some(request.id),
                digest: Some(request.digest.clone()),
                detail: json!({
                    "jti": jti,
                    "kid": kid,
                    "audience": gate.grant.audience,
                    "scope": claims["scope"],
                    "expires_at": crate::time::rfc3339(&end),
                    "single_use": gate.grant.single_use,
                }),
            }];
            let outbox = self.announce("grant.redeemed", &request, now);
            match self
                .store
                .insert_grant(
                    &grant,
                    request.version,
                    gate.grant.single_use,
                    &events,
                    &outbox,
                )
                .await
            {
                Ok(()) => {
                    return Ok(IssuedGrant {
                        token,
                        jti,
                        expires_at: end,
                        request,
                    });
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Duplicate(_)) => {
                    self.audit_refusal(
                        who,
                        "grant.issue",
                        Some(&request),
                        None,
                        "already_redeemed",
                        json!({}),
                    )
                    .await?;
                    return Err(EngineError::AlreadyRedeemed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Busy)
    }

    /// A grant and its request, for introspection by a resource server.
    pub async fn grant_status(
        &self,
        jti: &str,
    ) -> Result<Option<(GrantRecord, Arc<Request>)>, EngineError> {
        let Some(grant) = self.store.get_grant(jti).await? else {
            return Ok(None);
        };
        let request = self.store.get_request(&grant.request_id).await?;
        Ok(request.map(|r| (grant, r)))
    }

    /// Revokes one grant token (RFC 7009). Revoking twice changes nothing.
    pub async fn revoke_grant(&self, actor: Actor, jti: &str) -> Result<bool, EngineError> {
        let Some(grant) = self.store.get_grant(jti).await? else {
            return Ok(false);
        };
        let now = self.clock.now();
        let events = [NewAuditEvent {
            at: now,
            actor,
            action: "grant.revoked".into(),
            request_id: Some(grant.request_id),
            digest: None,
            detail: json!({"jti": jti}),
        }];
        Ok(self.store.revoke_grant(jti, now, &events).await?)
    }

    fn changed(&self, request: &Request) {
        if let Some(l) = &self.listener {
            l.request_changed(&request.id, request.version);
        }
    }
}

/// A fresh grant id issued at `now`: 32 hex digits, the millisecond in the first 12 and 80
/// random bits after. Ids issued close together sort close together, so the grants index
/// takes each new one near the last instead of on a random page.
fn grant_id(now: Timestamp) -> String {
    let ms = u128::from(u64::try_from(now.timestamp_millis()).unwrap_or(0) & 0xffff_ffff_ffff);
    let random = rand::random::<u128>() >> 48;
    format!("{:032x}", (ms << 80) | random)
}

/// Whether `who` made the request (under any identity of theirs) or decided it.
fn took_part(who: &Principal, request: &Request) -> bool {
    request.requester.same_person_as(who)
        || request
            .decisions
            .iter()
            .any(|d| d.approver.identity == who.identity)
}

/// The size of the next batch a listing reads, when `wanted` more items are needed, `kept` of
/// the `scanned` rows so far passed the filter, and the batch just read was `last` rows long
/// and added `last_kept` of them: what the rate so far says the page still needs, with a
/// quarter more for luck; at least `wanted` and [`LIST_BATCH_MIN`], and at least twice `last`
/// after a batch that added nothing (so a long run of hidden rows costs few reads); at most
/// [`LIST_BATCH_MAX`] (or `wanted`, when that is more).
fn next_batch(wanted: u32, kept: u32, scanned: u32, last: u32, last_kept: u32) -> u32 {
    let estimate = if kept == 0 {
        u64::from(scanned) * 2
    } else {
        u64::from(wanted) * u64::from(scanned) / u64::from(kept)
    };
    let estimate = u32::try_from(estimate + estimate / 4).unwrap_or(u32::MAX);
    let most = LIST_BATCH_MAX.max(wanted);
    let mut least = wanted.max(LIST_BATCH_MIN);
    if last_kept == 0 {
        least = least.max(last.saturating_mul(2));
    }
    estimate.clamp(least.min(most), most)
}

/// Validates supplied parameters against the gate: no unknown names, every required one
/// present, each value of its type.
fn validate_params(
    gate: &Gate,
    supplied: &Map<String, Value>,
) -> Result<BTreeMap<String, Value>, EngineError> {
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for name in supplied.keys() {
        if !gate.params.contains_key(name) {
            let known: Vec<&str> = gate.params.keys().map(String::as_str).collect();
            problems.push(format!(
                "unknown parameter '{}' (this gate takes: {})",
                clip(name),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    for (name, spec) in &gate.params {
        match supplied.get(name) {
            None | Some(Value::Null) => {
                if spec.required {
                    problems.push(format!("parameter '{name}' is required"));
                }
            }
            Some(v) => match spec.validate(v) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(m) => problems.push(m),
            },
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(EngineError::invalid("invalid_params", problems.join("; ")))
    }
}

/// Normalizes a free-text field: trims, treats blank as absent, enforces the requirement,
/// the length and the absence of control characters (newlines and tabs allowed where
/// `multiline`).
fn text_field(
    name: &str,
    value: Option<String>,
    requirement: Requirement,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, EngineError> {
    let value = value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let code = if name == "reason" {
        "reason_required"
    } else {
        "invalid_input"
    };
    match value {
        None if requirement == Requirement::Required => Err(EngineError::invalid(
            code,
            format!("a {name} is required for this gate"),
        )),
        None => Ok(None),
        Some(v) if v.chars().count() > max => Err(EngineError::invalid(
            "invalid_input",
            format!("the {name} is longer than {max} characters"),
        )),
        Some(v)
            if v.chars()
                .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t'))) =>
        {
            Err(EngineError::invalid(
                "invalid_input",
                format!("the {name} contains a control character"),
            ))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// Shortens user-supplied text before echoing it in an error.
fn clip(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_batches_follow_what_the_page_still_needs() {
        // Everything kept so far: what is missing and a little more, but not a trickle.
        assert_eq!(next_batch(10, 40, 40, 50, 40), 20);
        assert_eq!(next_batch(30, 20, 20, 50, 20), 37);
        // Half kept: twice what is missing, and a quarter more.
        assert_eq!(next_batch(25, 25, 50, 50, 25), 62);
        // Nothing kept yet, or a rare match: bounded.
        assert_eq!(next_batch(50, 0, 50, 50, 0), LIST_BATCH_MAX);
        assert_eq!(next_batch(49, 1, 1900, 100, 0), LIST_BATCH_MAX);
        // A batch that added nothing: the next one is at least twice as long.
        assert_eq!(next_batch(1, 49, 70, 20, 0), 40);
        assert_eq!(next_batch(1, 49, 110, 40, 0), 80);
        // Never less than what is missing, even above the usual bound.
        assert_eq!(next_batch(150, 50, 50, 200, 50), 150);
        assert_eq!(next_batch(199, 1, 1, 200, 1), 199);
    }

    #[test]
    fn grant_ids_sort_by_issue_time_and_do_not_repeat() {
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let ids: Vec<String> = [1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000]
            .into_iter()
            .flat_map(|ms| [grant_id(at(ms)), grant_id(at(ms))])
            .collect();
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        // The millisecond leads: ids of a later millisecond sort after.
        assert_eq!(&ids[0][..12], &format!("{:012x}", 1_700_000_000_000_u64));
        for pair in [0, 2] {
            let (earlier, later) = (&ids[pair..pair + 2], &ids[pair + 2..pair + 4]);
            assert!(earlier.iter().max() < later.iter().min());
        }
        // The random 80 bits keep two of one millisecond apart.
        assert_ne!(ids[0], ids[1]);
    }
}
