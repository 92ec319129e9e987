//! The audit chain in SQLite: appending events inside the writer's batch, reading pages.

use countersign_core::StoreError;
use countersign_core::audit::{self, AuditEvent, ChainLink, NewAuditEvent};
use countersign_core::ports::AuditQuery;
use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

use super::SqliteStore;
use super::writer::Batch;
use crate::codec::EventRow;
use crate::error::sqlite_backend;
use crate::sql;

const HEAD_SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";

/// Chains `events` after the batch's head and writes them, moving the head (which the batch
/// stores once, before it commits).
pub(crate) fn append_events(
    batch: &mut Batch<'_>,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let (mut seq, mut hash) = match batch.head.take() {
        Some(head) => head,
        None => batch
            .query_row(HEAD_SQL, [], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| sqlite_backend("reading the audit chain head", e))?
            .ok_or_else(|| StoreError::backend("reading the audit chain head: it is missing"))?,
    };
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        let chained = AuditEvent::chain(event.clone(), seq, &hash);
        rows.push(EventRow::encode(&chained)?);
        seq = chained.seq;
        hash = chained.hash;
    }
    // One statement for a write's events, in chunks that stay under SQLite's parameter limit.
    for chunk in rows.chunks(sql::SQLITE_EVENTS_PER_INSERT) {
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 10);
        for e in chunk {
            let row: [&dyn ToSql; 10] = [
                &e.seq,
                &e.at,
                &e.actor_issuer,
                &e.actor_subject,
                &e.action,
                &e.request_id,
                &e.digest,
                &e.detail,
                &e.prev_hash,
                &e.hash,
            ];
            values.extend(row);
        }
        batch
            .execute(&sql::sqlite_insert_events(chunk.len()), values.as_slice())
            .map_err(|e| sqlite_backend("appending audit events", e))?;
    }
    batch.head = Some((seq, hash));
    Ok(())
}

/// Reads an event's columns ([`sql::SELECT_EVENTS`]).
fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: row.get(0)?,
        at: row.get(1)?,
        actor_issuer: row.get(2)?,
        actor_subject: row.get(3)?,
        action: row.get(4)?,
        request_id: row.get(5)?,
        digest: row.get(6)?,
        detail: row.get(7)?,
        prev_hash: row.get(8)?,
        hash: row.get(9)?,
    })
}

/// A page of events as stored, in seq order.
fn event_rows(conn: &Connection, query: &AuditQuery) -> Result<Vec<EventRow>, StoreError> {
    let failed = |e| sqlite_backend("reading audit events", e);
    let limit = sql::page_size(query.limit, sql::MAX_EVENT_PAGE);
    let rows = match &query.request_id {
        None => conn
            .prepare_cached(sql::SELECT_EVENTS)
            .and_then(|mut s| s.query_map((query.after_seq, limit), event_row)?.collect()),
        Some(id) => conn
            .prepare_cached(sql::SELECT_EVENTS_OF_REQUEST)
            .and_then(|mut s| {
                s.query_map((id.to_string(), query.after_seq, limit), event_row)?
                    .collect()
            }),
    };
    rows.map_err(failed)
}

pub(super) async fn append(
    store: &SqliteStore,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let events = events.to_vec();
    store
        .writer
        .write(move |batch| append_events(batch, &events))
        .await
}

pub(super) async fn events(
    store: &SqliteStore,
    query: &AuditQuery,
) -> Result<Vec<AuditEvent>, StoreError> {
    let query = query.clone();
    store
        .readers
        .read(move |conn| {
            event_rows(conn, &query)?
                .into_iter()
                .map(EventRow::decode)
                .collect()
        })
        .await
}

pub(super) async fn links(
    store: &SqliteStore,
    query: &AuditQuery,
) -> Result<Vec<ChainLink>, StoreError> {
    let query = query.clone();
    // Read on the reader's thread, hashed on the verifier's threads: the reader is free for
    // the next page meanwhile.
    let rows = store
        .readers
        .read(move |conn| event_rows(conn, &query))
        .await?;
    Ok(audit::in_parallel(&rows, |part| {
        let mut buf = Vec::with_capacity(1024);
        part.iter().map(|row| row.link(&mut buf)).collect()
    }))
}

pub(super) async fn head(store: &SqliteStore) -> Result<(i64, String), StoreError> {
    store
        .readers
        .read(|conn| {
            conn.prepare_cached(HEAD_SQL)
                .and_then(|mut s| s.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
                .map_err(|e| sqlite_backend("reading the audit chain head", e))
        })
        .await
}
