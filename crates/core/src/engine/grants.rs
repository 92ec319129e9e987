//! Grant tokens: issued to the requester of an approved request inside its window, looked up
//! for introspection, revoked.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Attempt, Engine};
use crate::audit::{Actor, AuditAction, NewAuditEvent};
use crate::error::EngineError;
use crate::gate::Gate;
use crate::grant::{GrantRecord, render_scope, window_end};
use crate::ids::RequestId;
use crate::policy::{self, Evaluation};
use crate::ports::{GrantSigner, StoreError};
use crate::principal::Principal;
use crate::request::{Request, State, Verdict, content_value};
use crate::secret::Secret;
use crate::time::Timestamp;

/// A grant token as issued.
#[derive(Clone, Debug)]
pub struct IssuedGrant {
    /// The compact JWT: a bearer credential.
    pub token: Secret,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp`.
    pub expires_at: Timestamp,
    /// The request it proves.
    pub request: Arc<Request>,
}

impl Engine {
    /// Issues a grant token for an approved request: only to its requester, only inside the
    /// approved window, only while the requester may still request the gate (claims as they
    /// are now). The grant and its audit event are stored — atomically with a check that the
    /// request is still approved at the version read, and for single-use gates that no grant
    /// was issued before — before the token is returned: no event, no token.
    #[tracing::instrument(skip_all, fields(request_id = %id))]
    pub async fn issue_grant(
        &self,
        who: &Principal,
        id: &RequestId,
        signer: &dyn GrantSigner,
    ) -> Result<IssuedGrant, EngineError> {
        self.retry(|| async move {
            let request = self.get(who, id).await?;
            if request.requester.identity() != who.identity() {
                self.audit_refusal(
                    who,
                    "grant.issue",
                    Some(&request),
                    None,
                    "not_requester",
                    json!({}),
                )
                .await?;
                return Err(EngineError::forbidden(
                    "not_allowed",
                    "only the requester can obtain the grant token",
                ));
            }
            if request.state != State::Approved {
                return Err(EngineError::GrantUnavailable(format!(
                    "the request is {}; a grant token needs an approved request",
                    request.state
                )));
            }
            let gate = self.gate_of(&request)?;
            let now = self.clock.now();
            let end = window_end(&gate, &request).unwrap_or(now);
            if now >= end {
                return Err(EngineError::GrantUnavailable(format!(
                    "the approved window ended at {}",
                    crate::time::rfc3339(&end)
                )));
            }
            let content = content_value(
                &gate.name,
                &request.params,
                request.reason.as_deref(),
                request.ticket.as_deref(),
                request.duration_secs,
                who,
            );
            let still = policy::may_request(&gate, who, &content, now);
            if !still.value {
                self.audit_refusal(
                    who,
                    "grant.issue",
                    Some(&request),
                    None,
                    "not_allowed",
                    json!({"condition_error": still.error}),
                )
                .await?;
                return Err(EngineError::forbidden(
                    "not_allowed",
                    format!("you may no longer request '{}'", gate.name),
                ));
            }
            let jti = grant_id(now);
            let client_id = ["client_id", "azp"]
                .iter()
                .find_map(|c| who.claims().get(*c).and_then(Value::as_str))
                .unwrap_or(&who.identity().subject)
                .to_string();
            let evaluation = policy::evaluate(&gate.rules, &request.decisions);
            let claims = grant_claims(&gate, &request, &evaluation, &jti, &client_id, now);
            let (token, kid) = signer.sign(&claims).await.map_err(EngineError::Signing)?;
            let grant = GrantRecord {
                jti: jti.clone(),
                request_id: request.id,
                kid: kid.clone(),
                issued_at: now,
                expires_at: end,
                revoked_at: None,
            };
            let events = [NewAuditEvent {
                at: now,
                actor: Actor::from(who.identity()),
                action: AuditAction::GrantIssued,
                request_id: Some(request.id),
                digest: Some(request.digest.clone()),
                detail: json!({
                    "jti": jti,
                    "kid": kid,
                    "audience": gate.grant.audience,
                    "scope": claims["scope"],
                    "expires_at": crate::time::rfc3339(&end),
                    "single_use": gate.grant.single_use,
                }),
            }];
            let outbox = self.announce(AuditAction::GrantIssued, &request, Some(&evaluation), now);
            match self
                .store
                .insert_grant(
                    &grant,
                    request.version,
                    gate.grant.single_use,
                    &events,
                    &outbox,
                )
                .await
            {
                Ok(()) => Ok(Attempt::Done(IssuedGrant {
                    token: Secret::new(token),
                    jti,
                    expires_at: end,
                    request,
                })),
                Err(StoreError::Conflict) => Ok(Attempt::Lost),
                Err(StoreError::Duplicate(_)) => {
                    self.audit_refusal(
                        who,
                        "grant.issue",
                        Some(&request),
                        None,
                        "already_redeemed",
                        json!({}),
                    )
                    .await?;
                    Err(EngineError::AlreadyRedeemed)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// A grant and its request, for introspection by a resource server.
    pub async fn grant_status(
        &self,
        jti: &str,
    ) -> Result<Option<(GrantRecord, Arc<Request>)>, EngineError> {
        let Some(grant) = self.store.get_grant(jti).await? else {
            return Ok(None);
        };
        let request = self.store.get_request(&grant.request_id).await?;
        Ok(request.map(|r| (grant, r)))
    }

    /// Revokes one grant token (RFC 7009). Revoking twice changes nothing.
    pub async fn revoke_grant(&self, actor: Actor, jti: &str) -> Result<bool, EngineError> {
        let Some(grant) = self.store.get_grant(jti).await? else {
            return Ok(false);
        };
        let now = self.clock.now();
        let events = [NewAuditEvent {
            at: now,
            actor,
            action: AuditAction::GrantRevoked,
            request_id: Some(grant.request_id),
            digest: None,
            detail: json!({"jti": jti}),
        }];
        Ok(self.store.revoke_grant(jti, now, &events).await?)
    }
}

/// A fresh grant id issued at `now`: 32 hex digits, the millisecond in the first 12 and 80
/// random bits after. Ids issued close together sort close together, so the grants index
/// takes each new one near the last instead of on a random page.
fn grant_id(now: Timestamp) -> String {
    let ms = u128::from(u64::try_from(now.timestamp_millis()).unwrap_or(0) & 0xffff_ffff_ffff);
    let random = rand::random::<u128>() >> 48;
    format!("{:032x}", (ms << 80) | random)
}

/// The claims of a grant token for an approved request, before `iss`, signing and `kid`.
///
/// `exp` is the end of the approved window: approval time plus the requested duration,
/// capped by the gate's maximum. The scope template is filled from validated parameters only.
fn grant_claims(
    gate: &Gate,
    request: &Request,
    evaluation: &Evaluation,
    jti: &str,
    client_id: &str,
    now: Timestamp,
) -> Value {
    let approvers: Vec<Value> = request
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.verdict == Verdict::Approve)
        .map(|(i, d)| {
            json!({
                "iss": d.approver.identity().issuer,
                "sub": d.approver.identity().subject,
                "name": d.approver.name(),
                "rule": evaluation.rule_of(i),
            })
        })
        .collect();
    let expires = window_end(gate, request).unwrap_or(now);
    json!({
        "sub": request.requester.identity().subject,
        "aud": gate.grant.audience,
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": expires.timestamp(),
        "jti": jti,
        "client_id": client_id,
        "scope": gate.grant.scope.as_deref().map(|t| render_scope(t, &request.params)),
        "request_id": request.id,
        "gate": gate.name,
        "params": request.params,
        "digest": request.digest,
        "requester": {"iss": request.requester.identity().issuer, "sub": request.requester.identity().subject},
        "approval": request.approval,
        "approvers": approvers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_sort_by_issue_time_and_do_not_repeat() {
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let ids: Vec<String> = [1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000]
            .into_iter()
            .flat_map(|ms| [grant_id(at(ms)), grant_id(at(ms))])
            .collect();
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        // The millisecond leads: ids of a later millisecond sort after.
        assert_eq!(&ids[0][..12], &format!("{:012x}", 1_700_000_000_000_u64));
        for pair in [0, 2] {
            let (earlier, later) = (&ids[pair..pair + 2], &ids[pair + 2..pair + 4]);
            assert!(earlier.iter().max() < later.iter().min());
        }
        // The random 80 bits keep two of one millisecond apart.
        assert_ne!(ids[0], ids[1]);
    }
}
