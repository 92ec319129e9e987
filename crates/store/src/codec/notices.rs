//! Notifications and people as stored, and how a notification's outcome is written.

use countersign_core::notice::{
    NoticeKind, NoticeMessage, NoticeOutcome, NoticeState, Person, QueuedNotice,
};
use countersign_core::principal::StoredPrincipal;
use countersign_core::{Principal, RequestId, StoreError};

use super::{from_json, instant, millis, to_json, unreadable};

/// The columns of `notifications`, in the order of [`crate::sql::INSERT_NOTICE`].
#[derive(Debug)]
pub(crate) struct NoticeRow {
    pub id: String,
    pub request_id: String,
    pub channel: String,
    pub thread_key: String,
    pub kind: String,
    pub version: i64,
    pub to_requester: i64,
    pub due_at: i64,
    pub created_at: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

impl NoticeRow {
    /// A new notification: pending, first attempted when it is due.
    pub fn encode_new(m: &NoticeMessage) -> Result<Self, StoreError> {
        let created_at = millis(&m.created_at);
        Ok(Self {
            id: m.id.clone(),
            request_id: m.request_id.to_string(),
            channel: m.channel.clone(),
            thread_key: m.thread_key(),
            kind: to_json("notification kind", &m.kind)?,
            version: m.version,
            to_requester: i64::from(m.to_requester),
            due_at: millis(&m.due_at),
            created_at,
            state: NoticeState::Pending.as_str().to_owned(),
            attempts: 0,
            next_attempt_at: millis(&m.due_at),
            last_error: None,
            updated_at: created_at,
        })
    }

    pub fn decode(self) -> Result<QueuedNotice, StoreError> {
        const WHAT: &str = "notification";
        let id = self.id.as_str();
        Ok(QueuedNotice {
            state: NoticeState::parse(&self.state)
                .ok_or_else(|| unreadable(WHAT, id, "unknown state"))?,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| unreadable(WHAT, id, "attempts is out of range"))?,
            next_attempt_at: instant(WHAT, id, "next_attempt_at", self.next_attempt_at)?,
            updated_at: instant(WHAT, id, "updated_at", self.updated_at)?,
            last_error: self.last_error,
            message: NoticeMessage {
                request_id: self
                    .request_id
                    .parse::<RequestId>()
                    .map_err(|_| unreadable(WHAT, id, "request_id is not a request id"))?,
                channel: self.channel,
                kind: from_json::<NoticeKind>(WHAT, id, "kind", &self.kind)?,
                to_requester: self.to_requester != 0,
                version: self.version,
                due_at: instant(WHAT, id, "due_at", self.due_at)?,
                created_at: instant(WHAT, id, "created_at", self.created_at)?,
                id: self.id,
            },
        })
    }
}

/// A change's notifications as one `notice_batches` row.
#[derive(Debug)]
pub(crate) struct BatchRow {
    pub id: String,
    pub request_id: String,
    pub notices: String,
    pub created_at: i64,
}

impl BatchRow {
    /// `notices` (not empty) as one row, named by the first one's id.
    pub fn encode(notices: &[NoticeMessage]) -> Result<Self, StoreError> {
        let first = notices
            .first()
            .ok_or_else(|| StoreError::backend("an empty batch of notifications"))?;
        Ok(Self {
            id: first.id.clone(),
            request_id: first.request_id.to_string(),
            notices: to_json("notifications", &notices)?,
            created_at: millis(&first.created_at),
        })
    }

    /// The notifications of batch `id`.
    pub fn decode(id: &str, notices: &str) -> Result<Vec<NoticeMessage>, StoreError> {
        from_json("notification batch", id, "notices", notices)
    }
}

/// How an outcome is written by [`crate::sql::RECORD_NOTICE`]: the new state, the next
/// attempt time (kept when `None`) and the error or reason (kept when `None`).
pub(crate) fn notice_columns(outcome: &NoticeOutcome) -> (&'static str, Option<i64>, Option<&str>) {
    match outcome {
        NoticeOutcome::Sent { .. } => (NoticeState::Sent.as_str(), None, None),
        NoticeOutcome::Skipped { why } => (NoticeState::Skipped.as_str(), None, Some(why.as_str())),
        NoticeOutcome::Retry {
            next_attempt_at,
            error,
        } => (
            NoticeState::Pending.as_str(),
            Some(millis(next_attempt_at)),
            Some(error.as_str()),
        ),
        NoticeOutcome::Failed { error } => {
            (NoticeState::Failed.as_str(), None, Some(error.as_str()))
        }
    }
}

/// A person's stored principal.
pub(crate) fn encode_person(principal: &Principal) -> Result<String, StoreError> {
    to_json("person", principal)
}

/// A person read back.
pub(crate) fn decode_person(principal: &str, last_seen: i64) -> Result<Person, StoreError> {
    const WHAT: &str = "person";
    Ok(Person {
        principal: from_json::<StoredPrincipal>(WHAT, "", "principal", principal)?.into_principal(),
        last_seen: instant(WHAT, "", "last_seen", last_seen)?,
    })
}
