//! Ports: what the engine needs from the outside world. Adapters implement them (the store
//! crate for storage, the server for the clock and change notifications); tests implement
//! them with plain values.

use async_trait::async_trait;

use crate::audit::{AuditEvent, NewAuditEvent};
use crate::ids::RequestId;
use crate::principal::Identity;
use crate::request::{ApprovalPath, Decision, Request, State};
use crate::time::Timestamp;

/// The only source of "now" the domain uses.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant, truncated to milliseconds.
    fn now(&self) -> Timestamp;
}

/// A clock that stands still until moved: for tests.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<Timestamp>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(std::sync::Mutex::new(crate::time::truncate(start)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = crate::time::truncate(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Told after every committed change to a request, so waiters can wake up.
pub trait ChangeListener: Send + Sync {
    /// `id` now has `version`.
    fn request_changed(&self, id: &RequestId, version: i64);
}

/// A change to one request, applied only if the stored version is still `expected_version`.
/// The store writes the new state, the new decision and the audit events in one transaction,
/// and sets the version to `expected_version + 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The request.
    pub request_id: RequestId,
    /// The version the change was computed from.
    pub expected_version: i64,
    /// The state after the change (may equal the current one, e.g. a decision that leaves the
    /// request pending).
    pub state: State,
    /// How it was approved, when `state` is approved.
    pub approval: Option<ApprovalPath>,
    /// Set when the request leaves `pending`.
    pub decided_at: Option<Timestamp>,
    /// When the change happened.
    pub at: Timestamp,
    /// A decision to record (unique per request and approver identity).
    pub decision: Option<Decision>,
    /// Audit events, appended to the chain in the same transaction.
    pub events: Vec<NewAuditEvent>,
}

/// Which end of the id order to start from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (ascending id).
    #[default]
    OldestFirst,
    /// Newest first (descending id).
    NewestFirst,
}

/// A page of requests to read. Results are ordered by id (ids are time-ordered).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestFilter {
    /// Only requests in this state.
    pub state: Option<State>,
    /// Only requests for this gate.
    pub gate: Option<String>,
    /// Only requests made by this identity.
    pub requester: Option<Identity>,
    /// Start after this id (exclusive), in the chosen order.
    pub after: Option<RequestId>,
    /// Direction.
    pub order: Order,
    /// At most this many (the store may cap it).
    pub limit: u32,
}

/// Which audit events to read, ascending by `seq`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditQuery {
    /// Only events about this request.
    pub request_id: Option<RequestId>,
    /// Only events with a greater sequence number.
    pub after_seq: i64,
    /// At most this many.
    pub limit: u32,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request's version is no longer the expected one: someone else changed it first.
    #[error("the request changed concurrently")]
    Conflict,
    /// A unique constraint refused the write (e.g. a second decision by the same approver).
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// The request does not exist.
    #[error("no such request")]
    NotFound,
    /// The database failed, or returned something unreadable.
    #[error("storage failure: {0}")]
    Backend(String),
}

/// Durable storage of requests, decisions and the audit chain.
///
/// Every write that changes a request also appends its audit events in the same transaction:
/// no event, no change.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores a new request (with no decisions) and its events.
    async fn insert_request(
        &self,
        request: &Request,
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError>;

    /// Reads a request with its decisions, oldest first.
    async fn get_request(&self, id: &RequestId) -> Result<Option<Request>, StoreError>;

    /// Applies a transition as a compare-and-set on `(request_id, expected_version)`.
    /// Returns [`StoreError::Conflict`] when the version moved, and changes nothing then.
    async fn apply(&self, transition: &Transition) -> Result<(), StoreError>;

    /// Reads a page of requests (with their decisions).
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError>;

    /// Ids of pending requests whose `expires_at` is at or before `now`, oldest first.
    async fn due_for_expiry(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError>;

    /// Appends events that change no request (e.g. a refused authorization).
    async fn append_audit(&self, events: &[NewAuditEvent]) -> Result<(), StoreError>;

    /// Reads audit events.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
