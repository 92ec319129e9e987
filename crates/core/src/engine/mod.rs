//! Use cases: create, read, list, decide, cancel, revoke, expire, issue grants, read the audit
//! log — one module per use case, over the [`Engine`] defined here.
//!
//! Each use case reads through the [`Store`] port, asks [`crate::policy`] what is allowed,
//! and writes one [`crate::ports::Transition`] as a compare-and-set; when another writer got
//! there first it reloads and decides again ([`Engine::retry`]), so concurrent callers can
//! never both win. Refused authorizations are audited.

mod audit;
mod create;
mod decide;
mod finish;
mod grants;
mod list;

use std::sync::Arc;

use crate::audit::AuditAction;
use crate::condition::Condition;
use crate::error::EngineError;
use crate::gate::{Gate, GateSet};
use crate::grant::{OutboxMessage, outbox_for};
use crate::notice::{self, NoticeMessage};
use crate::policy::{self, Evaluation};
use crate::ports::{ChangeListener, Clock, Store};
use crate::request::Request;
use crate::time::Timestamp;

pub use create::{MAX_COMMENT, MAX_REASON, MAX_TICKET, NewRequest};
pub use decide::DecidedRequest;
pub use grants::IssuedGrant;
pub use list::{GateAccess, ListRequests, Page, Role};

/// How many times a use case re-reads and retries after losing a compare-and-set.
const MAX_ATTEMPTS: usize = 16;

/// What one try of a compare-and-set use case came to.
enum Attempt<T> {
    /// It is done: the change was stored (or the use case ended without one).
    Done(T),
    /// Another writer changed the request first: read it again and retry.
    Lost,
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

    /// Runs `attempt` until it is done, at most [`MAX_ATTEMPTS`] times: each try reads the
    /// request afresh and writes with a compare-and-set, and a try that lost the race to
    /// another writer is tried again. Too many lost races end in [`EngineError::Busy`].
    ///
    /// A closure returning a future rather than an async closure: the future of an async
    /// closure cannot be shown to be `Send` for every lifetime, which the server needs.
    async fn retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Attempt<T>, EngineError>>,
    {
        for _ in 0..MAX_ATTEMPTS {
            if let Attempt::Done(done) = attempt().await? {
                return Ok(done);
            }
        }
        Err(EngineError::Busy)
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
    /// per subscribed webhook of its gate. `evaluation` is the request's rule standing when
    /// the caller has it already; it is worked out here otherwise, and only when a webhook
    /// listens.
    fn announce(
        &self,
        event: AuditAction,
        request: &Request,
        evaluation: Option<&Evaluation>,
        at: Timestamp,
    ) -> Vec<OutboxMessage> {
        let Some(gate) = self.gates.get(&request.gate) else {
            return Vec::new();
        };
        if !gate.webhooks.iter().any(|w| w.events.contains(&event)) {
            return Vec::new();
        }
        let computed;
        let evaluation = match evaluation {
            Some(e) => e,
            None => {
                computed = policy::evaluate(&gate.rules, &request.decisions);
                &computed
            }
        };
        let data = crate::view::request(request, Some(evaluation));
        outbox_for(gate, event, request, &data, at)
    }

    /// Notifications a new request sends (none when its gate notifies nobody).
    fn notices_on_create(
        &self,
        gate: &Gate,
        request: &Request,
        at: Timestamp,
    ) -> Vec<NoticeMessage> {
        if !gate.notifies() {
            return Vec::new();
        }
        let evaluation = policy::evaluate(&gate.rules, &request.decisions);
        notice::on_create(gate, request, &evaluation, at)
    }

    /// Notifications a change from `before` to `after` sends (none when the gate notifies
    /// nobody). `evaluation` is `after`'s standing when the caller has it.
    fn notices_on_change(
        &self,
        before: &Request,
        after: &Request,
        evaluation: Option<&Evaluation>,
        by_requester: bool,
        at: Timestamp,
    ) -> Vec<NoticeMessage> {
        let Some(gate) = self.gates.get(&after.gate).filter(|g| g.notifies()) else {
            return Vec::new();
        };
        let was = policy::evaluate(&gate.rules, &before.decisions);
        let computed;
        let now = match evaluation {
            Some(e) => e,
            None => {
                computed = policy::evaluate(&gate.rules, &after.decisions);
                &computed
            }
        };
        notice::on_change(gate, &was, after, now, by_requester, at)
    }

    fn changed(&self, request: &Request) {
        if let Some(l) = &self.listener {
            l.request_changed(&request.id, request.version);
        }
    }
}
