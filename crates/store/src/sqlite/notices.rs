//! The notification outbox and the directory of people in SQLite: notifications written with
//! the change they announce, claimed under the writer's lock.

use async_trait::async_trait;
use countersign_core::notice::{
    NoticeMessage, NoticeOutcome, NoticeState, NoticeThread, Person, QueuedNotice,
};
use countersign_core::ports::NoticeStore;
use countersign_core::{Principal, StoreError, Timestamp};
use rusqlite::types::{ToSql, Value};
use rusqlite::{Row, params, params_from_iter};

use super::SqliteStore;
use super::writer::Batch;
use crate::codec::{BatchRow, NoticeRow, decode_person, encode_person, lease_end, notice_columns};
use crate::error::{sqlite_backend, sqlite_unique_violation};
use crate::sql::{self, superseded};

/// Reads a notification's columns ([`sql::NOTICE_COLUMNS`]).
fn notice_row(row: &Row<'_>) -> rusqlite::Result<NoticeRow> {
    Ok(NoticeRow {
        id: row.get(0)?,
        request_id: row.get(1)?,
        channel: row.get(2)?,
        thread_key: row.get(3)?,
        kind: row.get(4)?,
        version: row.get(5)?,
        to_requester: row.get(6)?,
        due_at: row.get(7)?,
        created_at: row.get(8)?,
        state: row.get(9)?,
        attempts: row.get(10)?,
        next_attempt_at: row.get(11)?,
        last_error: row.get(12)?,
        updated_at: row.get(13)?,
    })
}

/// Writes a change's notifications as one waiting batch (one row, however many channels
/// hear): the worker fans it out before it claims anything ([`fan_out`]).
pub(super) fn insert_notices(
    batch: &Batch<'_>,
    notices: &[NoticeMessage],
) -> Result<(), StoreError> {
    let Some(first) = notices.first() else {
        return Ok(());
    };
    let row = BatchRow::encode(notices)?;
    match batch.execute(
        sql::INSERT_NOTICE_BATCH,
        params![row.id, row.request_id, row.notices, row.created_at],
    ) {
        Ok(_) => Ok(()),
        Err(e) if sqlite_unique_violation(&e) => Err(StoreError::Duplicate(format!(
            "notification {} already exists",
            first.id
        ))),
        Err(e) => Err(sqlite_backend("writing to the notification outbox", e)),
    }
}

/// Moves the waiting batches into `notifications`, oldest first, a row per notification (an
/// id already there is kept as it is).
fn fan_out(batch: &Batch<'_>) -> Result<(), StoreError> {
    let waiting = batch
        .query_rows(sql::WAITING_BATCHES, [sql::MAX_BATCHES], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(|e| sqlite_backend("reading waiting notifications", e))?;
    for (id, notices) in &waiting {
        let rows: Result<Vec<NoticeRow>, StoreError> = BatchRow::decode(id, notices)
            .and_then(|notices| notices.iter().map(NoticeRow::encode_new).collect());
        match rows {
            Ok(rows) => insert_rows(batch, &rows)?,
            // Unreadable: dropped, with the reason, rather than holding its request's
            // notifications back for ever.
            Err(error) => tracing::error!(%error, batch = %id, "notifications dropped"),
        }
        batch
            .execute("DELETE FROM notice_batches WHERE id = ?", [id])
            .map_err(|e| sqlite_backend("fanning out notifications", e))?;
    }
    Ok(())
}

/// Inserts notification rows in one statement; an id already stored is left alone.
fn insert_rows(batch: &Batch<'_>, rows: &[NoticeRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let text = sql::insert_notices_ignoring_duplicates(rows.len());
    let mut values: Vec<&dyn ToSql> = Vec::with_capacity(rows.len() * 14);
    for n in rows {
        values.extend([
            &n.id as &dyn ToSql,
            &n.request_id,
            &n.channel,
            &n.thread_key,
            &n.kind,
            &n.version,
            &n.to_requester,
            &n.due_at,
            &n.created_at,
            &n.state,
            &n.attempts,
            &n.next_attempt_at,
            &n.last_error,
            &n.updated_at,
        ]);
    }
    batch
        .execute(&text, values.as_slice())
        .map_err(|e| sqlite_backend("fanning out notifications", e))?;
    Ok(())
}

#[async_trait]
impl NoticeStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn claim_notices(
        &self,
        now: Timestamp,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<QueuedNotice>, StoreError> {
        let until = lease_end(now, lease)?;
        self.writer
            .write(move |batch| {
                fan_out(batch)?;
                let rows = batch
                    .query_rows(
                        sql::DUE_NOTICES,
                        (
                            now.timestamp_millis(),
                            sql::page_size(limit, sql::MAX_NOTICE_PAGE),
                        ),
                        notice_row,
                    )
                    .map_err(|e| sqlite_backend("claiming notifications", e))?;
                let mut claimed = rows
                    .into_iter()
                    .map(NoticeRow::decode)
                    .collect::<Result<Vec<_>, _>>()?;
                if claimed.is_empty() {
                    return Ok(claimed);
                }
                let mut text =
                    "UPDATE notifications SET next_attempt_at = ? WHERE id IN (".to_owned();
                let mut values: Vec<&dyn ToSql> = vec![&until];
                for (i, n) in claimed.iter().enumerate() {
                    text.push_str(if i == 0 { "?" } else { ", ?" });
                    values.push(&n.message.id);
                }
                text.push(')');
                batch
                    .execute(&text, values.as_slice())
                    .map_err(|e| sqlite_backend("claiming notifications", e))?;
                let until = countersign_core::time::from_millis(until)
                    .ok_or_else(|| StoreError::backend("the notification lease is out of range"))?;
                for n in &mut claimed {
                    n.next_attempt_at = until;
                }
                Ok(claimed)
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn notice_thread(&self, notice: &NoticeMessage) -> Result<NoticeThread, StoreError> {
        let (request, key) = (notice.request_id.to_string(), notice.thread_key());
        self.readers
            .read(move |conn| {
                let mut statement = conn
                    .prepare_cached(sql::NOTICE_THREAD)
                    .map_err(|e| sqlite_backend("reading a notification thread", e))?;
                let mut rows = statement
                    .query((request, key))
                    .map_err(|e| sqlite_backend("reading a notification thread", e))?;
                let row = rows
                    .next()
                    .map_err(|e| sqlite_backend("reading a notification thread", e))?;
                let Some(row) = row else {
                    return Ok(NoticeThread::default());
                };
                Ok(NoticeThread {
                    thread: row
                        .get(0)
                        .map_err(|e| sqlite_backend("reading a notification thread", e))?,
                    shown_version: row
                        .get(1)
                        .map_err(|e| sqlite_backend("reading a notification thread", e))?,
                })
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_notice(
        &self,
        notice: &NoticeMessage,
        outcome: &NoticeOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (state, next, error) = notice_columns(outcome);
        let error = error.map(str::to_owned);
        let id = notice.id.clone();
        let (request, key) = (notice.request_id.to_string(), notice.thread_key());
        let shown = match outcome {
            NoticeOutcome::Sent { thread, version } => Some((thread.clone(), *version)),
            _ => None,
        };
        let at = now.timestamp_millis();
        self.writer
            .write(move |batch| {
                let record = |batch: &Batch<'_>| {
                    batch
                        .execute(sql::RECORD_NOTICE, params![state, next, error, at, id])
                        .map_err(|e| sqlite_backend("recording a notification attempt", e))
                };
                let mut changed = record(batch)?;
                if changed == 0 {
                    // Recorded before any claim moved it out of its batch.
                    fan_out(batch)?;
                    changed = record(batch)?;
                }
                if changed == 0 {
                    let exists = batch
                        .integer(sql::NOTICE_EXISTS, [id.as_str()])
                        .map_err(|e| sqlite_backend("reading a notification", e))?;
                    if exists.unwrap_or(0) == 0 {
                        return Err(StoreError::NotFound);
                    }
                    tracing::debug!("store: attempt on a notification no longer pending ignored");
                    return Ok(());
                }
                if let Some((thread, version)) = shown {
                    batch
                        .execute(
                            sql::SHOW_ON_THREAD_SQLITE,
                            params![request, key, thread, version, at],
                        )
                        .map_err(|e| sqlite_backend("recording a notification thread", e))?;
                    batch
                        .execute(
                            sql::SUPERSEDE_NOTICES,
                            params![superseded(version), at, request, key, version],
                        )
                        .map_err(|e| sqlite_backend("skipping superseded notifications", e))?;
                }
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn defer_notice(&self, notice: &NoticeMessage, at: Timestamp) -> Result<(), StoreError> {
        let id = notice.id.clone();
        self.writer
            .write(move |batch| {
                batch
                    .execute(sql::DEFER_NOTICE, (at.timestamp_millis(), id))
                    .map_err(|e| sqlite_backend("deferring a notification", e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_notices(
        &self,
        state: Option<NoticeState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QueuedNotice>, StoreError> {
        let mut text = format!(
            "SELECT {} FROM notifications WHERE 1 = 1",
            sql::NOTICE_COLUMNS
        );
        let mut values = Vec::new();
        if let Some(state) = state {
            text.push_str(" AND state = ?");
            values.push(Value::Text(state.as_str().to_owned()));
        }
        if let Some(after) = after {
            text.push_str(" AND id < ?");
            values.push(Value::Text(after.to_owned()));
        }
        text.push_str(" ORDER BY id DESC LIMIT ?");
        values.push(Value::Integer(sql::page_size(limit, sql::MAX_NOTICE_PAGE)));
        // What waits in batches is listed too.
        self.writer.write(|batch| fan_out(batch)).await?;
        self.readers
            .read(move |conn| {
                conn.prepare_cached(&text)
                    .and_then(|mut s| {
                        s.query_map(params_from_iter(values), notice_row)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|e| sqlite_backend("listing notifications", e))?
                    .into_iter()
                    .map(NoticeRow::decode)
                    .collect()
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn retry_notice(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .write(move |batch| {
                let changed = batch
                    .execute(sql::RETRY_NOTICE, (now.timestamp_millis(), id))
                    .map_err(|e| sqlite_backend("retrying a notification", e))?;
                Ok(changed > 0)
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn see_person(&self, principal: &Principal, at: Timestamp) -> Result<(), StoreError> {
        let stored = encode_person(principal)?;
        let identity = principal.identity().clone();
        self.writer
            .write(move |batch| {
                batch
                    .execute(
                        sql::SEE_PERSON,
                        params![
                            identity.issuer,
                            identity.subject,
                            stored,
                            at.timestamp_millis()
                        ],
                    )
                    .map_err(|e| sqlite_backend("recording a person", e))?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn people(&self, since: Timestamp, limit: u32) -> Result<Vec<Person>, StoreError> {
        let limit = sql::page_size(limit, sql::MAX_PEOPLE);
        self.readers
            .read(move |conn| {
                conn.prepare_cached(sql::PEOPLE)
                    .and_then(|mut s| {
                        s.query_map((since.timestamp_millis(), limit), |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|e| sqlite_backend("listing people", e))?
                    .into_iter()
                    .map(|(p, seen)| decode_person(&p, seen))
                    .collect()
            })
            .await
    }
}
