//! Requests and their decisions as stored.

use std::collections::BTreeMap;

use countersign_core::principal::StoredPrincipal;
use countersign_core::request::{ApprovalPath, Decision, Request, State, Verdict};
use countersign_core::{RequestId, StoreError};

use super::{digest, from_json, instant, millis, optional_instant, to_json, unreadable};

const REQUEST: &str = "request";
const DECISION_ON: &str = "decision on";

/// The columns of `requests`, in the order of [`crate::sql::INSERT_REQUEST`] and
/// [`crate::sql::REQUEST_COLUMNS`].
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

/// The columns of `decisions`, in the order of [`crate::sql::INSERT_DECISION`] and
/// [`crate::sql::DECISION_COLUMNS`] (the ordinal is computed in SQL).
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

    /// The request, with `decisions` (already decoded, oldest first).
    pub fn decode(self, decisions: Vec<Decision>) -> Result<Request, StoreError> {
        let id = self.id.as_str();
        Ok(Request {
            params: from_json(REQUEST, id, "params", &self.params)?,
            requester: from_json::<StoredPrincipal>(REQUEST, id, "requester", &self.requester)?
                .into(),
            id: id
                .parse::<RequestId>()
                .map_err(|_| unreadable(REQUEST, "(id)", "the id is not a request id"))?,
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
            created_at: instant(REQUEST, id, "created_at", self.created_at)?,
            expires_at: instant(REQUEST, id, "expires_at", self.expires_at)?,
            decided_at: optional_instant(REQUEST, id, "decided_at", self.decided_at)?,
            updated_at: instant(REQUEST, id, "updated_at", self.updated_at)?,
            version: self.version,
            duration_secs: self.duration_secs,
            gate: self.gate,
            reason: self.reason,
            ticket: self.ticket,
            decisions,
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

    pub fn decode(self) -> Result<Decision, StoreError> {
        let id = self.request_id.as_str();
        Ok(Decision {
            approver: from_json::<StoredPrincipal>(DECISION_ON, id, "approver", &self.approver)?
                .into(),
            verdict: parse_verdict(&self.verdict)
                .ok_or_else(|| unreadable(DECISION_ON, id, "unknown verdict"))?,
            digest: digest(DECISION_ON, id, &self.digest)?,
            at: instant(DECISION_ON, id, "at", self.at)?,
            eligible_rules: from_json(DECISION_ON, id, "eligible_rules", &self.eligible_rules)?,
            comment: self.comment,
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
