//! Reading requests: one by id for whoever may see it, pages of them by role, and what a
//! principal may do with each gate.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Engine;
use super::create::clip;
use crate::error::EngineError;
use crate::gate::Gate;
use crate::ids::RequestId;
use crate::policy;
use crate::ports::{Order, RequestFilter};
use crate::principal::{Principal, PrincipalKind};
use crate::request::{Request, State, content_value};

/// Most rows one page of [`Engine::list`] reads before it stops and returns a cursor.
const LIST_SCAN_ROWS: u32 = 2000;
/// Largest batch [`Engine::list`] asks the store for after the first.
const LIST_BATCH_MAX: u32 = 100;
/// Smallest batch [`Engine::list`] asks the store for after the first.
const LIST_BATCH_MIN: u32 = 20;

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

impl Engine {
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
    pub(super) async fn visible(
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
    pub(super) fn may_view_as_approver(
        &self,
        who: &policy::Approver<'_>,
        request: &Request,
    ) -> bool {
        let Some(gate) = self.gates.get(&request.gate) else {
            return false;
        };
        who.principal().kind() == PrincipalKind::Human
            && who.checks(gate, request).iter().any(|c| c.eligible)
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
                filter.requester = Some(who.identity().clone());
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
                let can_approve = who.kind() == PrincipalKind::Human && {
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
}

/// Whether `who` made the request (under any identity of theirs) or decided it.
pub(super) fn took_part(who: &Principal, request: &Request) -> bool {
    request.requester.same_person_as(who)
        || request
            .decisions
            .iter()
            .any(|d| d.approver.identity() == who.identity())
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
}
