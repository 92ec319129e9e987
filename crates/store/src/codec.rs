//! Rows as both backends store them, and their conversion to and from the domain types.
//!
//! The two dialects share one row shape (TEXT, 64-bit integers, JSON as TEXT), so the
//! conversions live here once; each backend only moves these rows in and out of its database.

use std::borrow::Cow;
use std::collections::BTreeMap;

use countersign_core::audit::{Actor, AuditEvent, ChainLink, StoredEvent};
use countersign_core::grant::{
    Delivery, DeliveryState, GrantRecord, OutboxMessage, SigningKeyRecord,
};
use countersign_core::ports::{AttemptOutcome, LoginTransaction, WebSession};
use countersign_core::principal::StoredPrincipal;
use countersign_core::request::{ApprovalPath, Decision, Request, State, Verdict};
use countersign_core::secret::Secret;
use countersign_core::{Digest, Principal, RequestId, StoreError, Timestamp};
use serde_json::Value;
use sqlx::{ColumnIndex, Decode, Row, Type};

/// The columns of `requests`, in the order of [`crate::sql::INSERT_REQUEST`].
#[derive(Debug)]
pub(crate) struct RequestRow {
    pub id: String,
    pub gate: String,
    pub state: String,
    pub approval: Option<String>,
    pub version: i64,
    pub params: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub requester: String,
    pub requester_issuer: String,
    pub requester_subject: String,
    pub duration_secs: i64,
    pub digest: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub updated_at: i64,
}

/// The columns of `decisions`, in the order of [`crate::sql::INSERT_DECISION`] (the ordinal is
/// computed in SQL). SQLite also hands them over as JSON objects with these names (see
/// [`crate::sql::SQLITE_DECISIONS_JSON`]).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DecisionRow {
    pub request_id: String,
    pub approver_issuer: String,
    pub approver_subject: String,
    pub approver: String,
    pub verdict: String,
    pub comment: Option<String>,
    pub digest: String,
    pub at: i64,
    pub eligible_rules: String,
}

/// The columns of `audit_events`, in the order of [`crate::sql::INSERT_EVENT`].
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EventRow {
    pub seq: i64,
    pub at: i64,
    pub actor_issuer: String,
    pub actor_subject: String,
    pub action: String,
    pub request_id: Option<String>,
    pub digest: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// An [`EventRow`] borrowed, from a page of events SQLite hands over as JSON (see
/// [`crate::sql::SQLITE_EVENTS_JSON`]) or from a row read: for a chain verifier, which needs
/// no decoded event unless the row fails the check as stored.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct StoredEventRow<'a> {
    pub seq: i64,
    pub at: i64,
    #[serde(borrow)]
    pub actor_issuer: Cow<'a, str>,
    #[serde(borrow)]
    pub actor_subject: Cow<'a, str>,
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    #[serde(borrow)]
    pub request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub digest: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub detail: Cow<'a, str>,
    #[serde(borrow)]
    pub prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    pub hash: Cow<'a, str>,
}

impl<'a> StoredEventRow<'a> {
    /// `row`, borrowed.
    pub fn of(row: &'a EventRow) -> Self {
        Self {
            seq: row.seq,
            at: row.at,
            actor_issuer: Cow::Borrowed(&row.actor_issuer),
            actor_subject: Cow::Borrowed(&row.actor_subject),
            action: Cow::Borrowed(&row.action),
            request_id: row.request_id.as_deref().map(Cow::Borrowed),
            digest: row.digest.as_deref().map(Cow::Borrowed),
            detail: Cow::Borrowed(&row.detail),
            prev_hash: Cow::Borrowed(&row.prev_hash),
            hash: Cow::Borrowed(&row.hash),
        }
    }

    /// The row's link in the chain. The row is hashed as stored; only if that fails is it
    /// decoded and hashed the long way, so a row written differently from how this version
    /// writes it still verifies, and one that cannot be decoded is named.
    pub fn link(&self, buf: &mut Vec<u8>) -> ChainLink {
        let as_stored = countersign_core::time::from_millis(self.at).is_some_and(|at| {
            StoredEvent {
                seq: self.seq,
                at,
                issuer: &self.actor_issuer,
                subject: &self.actor_subject,
                action: &self.action,
                request_id: self.request_id.as_deref(),
                digest: self.digest.as_deref(),
                detail: &self.detail,
                prev_hash: &self.prev_hash,
                hash: &self.hash,
            }
            .hashes_as_stored(buf)
        });
        let content = if as_stored {
            Ok(true)
        } else {
            self.to_row()
                .decode()
                .map(|event| event.compute_hash() == event.hash)
                .map_err(|e| e.to_string())
        };
        ChainLink {
            seq: self.seq,
            prev_hash: self.prev_hash.clone().into_owned(),
            hash: self.hash.clone().into_owned(),
            content,
        }
    }

    fn to_row(&self) -> EventRow {
        EventRow {
            seq: self.seq,
            at: self.at,
            actor_issuer: self.actor_issuer.clone().into_owned(),
            actor_subject: self.actor_subject.clone().into_owned(),
            action: self.action.clone().into_owned(),
            request_id: self.request_id.clone().map(Cow::into_owned),
            digest: self.digest.clone().map(Cow::into_owned),
            detail: self.detail.clone().into_owned(),
            prev_hash: self.prev_hash.clone().into_owned(),
            hash: self.hash.clone().into_owned(),
        }
    }
}

/// The columns of `grants` read back, in the order of [`crate::sql::INSERT_GRANT`] (which adds
/// `single_use_request`).
#[derive(Debug)]
pub(crate) struct GrantRow {
    pub jti: String,
    pub request_id: String,
    pub kid: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// The columns of `signing_keys`, in the order of [`crate::sql::INSERT_KEY`].
#[derive(Debug)]
pub(crate) struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub sealed_private: Vec<u8>,
    pub created_at: i64,
    pub signs_from: i64,
    pub publish_until: Option<i64>,
}

/// The columns of `deliveries`, in the order of [`crate::sql::INSERT_DELIVERY`].
#[derive(Debug)]
pub(crate) struct DeliveryRow {
    pub id: String,
    pub gate: String,
    pub webhook: i64,
    pub url: String,
    pub event: String,
    pub request_id: String,
    pub payload: String,
    pub created_at: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode the {what}: {e}")))
}

pub(crate) fn millis(t: &Timestamp) -> i64 {
    t.timestamp_millis()
}

/// Names a stored row in decode errors without quoting stored content. Rows whose key is a
/// secret (a login's `state`, a session's cookie hash) pass an empty `id` and are not named.
fn unreadable(what: &str, id: &str, problem: impl std::fmt::Display) -> StoreError {
    if id.is_empty() {
        StoreError::Backend(format!("a stored {what} is unreadable: {problem}"))
    } else {
        StoreError::Backend(format!("stored {what} {id} is unreadable: {problem}"))
    }
}

fn instant(what: &str, id: &str, column: &str, ms: i64) -> Result<Timestamp, StoreError> {
    countersign_core::time::from_millis(ms)
        .ok_or_else(|| unreadable(what, id, format!("{column} is out of range")))
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    id: &str,
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| unreadable(what, id, format!("{column}: {e}")))
}

fn digest(what: &str, id: &str, text: &str) -> Result<Digest, StoreError> {
    text.parse()
        .map_err(|_| unreadable(what, id, "digest is not a sha256 digest"))
}

pub(crate) fn approval_name(path: ApprovalPath) -> &'static str {
    match path {
        ApprovalPath::Quorum => "quorum",
        ApprovalPath::AutoApproved => "auto_approved",
        ApprovalPath::BreakGlass => "break_glass",
    }
}

fn parse_approval(text: &str) -> Option<ApprovalPath> {
    [
        ApprovalPath::Quorum,
        ApprovalPath::AutoApproved,
        ApprovalPath::BreakGlass,
    ]
    .into_iter()
    .find(|p| approval_name(*p) == text)
}

fn parse_verdict(text: &str) -> Option<Verdict> {
    [Verdict::Approve, Verdict::Reject]
        .into_iter()
        .find(|v| v.as_str() == text)
}

impl RequestRow {
    pub fn encode(r: &Request) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id.to_string(),
            gate: r.gate.clone(),
            state: r.state.as_str().to_string(),
            approval: r.approval.map(|a| approval_name(a).to_string()),
            version: r.version,
            params: to_json("request parameters", &r.params)?,
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            requester: to_json("requester", &r.requester)?,
            requester_issuer: r.requester.identity().issuer.clone(),
            requester_subject: r.requester.identity().subject.clone(),
            duration_secs: r.duration_secs,
            digest: r.digest.to_string(),
            created_at: millis(&r.created_at),
            expires_at: millis(&r.expires_at),
            decided_at: r.decided_at.as_ref().map(millis),
            updated_at: millis(&r.updated_at),
        })
    }

    pub fn read<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id: row.try_get("id")?,
            gate: row.try_get("gate")?,
            state: row.try_get("state")?,
            approval: row.try_get("approval")?,
            version: row.try_get("version")?,
            params: row.try_get("params")?,
            reason: row.try_get("reason")?,
            ticket: row.try_get("ticket")?,
            requester: row.try_get("requester")?,
            requester_issuer: row.try_get("requester_issuer")?,
            requester_subject: row.try_get("requester_subject")?,
            duration_secs: row.try_get("duration_secs")?,
            digest: row.try_get("digest")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            decided_at: row.try_get("decided_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    pub fn decode(self, decisions: Vec<Decision>) -> Result<Request, StoreError> {
        let id = self.id.as_str();
        StoredRequest {
            id: Cow::Borrowed(id),
            gate: self.gate,
            state: Cow::Borrowed(&self.state),
            approval: self.approval.as_deref().map(Cow::Borrowed),
            version: self.version,
            params: from_json(REQUEST, id, "params", &self.params)?,
            reason: self.reason,
            ticket: self.ticket,
            requester: from_json(REQUEST, id, "requester", &self.requester)?,
            duration_secs: self.duration_secs,
            digest: Cow::Borrowed(&self.digest),
            created_at: self.created_at,
            expires_at: self.expires_at,
            decided_at: self.decided_at,
            updated_at: self.updated_at,
            decisions: Vec::new(),
        }
        .assemble(decisions)
    }
}

const REQUEST: &str = "request";
const DECISION_ON: &str = "decision on";

/// A request with its decisions as SQLite hands it over in one JSON value (see
/// [`crate::sql::SQLITE_REQUESTS_JSON`]): the JSON columns nested as values rather than quoted
/// as text, so each is parsed once, straight into the domain type.
///
/// Unknown and repeated fields are refused: a stored JSON column followed by more text would
/// otherwise read as fields of the request.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredRequest<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    gate: String,
    #[serde(borrow)]
    state: Cow<'a, str>,
    #[serde(borrow)]
    approval: Option<Cow<'a, str>>,
    version: i64,
    params: BTreeMap<String, Value>,
    reason: Option<String>,
    ticket: Option<String>,
    requester: StoredPrincipal,
    duration_secs: i64,
    #[serde(borrow)]
    digest: Cow<'a, str>,
    created_at: i64,
    expires_at: i64,
    decided_at: Option<i64>,
    updated_at: i64,
    #[serde(borrow)]
    decisions: Vec<StoredDecision<'a>>,
}

/// A decision inside a [`StoredRequest`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredDecision<'a> {
    approver: StoredPrincipal,
    #[serde(borrow)]
    verdict: Cow<'a, str>,
    comment: Option<String>,
    #[serde(borrow)]
    digest: Cow<'a, str>,
    at: i64,
    eligible_rules: Vec<String>,
}

impl StoredRequest<'_> {
    pub fn decode(mut self) -> Result<Request, StoreError> {
        let decisions = std::mem::take(&mut self.decisions)
            .into_iter()
            .map(|d| d.decode(&self.id))
            .collect::<Result<Vec<_>, _>>()?;
        self.assemble(decisions)
    }

    /// The request, with `decisions` (already decoded) in place of its own.
    fn assemble(self, decisions: Vec<Decision>) -> Result<Request, StoreError> {
        let id = self.id.as_ref();
        Ok(Request {
            id: id
                .parse::<RequestId>()
                .map_err(|_| unreadable(REQUEST, "(id)", "the id is not a request id"))?,
            gate: self.gate,
            params: self.params,
            reason: self.reason,
            ticket: self.ticket,
            requester: self.requester.into(),
            duration_secs: self.duration_secs,
            digest: digest(REQUEST, id, &self.digest)?,
            state: State::parse(&self.state)
                .ok_or_else(|| unreadable(REQUEST, id, "unknown state"))?,
            approval: match self.approval.as_deref() {
                None => None,
                Some(text) => Some(
                    parse_approval(text)
                        .ok_or_else(|| unreadable(REQUEST, id, "unknown approval path"))?,
                ),
            },
            version: self.version,
            created_at: instant(REQUEST, id, "created_at", self.created_at)?,
            expires_at: instant(REQUEST, id, "expires_at", self.expires_at)?,
            decided_at: match self.decided_at {
                None => None,
                Some(ms) => Some(instant(REQUEST, id, "decided_at", ms)?),
            },
            updated_at: instant(REQUEST, id, "updated_at", self.updated_at)?,
            decisions,
        })
    }
}

impl StoredDecision<'_> {
    /// The decision, named in errors by its request's `id`.
    fn decode(self, id: &str) -> Result<Decision, StoreError> {
        Ok(Decision {
            approver: self.approver.into(),
            verdict: parse_verdict(&self.verdict)
                .ok_or_else(|| unreadable(DECISION_ON, id, "unknown verdict"))?,
            comment: self.comment,
            digest: digest(DECISION_ON, id, &self.digest)?,
            at: instant(DECISION_ON, id, "at", self.at)?,
            eligible_rules: self.eligible_rules,
        })
    }
}

impl DecisionRow {
    pub fn encode(request_id: &RequestId, d: &Decision) -> Result<Self, StoreError> {
        Ok(Self {
            request_id: request_id.to_string(),
            approver_issuer: d.approver.identity().issuer.clone(),
            approver_subject: d.approver.identity().subject.clone(),
            approver: to_json("approver", &d.approver)?,
            verdict: d.verdict.as_str().to_string(),
            comment: d.comment.clone(),
            digest: d.digest.to_string(),
            at: millis(&d.at),
            eligible_rules: to_json("eligible rules", &d.eligible_rules)?,
        })
    }

    pub fn read<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            request_id: row.try_get("request_id")?,
            approver_issuer: row.try_get("approver_issuer")?,
            approver_subject: row.try_get("approver_subject")?,
            approver: row.try_get("approver")?,
            verdict: row.try_get("verdict")?,
            comment: row.try_get("comment")?,
            digest: row.try_get("digest")?,
            at: row.try_get("at")?,
            eligible_rules: row.try_get("eligible_rules")?,
        })
    }

    pub fn decode(self) -> Result<Decision, StoreError> {
        let id = self.request_id.as_str();
        StoredDecision {
            approver: from_json(DECISION_ON, id, "approver", &self.approver)?,
            verdict: Cow::Borrowed(&self.verdict),
            comment: self.comment,
            digest: Cow::Borrowed(&self.digest),
            at: self.at,
            eligible_rules: from_json(DECISION_ON, id, "eligible_rules", &self.eligible_rules)?,
        }
        .decode(id)
    }
}

impl EventRow {
    pub fn encode(e: &AuditEvent) -> Result<Self, StoreError> {
        Ok(Self {
            seq: e.seq,
            at: millis(&e.at),
            actor_issuer: e.actor.issuer.clone(),
            actor_subject: e.actor.subject.clone(),
            action: e.action.clone(),
            request_id: e.request_id.map(|id| id.to_string()),
            digest: e.digest.as_ref().map(ToString::to_string),
            detail: to_json("audit detail", &e.detail)?,
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        })
    }

    pub fn read<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
            actor_issuer: row.try_get("actor_issuer")?,
            actor_subject: row.try_get("actor_subject")?,
            action: row.try_get("action")?,
            request_id: row.try_get("request_id")?,
            digest: row.try_get("digest")?,
            detail: row.try_get("detail")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }

    pub fn decode(self) -> Result<AuditEvent, StoreError> {
        const WHAT: &str = "audit event";
        let seq = self.seq.to_string();
        let id = seq.as_str();
        Ok(AuditEvent {
            seq: self.seq,
            at: instant(WHAT, id, "at", self.at)?,
            actor: Actor {
                issuer: self.actor_issuer,
                subject: self.actor_subject,
            },
            action: self.action,
            request_id: match self.request_id.as_deref() {
                None => None,
                Some(text) => Some(
                    text.parse::<RequestId>()
                        .map_err(|_| unreadable(WHAT, id, "request_id is not a request id"))?,
                ),
            },
            digest: match self.digest.as_deref() {
                None => None,
                Some(text) => Some(digest(WHAT, id, text)?),
            },
            detail: from_json(WHAT, id, "detail", &self.detail)?,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

impl GrantRow {
    pub fn encode(g: &GrantRecord) -> Self {
        Self {
            jti: g.jti.clone(),
            request_id: g.request_id.to_string(),
            kid: g.kid.clone(),
            issued_at: millis(&g.issued_at),
            expires_at: millis(&g.expires_at),
            revoked_at: g.revoked_at.as_ref().map(millis),
        }
    }

    pub fn read<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            jti: row.try_get("jti")?,
            request_id: row.try_get("request_id")?,
            kid: row.try_get("kid")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }

    pub fn decode(self) -> Result<GrantRecord, StoreError> {
        const WHAT: &str = "grant";
        // The jti is a random token id, not a secret (it is shown in the audit trail), so it
        // may name the row.
        let id = self.jti.as_str();
        Ok(GrantRecord {
            request_id: self
                .request_id
                .parse::<RequestId>()
                .map_err(|_| unreadable(WHAT, id, "request_id is not a request id"))?,
            kid: self.kid,
            issued_at: instant(WHAT, id, "issued_at", self.issued_at)?,
            expires_at: instant(WHAT, id, "expires_at", self.expires_at)?,
            revoked_at: match self.revoked_at {
                None => None,
                Some(ms) => Some(instant(WHAT, id, "revoked_at", ms)?),
            },
            jti: self.jti,
        })
    }
}

impl KeyRow {
    pub fn encode(k: &SigningKeyRecord) -> Result<Self, StoreError> {
        Ok(Self {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            public_jwk: to_json("public jwk", &k.public_jwk)?,
            sealed_private: k.sealed_private.clone(),
            created_at: millis(&k.created_at),
            signs_from: millis(&k.signs_from),
            publish_until: k.publish_until.as_ref().map(millis),
        })
    }

    pub fn read<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            kid: row.try_get("kid")?,
            alg: row.try_get("alg")?,
            public_jwk: row.try_get("public_jwk")?,
            sealed_private: row.try_get("sealed_private")?,
            created_at: row.try_get("created_at")?,
            signs_from: row.try_get("signs_from")?,
            publish_until: row.try_get("publish_until")?,
        })
    }

    pub fn decode(self) -> Result<SigningKeyRecord, StoreError> {
        const WHAT: &str = "signing key";
        let id = self.kid.as_str();
        Ok(SigningKeyRecord {
            alg: self.alg.clone(),
            public_jwk: from_json(WHAT, id, "public_jwk", &self.public_jwk)?,
            created_at: instant(WHAT, id, "created_at", self.created_at)?,
            signs_from: instant(WHAT, id, "signs_from", self.signs_from)?,
            publish_until: match self.publish_until {
                None => None,
                Some(ms) => Some(instant(WHAT, id, "publish_until", ms)?),
            },
            sealed_private: self.sealed_private,
            kid: self.kid,
        })
    }
}

impl DeliveryRow {
    /// A new message: pending, due at its creation time, never attempted.
    pub fn encode_new(m: &OutboxMessage) -> Result<Self, StoreError> {
        let created_at = millis(&m.created_at);
        Ok(Self {
            id: m.id.clone(),
            gate: m.gate.clone(),
            webhook: i64::from(m.webhook),
            url: m.url.clone(),
            event: m.event.clone(),
            request_id: m.request_id.to_string(),
            payload: to_json("webhook payload", &m.payload)?,
            created_at,
            state: DeliveryState::Pending.as_str().to_string(),
            attempts: 0,
            next_attempt_at: created_at,
            last_error: None,
            updated_at: created_at,
        })
    }

    pub fn read<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id: row.try_get("id")?,
            gate: row.try_get("gate")?,
            webhook: row.try_get("webhook")?,
            url: row.try_get("url")?,
            event: row.try_get("event")?,
            request_id: row.try_get("request_id")?,
            payload: row.try_get("payload")?,
            created_at: row.try_get("created_at")?,
            state: row.try_get("state")?,
            attempts: row.try_get("attempts")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            last_error: row.try_get("last_error")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// [`DeliveryRow::read`] for a row of the SQLite writer's connection.
    pub fn read_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            gate: row.get("gate")?,
            webhook: row.get("webhook")?,
            url: row.get("url")?,
            event: row.get("event")?,
            request_id: row.get("request_id")?,
            payload: row.get("payload")?,
            created_at: row.get("created_at")?,
            state: row.get("state")?,
            attempts: row.get("attempts")?,
            next_attempt_at: row.get("next_attempt_at")?,
            last_error: row.get("last_error")?,
            updated_at: row.get("updated_at")?,
        })
    }

    pub fn decode(self) -> Result<Delivery, StoreError> {
        const WHAT: &str = "delivery";
        let id = self.id.as_str();
        Ok(Delivery {
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| unreadable(WHAT, id, "unknown state"))?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| unreadable(WHAT, id, "attempts is out of range"))?,
            next_attempt_at: instant(WHAT, id, "next_attempt_at", self.next_attempt_at)?,
            updated_at: instant(WHAT, id, "updated_at", self.updated_at)?,
            message: OutboxMessage {
                gate: self.gate,
                webhook: u32::try_from(self.webhook)
                    .map_err(|_| unreadable(WHAT, id, "webhook is out of range"))?,
                url: self.url,
                event: self.event,
                request_id: self
                    .request_id
                    .parse::<RequestId>()
                    .map_err(|_| unreadable(WHAT, id, "request_id is not a request id"))?,
                payload: from_json(WHAT, id, "payload", &self.payload)?,
                created_at: instant(WHAT, id, "created_at", self.created_at)?,
                id: self.id,
            },
            last_error: self.last_error,
        })
    }
}

/// The columns of `login_transactions`, in the order of [`crate::sql::INSERT_LOGIN`].
#[derive(Debug)]
pub(crate) struct LoginRow {
    pub state: String,
    pub browser_binding: String,
    pub issuer: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub max_age: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl LoginRow {
    pub fn encode(l: &LoginTransaction) -> Self {
        Self {
            state: l.state.clone(),
            browser_binding: l.browser_binding.clone(),
            issuer: l.issuer.clone(),
            nonce: l.nonce.clone(),
            pkce_verifier: l.pkce_verifier.expose().to_owned(),
            return_to: l.return_to.clone(),
            max_age: l.max_age,
            created_at: millis(&l.created_at),
            expires_at: millis(&l.expires_at),
        }
    }

    pub fn read<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            state: row.try_get("state")?,
            browser_binding: row.try_get("browser_binding")?,
            issuer: row.try_get("issuer")?,
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            return_to: row.try_get("return_to")?,
            max_age: row.try_get("max_age")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }

    /// [`LoginRow::read`] for a row of the SQLite writer's connection.
    pub fn read_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            state: row.get("state")?,
            browser_binding: row.get("browser_binding")?,
            issuer: row.get("issuer")?,
            nonce: row.get("nonce")?,
            pkce_verifier: row.get("pkce_verifier")?,
            return_to: row.get("return_to")?,
            max_age: row.get("max_age")?,
            created_at: row.get("created_at")?,
            expires_at: row.get("expires_at")?,
        })
    }

    pub fn decode(self) -> Result<LoginTransaction, StoreError> {
        // The state is a secret until the callback has used it: never named in errors.
        const WHAT: &str = "login transaction";
        Ok(LoginTransaction {
            created_at: instant(WHAT, "", "created_at", self.created_at)?,
            expires_at: instant(WHAT, "", "expires_at", self.expires_at)?,
            state: self.state,
            browser_binding: self.browser_binding,
            issuer: self.issuer,
            nonce: self.nonce,
            pkce_verifier: Secret::new(self.pkce_verifier),
            return_to: self.return_to,
            max_age: self.max_age,
        })
    }
}

/// The columns of `web_sessions`, in the order of [`crate::sql::INSERT_SESSION`]. `issuer` and
/// `subject` repeat `principal.identity`, for back-channel logout.
#[derive(Debug)]
pub(crate) struct SessionRow {
    pub id_hash: String,
    pub issuer: String,
    pub subject: String,
    pub sid: Option<String>,
    pub principal: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<Vec<u8>>,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

impl SessionRow {
    pub fn encode(s: &WebSession) -> Result<Self, StoreError> {
        Ok(Self {
            id_hash: s.id_hash.clone(),
            issuer: s.principal.identity().issuer.clone(),
            subject: s.principal.identity().subject.clone(),
            sid: s.sid.clone(),
            principal: to_json("session principal", &s.principal)?,
            id_token: s.id_token.as_ref().map(|t| t.expose().to_owned()),
            refresh_token: s.refresh_token.clone(),
            csrf_token: s.csrf_token.expose().to_owned(),
            created_at: millis(&s.created_at),
            last_seen_at: millis(&s.last_seen_at),
        })
    }

    pub fn read<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            id_hash: row.try_get("id_hash")?,
            issuer: row.try_get("issuer")?,
            subject: row.try_get("subject")?,
            sid: row.try_get("sid")?,
            principal: row.try_get("principal")?,
            id_token: row.try_get("id_token")?,
            refresh_token: row.try_get("refresh_token")?,
            csrf_token: row.try_get("csrf_token")?,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
        })
    }

    pub fn decode(self) -> Result<WebSession, StoreError> {
        // The key is the hash of a live cookie: never named in errors.
        const WHAT: &str = "web session";
        let principal: Principal =
            from_json::<StoredPrincipal>(WHAT, "", "principal", &self.principal)?.into();
        // The identity columns are what logout deletes by: a row where they disagree with the
        // principal could outlive its logout, so it is refused rather than used.
        if principal.identity().issuer != self.issuer
            || principal.identity().subject != self.subject
        {
            return Err(unreadable(
                WHAT,
                "",
                "issuer and subject disagree with the principal",
            ));
        }
        Ok(WebSession {
            principal,
            created_at: instant(WHAT, "", "created_at", self.created_at)?,
            last_seen_at: instant(WHAT, "", "last_seen_at", self.last_seen_at)?,
            id_hash: self.id_hash,
            sid: self.sid,
            id_token: self.id_token.map(Secret::new),
            refresh_token: self.refresh_token,
            csrf_token: Secret::new(self.csrf_token),
        })
    }
}

/// How an attempt's outcome is written by [`crate::sql::RECORD_ATTEMPT`]: the new state, the
/// next attempt time (kept when `None`) and the error (kept when `None`).
pub(crate) fn attempt_columns(
    outcome: &AttemptOutcome,
) -> (&'static str, Option<i64>, Option<&str>) {
    match outcome {
        AttemptOutcome::Delivered => (DeliveryState::Delivered.as_str(), None, None),
        AttemptOutcome::Retry {
            next_attempt_at,
            error,
        } => (
            DeliveryState::Pending.as_str(),
            Some(millis(next_attempt_at)),
            Some(error.as_str()),
        ),
        AttemptOutcome::Failed { error } => {
            (DeliveryState::Failed.as_str(), None, Some(error.as_str()))
        }
    }
}

/// The end of a claim's lease, in stored milliseconds.
pub(crate) fn lease_end(now: Timestamp, lease: chrono::Duration) -> Result<i64, StoreError> {
    now.checked_add_signed(lease)
        .map(|t| millis(&t))
        .ok_or_else(|| StoreError::Backend("the delivery lease is out of range".into()))
}

/// Groups decision rows (ordered by request, then ordinal) by request id.
pub(crate) fn group_decisions(
    rows: Vec<DecisionRow>,
) -> Result<BTreeMap<String, Vec<Decision>>, StoreError> {
    let mut out: BTreeMap<String, Vec<Decision>> = BTreeMap::new();
    for row in rows {
        let key = row.request_id.clone();
        out.entry(key).or_default().push(row.decode()?);
    }
    Ok(out)
}

/// Binds a [`RequestRow`] to a query in the order of [`crate::sql::INSERT_REQUEST`].
macro_rules! bind_request {
    ($query:expr, $row:expr) => {{
        let r = $row;
        $query
            .bind(r.id.as_str())
            .bind(r.gate.as_str())
            .bind(r.state.as_str())
            .bind(r.approval.as_deref())
            .bind(r.version)
            .bind(r.params.as_str())
            .bind(r.reason.as_deref())
            .bind(r.ticket.as_deref())
            .bind(r.requester.as_str())
            .bind(r.requester_issuer.as_str())
            .bind(r.requester_subject.as_str())
            .bind(r.duration_secs)
            .bind(r.digest.as_str())
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.decided_at)
            .bind(r.updated_at)
    }};
}

/// Binds a [`DecisionRow`] in the order of [`crate::sql::INSERT_DECISION`].
macro_rules! bind_decision {
    ($query:expr, $row:expr) => {{
        let d = $row;
        $query
            .bind(d.request_id.as_str())
            .bind(d.approver_issuer.as_str())
            .bind(d.approver_subject.as_str())
            .bind(d.approver.as_str())
            .bind(d.verdict.as_str())
            .bind(d.comment.as_deref())
            .bind(d.digest.as_str())
            .bind(d.at)
            .bind(d.eligible_rules.as_str())
    }};
}

/// Binds an [`EventRow`] in the order of [`crate::sql::INSERT_EVENT`].
macro_rules! bind_event {
    ($query:expr, $row:expr) => {{
        let e = $row;
        $query
            .bind(e.seq)
            .bind(e.at)
            .bind(e.actor_issuer.as_str())
            .bind(e.actor_subject.as_str())
            .bind(e.action.as_str())
            .bind(e.request_id.as_deref())
            .bind(e.digest.as_deref())
            .bind(e.detail.as_str())
            .bind(e.prev_hash.as_str())
            .bind(e.hash.as_str())
    }};
}

/// Binds a [`GrantRow`] and its `single_use_request` in the order of
/// [`crate::sql::INSERT_GRANT`].
macro_rules! bind_grant {
    ($query:expr, $row:expr, $single_use:expr) => {{
        let g = $row;
        $query
            .bind(g.jti.as_str())
            .bind(g.request_id.as_str())
            .bind(g.kid.as_str())
            .bind(g.issued_at)
            .bind(g.expires_at)
            .bind(g.revoked_at)
            .bind(if $single_use {
                Some(g.request_id.as_str())
            } else {
                None
            })
    }};
}

/// Binds a [`KeyRow`] in the order of [`crate::sql::INSERT_KEY`].
macro_rules! bind_key {
    ($query:expr, $row:expr) => {{
        let k = $row;
        $query
            .bind(k.kid.as_str())
            .bind(k.alg.as_str())
            .bind(k.public_jwk.as_str())
            .bind(k.sealed_private.as_slice())
            .bind(k.created_at)
            .bind(k.signs_from)
            .bind(k.publish_until)
    }};
}

/// Binds a [`DeliveryRow`] in the order of [`crate::sql::INSERT_DELIVERY`].
macro_rules! bind_delivery {
    ($query:expr, $row:expr) => {{
        let d = $row;
        $query
            .bind(d.id.as_str())
            .bind(d.gate.as_str())
            .bind(d.webhook)
            .bind(d.url.as_str())
            .bind(d.event.as_str())
            .bind(d.request_id.as_str())
            .bind(d.payload.as_str())
            .bind(d.created_at)
            .bind(d.state.as_str())
            .bind(d.attempts)
            .bind(d.next_attempt_at)
            .bind(d.last_error.as_deref())
            .bind(d.updated_at)
    }};
}

/// Binds a [`LoginRow`] in the order of [`crate::sql::INSERT_LOGIN`].
macro_rules! bind_login {
    ($query:expr, $row:expr) => {{
        let l = $row;
        $query
            .bind(l.state.as_str())
            .bind(l.browser_binding.as_str())
            .bind(l.issuer.as_str())
            .bind(l.nonce.as_str())
            .bind(l.pkce_verifier.as_str())
            .bind(l.return_to.as_str())
            .bind(l.max_age)
            .bind(l.created_at)
            .bind(l.expires_at)
    }};
}

/// Binds a [`SessionRow`] in the order of [`crate::sql::INSERT_SESSION`].
macro_rules! bind_session {
    ($query:expr, $row:expr) => {{
        let s = $row;
        $query
            .bind(s.id_hash.as_str())
            .bind(s.issuer.as_str())
            .bind(s.subject.as_str())
            .bind(s.sid.as_deref())
            .bind(s.principal.as_str())
            .bind(s.id_token.as_deref())
            .bind(s.refresh_token.as_deref())
            .bind(s.csrf_token.as_str())
            .bind(s.created_at)
            .bind(s.last_seen_at)
    }};
}

/// Binds a [`SessionRow`] in the order of [`crate::sql::UPDATE_SESSION`] (no `created_at`).
macro_rules! bind_session_update {
    ($query:expr, $row:expr) => {{
        let s = $row;
        $query
            .bind(s.id_hash.as_str())
            .bind(s.issuer.as_str())
            .bind(s.subject.as_str())
            .bind(s.sid.as_deref())
            .bind(s.principal.as_str())
            .bind(s.id_token.as_deref())
            .bind(s.refresh_token.as_deref())
            .bind(s.csrf_token.as_str())
            .bind(s.last_seen_at)
    }};
}

pub(crate) use {
    bind_decision, bind_delivery, bind_event, bind_grant, bind_key, bind_login, bind_request,
    bind_session, bind_session_update,
};
