//! The PostgreSQL store: for production and for several replicas sharing one database.
//!
//! Every write is one transaction. A change to a request is a compare-and-set
//! (`UPDATE … WHERE id = $1 AND version = $2`): under concurrent writers the row lock makes the
//! losers re-check the version after the winner commits, find it moved, update nothing, and
//! roll back with [`StoreError::Conflict`]. Audit events are chained under a lock on the
//! single-row `audit_head` table, taken last in the transaction and held until commit, so two
//! transactions never chain onto the same previous event and every chained event commits with
//! the change it records. Locks are always taken in the order request row (or grant row, or
//! signing key rows), then chain head, so writers cannot deadlock.
//!
//! Issuing a grant locks the request row (`SELECT … FOR UPDATE`) before checking that it is
//! still approved at the version the grant was computed from, so a concurrent revocation either
//! commits first (and the check fails) or waits for the grant; a unique constraint on
//! `grants.single_use_request` refuses a second single-use grant. Webhook deliveries are
//! written in the transaction of the change they announce, and claimed by workers with
//! `FOR UPDATE SKIP LOCKED`: replicas polling together never take the same row, and a claimed
//! row's `next_attempt_at` moves to the end of its lease before the claim commits. A browser
//! login is taken with one `DELETE … RETURNING`: of two callbacks with the same `state`, the
//! second waits for the first's row lock and then finds the row gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::audit::{self, AuditEvent, ChainLink, NewAuditEvent};
use countersign_core::grant::{
    Delivery, DeliveryState, GrantRecord, OutboxMessage, SigningKeyRecord,
};
use countersign_core::ports::{
    AttemptOutcome, AuditQuery, KeyStore, LoginTransaction, OutboxStore, RequestFilter,
    SessionStore, Store, Transition, WebSession,
};
use countersign_core::request::{Decision, Request, State};
use countersign_core::{RequestId, StoreError, Timestamp};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row, SqlSafeStr};

use crate::codec::{
    DecisionRow, DeliveryRow, EventRow, GrantRow, KeyRow, LoginRow, RequestRow, SessionRow,
    StoredEventRow, attempt_columns, bind_decision, bind_delivery, bind_event, bind_grant,
    bind_key, bind_login, bind_request, bind_session, bind_session_update, group_decisions,
    lease_end,
};
use crate::error::{backend, gone_or_moved, grant_refused, is_unique_violation};
use crate::sql;

/// Connections per process. Writers hold one only for the length of a short transaction.
const POOL_SIZE: u32 = 16;

/// Locks the chain head until the transaction ends.
const HEAD_SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";

/// The request's state and version, locked until the transaction ends.
const REQUEST_STATE_FOR_UPDATE: &str =
    "SELECT state, version FROM requests WHERE id = $1 FOR UPDATE";

/// The schema, applied in order by [`PostgresStore::migrate`].
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "grants keys outbox".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0002_grants_keys_outbox.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "sessions".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0003_sessions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "requests state id".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0004_requests_state_id.sql").into_sql_str(),
            false,
        ),
    ])
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

/// Writes `outbox` as pending deliveries, due at their creation time.
async fn insert_outbox(
    conn: &mut PgConnection,
    outbox: &[OutboxMessage],
) -> Result<(), StoreError> {
    for message in outbox {
        let row = DeliveryRow::encode_new(message)?;
        if let Err(e) = bind_delivery!(sqlx::query(sql::INSERT_DELIVERY), &row)
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

impl PostgresStore {
    /// A page of events as stored, in seq order.
    async fn event_rows(&self, query: &AuditQuery) -> Result<Vec<EventRow>, StoreError> {
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
            .map(|r| EventRow::read(r).map_err(|e| backend("reading audit events", e)))
            .collect()
    }
}

#[async_trait]
impl Store for PostgresStore {
    #[tracing::instrument(skip_all, fields(request_id = %request.id))]
    async fn insert_request(
        &self,
        request: &Request,
        events: &[NewAuditEvent],
        outbox: &[OutboxMessage],
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
        insert_outbox(&mut tx, outbox).await?;
        append_events(&mut tx, events).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a new request", e))
    }

    #[tracing::instrument(skip_all, fields(request_id = %id))]
    async fn get_request(&self, id: &RequestId) -> Result<Option<Arc<Request>>, StoreError> {
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
        row.decode(decisions).map(|r| Some(Arc::new(r)))
    }

    #[tracing::instrument(skip_all, fields(request_id = %transition.request_id()))]
    async fn apply(&self, transition: &Transition) -> Result<(), StoreError> {
        let id = transition.request_id().to_string();
        let decision = transition
            .decision()
            .map(|d| DecisionRow::encode(&transition.request_id(), d))
            .transpose()?;
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sql::CAS_REQUEST)
            .bind(id.as_str())
            .bind(transition.expected_version())
            .bind(transition.state().as_str())
            .bind(transition.approval().map(crate::codec::approval_name))
            .bind(transition.decided_at().map(|t| t.timestamp_millis()))
            .bind(transition.at().timestamp_millis())
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
            return Err(gone_or_moved(exists));
        }
        if let Some(decision) = &decision
            && let Err(e) = bind_decision!(sqlx::query(sql::INSERT_DECISION), decision)
                .execute(&mut *tx)
                .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate(format!(
                    "{}:{} has already decided on {}",
                    decision.approver_issuer,
                    decision.approver_subject,
                    transition.request_id()
                ))
            } else {
                backend("storing a decision", e)
            });
        }
        insert_outbox(&mut tx, transition.outbox()).await?;
        append_events(&mut tx, transition.events()).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a change", e))
    }

    #[tracing::instrument(skip_all)]
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let mut tx = self.begin_read().await?;
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
        q.push(sql::REQUEST_COLUMNS).push(" FROM requests");
        sql::push_request_filter(&mut q, filter);
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
        self.event_rows(query)
            .await?
            .into_iter()
            .map(EventRow::decode)
            .collect()
    }

    async fn audit_links(&self, query: &AuditQuery) -> Result<Vec<ChainLink>, StoreError> {
        let rows = self.event_rows(query).await?;
        Ok(audit::in_parallel(&rows, |part| {
            let mut buf = Vec::with_capacity(1024);
            part.iter()
                .map(|row| StoredEventRow::of(row).link(&mut buf))
                .collect()
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| backend("pinging the database", e))
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        sqlx::query_as::<_, (i64, String)>("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend("reading the audit chain head", e))
    }

    #[tracing::instrument(skip_all, fields(request_id = %grant.request_id))]
    async fn insert_grant(
        &self,
        grant: &GrantRecord,
        request_version: i64,
        single_use: bool,
        events: &[NewAuditEvent],
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        let row = GrantRow::encode(grant);
        // The request row stays locked from the check to the commit: a concurrent revocation
        // (or any other change to the request) waits, then finds the grant, or commits first
        // and this check sees it. Locks in the usual order: request row, then chain head.
        let mut tx = self.begin_write().await?;
        let current = sqlx::query(REQUEST_STATE_FOR_UPDATE)
            .bind(row.request_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| backend("reading a request", e))?;
        let Some(current) = current else {
            return Err(StoreError::NotFound);
        };
        let state: String = current
            .try_get("state")
            .map_err(|e| backend("reading a request", e))?;
        let version: i64 = current
            .try_get("version")
            .map_err(|e| backend("reading a request", e))?;
        if state != State::Approved.as_str() || version != request_version {
            return Err(StoreError::Conflict);
        }
        if let Err(e) = bind_grant!(sqlx::query(sql::INSERT_GRANT), &row, single_use)
            .execute(&mut *tx)
            .await
        {
            return Err(grant_refused(e, grant));
        }
        insert_outbox(&mut tx, outbox).await?;
        append_events(&mut tx, events).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a grant", e))
    }

    #[tracing::instrument(skip_all)]
    async fn get_grant(&self, jti: &str) -> Result<Option<GrantRecord>, StoreError> {
        let row = sqlx::query(sql::SELECT_GRANT)
            .bind(jti)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("reading a grant", e))?;
        row.map(|r| {
            GrantRow::read(&r)
                .map_err(|e| backend("reading a grant", e))
                .and_then(GrantRow::decode)
        })
        .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_grant(
        &self,
        jti: &str,
        at: Timestamp,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sql::REVOKE_GRANT)
            .bind(jti)
            .bind(at.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("revoking a grant", e))?
            .rows_affected();
        if changed == 0 {
            // Unknown or already revoked: nothing changes, nothing is appended.
            return Ok(false);
        }
        append_events(&mut tx, events).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a grant revocation", e))?;
        Ok(true)
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
    #[tracing::instrument(skip_all)]
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(sql::SELECT_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("reading signing keys", e))?
            .iter()
            .map(|r| {
                KeyRow::read(r)
                    .map_err(|e| backend("reading signing keys", e))
                    .and_then(KeyRow::decode)
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(kid = %key.kid))]
    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire: &[(String, Timestamp)],
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let row = KeyRow::encode(key)?;
        let mut tx = self.begin_write().await?;
        if let Err(e) = bind_key!(sqlx::query(sql::INSERT_KEY), &row)
            .execute(&mut *tx)
            .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate(format!("signing key {} already exists", key.kid))
            } else {
                backend("storing a signing key", e)
            });
        }
        for (kid, until) in retire {
            let changed = sqlx::query(sql::RETIRE_KEY)
                .bind(kid.as_str())
                .bind(until.timestamp_millis())
                .execute(&mut *tx)
                .await
                .map_err(|e| backend("retiring a signing key", e))?
                .rows_affected();
            if changed == 0 {
                // Nothing is written: the caller read keys that are not there.
                return Err(StoreError::NotFound);
            }
        }
        append_events(&mut tx, events).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a signing key", e))
    }
}

/// Reads delivery rows.
fn read_deliveries(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Delivery>, StoreError> {
    rows.iter()
        .map(|r| {
            DeliveryRow::read(r)
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
            .ok_or_else(|| StoreError::Backend("the delivery lease is out of range".into()))?;
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
            .bind(id)
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(now.timestamp_millis())
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
            .bind(id)
            .bind(now.timestamp_millis())
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

#[async_trait]
impl SessionStore for PostgresStore {
    // No span field names a login's state or a session's key: both are secrets.

    #[tracing::instrument(skip_all)]
    async fn insert_login(&self, login: &LoginTransaction) -> Result<(), StoreError> {
        let row = LoginRow::encode(login);
        let mut tx = self.begin_write().await?;
        if let Err(e) = bind_login!(sqlx::query(sql::INSERT_LOGIN), &row)
            .execute(&mut *tx)
            .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate("a login with this state already exists".into())
            } else {
                backend("storing a login", e)
            });
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a login", e))
    }

    #[tracing::instrument(skip_all)]
    async fn take_login(&self, state: &str) -> Result<Option<LoginTransaction>, StoreError> {
        // Read and delete in one statement: a concurrent taker of the same state waits for this
        // row lock, then finds the row gone and returns nothing.
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sql::TAKE_LOGIN)
            .bind(state)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| backend("taking a login", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let row = LoginRow::read(&row).map_err(|e| backend("taking a login", e))?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a login take", e))?;
        row.decode().map(Some)
    }

    #[tracing::instrument(skip_all)]
    async fn insert_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let row = SessionRow::encode(session)?;
        let mut tx = self.begin_write().await?;
        if let Err(e) = bind_session!(sqlx::query(sql::INSERT_SESSION), &row)
            .execute(&mut *tx)
            .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate("a session with this id already exists".into())
            } else {
                backend("storing a session", e)
            });
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a session", e))
    }

    #[tracing::instrument(skip_all)]
    async fn get_session(&self, id_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let row = sqlx::query(sql::SELECT_SESSION)
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("reading a session", e))?;
        row.map(|r| {
            SessionRow::read(&r)
                .map_err(|e| backend("reading a session", e))
                .and_then(SessionRow::decode)
        })
        .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn update_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let row = SessionRow::encode(session)?;
        let mut tx = self.begin_write().await?;
        let changed = bind_session_update!(sqlx::query(sql::UPDATE_SESSION), &row)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("updating a session", e))?
            .rows_affected();
        if changed == 0 {
            // Signed out (or purged) meanwhile: the session stays gone.
            return Err(StoreError::NotFound);
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a session update", e))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sql::DELETE_SESSION)
            .bind(id_hash)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("deleting a session", e))?
            .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a session deletion", e))?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(issuer = %issuer))]
    async fn delete_sessions(
        &self,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<u64, StoreError> {
        let query = match (subject, sid) {
            (Some(subject), Some(sid)) => sqlx::query(sql::DELETE_SESSIONS_OF_SUBJECT_AND_SID)
                .bind(issuer)
                .bind(subject)
                .bind(sid),
            (Some(subject), None) => sqlx::query(sql::DELETE_SESSIONS_OF_SUBJECT)
                .bind(issuer)
                .bind(subject),
            (None, Some(sid)) => sqlx::query(sql::DELETE_SESSIONS_OF_SID)
                .bind(issuer)
                .bind(sid),
            // Neither names anyone: deleting "every session at the issuer" is never meant.
            (None, None) => return Ok(0),
        };
        let mut tx = self.begin_write().await?;
        let deleted = query
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("deleting sessions", e))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|e| backend("committing a session deletion", e))?;
        Ok(deleted)
    }

    #[tracing::instrument(skip_all)]
    async fn purge_sessions(
        &self,
        logins_before: Timestamp,
        sessions_idle_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let logins = sqlx::query(sql::PURGE_LOGINS)
            .bind(logins_before.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("purging logins", e))?
            .rows_affected();
        let sessions = sqlx::query(sql::PURGE_SESSIONS)
            .bind(sessions_idle_before.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("purging sessions", e))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|e| backend("committing a purge", e))?;
        Ok(logins + sessions)
    }
}
