//! The webhook outbox in SQLite: deliveries written with the change they announce, claimed
//! under the writer's lock.

use async_trait::async_trait;
use countersign_core::grant::{Delivery, DeliveryState, OutboxMessage};
use countersign_core::ports::{AttemptOutcome, OutboxStore};
use countersign_core::{StoreError, Timestamp};
use rusqlite::types::{ToSql, Value};
use rusqlite::{Row, params, params_from_iter};

use super::SqliteStore;
use super::writer::Batch;
use crate::codec::{DeliveryRow, attempt_columns, lease_end};
use crate::error::{sqlite_backend, sqlite_unique_violation};
use crate::sql;

/// Reads a delivery's columns ([`sql::DELIVERY_COLUMNS`]).
fn delivery_row(row: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: row.get(0)?,
        gate: row.get(1)?,
        webhook: row.get(2)?,
        url: row.get(3)?,
        event: row.get(4)?,
        request_id: row.get(5)?,
        payload: row.get(6)?,
        created_at: row.get(7)?,
        state: row.get(8)?,
        attempts: row.get(9)?,
        next_attempt_at: row.get(10)?,
        last_error: row.get(11)?,
        updated_at: row.get(12)?,
    })
}

/// Writes `outbox` as pending deliveries, due at their creation time.
pub(super) fn insert_outbox(batch: &Batch<'_>, outbox: &[OutboxMessage]) -> Result<(), StoreError> {
    for message in outbox {
        let d = DeliveryRow::encode_new(message)?;
        let inserted = batch.execute(
            sql::INSERT_DELIVERY,
            params![
                d.id,
                d.gate,
                d.webhook,
                d.url,
                d.event,
                d.request_id,
                d.payload,
                d.created_at,
                d.state,
                d.attempts,
                d.next_attempt_at,
                d.last_error,
                d.updated_at,
            ],
        );
        if let Err(e) = inserted {
            return Err(if sqlite_unique_violation(&e) {
                StoreError::Duplicate(format!("outbox message {} already exists", message.id))
            } else {
                sqlite_backend("writing to the webhook outbox", e)
            });
        }
    }
    Ok(())
}

#[async_trait]
impl OutboxStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let until = lease_end(now, lease)?;
        // The write lock is held from the read to the commit: no other writer, in this
        // process or another, can take the same rows in between.
        self.writer
            .write(move |batch| {
                let rows = batch
                    .query_rows(
                        sql::DUE_DELIVERIES,
                        (
                            now.timestamp_millis(),
                            sql::page_size(limit, sql::MAX_DELIVERY_PAGE),
                        ),
                        delivery_row,
                    )
                    .map_err(|e| sqlite_backend("claiming deliveries", e))?;
                let mut claimed = rows
                    .into_iter()
                    .map(DeliveryRow::decode)
                    .collect::<Result<Vec<_>, _>>()?;
                if claimed.is_empty() {
                    return Ok(claimed);
                }
                let mut text = "UPDATE deliveries SET next_attempt_at = ? WHERE id IN (".to_owned();
                let mut values: Vec<&dyn ToSql> = vec![&until];
                for (i, d) in claimed.iter().enumerate() {
                    text.push_str(if i == 0 { "?" } else { ", ?" });
                    values.push(&d.message.id);
                }
                text.push(')');
                batch
                    .execute(&text, values.as_slice())
                    .map_err(|e| sqlite_backend("claiming deliveries", e))?;
                let until = countersign_core::time::from_millis(until)
                    .ok_or_else(|| StoreError::backend("the delivery lease is out of range"))?;
                for d in &mut claimed {
                    d.next_attempt_at = until;
                }
                Ok(claimed)
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (state, next, error) = attempt_columns(outcome);
        let (id, error) = (id.to_owned(), error.map(str::to_owned));
        self.writer
            .write(move |batch| {
                let changed = batch
                    .execute(
                        sql::RECORD_ATTEMPT,
                        params![state, next, error, now.timestamp_millis(), id],
                    )
                    .map_err(|e| sqlite_backend("recording a delivery attempt", e))?;
                if changed == 0 {
                    let exists = batch
                        .integer(sql::DELIVERY_EXISTS, [id.as_str()])
                        .map_err(|e| sqlite_backend("reading a delivery", e))?;
                    if exists.unwrap_or(0) == 0 {
                        return Err(StoreError::NotFound);
                    }
                    // Delivered or failed meanwhile (a lease that ran out): that outcome stands.
                    tracing::debug!(
                        "store: attempt on a delivery that is no longer pending ignored"
                    );
                }
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_deliveries(
        &self,
        state: Option<DeliveryState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut text = format!(
            "SELECT {} FROM deliveries WHERE 1 = 1",
            sql::DELIVERY_COLUMNS
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
        values.push(Value::Integer(sql::page_size(
            limit,
            sql::MAX_DELIVERY_PAGE,
        )));
        self.readers
            .read(move |conn| {
                conn.prepare_cached(&text)
                    .and_then(|mut s| {
                        s.query_map(params_from_iter(values), delivery_row)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|e| sqlite_backend("listing deliveries", e))?
                    .into_iter()
                    .map(DeliveryRow::decode)
                    .collect()
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn retry_delivery(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .write(move |batch| {
                let changed = batch
                    .execute(sql::RETRY_DELIVERY, (now.timestamp_millis(), id))
                    .map_err(|e| sqlite_backend("retrying a delivery", e))?;
                Ok(changed > 0)
            })
            .await
    }
}
