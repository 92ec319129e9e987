//! The audit chain. Every event carries the hash of the one before it; the hash covers a
//! canonical JSON encoding of everything that matters (sequence, time, actor, action, request,
//! digest, detail, previous hash), so editing, deleting, inserting or reordering any event
//! breaks the chain at a sequence number a verifier can name.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::ids::{Digest, RequestId};
use crate::principal::Identity;
use crate::time::{Timestamp, rfc3339};

/// The previous hash of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The issuer's configured name; `countersign` for the service itself, `anonymous` when no
    /// identity could be verified.
    pub issuer: String,
    /// The subject under that issuer.
    pub subject: String,
}

impl Actor {
    /// The service itself (sweeper, start-up).
    pub fn system() -> Self {
        Self {
            issuer: "countersign".into(),
            subject: "system".into(),
        }
    }

    /// A caller whose identity could not be verified.
    pub fn anonymous() -> Self {
        Self {
            issuer: "anonymous".into(),
            subject: "anonymous".into(),
        }
    }
}

impl From<&Identity> for Actor {
    fn from(id: &Identity) -> Self {
        Self {
            issuer: id.issuer.clone(),
            subject: id.subject.clone(),
        }
    }
}

/// An event to append; the store assigns `seq` and chains the hash.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    /// When it happened.
    pub at: Timestamp,
    /// Who did it.
    pub actor: Actor,
    /// What happened, e.g. `request.approved`, `decision.approve`, `auth.failed`.
    pub action: String,
    /// The request concerned, if any.
    pub request_id: Option<RequestId>,
    /// The request's content digest, if any.
    pub digest: Option<Digest>,
    /// Anything else: rule, reasons, result. Never a token or a secret.
    pub detail: Value,
}

/// A stored, chained event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// 1, 2, 3, … with no gaps.
    pub seq: i64,
    /// When it happened.
    pub at: Timestamp,
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    pub action: String,
    /// The request concerned, if any.
    pub request_id: Option<RequestId>,
    /// The request's content digest, if any.
    pub digest: Option<Digest>,
    /// Anything else.
    pub detail: Value,
    /// The hash of the previous event ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

impl AuditEvent {
    /// Chains `event` after an event with sequence `prev_seq` and hash `prev_hash`.
    pub fn chain(event: NewAuditEvent, prev_seq: i64, prev_hash: &str) -> Self {
        let mut out = Self {
            seq: prev_seq + 1,
            at: event.at,
            actor: event.actor,
            action: event.action,
            request_id: event.request_id,
            digest: event.digest,
            detail: event.detail,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        out.hash = out.compute_hash();
        out
    }

    /// The hash this event should carry, from its own fields: SHA-256 of the canonical JSON
    /// of `{seq, at, actor: {issuer, subject}, action, request_id, digest, detail, prev_hash}`.
    ///
    /// The canonical text is written field by field in key order straight into one buffer
    /// (no intermediate JSON value): verifying a long chain is mostly this function.
    pub fn compute_hash(&self) -> String {
        use crate::canonical::{write, write_str};
        let mut out = Vec::with_capacity(512);
        let optional = |value: Option<String>, out: &mut Vec<u8>| match value {
            Some(text) => write_str(&text, out),
            None => out.extend_from_slice(b"null"),
        };
        // Keys in byte order: action, actor, at, detail, digest, prev_hash, request_id, seq.
        out.extend_from_slice(b"{\"action\":");
        write_str(&self.action, &mut out);
        out.extend_from_slice(b",\"actor\":{\"issuer\":");
        write_str(&self.actor.issuer, &mut out);
        out.extend_from_slice(b",\"subject\":");
        write_str(&self.actor.subject, &mut out);
        out.extend_from_slice(b"},\"at\":");
        write_str(&rfc3339(&self.at), &mut out);
        out.extend_from_slice(b",\"detail\":");
        write(&self.detail, &mut out);
        out.extend_from_slice(b",\"digest\":");
        optional(self.digest.as_ref().map(ToString::to_string), &mut out);
        out.extend_from_slice(b",\"prev_hash\":");
        write_str(&self.prev_hash, &mut out);
        out.extend_from_slice(b",\"request_id\":");
        optional(self.request_id.map(|id| id.to_string()), &mut out);
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.push(b'}');
        hex::encode(Sha256::digest(&out))
    }
}

/// Where and why a chain stopped verifying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {reason}")]
pub struct ChainBreak {
    /// The first sequence number that does not verify.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks events in the order a store returns them (ascending `seq`), incrementally.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
    verified: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting the chain to start at seq 1.
    pub fn new() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            verified: 0,
        }
    }

    /// A verifier resuming after a trusted event (seq, hash), e.g. a retention checkpoint.
    pub fn resume(after_seq: i64, after_hash: &str) -> Self {
        Self {
            expected_seq: after_seq + 1,
            prev_hash: after_hash.to_string(),
            verified: 0,
        }
    }

    /// Checks the next event.
    pub fn push(&mut self, event: &AuditEvent) -> Result<(), ChainBreak> {
        self.push_hashed(event, &event.compute_hash())
    }

    /// Checks the next event, given the hash recomputed from its content
    /// ([`AuditEvent::compute_hash`]), e.g. on another thread.
    pub fn push_hashed(&mut self, event: &AuditEvent, computed: &str) -> Result<(), ChainBreak> {
        let fail = |reason: String| {
            Err(ChainBreak {
                seq: event.seq,
                reason,
            })
        };
        if event.seq != self.expected_seq {
            let reason = if event.seq > self.expected_seq {
                format!(
                    "expected seq {}, found {} (events missing)",
                    self.expected_seq, event.seq
                )
            } else {
                format!(
                    "expected seq {}, found {} (out of order or duplicated)",
                    self.expected_seq, event.seq
                )
            };
            return Err(ChainBreak {
                seq: self.expected_seq,
                reason,
            });
        }
        if event.prev_hash != self.prev_hash {
            return fail("prev_hash does not match the hash of the previous event".into());
        }
        if computed != event.hash {
            return fail("the event's content does not match its hash (edited)".into());
        }
        self.expected_seq += 1;
        self.prev_hash = event.hash.clone();
        self.verified += 1;
        Ok(())
    }

    /// How many events verified so far.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// The hash of the last verified event (the chain head).
    pub fn head_hash(&self) -> &str {
        &self.prev_hash
    }
}

/// Verifies a whole chain from seq 1.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Result<u64, ChainBreak> {
    let mut v = ChainVerifier::new();
    for e in events {
        v.push(e)?;
    }
    Ok(v.verified())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// The hash as first defined: the canonical form of a JSON envelope. Chains written before
    /// `compute_hash` was streamed must still verify, so the two must agree byte for byte.
    fn reference_hash(e: &AuditEvent) -> String {
        crate::canonical::sha256_hex(&json!({
            "seq": e.seq,
            "at": rfc3339(&e.at),
            "actor": {"issuer": e.actor.issuer, "subject": e.actor.subject},
            "action": e.action,
            "request_id": e.request_id.map(|id| id.to_string()),
            "digest": e.digest.as_ref().map(ToString::to_string),
            "detail": e.detail,
            "prev_hash": e.prev_hash,
        }))
    }

    proptest! {
        #[test]
        fn streamed_hash_equals_the_reference(
            seq in 1_i64..i64::MAX,
            millis in 0_i64..4_000_000_000_000,
            issuer in any::<String>(),
            subject in "\\PC{0,30}",
            action in any::<String>(),
            key in any::<String>(),
            text in any::<String>(),
            number in any::<f64>(),
            with_request in any::<bool>(),
        ) {
            let detail = json!({
                key.clone(): text,
                "n": number,
                "list": [1, -2, true, null, {"z": 1, "a": [key]}],
            });
            let request = with_request.then(|| "req_01HZY3G6Q7X8V9W0A1B2C3D4E5".parse().unwrap());
            let event = AuditEvent {
                seq,
                at: crate::time::from_millis(millis).unwrap(),
                actor: Actor { issuer, subject },
                action,
                request_id: request,
                digest: with_request.then(|| Digest::from_bytes([7; 32])),
                detail,
                prev_hash: GENESIS_HASH.to_string(),
                hash: String::new(),
            };
            prop_assert_eq!(event.compute_hash(), reference_hash(&event));
        }
    }

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = Vec::new();
        for i in 0..n {
            let (seq, hash) = out
                .last()
                .map_or((0, GENESIS_HASH.to_string()), |e| (e.seq, e.hash.clone()));
            out.push(AuditEvent::chain(
                NewAuditEvent {
                    at: crate::time::from_millis(1_700_000_000_000 + i).unwrap(),
                    actor: Actor::system(),
                    action: "test".into(),
                    request_id: None,
                    digest: None,
                    detail: json!({"i": i}),
                },
                seq,
                &hash,
            ));
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)).unwrap(), 5);
    }

    #[test]
    fn every_tampering_is_caught() {
        let mut edited = chain(5);
        edited[2].detail = json!({"i": 99});
        assert_eq!(verify_chain(&edited).unwrap_err().seq, 3);

        let mut deleted = chain(5);
        deleted.remove(2);
        assert_eq!(verify_chain(&deleted).unwrap_err().seq, 3);

        let mut swapped = chain(5);
        swapped.swap(1, 3);
        assert_eq!(verify_chain(&swapped).unwrap_err().seq, 2);

        // Reordering that keeps seq numbers in place but swaps contents.
        let mut reseq = chain(5);
        let (a, b) = (reseq[1].clone(), reseq[2].clone());
        reseq[1] = AuditEvent { seq: 2, ..b };
        reseq[2] = AuditEvent { seq: 3, ..a };
        assert_eq!(verify_chain(&reseq).unwrap_err().seq, 2);

        let mut inserted = chain(5);
        let mut extra = inserted[2].clone();
        extra.action = "forged".into();
        inserted.insert(3, extra);
        assert!(verify_chain(&inserted).is_err());
    }
}
