//! The audit chain in PostgreSQL: events chained under a lock on the chain head.

use countersign_core::StoreError;
use countersign_core::audit::{self, AuditEvent, ChainLink, NewAuditEvent};
use countersign_core::ports::AuditQuery;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::{PgQuery, PostgresStore};
use crate::codec::EventRow;
use crate::error::backend;
use crate::sql;

/// Locks the chain head until the transaction ends.
const HEAD_SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";

fn event_row(row: &PgRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
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

/// Binds `e` in the order of [`sql::INSERT_EVENT`].
fn bind_event<'q>(q: PgQuery<'q>, e: &'q EventRow) -> PgQuery<'q> {
    q.bind(e.seq)
        .bind(e.at)
        .bind(e.actor_issuer.as_str())
        .bind(e.actor_subject.as_str())
        .bind(e.action.as_str())
        .bind(e.request_id.as_deref())
        .bind(e.digest.as_deref())
        .bind(e.detail.as_str())
        .bind(e.prev_hash.as_str())
        .bind(e.hash.as_str())
}

/// Chains `events` after the current head and writes them, moving the head.
pub(super) async fn append_events(
    conn: &mut PgConnection,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let head = sqlx::query(HEAD_SQL)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| backend("reading the audit chain head", e))?;
    let mut seq: i64 = head
        .try_get("seq")
        .map_err(|e| backend("reading the audit chain head", e))?;
    let mut hash: String = head
        .try_get("hash")
        .map_err(|e| backend("reading the audit chain head", e))?;
    for event in events {
        let chained = AuditEvent::chain(event.clone(), seq, &hash);
        let row = EventRow::encode(&chained)?;
        bind_event(sqlx::query(sql::INSERT_EVENT), &row)
            .execute(&mut *conn)
            .await
            .map_err(|e| backend("appending an audit event", e))?;
        seq = chained.seq;
        hash = chained.hash;
    }
    sqlx::query(sql::UPDATE_HEAD)
        .bind(seq)
        .bind(hash.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| backend("moving the audit chain head", e))?;
    Ok(())
}

/// A page of events as stored, in seq order.
async fn event_rows(
    store: &PostgresStore,
    query: &AuditQuery,
) -> Result<Vec<EventRow>, StoreError> {
    let limit = sql::page_size(query.limit, sql::MAX_EVENT_PAGE);
    let rows = match &query.request_id {
        None => {
            sqlx::query(sql::SELECT_EVENTS)
                .bind(query.after_seq)
                .bind(limit)
                .fetch_all(&store.pool)
                .await
        }
        Some(id) => {
            sqlx::query(sql::SELECT_EVENTS_OF_REQUEST)
                .bind(id.to_string())
                .bind(query.after_seq)
                .bind(limit)
                .fetch_all(&store.pool)
                .await
        }
    }
    .map_err(|e| backend("reading audit events", e))?;
    rows.iter()
        .map(|r| event_row(r).map_err(|e| backend("reading audit events", e)))
        .collect()
}

pub(super) async fn append(
    store: &PostgresStore,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    append_events(&mut tx, events).await?;
    tx.commit()
        .await
        .map_err(|e| backend("committing audit events", e))
}

pub(super) async fn events(
    store: &PostgresStore,
    query: &AuditQuery,
) -> Result<Vec<AuditEvent>, StoreError> {
    event_rows(store, query)
        .await?
        .into_iter()
        .map(EventRow::decode)
        .collect()
}

pub(super) async fn links(
    store: &PostgresStore,
    query: &AuditQuery,
) -> Result<Vec<ChainLink>, StoreError> {
    let rows = event_rows(store, query).await?;
    Ok(audit::in_parallel(&rows, |part| {
        let mut buf = Vec::with_capacity(1024);
        part.iter().map(|row| row.link(&mut buf)).collect()
    }))
}

pub(super) async fn head(store: &PostgresStore) -> Result<(i64, String), StoreError> {
    sqlx::query_as::<_, (i64, String)>("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&store.pool)
        .await
        .map_err(|e| backend("reading the audit chain head", e))
}
