//! The notification outbox and the directory of people in PostgreSQL: notifications written
//! with the change they announce, claimed with `FOR UPDATE SKIP LOCKED`.

use async_trait::async_trait;
use countersign_core::notice::{
    NoticeMessage, NoticeOutcome, NoticeState, NoticeThread, Person, QueuedNotice,
};
use countersign_core::ports::NoticeStore;
use countersign_core::{Principal, StoreError, Timestamp};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PgQuery, PostgresStore};
use crate::codec::{BatchRow, NoticeRow, decode_person, encode_person, lease_end, notice_columns};
use crate::error::{backend, is_unique_violation};
use crate::sql::{self, superseded};

fn notice_row(row: &PgRow) -> Result<NoticeRow, sqlx::Error> {
    Ok(NoticeRow {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        channel: row.try_get("channel")?,
        thread_key: row.try_get("thread_key")?,
        kind: row.try_get("kind")?,
        version: row.try_get("version")?,
        to_requester: row.try_get("to_requester")?,
        due_at: row.try_get("due_at")?,
        created_at: row.try_get("created_at")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Binds `n` in the order of [`sql::INSERT_NOTICE`].
fn bind_notice<'q>(q: PgQuery<'q>, n: &'q NoticeRow) -> PgQuery<'q> {
    q.bind(n.id.as_str())
        .bind(n.request_id.as_str())
        .bind(n.channel.as_str())
        .bind(n.thread_key.as_str())
        .bind(n.kind.as_str())
        .bind(n.version)
        .bind(n.to_requester)
        .bind(n.due_at)
        .bind(n.created_at)
        .bind(n.state.as_str())
        .bind(n.attempts)
        .bind(n.next_attempt_at)
        .bind(n.last_error.as_deref())
        .bind(n.updated_at)
}

/// Writes a change's notifications as one waiting batch (one row, however many channels
/// hear): the worker fans it out before it claims anything ([`fan_out`]).
pub(super) async fn insert_notices(
    conn: &mut PgConnection,
    notices: &[NoticeMessage],
) -> Result<(), StoreError> {
    let Some(first) = notices.first() else {
        return Ok(());
    };
    let row = BatchRow::encode(notices)?;
    let inserted = sqlx::query(sql::INSERT_NOTICE_BATCH)
        .bind(row.id.as_str())
        .bind(row.request_id.as_str())
        .bind(row.notices.as_str())
        .bind(row.created_at)
        .execute(&mut *conn)
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate(format!(
            "notification {} already exists",
            first.id
        ))),
        Err(e) => Err(backend("writing to the notification outbox", e)),
    }
}

/// Moves waiting batches into `notifications` (a row per notification, an id already there
/// kept as it is), oldest first, skipping batches another worker is moving.
async fn fan_out(conn: &mut PgConnection) -> Result<(), StoreError> {
    let taken = sqlx::query(sql::TAKE_BATCHES)
        .bind(sql::MAX_BATCHES)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| backend("fanning out notifications", e))?;
    let mut batches = Vec::with_capacity(taken.len());
    for row in &taken {
        let id: String = row
            .try_get("id")
            .map_err(|e| backend("fanning out notifications", e))?;
        let notices: String = row
            .try_get("notices")
            .map_err(|e| backend("fanning out notifications", e))?;
        batches.push((id, notices));
    }
    batches.sort();
    for (id, notices) in &batches {
        let rows: Result<Vec<NoticeRow>, StoreError> = BatchRow::decode(id, notices)
            .and_then(|notices| notices.iter().map(NoticeRow::encode_new).collect());
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, batch = %id, "notifications dropped");
                continue;
            }
        };
        if rows.is_empty() {
            continue;
        }
        let text = sql::insert_notices_ignoring_duplicates(rows.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
        for n in &rows {
            q = bind_notice(q, n);
        }
        q.execute(&mut *conn)
            .await
            .map_err(|e| backend("fanning out notifications", e))?;
    }
    Ok(())
}

fn read_notices(rows: &[PgRow]) -> Result<Vec<QueuedNotice>, StoreError> {
    rows.iter()
        .map(|r| {
            notice_row(r)
                .map_err(|e| backend("reading notifications", e))
                .and_then(NoticeRow::decode)
        })
        .collect()
}

#[async_trait]
impl NoticeStore for PostgresStore {
    #[tracing::instrument(skip_all)]
    async fn claim_notices(
        &self,
        now: Timestamp,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<QueuedNotice>, StoreError> {
        let until = lease_end(now, lease)?;
        let mut tx = self.begin_write().await?;
        fan_out(&mut tx).await?;
        let rows = sqlx::query(sql::DUE_NOTICES_SKIP_LOCKED)
            .bind(now.timestamp_millis())
            .bind(sql::page_size(limit, sql::MAX_NOTICE_PAGE))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend("claiming notifications", e))?;
        let mut claimed = read_notices(&rows)?;
        if claimed.is_empty() {
            // Committed, not dropped: what was fanned out stays so, and the batches' row
            // locks go now rather than when the pool next uses this connection.
            tx.commit()
                .await
                .map_err(|e| backend("committing a claim", e))?;
            return Ok(claimed);
        }
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("UPDATE notifications SET next_attempt_at = ");
        q.push_bind(until).push(" WHERE id IN (");
        let mut list = q.separated(", ");
        for n in &claimed {
            list.push_bind(n.message.id.as_str());
        }
        q.push(")");
        q.build()
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("claiming notifications", e))?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a claim", e))?;
        let until = countersign_core::time::from_millis(until)
            .ok_or_else(|| StoreError::backend("the notification lease is out of range"))?;
        for n in &mut claimed {
            n.next_attempt_at = until;
        }
        Ok(claimed)
    }

    #[tracing::instrument(skip_all)]
    async fn notice_thread(&self, notice: &NoticeMessage) -> Result<NoticeThread, StoreError> {
        let row = sqlx::query(sql::NOTICE_THREAD)
            .bind(notice.request_id.to_string())
            .bind(notice.thread_key())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("reading a notification thread", e))?;
        let Some(row) = row else {
            return Ok(NoticeThread::default());
        };
        Ok(NoticeThread {
            thread: row
                .try_get("thread")
                .map_err(|e| backend("reading a notification thread", e))?,
            shown_version: row
                .try_get("shown_version")
                .map_err(|e| backend("reading a notification thread", e))?,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn record_notice(
        &self,
        notice: &NoticeMessage,
        outcome: &NoticeOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (state, next, error) = notice_columns(outcome);
        let at = now.timestamp_millis();
        let mut tx = self.begin_write().await?;
        let mut changed = 0;
        for round in 0..2 {
            if round == 1 {
                // Recorded before any claim moved it out of its batch.
                fan_out(&mut tx).await?;
            }
            changed = sqlx::query(sql::RECORD_NOTICE)
                .bind(state)
                .bind(next)
                .bind(error)
                .bind(at)
                .bind(notice.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| backend("recording a notification attempt", e))?
                .rows_affected();
            if changed > 0 {
                break;
            }
        }
        if changed == 0 {
            let exists: i64 = sqlx::query_scalar(sql::NOTICE_EXISTS)
                .bind(notice.id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| backend("reading a notification", e))?;
            // Committed either way: what was fanned out stays so, and its locks go now.
            tx.commit()
                .await
                .map_err(|e| backend("committing a notification attempt", e))?;
            if exists == 0 {
                return Err(StoreError::NotFound);
            }
            tracing::debug!("store: attempt on a notification no longer pending ignored");
            return Ok(());
        }
        if let NoticeOutcome::Sent { thread, version } = outcome {
            sqlx::query(sql::SHOW_ON_THREAD_POSTGRES)
                .bind(notice.request_id.to_string())
                .bind(notice.thread_key())
                .bind(thread.as_deref())
                .bind(*version)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend("recording a notification thread", e))?;
            sqlx::query(sql::SUPERSEDE_NOTICES)
                .bind(superseded(*version))
                .bind(at)
                .bind(notice.request_id.to_string())
                .bind(notice.thread_key())
                .bind(*version)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend("skipping superseded notifications", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a notification attempt", e))
    }

    #[tracing::instrument(skip_all)]
    async fn defer_notice(&self, notice: &NoticeMessage, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(sql::DEFER_NOTICE)
            .bind(at.timestamp_millis())
            .bind(notice.id.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| backend("deferring a notification", e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn list_notices(
        &self,
        state: Option<NoticeState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QueuedNotice>, StoreError> {
        // What waits in batches is listed too.
        let mut tx = self.begin_write().await?;
        fan_out(&mut tx).await?;
        tx.commit()
            .await
            .map_err(|e| backend("fanning out notifications", e))?;
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        q.push(sql::NOTICE_COLUMNS)
            .push(" FROM notifications WHERE 1 = 1");
        if let Some(state) = state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(after) = after {
            q.push(" AND id < ").push_bind(after);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(sql::page_size(limit, sql::MAX_NOTICE_PAGE));
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("listing notifications", e))?;
        read_notices(&rows)
    }

    #[tracing::instrument(skip_all)]
    async fn retry_notice(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let changed = sqlx::query(sql::RETRY_NOTICE)
            .bind(now.timestamp_millis())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| backend("retrying a notification", e))?
            .rows_affected();
        Ok(changed > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn see_person(&self, principal: &Principal, at: Timestamp) -> Result<(), StoreError> {
        let stored = encode_person(principal)?;
        let identity = principal.identity();
        sqlx::query(sql::SEE_PERSON)
            .bind(identity.issuer.as_str())
            .bind(identity.subject.as_str())
            .bind(stored)
            .bind(at.timestamp_millis())
            .execute(&self.pool)
            .await
            .map_err(|e| backend("recording a person", e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn people(&self, since: Timestamp, limit: u32) -> Result<Vec<Person>, StoreError> {
        let rows = sqlx::query(sql::PEOPLE)
            .bind(since.timestamp_millis())
            .bind(sql::page_size(limit, sql::MAX_PEOPLE))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("listing people", e))?;
        rows.iter()
            .map(|row| {
                let principal: String = row
                    .try_get("principal")
                    .map_err(|e| backend("listing people", e))?;
                let seen: i64 = row
                    .try_get("last_seen")
                    .map_err(|e| backend("listing people", e))?;
                decode_person(&principal, seen)
            })
            .collect()
    }
}
