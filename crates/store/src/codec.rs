//! Rows as both backends store them, and their conversion to and from the domain types.
//!
//! The two dialects share one row shape (TEXT, 64-bit integers, JSON as TEXT), so the
//! conversions live here once; each backend only moves these rows in and out of its database.

use std::collections::BTreeMap;

use countersign_core::audit::{Actor, AuditEvent};
use countersign_core::request::{ApprovalPath, Decision, Request, State, Verdict};
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
/// computed in SQL).
#[derive(Debug)]
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
#[derive(Debug)]
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

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode the {what}: {e}")))
}

fn millis(t: &Timestamp) -> i64 {
    t.timestamp_millis()
}

/// Names a stored row in decode errors without quoting stored content.
fn unreadable(what: &str, id: &str, problem: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored {what} {id} is unreadable: {problem}"))
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
            requester_issuer: r.requester.identity.issuer.clone(),
            requester_subject: r.requester.identity.subject.clone(),
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
        const WHAT: &str = "request";
        let id = self.id.as_str();
        let params: BTreeMap<String, Value> = from_json(WHAT, id, "params", &self.params)?;
        let requester: Principal = from_json(WHAT, id, "requester", &self.requester)?;
        Ok(Request {
            id: id
                .parse::<RequestId>()
                .map_err(|_| unreadable(WHAT, "(id)", "the id is not a request id"))?,
            gate: self.gate,
            params,
            reason: self.reason,
            ticket: self.ticket,
            requester,
            duration_secs: self.duration_secs,
            digest: digest(WHAT, id, &self.digest)?,
            state: State::parse(&self.state)
                .ok_or_else(|| unreadable(WHAT, id, "unknown state"))?,
            approval: match self.approval.as_deref() {
                None => None,
                Some(text) => Some(
                    parse_approval(text)
                        .ok_or_else(|| unreadable(WHAT, id, "unknown approval path"))?,
                ),
            },
            version: self.version,
            created_at: instant(WHAT, id, "created_at", self.created_at)?,
            expires_at: instant(WHAT, id, "expires_at", self.expires_at)?,
            decided_at: match self.decided_at {
                None => None,
                Some(ms) => Some(instant(WHAT, id, "decided_at", ms)?),
            },
            updated_at: instant(WHAT, id, "updated_at", self.updated_at)?,
            decisions,
        })
    }
}

impl DecisionRow {
    pub fn encode(request_id: &RequestId, d: &Decision) -> Result<Self, StoreError> {
        Ok(Self {
            request_id: request_id.to_string(),
            approver_issuer: d.approver.identity.issuer.clone(),
            approver_subject: d.approver.identity.subject.clone(),
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
        const WHAT: &str = "decision on";
        let id = self.request_id.as_str();
        Ok(Decision {
            approver: from_json(WHAT, id, "approver", &self.approver)?,
            verdict: parse_verdict(&self.verdict)
                .ok_or_else(|| unreadable(WHAT, id, "unknown verdict"))?,
            comment: self.comment,
            digest: digest(WHAT, id, &self.digest)?,
            at: instant(WHAT, id, "at", self.at)?,
            eligible_rules: from_json(WHAT, id, "eligible_rules", &self.eligible_rules)?,
        })
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

pub(crate) use {bind_decision, bind_event, bind_request};
