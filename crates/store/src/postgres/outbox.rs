//! The webhook outbox in PostgreSQL: deliveries written with the change they announce,
//! claimed with `FOR UPDATE SKIP LOCKED`.

use async_trait::async_trait;
use countersign_core::grant::{Delivery, DeliveryState, OutboxMessage};
use countersign_core::ports::{AttemptOutcome, OutboxStore};
use countersign_core::{StoreError, Timestamp};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PgQuery, PostgresStore};
use crate::codec::{DeliveryRow, attempt_columns, lease_end};
use crate::error::{backend, is_unique_violation};
use crate::sql;

fn delivery_row(row: &PgRow) -> Result<DeliveryRow, sqlx::Error> {
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        gate: row.try_get("gate")?,
        webhook: row.try_get("webhook")?,
        url: row.try_get("url")?,
        event: row.try_get("event")?,
        request_id: row.try_get("request_id")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Binds `d` in the order of [`sql::INSERT_DELIVERY`].
fn bind_delivery<'q>(q: PgQuery<'q>, d: &'q DeliveryRow) -> PgQuery<'q> {
    q.bind(d.id.as_str())
        .bind(d.gate.as_str())
        .bind(d.webhook)
        .bind(d.url.as_str())
        .bind(d.event.as_str())
        .bind(d.request_id.as_str())
        .bind(d.payload.as_str())
        .bind(d.created_at)
        .bind(d.state.as_str())
        .bind(d.attempts)
        .bind(d.next_attempt_at)
        .bind(d.last_error.as_deref())
        .bind(d.updated_at)
}

/// Writes `outbox` as pending deliveries, due at their creation time.
pub(super) async fn insert_outbox(
    conn: &mut PgConnection,
    outbox: &[OutboxMessage],
) -> Result<(), StoreError> {
    for message in outbox {
        let row = DeliveryRow::encode_new(message)?;
        if let Err(e) = bind_delivery(sqlx::query(sql::INSERT_DELIVERY), &row)
            .execute(&mut *conn)
            .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate(format!("outbox message {} already exists", message.id))
            } else {
                backend("writing to the webhook outbox", e)
            });
        }
    }
    Ok(())
}

/// Reads delivery rows.
fn read_deliveries(rows: &[PgRow]) -> Result<Vec<Delivery>, StoreError> {
    rows.iter()
        .map(|r| {
            delivery_row(r)
                .map_err(|e| backend("reading deliveries", e))
                .and_then(DeliveryRow::decode)
        })
        .collect()
}

#[async_trait]
impl OutboxStore for PostgresStore {
    #[tracing::instrument(skip_all)]
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let until = lease_end(now, lease)?;
        // The due rows are locked until the commit, skipping rows another worker holds; once
        // committed their `next_attempt_at` is past `now`, so no later claim takes them
        // before the lease ends.
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(sql::DUE_DELIVERIES_SKIP_LOCKED)
            .bind(now.timestamp_millis())
            .bind(sql::page_size(limit, sql::MAX_DELIVERY_PAGE))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend("claiming deliveries", e))?;
        let mut claimed = read_deliveries(&rows)?;
        if claimed.is_empty() {
            return Ok(claimed);
        }
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("UPDATE deliveries SET next_attempt_at = ");
        q.push_bind(until).push(" WHERE id IN (");
        let mut list = q.separated(", ");
        for d in &claimed {
            list.push_bind(d.message.id.as_str());
        }
        q.push(")");
        q.build()
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("claiming deliveries", e))?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a claim", e))?;
        let until = countersign_core::time::from_millis(until)
            .ok_or_else(|| StoreError::backend("the delivery lease is out of range"))?;
        for d in &mut claimed {
            d.next_attempt_at = until;
        }
        Ok(claimed)
    }

    #[tracing::instrument(skip_all)]
    async fn record_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (state, next, error) = attempt_columns(outcome);
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sql::RECORD_ATTEMPT)
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(now.timestamp_millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("recording a delivery attempt", e))?
            .rows_affected();
        if changed == 0 {
            let exists: i64 = sqlx::query_scalar(sql::DELIVERY_EXISTS)
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| backend("reading a delivery", e))?;
            if exists == 0 {
                return Err(StoreError::NotFound);
            }
            // Delivered or failed meanwhile (a lease that ran out): that outcome stands.
            tracing::debug!("store: attempt on a delivery that is no longer pending ignored");
            return Ok(());
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a delivery attempt", e))
    }

    #[tracing::instrument(skip_all)]
    async fn list_deliveries(
        &self,
        state: Option<DeliveryState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        q.push(sql::DELIVERY_COLUMNS)
            .push(" FROM deliveries WHERE 1 = 1");
        if let Some(state) = state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(after) = after {
            q.push(" AND id < ").push_bind(after);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(sql::page_size(limit, sql::MAX_DELIVERY_PAGE));
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("listing deliveries", e))?;
        read_deliveries(&rows)
    }

    #[tracing::instrument(skip_all)]
    async fn retry_delivery(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sql::RETRY_DELIVERY)
            .bind(now.timestamp_millis())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("retrying a delivery", e))?
            .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a delivery retry", e))?;
        Ok(true)
    }
}
