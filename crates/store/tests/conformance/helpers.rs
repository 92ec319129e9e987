//! Helpers the cases of several ports share.

use super::Db;
use super::fixtures::*;
use countersign_core::RequestId;
use countersign_core::audit::{AuditEvent, NewAuditEvent};
use countersign_core::grant::{Delivery, DeliveryState, GrantRecord, OutboxMessage};
use countersign_core::ports::AuditQuery;
use countersign_core::request::Request;
use serde_json::json;
use std::sync::Arc;

pub(crate) async fn all_events(db: &Db) -> Vec<AuditEvent> {
    db.store
        .audit_events(&AuditQuery {
            request_id: None,
            after_seq: 0,
            limit: 5000,
        })
        .await
        .expect("read events")
}

pub(crate) fn seqs(events: &[AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

pub(crate) async fn deliveries(db: &Db, state: Option<DeliveryState>) -> Vec<Delivery> {
    db.outbox
        .list_deliveries(state, None, 500)
        .await
        .expect("list deliveries")
}

pub(crate) fn delivery_ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.message.id.clone()).collect()
}

pub(crate) fn message_ids(messages: &[OutboxMessage]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// A request approved by bob (version 2), with its events.
pub(crate) async fn approved(db: &Db, ms: i64) -> Request {
    let req = request(ms, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    db.store
        .apply(&approve(&req, 1, &person("okta", "bob")))
        .await
        .expect("approve");
    stored(db, &req.id).await
}

pub(crate) fn issued(grant: &GrantRecord, request: &Request) -> Vec<NewAuditEvent> {
    vec![event(
        "grant.issued",
        Some(request),
        json!({"jti": grant.jti, "kid": grant.kid}),
    )]
}

/// Everything a refused write must not have touched.
pub(crate) async fn snapshot(
    db: &Db,
    request: &Request,
) -> (Option<Arc<Request>>, Vec<AuditEvent>, Vec<Delivery>) {
    (
        db.store.get_request(&request.id).await.expect("get"),
        all_events(db).await,
        deliveries(db, None).await,
    )
}

/// The request `id` as the store reads it now.
pub(crate) async fn stored(db: &Db, id: &RequestId) -> Request {
    let read = db.store.get_request(id).await.expect("get");
    Arc::unwrap_or_clone(read.expect("exists"))
}

pub(crate) fn lease() -> chrono::Duration {
    chrono::Duration::seconds(60)
}
