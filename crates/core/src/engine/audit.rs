//! The audit log: reading it (one request's trail, or everything for audit readers) and the
//! events that change no request — refusals, operator actions, failed authentications.

use serde_json::{Value, json};

use super::Engine;
use crate::audit::{Actor, AuditAction, AuditEvent, NewAuditEvent};
use crate::error::EngineError;
use crate::ports::AuditQuery;
use crate::principal::Principal;
use crate::request::Request;

impl Engine {
    /// Records a refused operator action (an authorization failure outside a request).
    pub async fn record_denial(
        &self,
        who: &Principal,
        attempted: &str,
        code: &str,
    ) -> Result<(), EngineError> {
        self.audit_refusal(who, attempted, None, None, code, json!({}))
            .await
    }

    /// Records an operator action, e.g. a manual webhook retry.
    pub async fn record_operator_action(
        &self,
        who: &Principal,
        action: AuditAction,
        detail: Value,
    ) -> Result<(), EngineError> {
        let event = NewAuditEvent {
            at: self.clock.now(),
            actor: Actor::from(who.identity()),
            action,
            request_id: None,
            digest: None,
            detail,
        };
        Ok(self.store.append_audit(&[event]).await?)
    }

    /// Whether `who` holds the audit reader (operator) role.
    pub fn is_audit_reader(&self, who: &Principal) -> bool {
        self.audit_readers.as_ref().is_some_and(|c| {
            c.evaluate(&[("principal", &who.to_condition_value())])
                .value
        })
    }

    /// Audit events: of one request, for whoever may see that request; of everything, for
    /// audit readers only.
    pub async fn audit(
        &self,
        who: &Principal,
        query: AuditQuery,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        let query = AuditQuery {
            limit: query.limit.clamp(1, 1000),
            ..query
        };
        if !self.is_audit_reader(who) {
            match &query.request_id {
                Some(id) => {
                    self.get(who, id).await?;
                }
                None => {
                    self.audit_refusal(who, "audit.read", None, None, "not_allowed", json!({}))
                        .await?;
                    return Err(EngineError::forbidden(
                        "not_allowed",
                        "reading the whole audit log needs the audit reader role; ask for one request's trail with request_id",
                    ));
                }
            }
        }
        Ok(self.store.audit_events(&query).await?)
    }

    /// Records a failed authentication (an unverifiable bearer token, say). `detail` must not
    /// contain the credential.
    pub async fn record_auth_failure(
        &self,
        reason: &str,
        detail: Value,
    ) -> Result<(), EngineError> {
        let event = NewAuditEvent {
            at: self.clock.now(),
            actor: Actor::anonymous(),
            action: AuditAction::AuthFailed,
            request_id: None,
            digest: None,
            detail: json!({"reason": reason, "detail": detail}),
        };
        Ok(self.store.append_audit(&[event]).await?)
    }

    pub(super) async fn audit_refusal(
        &self,
        who: &Principal,
        attempted: &str,
        request: Option<&Request>,
        rule: Option<&str>,
        code: &str,
        extra: Value,
    ) -> Result<(), EngineError> {
        let event = NewAuditEvent {
            at: self.clock.now(),
            actor: Actor::from(who.identity()),
            action: AuditAction::AccessDenied,
            request_id: request.map(|r| r.id),
            digest: request.map(|r| r.digest.clone()),
            detail: json!({"attempted": attempted, "reason": code, "rule": rule, "detail": extra}),
        };
        Ok(self.store.append_audit(&[event]).await?)
    }
}
