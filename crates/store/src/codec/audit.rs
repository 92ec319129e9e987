//! Audit events as stored, and their links in the chain as the verifier reads them.

use countersign_core::audit::{Actor, AuditEvent, ChainLink, StoredEvent};
use countersign_core::{RequestId, StoreError};

use super::{digest, from_json, instant, millis, to_json, unreadable};

/// The columns of `audit_events`, in the order of [`crate::sql::INSERT_EVENT`].
#[derive(Debug, Clone)]
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
            self.clone()
                .decode()
                .map(|event| event.compute_hash() == event.hash)
                .map_err(|e| e.to_string())
        };
        ChainLink {
            seq: self.seq,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            content,
        }
    }
}
