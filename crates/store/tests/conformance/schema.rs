//! The schema: migrations applied once.

use super::Db;
use super::fixtures::*;
use countersign_store::verify_audit;
use std::sync::Arc;

pub async fn migrations_are_idempotent(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    db.store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    // Opening again (as every start does) migrates nothing and loses nothing.
    let again = countersign_store::open(&db.url).await.expect("reopen");
    assert_eq!(
        again.get_request(&req.id).await.expect("get"),
        Some(Arc::new(req))
    );
    assert_eq!(verify_audit(again.as_ref()).await, Ok(1));
}
