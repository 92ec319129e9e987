//! The PostgreSQL store: for production and for several replicas sharing one database.
//!
//! Every write is one transaction. A change to a request is a compare-and-set
//! (`UPDATE … WHERE id = $1 AND version = $2`): under concurrent writers the row lock makes the
//! losers re-check the version after the winner commits, find it moved, update nothing, and
//! roll back with [`StoreError::Conflict`]. Audit events are chained under a lock on the
//! single-row `audit_head` table, taken last in the transaction and held until commit, so two
//! transactions never chain onto the same previous event and every chained event commits with
//! the change it records. Locks are always taken in the order request row, then chain head, so
//! writers cannot deadlock.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::audit::{AuditEvent, NewAuditEvent};
use countersign_core::ports::{AuditQuery, Order, RequestFilter, Store, Transition};
use countersign_core::request::{Decision, Request};
use countersign_core::{RequestId, StoreError, Timestamp};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row, SqlSafeStr};

use crate::codec::{
    DecisionRow, EventRow, RequestRow, bind_decision, bind_event, bind_request, group_decisions,
};
use crate::error::{backend, is_unique_violation};
use crate::sql;

/// Connections per process. Writers hold one only for the length of a short transaction.
const POOL_SIZE: u32 = 16;

/// Locks the chain head until the transaction ends.
const HEAD_SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";

/// The schema, applied in order by [`PostgresStore::migrate`].
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../migrations/postgres/0001_init.sql").into_sql_str(),
        false,
    )])
}

/// Requests, decisions and the audit chain in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`). Does not migrate: call
    /// [`PostgresStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .map_err(|e| backend("connecting to postgresql", e))?;
        Ok(Self { pool })
    }

    /// Applies the embedded migrations that are not applied yet. Safe to run from several
    /// replicas at once: the migrator holds an advisory lock while it works.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator().run(&self.pool).await.map_err(|e| {
            tracing::warn!(error = %e, "store: postgresql migration failed");
            StoreError::Backend(format!("migrating the postgresql database: {e}"))
        })
    }

    /// The connection pool, for tests and maintenance tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin()
            .await
            .map_err(|e| backend("starting a write transaction", e))
    }

    /// A read-only snapshot, so that a request and its decisions are read consistently.
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| backend("starting a read", e))
    }
}

/// Chains `events` after the current head and writes them, moving the head.
async fn append_events(
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
        bind_event!(sqlx::query(sql::INSERT_EVENT), &row)
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

/// Loads the decisions of `ids`, grouped by request, oldest first.
async fn load_decisions(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<BTreeMap<String, Vec<Decision>>, StoreError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
    q.push(sql::DECISION_COLUMNS)
        .push(" FROM decisions WHERE request_id IN (");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.as_str());
    }
    q.push(") ORDER BY request_id, ordinal");
    let rows = q
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| backend("reading decisions", e))?;
    let rows = rows
        .iter()
        .map(DecisionRow::read)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| backend("reading decisions", e))?;
    group_decisions(rows)
}

#[async_trait]
impl Store for PostgresStore {
    #[tracing::instrument(skip_all, fields(request_id = %request.id))]
    async fn insert_request(
        &self,
        request: &Request,
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let row = RequestRow::encode(request)?;
        let mut tx = self.begin_write().await?;
        if let Err(e) = bind_request!(sqlx::query(sql::INSERT_REQUEST), &row)
            .execute(&mut *tx)
            .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate(format!("request {} already exists", request.id))
            } else {
                backend("storing a request", e)
            });
        }
        append_events(&mut tx, events).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a new request", e))
    }

    #[tracing::instrument(skip_all, fields(request_id = %id))]
    async fn get_request(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        // One snapshot (repeatable read): the request and its decisions agree.
        let mut tx = self.begin_read().await?;
        let id_text = id.to_string();
        let Some(row) = sqlx::query(sql::SELECT_REQUEST)
            .bind(id_text.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| backend("reading a request", e))?
        else {
            return Ok(None);
        };
        let row = RequestRow::read(&row).map_err(|e| backend("reading a request", e))?;
        let decisions = sqlx::query(sql::SELECT_DECISIONS)
            .bind(id_text.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend("reading decisions", e))?
            .iter()
            .map(|r| DecisionRow::read(r).map_err(|e| backend("reading decisions", e)))
            .map(|r| r.and_then(DecisionRow::decode))
            .collect::<Result<Vec<_>, _>>()?;
        tx.rollback()
            .await
            .map_err(|e| backend("ending a read", e))?;
        row.decode(decisions).map(Some)
    }

    #[tracing::instrument(skip_all, fields(request_id = %transition.request_id))]
    async fn apply(&self, transition: &Transition) -> Result<(), StoreError> {
        let id = transition.request_id.to_string();
        let decision = transition
            .decision
            .as_ref()
            .map(|d| DecisionRow::encode(&transition.request_id, d))
            .transpose()?;
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sql::CAS_REQUEST)
            .bind(id.as_str())
            .bind(transition.expected_version)
            .bind(transition.state.as_str())
            .bind(transition.approval.map(crate::codec::approval_name))
            .bind(transition.decided_at.map(|t| t.timestamp_millis()))
            .bind(transition.at.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("updating a request", e))?
            .rows_affected();
        if changed == 0 {
            // Dropping `tx` rolls back; nothing was written. Say why it did not apply.
            let exists: i64 = sqlx::query_scalar(sql::REQUEST_EXISTS)
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| backend("reading a request", e))?;
            return Err(if exists == 0 {
                StoreError::NotFound
            } else {
                StoreError::Conflict
            });
        }
        if let Some(decision) = &decision
            && let Err(e) = bind_decision!(sqlx::query(sql::INSERT_DECISION), decision)
                .execute(&mut *tx)
                .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate(format!(
                    "{}:{} has already decided on {}",
                    decision.approver_issuer, decision.approver_subject, transition.request_id
                ))
            } else {
                backend("storing a decision", e)
            });
        }
        append_events(&mut tx, &transition.events).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a change", e))
    }

    #[tracing::instrument(skip_all)]
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let mut tx = self.begin_read().await?;
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        q.push(sql::REQUEST_COLUMNS)
            .push(" FROM requests WHERE 1 = 1");
        if let Some(state) = filter.state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(gate) = &filter.gate {
            q.push(" AND gate = ").push_bind(gate.as_str());
        }
        if let Some(who) = &filter.requester {
            q.push(" AND requester_issuer = ")
                .push_bind(who.issuer.as_str())
                .push(" AND requester_subject = ")
                .push_bind(who.subject.as_str());
        }
        if let Some(after) = &filter.after {
            let op = match filter.order {
                Order::OldestFirst => " AND id > ",
                Order::NewestFirst => " AND id < ",
            };
            q.push(op).push_bind(after.to_string());
        }
        q.push(match filter.order {
            Order::OldestFirst => " ORDER BY id ASC LIMIT ",
            Order::NewestFirst => " ORDER BY id DESC LIMIT ",
        })
        .push_bind(sql::page_size(filter.limit, sql::MAX_REQUEST_PAGE));
        let rows = q
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend("listing requests", e))?
            .iter()
            .map(RequestRow::read)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| backend("listing requests", e))?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut decisions = load_decisions(&mut tx, &ids).await?;
        tx.rollback()
            .await
            .map_err(|e| backend("ending a read", e))?;
        rows.into_iter()
            .map(|row| {
                let own = decisions.remove(&row.id).unwrap_or_default();
                row.decode(own)
            })
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn due_for_expiry(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(sql::DUE_FOR_EXPIRY)
            .bind(now.timestamp_millis())
            .bind(sql::page_size(limit, sql::MAX_REQUEST_PAGE))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("finding expired requests", e))?;
        ids.iter()
            .map(|id| {
                id.parse().map_err(|_| {
                    StoreError::Backend("a stored request id is not a request id".into())
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&self, events: &[NewAuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        append_events(&mut tx, events).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing audit events", e))
    }

    #[tracing::instrument(skip_all, fields(request_id = ?query.request_id))]
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = sql::page_size(query.limit, sql::MAX_EVENT_PAGE);
        let rows = match &query.request_id {
            None => {
                sqlx::query(sql::SELECT_EVENTS)
                    .bind(query.after_seq)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
            Some(id) => {
                sqlx::query(sql::SELECT_EVENTS_OF_REQUEST)
                    .bind(query.after_seq)
                    .bind(limit)
                    .bind(id.to_string())
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(|e| backend("reading audit events", e))?;
        rows.iter()
            .map(|r| {
                EventRow::read(r)
                    .map_err(|e| backend("reading audit events", e))
                    .and_then(EventRow::decode)
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| backend("pinging the database", e))
    }
}
