//! Ports: what the engine needs from the outside world. Adapters implement them (the store
//! crate for storage, the server for the clock and change notifications); tests implement
//! them with plain values.

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditEvent, ChainLink, NewAuditEvent};
use crate::grant::{Delivery, DeliveryState, GrantRecord, OutboxMessage, SigningKeyRecord};
use crate::ids::RequestId;
use crate::notice::{
    NoticeMessage, NoticeOutcome, NoticeState, NoticeThread, Person, QueuedNotice,
};
use crate::principal::{Identity, Principal};
use crate::request::{ApprovalPath, Decision, Request, State};
use crate::secret::Secret;
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
///
/// Only the core builds one — [`crate::policy::decide`] for a permitted decision, the engine
/// for a cancellation, revocation or expiry it checked — so a change the checks did not
/// admit cannot reach the store, which reads it through the accessors.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    parts: TransitionParts,
    notices: Vec<NoticeMessage>,
}

/// What a [`Transition`] is made of. Outside the core, only tests of a store assemble a
/// transition from its parts (with [`Transition::from_parts`], behind the `testing`
/// feature), for changes no use case would make.
#[derive(Clone, Debug, PartialEq)]
pub struct TransitionParts {
    /// The request.
    pub request_id: RequestId,
    /// The version the change was computed from.
    pub expected_version: i64,
    /// The state after the change (may equal the current one, e.g. a decision that leaves the
    /// request pending).
    pub state: State,
    /// How it was approved, when `state` is approved; unset, the stored one is kept.
    pub approval: Option<ApprovalPath>,
    /// Set when the request leaves `pending`; unset, the stored one is kept.
    pub decided_at: Option<Timestamp>,
    /// When the change happened.
    pub at: Timestamp,
    /// A decision to record (unique per request and approver identity).
    pub decision: Option<Decision>,
    /// Audit events, appended to the chain in the same transaction.
    pub events: Vec<NewAuditEvent>,
    /// Webhook messages, written to the outbox in the same transaction.
    pub outbox: Vec<OutboxMessage>,
}

impl Transition {
    /// A transition the core checked (the only constructor outside tests).
    pub(crate) fn checked(parts: TransitionParts) -> Self {
        Self {
            parts,
            notices: Vec::new(),
        }
    }

    /// Notifications to write with the change, once the request after it is known.
    pub(crate) fn set_notices(&mut self, notices: Vec<NoticeMessage>) {
        self.notices = notices;
    }

    /// Notifications, written to the notification outbox in the same transaction.
    pub fn notices(&self) -> &[NoticeMessage] {
        &self.notices
    }

    /// Webhook messages to write with the change, once the request after it is known.
    pub(crate) fn set_outbox(&mut self, outbox: Vec<OutboxMessage>) {
        self.parts.outbox = outbox;
    }

    /// A transition from its parts, unchecked: for tests of a store only.
    #[cfg(any(test, feature = "testing"))]
    pub fn from_parts(parts: TransitionParts) -> Self {
        Self::checked(parts)
    }

    /// The parts, to change for a test.
    #[cfg(any(test, feature = "testing"))]
    pub fn testing_mut(&mut self) -> &mut TransitionParts {
        &mut self.parts
    }

    /// The same transition with these notifications: for tests of a store only.
    #[cfg(any(test, feature = "testing"))]
    pub fn with_notices(mut self, notices: Vec<NoticeMessage>) -> Self {
        self.notices = notices;
        self
    }
}

impl Transition {
    /// The request.
    pub fn request_id(&self) -> RequestId {
        self.parts.request_id
    }

    /// The version the change was computed from; the store applies it only if the stored
    /// version is still this one.
    pub fn expected_version(&self) -> i64 {
        self.parts.expected_version
    }

    /// The state after the change (may equal the current one, e.g. a decision that leaves the
    /// request pending).
    pub fn state(&self) -> State {
        self.parts.state
    }

    /// How it was approved, when the state is approved; `None`: the stored one is kept.
    pub fn approval(&self) -> Option<ApprovalPath> {
        self.parts.approval
    }

    /// When the request left `pending`, set by the change that made it leave; `None`: the
    /// stored one is kept.
    pub fn decided_at(&self) -> Option<Timestamp> {
        self.parts.decided_at
    }

    /// When the change happened.
    pub fn at(&self) -> Timestamp {
        self.parts.at
    }

    /// A decision to record (unique per request and approver identity).
    pub fn decision(&self) -> Option<&Decision> {
        self.parts.decision.as_ref()
    }

    /// Audit events, appended to the chain in the same transaction.
    pub fn events(&self) -> &[NewAuditEvent] {
        &self.parts.events
    }

    /// Webhook messages, written to the outbox in the same transaction.
    pub fn outbox(&self) -> &[OutboxMessage] {
        &self.parts.outbox
    }

    /// `request` (read at `expected_version`) as it is once this change is stored: what the
    /// store reads back after it. How and when the request was decided are kept when the
    /// change leaves them unset (approved, then revoked, stays approved by quorum).
    pub fn apply_to(&self, mut request: Request) -> Request {
        request.state = self.parts.state;
        request.approval = self.parts.approval.or(request.approval);
        request.decided_at = self.parts.decided_at.or(request.decided_at);
        request.updated_at = self.parts.at;
        request.version = self.parts.expected_version + 1;
        if let Some(d) = &self.parts.decision {
            request.decisions.push(d.clone());
        }
        request
    }
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

/// What happened to one delivery attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx: done.
    Delivered,
    /// Try again at `next_attempt_at`.
    Retry {
        /// When.
        next_attempt_at: Timestamp,
        /// What went wrong (status code or transport error; never a secret).
        error: String,
    },
    /// Give up: the delivery is `failed` until retried by hand.
    Failed {
        /// What went wrong last.
        error: String,
    },
}

/// Signs grant tokens. Implemented by the tokens adapter over the stored keys.
#[async_trait]
pub trait GrantSigner: Send + Sync + std::fmt::Debug {
    /// The `iss` of our tokens (the public URL).
    fn issuer(&self) -> &str;
    /// Adds `iss`, signs `claims` with the current key (header `typ: at+jwt`, `kid`), and
    /// returns the compact token and the key id.
    async fn sign(&self, claims: &serde_json::Value) -> Result<(String, String), SignError>;
}

/// Why a grant token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The claims handed to the signer are not a JSON object.
    #[error("grant claims must be a JSON object")]
    ClaimsNotAnObject,
    /// No key may sign now: none is published with its `signs_from` come, or none unseals.
    #[error("no signing key is usable now; rotate the signing key")]
    NoUsableKey,
    /// The key of the moment refused to sign.
    #[error("cannot sign with signing key {kid}")]
    Signature {
        /// The key's id.
        kid: String,
    },
    /// The keys could not be re-read from the store; the text says why.
    #[error("{0}")]
    Keys(String),
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
    #[error(transparent)]
    Backend(#[from] BackendFailure),
}

impl StoreError {
    /// A [`StoreError::Backend`] that says `what` failed, with no driver error behind it (a
    /// stored value that does not decode, a writer that stopped).
    pub fn backend(what: impl Into<String>) -> Self {
        Self::Backend(BackendFailure {
            what: what.into(),
            source: None,
        })
    }

    /// A [`StoreError::Backend`] that says `what` failed, in words safe to show a caller, and
    /// keeps the driver's own error as its source, for the log.
    pub fn backend_caused_by(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend(BackendFailure {
            what: what.into(),
            source: Some(source.into()),
        })
    }
}

/// A database failure: what failed and why, in general terms (never the SQL, the connection
/// URL or a stored value, since the text may reach an HTTP client), and the driver's error
/// behind it, which may say more and so goes to the log only.
#[derive(Debug, thiserror::Error)]
#[error("storage failure: {what}")]
pub struct BackendFailure {
    /// What failed and why, e.g. "reading a request: the database refused it (code 5)".
    what: String,
    /// The driver's error, when there is one.
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendFailure {
    /// What failed and why, without the "storage failure" prefix.
    pub fn what(&self) -> &str {
        &self.what
    }
}

/// Durable storage of requests, decisions and the audit chain.
///
/// Every write that changes a request also appends its audit events in the same transaction:
/// no event, no change.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores a new request (with no decisions), its events, its webhook messages and its
    /// notifications, in one transaction.
    async fn insert_request(
        &self,
        request: &Request,
        events: &[NewAuditEvent],
        outbox: &[OutboxMessage],
        notices: &[NoticeMessage],
    ) -> Result<(), StoreError>;

    /// Reads a request with its decisions, oldest first. The request is shared: a store that
    /// keeps requests in memory hands out the one it keeps, not a copy.
    async fn get_request(&self, id: &RequestId) -> Result<Option<Arc<Request>>, StoreError>;

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

    /// Reads the events [`Store::audit_events`] would, for a chain verifier: each one's place
    /// in the chain and whether its content still hashes to its stored hash. An event that
    /// cannot be read back is reported in its link, not as an error for the page.
    ///
    /// The default decodes the events and hashes them on every core; a backend that keeps
    /// the canonical text of each event's detail hashes it as stored instead
    /// ([`crate::audit::StoredEvent`]).
    async fn audit_links(&self, query: &AuditQuery) -> Result<Vec<ChainLink>, StoreError> {
        let events = self.audit_events(query).await?;
        Ok(crate::audit::links(&events))
    }

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The chain head as the store last wrote it: `(seq, hash)` of the newest event, `(0,
    /// GENESIS_HASH)` when there is none. Kept apart from the events, so deleting the newest
    /// events is visible to a verifier that compares its last event with this.
    async fn audit_head(&self) -> Result<(i64, String), StoreError>;

    // ---- grants ----

    /// Records an issued grant in one transaction with its events and outbox messages, only
    /// if the request is still `approved` at `request_version` (else `Conflict`, nothing
    /// written). With `single_use`, a second grant for the same request is refused with
    /// `Duplicate` (nothing written) — the atomic consume of a one-time grant.
    async fn insert_grant(
        &self,
        grant: &GrantRecord,
        request_version: i64,
        single_use: bool,
        events: &[NewAuditEvent],
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError>;

    /// The grant with this `jti`.
    async fn get_grant(&self, jti: &str) -> Result<Option<GrantRecord>, StoreError>;

    /// Marks a grant revoked (first revocation wins; later calls change nothing) and appends
    /// `events` in the same transaction when it changed. Returns whether it changed.
    async fn revoke_grant(
        &self,
        jti: &str,
        at: Timestamp,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError>;
}

/// Durable storage of signing keys (private parts sealed by the tokens adapter).
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;

    /// Adds a key and, in the same transaction, sets `publish_until` on the keys listed in
    /// `retire` (kid, until) and appends `events`.
    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire: &[(String, Timestamp)],
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError>;
}

/// The webhook outbox: deliveries written with the changes they announce, taken by workers.
#[async_trait]
pub trait OutboxStore: Send + Sync + std::fmt::Debug {
    /// Takes up to `limit` pending deliveries due at `now`, oldest first, and leases them
    /// until `now + lease` (their `next_attempt_at` moves there) so no other worker takes them
    /// meanwhile. With PostgreSQL the rows are claimed with `FOR UPDATE SKIP LOCKED`.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records an attempt's outcome (increments `attempts`).
    async fn record_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Lists deliveries, newest first, optionally by state, after a cursor id.
    async fn list_deliveries(
        &self,
        state: Option<DeliveryState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Moves a `failed` delivery back to `pending`, due at `now`, with its attempt count
    /// reset. Returns `false` when there is no failed delivery with that id.
    async fn retry_delivery(&self, id: &str, now: Timestamp) -> Result<bool, StoreError>;
}

/// The notification outbox (written with the changes it announces, taken by the delivery
/// worker) and the directory of people notifications are routed to.
#[async_trait]
pub trait NoticeStore: Send + Sync + std::fmt::Debug {
    /// Takes up to `limit` pending notifications due at `now`, oldest first, and leases them
    /// until `now + lease`. A notification is taken only when no earlier one (by due time) of
    /// the same request and thread is still pending, so each channel sees a request's
    /// messages in order, one at a time. With PostgreSQL the rows are claimed with
    /// `FOR UPDATE SKIP LOCKED`.
    async fn claim_notices(
        &self,
        now: Timestamp,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<QueuedNotice>, StoreError>;

    /// What the notification's thread (its request and channel, or the requester's own
    /// mail) has shown so far.
    async fn notice_thread(&self, notice: &NoticeMessage) -> Result<NoticeThread, StoreError>;

    /// Records an attempt's outcome (increments `attempts`); a sent one also records, in the
    /// same transaction, the version it showed and the thread reference it created.
    async fn record_notice(
        &self,
        notice: &NoticeMessage,
        outcome: &NoticeOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Puts a claimed notification back for `at` without counting an attempt (its channel's
    /// pace had no slot for it now).
    async fn defer_notice(&self, notice: &NoticeMessage, at: Timestamp) -> Result<(), StoreError>;

    /// Lists notifications, newest first, optionally by state, after a cursor id.
    async fn list_notices(
        &self,
        state: Option<NoticeState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QueuedNotice>, StoreError>;

    /// Moves a `failed` notification back to `pending`, due at `now`, its attempts reset.
    /// Returns `false` when there is no failed notification with that id.
    async fn retry_notice(&self, id: &str, now: Timestamp) -> Result<bool, StoreError>;

    /// Records that `principal` was seen at `at`, with their claims as verified now.
    async fn see_person(&self, principal: &Principal, at: Timestamp) -> Result<(), StoreError>;

    /// People seen at or after `since`, most recently seen first, at most `limit`.
    async fn people(&self, since: Timestamp, limit: u32) -> Result<Vec<Person>, StoreError>;
}

/// A browser login in flight: what the callback must match. Keyed by `state`; taken (read and
/// deleted) exactly once.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginTransaction {
    /// The `state` sent to the provider (CSPRNG, ≥ 128 bits).
    pub state: String,
    /// SHA-256 (hex) of the pre-login cookie that binds the login to one browser.
    pub browser_binding: String,
    /// The configured issuer name the user was sent to (for the RFC 9207 `iss` check).
    pub issuer: String,
    /// The `nonce` sent (checked in the ID token).
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: Secret,
    /// A local path to return to after login.
    pub return_to: String,
    /// The `max_age` sent, for a fresh-authentication login.
    pub max_age: Option<i64>,
    /// When it was started.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// A signed-in browser session, stored server-side. The cookie carries a random token; only
/// its SHA-256 is stored, so a database read does not yield usable session cookies.
#[derive(Clone, Debug, PartialEq)]
pub struct WebSession {
    /// SHA-256 (hex) of the session cookie's value.
    pub id_hash: String,
    /// Who is signed in, as verified at login (or at the last refresh).
    pub principal: Principal,
    /// The provider's session id (`sid` claim), for back-channel logout.
    pub sid: Option<String>,
    /// The ID token, for RP-initiated logout (`id_token_hint`).
    pub id_token: Option<Secret>,
    /// The provider's refresh token, sealed by the server (never sent to the browser).
    pub refresh_token: Option<Vec<u8>>,
    /// The per-session CSRF token embedded in forms.
    pub csrf_token: Secret,
    /// When the session started (absolute timeout).
    pub created_at: Timestamp,
    /// When it was last used (idle timeout).
    pub last_seen_at: Timestamp,
}

/// Browser logins in flight and signed-in sessions.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a login in flight.
    async fn insert_login(&self, login: &LoginTransaction) -> Result<(), StoreError>;

    /// Reads and deletes the login with this `state`, atomically: a second call returns `None`.
    async fn take_login(&self, state: &str) -> Result<Option<LoginTransaction>, StoreError>;

    /// Stores a new session.
    async fn insert_session(&self, session: &WebSession) -> Result<(), StoreError>;

    /// The session with this id hash.
    async fn get_session(&self, id_hash: &str) -> Result<Option<WebSession>, StoreError>;

    /// Updates `last_seen_at` (and, after a refresh, the principal and tokens).
    async fn update_session(&self, session: &WebSession) -> Result<(), StoreError>;

    /// Deletes one session. Returns whether it existed.
    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError>;

    /// Deletes every session of an identity at an issuer, optionally only those with the
    /// provider session id `sid` (back-channel logout). Returns how many.
    async fn delete_sessions(
        &self,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<u64, StoreError>;

    /// Deletes logins and sessions older than the given instants (housekeeping).
    async fn purge_sessions(
        &self,
        logins_before: Timestamp,
        sessions_idle_before: Timestamp,
    ) -> Result<u64, StoreError>;
}
